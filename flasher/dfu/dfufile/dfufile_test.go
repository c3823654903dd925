package dfufile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/station-dev/station/flasher/dfu/dfufile"
)

func dfuseFile() *dfufile.File {
	return &dfufile.File{
		Suffix: dfufile.Suffix{Device: 0xffff, Product: 0xdf11, Vendor: 0x0483, DFU: dfufile.VersionDfuSe},
		Targets: []dfufile.Target{{Alt: 0, Name: "ST...", Elements: []dfufile.Element{
			{Addr: 0x08010000, Data: bytes.Repeat([]byte{0xab}, 300)},
			{Addr: 0x08000000, Data: []byte("vector table")},
		}}},
	}
}

// TestCRCMatchesDfuUtil checks dwCRC against a value computed the way
// dfu-util does (CRC-32 table, start 0xFFFFFFFF, no final inversion) for
// "123456789": the standard CRC-32 check value 0xCBF43926 inverted.
func TestCRCMatchesDfuUtil(t *testing.T) {
	if got := dfufile.CRC([]byte("123456789")); got != ^uint32(0xCBF43926) {
		t.Fatalf("CRC = %#08x, want %#08x", got, ^uint32(0xCBF43926))
	}
}

func TestParse(t *testing.T) {
	good := dfufile.Encode(dfuseFile())
	plain := dfufile.Encode(&dfufile.File{Suffix: dfufile.Suffix{Device: 0xffff, Product: 1, Vendor: 0x1209, DFU: 0x0100}, Payload: []byte("firmware")})
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	badSize := bytes.Clone(good)
	binary.LittleEndian.PutUint32(badSize[6:], 5)
	badSize = append(badSize[:len(badSize)-4], 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(badSize[len(badSize)-4:], dfufile.CRC(badSize[:len(badSize)-4]))
	tests := []struct {
		name    string
		in      []byte
		wantErr string
		noSuf   bool
		targets int
	}{
		{name: "dfuse", in: good, targets: 1},
		{name: "plain", in: plain},
		{name: "bad crc refused", in: flip(good, 20), wantErr: "CRC"},
		{name: "bad crc in suffix refused", in: flip(good, len(good)-1), wantErr: "CRC"},
		{name: "raw binary", in: []byte("just bytes, no suffix here"), noSuf: true},
		{name: "short", in: []byte("UFD"), noSuf: true},
		{name: "image size mismatch", in: badSize, wantErr: "image size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := dfufile.Parse(tt.in)
			switch {
			case tt.noSuf:
				if !errors.Is(err, dfufile.ErrNoSuffix) {
					t.Fatalf("err = %v, want ErrNoSuffix", err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Parse: %v", err)
			case len(f.Targets) != tt.targets:
				t.Fatalf("%d targets, want %d", len(f.Targets), tt.targets)
			}
		})
	}
}

func TestRoundTripAndImage(t *testing.T) {
	in := dfuseFile()
	f, err := dfufile.Parse(dfufile.Encode(in))
	if err != nil {
		t.Fatal(err)
	}
	if f.Suffix != in.Suffix || f.Targets[0].Name != "ST..." || len(f.Targets[0].Elements) != 2 ||
		f.Targets[0].Elements[0].Addr != 0x08010000 || !bytes.Equal(f.Targets[0].Elements[1].Data, []byte("vector table")) {
		t.Fatalf("round trip = %+v", f)
	}
	img, err := dfufile.Image("fw.dfu", dfufile.Encode(in), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Segments) != 2 || img.Segments[0].Addr != 0x08000000 || img.Segments[1].Addr != 0x08010000 {
		t.Fatalf("Image segments not sorted by address: %+v", img.Segments)
	}
	if _, err := dfufile.Image("fw.dfu", dfufile.Encode(in), 1, 0); err == nil {
		t.Fatal("Image for a missing alt setting succeeded")
	}
	raw, err := dfufile.Image("fw.bin", []byte{1, 2, 3}, 0, 0x08000000)
	if err != nil || raw.Segments[0].Addr != 0x08000000 {
		t.Fatalf("raw Image = %+v, %v", raw, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(dfufile.Encode(dfuseFile()))
	f.Add([]byte("xxxxxxxxxxxxxxxxUFD\x10\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := dfufile.Parse(b)
		if err != nil {
			return
		}
		if len(p.Targets) > 0 {
			q, err := dfufile.Parse(dfufile.Encode(p))
			if err != nil || len(q.Targets) != len(p.Targets) {
				t.Fatalf("re-encoded file does not parse: %v", err)
			}
		}
	})
}
