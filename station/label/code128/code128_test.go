package code128

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	boombuler "github.com/boombuler/barcode/code128"
)

func TestEncode(t *testing.T) {
	tests := []struct {
		data    string
		sets    string // Symbol.String
		zpl     string
		modules int
	}{
		{"THERMO-000001", "start B B:THERMO- →C C:00 C:00 C:01", ">:THERMO->5000001", 11*13 + 13},
		{"THERMO01", "start B B:THERMO01", ">:THERMO01", 11*10 + 13}, // a tie: no switch
		{"12345678", "start C C:12 C:34 C:56 C:78", ">;12345678", 11*6 + 13},
		{"1234567", "start B B:1 →C C:23 C:45 C:67", ">:1>5234567", 11*7 + 13}, // a tie: B first
		{"000123-ABC", "start C C:00 C:01 C:23 →B B:-ABC", ">;000123>6-ABC", 11*10 + 13},
		{"a^b>c~d_e\x7f", "start B B:a^b>c~d_e\x7f", ">:a><b>0c>=d_e>1", 11*12 + 13},
		{"AB\ncd", "start A A:AB\n →B B:cd", ">9333474>6cd", 11*8 + 13},
		{string(FNC1) + "0109506000134352" + "21" + "THERMO-000001",
			"start C C:FNC1 C:01 C:09 C:50 C:60 C:00 C:13 C:43 C:52 C:21 →B B:THERMO- →C C:00 C:00 C:01",
			">;>8010950600013435221>6THERMO->5000001", 11*24 + 13},
	}
	for _, tc := range tests {
		t.Run(tc.data, func(t *testing.T) {
			s, err := Encode(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tc.sets {
				t.Errorf("Encode(%q) = %s, want %s", tc.data, got, tc.sets)
			}
			if got := s.ZPL(); got != tc.zpl {
				t.Errorf("Encode(%q).ZPL() = %q, want %q", tc.data, got, tc.zpl)
			}
			if got := s.Modules(); got != tc.modules || len(s.Bars()) != got {
				t.Errorf("Encode(%q).Modules() = %d (%d bars), want %d", tc.data, got, len(s.Bars()), tc.modules)
			}
		})
	}
}

// TestValuesMatchBoombuler: for data boombuler encodes in the same code
// sets, the bars are the same (an independent check of the patterns and the
// check character).
func TestBarsMatchBoombuler(t *testing.T) {
	for _, data := range []string{"THERMO-000001", "12345678", "Hello, World", "A1B2C3"} {
		s, err := Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		b, err := boombuler.Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		var want []bool
		for x := range b.Bounds().Dx() {
			r, _, _, _ := b.At(x, 0).RGBA()
			want = append(want, r == 0)
		}
		if got := s.Bars(); !slices.Equal(got, want) {
			t.Errorf("Encode(%q).Bars() differ from boombuler's:\n%s\n%s", data, barString(got), barString(want))
		}
	}
}

func barString(b []bool) string {
	var s strings.Builder
	for _, v := range b {
		s.WriteByte(map[bool]byte{true: '#', false: '.'}[v])
	}
	return s.String()
}

func TestEncodeRefuses(t *testing.T) {
	for _, data := range []string{"", "café"} {
		if _, err := Encode(data); err == nil {
			t.Errorf("Encode(%q) = nil error", data)
		}
	}
}

// decode reads symbol character values back into data (ISO/IEC 15417
// decoding), checking the check character.
func decode(v []int) (string, error) {
	if len(v) < 2 {
		return "", fmt.Errorf("%d values", len(v))
	}
	sum := v[0]
	for i, x := range v[1 : len(v)-1] {
		sum += (i + 1) * x
	}
	if sum%103 != v[len(v)-1] {
		return "", fmt.Errorf("check character %d, want %d", v[len(v)-1], sum%103)
	}
	set := map[int]Set{valueStartA: SetA, valueStartB: SetB, valueStartC: SetC}[v[0]]
	var out []rune
	for _, x := range v[1 : len(v)-1] {
		switch {
		case x == valueFNC1:
			out = append(out, FNC1)
		case x == valueCodeC && set != SetC:
			set = SetC
		case x == valueCodeB && set != SetB:
			set = SetB
		case x == valueCodeA && set != SetA:
			set = SetA
		case set == SetC:
			out = append(out, rune('0'+x/10), rune('0'+x%10))
		case set == SetA && x >= 64:
			out = append(out, rune(x-64))
		default:
			out = append(out, rune(x+32))
		}
	}
	return string(out), nil
}

// zplValues interprets ^BC mode N field data as the ZPL II Programming
// Guide describes it (^BC, "Code 128 Subsets", Table 6): the symbol
// character values a printer encodes, start and check character included.
func zplValues(fd string) ([]int, error) {
	set := SetB
	v := []int{valueStartB}
	if len(fd) >= 2 && fd[0] == '>' {
		switch fd[1] {
		case '9':
			set, v[0], fd = SetA, valueStartA, fd[2:]
		case ':':
			set, v[0], fd = SetB, valueStartB, fd[2:]
		case ';':
			set, v[0], fd = SetC, valueStartC, fd[2:]
		}
	}
	for len(fd) > 0 {
		if fd[0] == '>' {
			if len(fd) < 2 {
				return nil, fmt.Errorf("a lone '>'")
			}
			code := map[byte]int{'<': 62, '0': 30, '=': 94, '1': 95, '2': 96, '3': 97, '4': 98, '5': 99, '6': 100, '7': 101, '8': 102}[fd[1]]
			if code == 0 {
				return nil, fmt.Errorf("invocation >%c", fd[1])
			}
			v = append(v, code)
			switch {
			case code == 99 && set != SetC:
				set = SetC
			case code == 100 && set != SetB:
				set = SetB
			case code == 101 && set != SetA:
				set = SetA
			}
			fd = fd[2:]
			continue
		}
		if set == SetB {
			v = append(v, int(fd[0])-32)
			fd = fd[1:]
			continue
		}
		if len(fd) < 2 || !isDigit(rune(fd[0])) || !isDigit(rune(fd[1])) {
			return nil, fmt.Errorf("set %c data %q is not a digit pair", set, fd)
		}
		v = append(v, int(fd[0]-'0')*10+int(fd[1]-'0'))
		fd = fd[2:]
	}
	sum := v[0]
	for i, x := range v[1:] {
		sum += (i + 1) * x
	}
	return append(v, sum%103), nil
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"THERMO-000001", "1234567", "a^b>c~d_e\x7f", "AB\ncd", string(FNC1) + "0112345678901231" + "21" + "X1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		s, err := Encode(data)
		if err != nil {
			return
		}
		got, err := decode(s.Values())
		if err != nil || got != data {
			t.Fatalf("decode(Encode(%q).Values()) = %q, %v", data, got, err)
		}
		zv, err := zplValues(s.ZPL())
		if err != nil || !slices.Equal(zv, s.Values()) {
			t.Fatalf("Encode(%q).ZPL() = %q reads as %v (%v), want %v", data, s.ZPL(), zv, err, s.Values())
		}
		if z := s.ZPL(); strings.ContainsAny(z, "^~") {
			t.Fatalf("Encode(%q).ZPL() = %q holds a command prefix", data, z)
		}
		if len(s.Bars()) != s.Modules() {
			t.Fatalf("Encode(%q): %d bars, %d modules", data, len(s.Bars()), s.Modules())
		}
		if strings.ContainsRune(data, FNC1) {
			return
		}
		if b, err := boombuler.Encode(data); err == nil && b.Bounds().Dx() < s.Modules() {
			t.Fatalf("Encode(%q) takes %d modules, boombuler %d", data, s.Modules(), b.Bounds().Dx())
		}
	})
}
