package rsp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestAppendPacket(t *testing.T) {
	tests := []struct{ data, want string }{
		{"", "$#00"},
		{"?", "$?#3f"},
		{"qSupported", "$qSupported#37"},
		{"m0,4", "$m0,4#fd"},
		{"OK", "$OK#9a"},
	}
	for _, tt := range tests {
		if got := string(AppendPacket(nil, []byte(tt.data))); got != tt.want {
			t.Errorf("AppendPacket(%q) = %q, want %q", tt.data, got, tt.want)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"#", "}\x03"},
		{"$", "}\x04"},
		{"}", "}]"},
		{"*", "}\x0a"},
		{"a#b}c", "a}\x03b}]c"},
	}
	for _, tt := range tests {
		got := AppendEscaped(nil, []byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("AppendEscaped(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if n := EscapedLen([]byte(tt.in)); n != len(tt.want) {
			t.Errorf("EscapedLen(%q) = %d, want %d", tt.in, n, len(tt.want))
		}
	}
}

func TestEscapedPrefix(t *testing.T) {
	data := []byte("ab#cd")
	tests := []struct{ room, want int }{{0, 0}, {2, 2}, {3, 2}, {4, 3}, {6, 5}, {10, 5}}
	for _, tt := range tests {
		if got := EscapedPrefix(data, tt.room); got != tt.want {
			t.Errorf("EscapedPrefix(%q, %d) = %d, want %d", data, tt.room, got, tt.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"", "", nil},
		{"0* ", "0000", nil}, // the manual's example: ' ' is 32, three more
		{"a}]b", "a}b", nil},
		{"}\x03}\x04}\x0a", "#$*", nil},
		{"ab*!", "abbbbb", nil},
		{"*!", "", ErrBadRunLength},
		{"a*", "a", ErrBadRunLength},
		{"a}", "a", ErrBadEscape},
		{"a*\x10", "a", ErrBadRunLength},
	}
	for _, tt := range tests {
		got, err := Decode(nil, []byte(tt.in))
		if !errors.Is(err, tt.err) || (err == nil && string(got) != tt.want) {
			t.Errorf("Decode(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestRunLength(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"0000", "0* "},
		{"0000000", "000000"[:1] + "*\"" + "0"}, // 7 = 1 + 5 (avoids '#', 6) + 1
		{"00000000", "0*\"00"},
		{strings.Repeat("f", 200), ""},
	}
	for _, tt := range tests {
		enc := AppendRunLength(nil, []byte(tt.in))
		if tt.want != "" && string(enc) != tt.want {
			t.Errorf("AppendRunLength(%q) = %q, want %q", tt.in, enc, tt.want)
		}
		if bytes.ContainsAny(enc, "#$") {
			t.Errorf("AppendRunLength(%q) = %q puts # or $ on the wire", tt.in, enc)
		}
		dec, err := Decode(nil, enc)
		if err != nil || string(dec) != tt.in {
			t.Errorf("Decode(AppendRunLength(%q)) = %q, %v", tt.in, dec, err)
		}
	}
}

func FuzzEscapeRoundTrip(f *testing.F) {
	f.Add([]byte("plain"))
	f.Add([]byte("#$}*\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		enc := AppendEscaped(nil, data)
		if bytes.ContainsAny(enc, "#$*") {
			t.Fatalf("AppendEscaped(%q) = %q has a framing byte", data, enc)
		}
		dec, err := Decode(nil, enc)
		if err != nil || !bytes.Equal(dec, data) {
			t.Fatalf("Decode(AppendEscaped(%q)) = %q, %v", data, dec, err)
		}
	})
}

func FuzzRunLengthRoundTrip(f *testing.F) {
	f.Add("00000000ffff")
	f.Add("abababab")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, "#$}*") {
			return
		}
		enc := AppendRunLength(nil, []byte(s))
		dec, err := Decode(nil, enc)
		if err != nil || string(dec) != s {
			t.Fatalf("Decode(AppendRunLength(%q)) = %q, %v", s, dec, err)
		}
	})
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("+$OK#9a-$m0,4#fd%Stop:T05#00\x03"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bytes.NewReader(stream), 64)
		for range len(stream) + 1 {
			if _, err := r.Next(); err != nil {
				return
			}
		}
		t.Fatal("Reader returned more events than the stream has bytes")
	})
}

func TestReader(t *testing.T) {
	stream := "junk+$OK#9a-$m0,4#fd$bad#00\x03%Stop:T05#99$a$OK#9a"
	want := []struct {
		kind Kind
		data string
		bad  bool
	}{
		{KindAck, "", false},
		{KindPacket, "OK", false},
		{KindNack, "", false},
		{KindPacket, "m0,4", false},
		{KindPacket, "bad", true},
		{KindInterrupt, "", false},
		{KindNotification, "Stop:T05", false},
		{KindPacket, "OK", false}, // "$a" is dropped when "$" starts again
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+err": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			r := NewReader(wrap(strings.NewReader(stream)), 0)
			for i, w := range want {
				ev, err := r.Next()
				if err != nil {
					t.Fatalf("Next() #%d = %v", i, err)
				}
				if ev.Kind != w.kind || string(ev.Data) != w.data || ev.BadChecksum != w.bad {
					t.Fatalf("Next() #%d = %v %q bad=%v, want %v %q bad=%v", i, ev.Kind, ev.Data, ev.BadChecksum, w.kind, w.data, w.bad)
				}
			}
			if _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("Next() at the end = %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderCutAndTooLong(t *testing.T) {
	r := NewReader(strings.NewReader("$OK#9"), 0)
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next() on a cut packet = %v, want io.ErrUnexpectedEOF", err)
	}
	r = NewReader(strings.NewReader("$0123456789#2d$OK#9a"), 4)
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("Next() on a long packet = %v, want ErrTooLong", err)
	}
	if ev, err := r.Next(); err != nil || string(ev.Data) != "OK" {
		t.Errorf("Next() after a long packet = %q, %v, want OK", ev.Data, err)
	}
}

func TestCRC(t *testing.T) {
	// CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no
	// final XOR) is GDB's xcrc32; its check value is 0x0376E6E7.
	if got := CRC([]byte("123456789")); got != 0x0376E6E7 {
		t.Errorf("CRC(123456789) = %08x, want 0376e6e7", got)
	}
	if got := CRC(nil); got != 0xFFFFFFFF {
		t.Errorf("CRC(nil) = %08x, want ffffffff", got)
	}
	data := []byte("split anywhere gives the same")
	if got, want := UpdateCRC(CRC(data[:7]), data[7:]), CRC(data); got != want {
		t.Errorf("UpdateCRC in two parts = %08x, want %08x", got, want)
	}
}

func TestParseFeatures(t *testing.T) {
	// QEMU 7.2's exact reply on netduinoplus2.
	f, err := ParseFeatures([]byte("PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+"))
	if err != nil || f.PacketSize != 0x1000 || !f.Has("qXfer:features:read") || f.Has("qXfer:memory-map:read") {
		t.Errorf("ParseFeatures(QEMU) = %+v, %v", f, err)
	}
	f, err = ParseFeatures([]byte("PacketSize=4000;qXfer:memory-map:read+;QStartNoAckMode+;swbreak-;vContSupported?"))
	if err != nil || f.PacketSize != 0x4000 || !f.Has("QStartNoAckMode") || f.Has("swbreak") {
		t.Errorf("ParseFeatures(OpenOCD-like) = %+v, %v", f, err)
	}
	if _, err := ParseFeatures([]byte("PacketSize=zz")); err == nil {
		t.Error("ParseFeatures(PacketSize=zz) = nil error")
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		in   string
		code int
		text string
		ok   bool
	}{
		{"E14", 0x14, "", true},
		{"E.memtype", -1, "memtype", true},
		{"E0123456", 0, "", false}, // hex memory, not an error
		{"OK", 0, "", false},
		{"", 0, "", false},
		{"EZZ", 0, "", false},
	}
	for _, tt := range tests {
		e := ParseError([]byte(tt.in))
		if (e != nil) != tt.ok || (e != nil && (e.Code != tt.code || e.Text != tt.text)) {
			t.Errorf("ParseError(%q) = %+v, want code %d text %q ok %v", tt.in, e, tt.code, tt.text, tt.ok)
		}
	}
}

func TestIsOutput(t *testing.T) {
	tests := map[string]bool{"OK": false, "O4142": true, "O": false, "O414": false, "E01": false, "O4G": false}
	for in, want := range tests {
		if got := IsOutput([]byte(in)); got != want {
			t.Errorf("IsOutput(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseCRC(t *testing.T) {
	if v, err := ParseCRC([]byte("C0376e6e7")); err != nil || v != 0x0376E6E7 {
		t.Errorf("ParseCRC = %08x, %v", v, err)
	}
	for _, bad := range []string{"", "C", "Cxyz", "E01", "C123456789"} {
		if _, err := ParseCRC([]byte(bad)); err == nil {
			t.Errorf("ParseCRC(%q) = nil error", bad)
		}
	}
}

func TestParseMemoryMap(t *testing.T) {
	// Shaped like OpenOCD's answer for an STM32F4 (numbers hex, a DTD
	// reference, flash banks split by sector size).
	doc := `<?xml version="1.0"?>
<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">
<memory-map>
<memory type="ram" start="0x20000000" length="0x20000"/>
<memory type="flash" start="0x08000000" length="0x10000"><property name="blocksize">0x4000</property></memory>
<memory type="flash" start="0x08010000" length="0x10000"><property name="blocksize">65536</property></memory>
<memory type="rom" start="0x1fff0000" length="0x7800"/>
</memory-map>`
	got, err := ParseMemoryMap([]byte(doc))
	if err != nil {
		t.Fatalf("ParseMemoryMap = %v", err)
	}
	want := []Region{
		{MemFlash, 0x08000000, 0x10000, 0x4000},
		{MemFlash, 0x08010000, 0x10000, 0x10000},
		{MemROM, 0x1FFF0000, 0x7800, 0},
		{MemRAM, 0x20000000, 0x20000, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("ParseMemoryMap = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("region %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	again, err := ParseMemoryMap(AppendMemoryMap(nil, want))
	if err != nil || len(again) != len(want) || again[3] != want[3] {
		t.Errorf("ParseMemoryMap(AppendMemoryMap) = %+v, %v", again, err)
	}
	bad := map[string]string{
		"flash without blocksize": `<memory-map><memory type="flash" start="0" length="16"/></memory-map>`,
		"unknown type":            `<memory-map><memory type="eeprom" start="0" length="16"/></memory-map>`,
		"overlap":                 `<memory-map><memory type="ram" start="0" length="16"/><memory type="ram" start="8" length="16"/></memory-map>`,
		"not a number":            `<memory-map><memory type="ram" start="zero" length="16"/></memory-map>`,
		"not XML":                 `memory`,
	}
	for name, doc := range bad {
		if _, err := ParseMemoryMap([]byte(doc)); err == nil {
			t.Errorf("ParseMemoryMap(%s) = nil error", name)
		}
	}
}
