package dfu

import (
	"slices"
	"testing"
)

func TestParseLayout(t *testing.T) {
	tests := []struct {
		in        string
		base      uint32
		size      int64
		addr, n   uint32
		wantPages []uint32
		wantErr   bool
	}{
		{in: "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg", base: 0x08000000, size: 1 << 20,
			addr: 0x08003f00, n: 0x200, wantPages: []uint32{0x08000000 + 0x0000, 0x08004000}},
		{in: "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg", base: 0x08000000, size: 1 << 20,
			addr: 0x0800fff0, n: 0x20, wantPages: []uint32{0x0800c000, 0x08010000}},
		{in: "@Option Bytes  /0x1FFFC000/01*016 e", base: 0x1FFFC000, size: 16, addr: 0x1FFFC000, n: 16, wantPages: []uint32{0x1FFFC000}},
		{in: "@Internal Flash  /0x08000000/64*02Kg", base: 0x08000000, size: 128 << 10, addr: 0x08020000, n: 1, wantErr: true},
		{in: "Internal Flash", wantErr: true},
		{in: "@X/0x0/zz*1Kg", wantErr: true},
	}
	for _, tt := range tests {
		l, err := ParseLayout(tt.in)
		if err == nil {
			var pages []uint32
			pages, err = l.Pages(tt.addr, tt.n)
			if err == nil {
				if base, size := l.Size(); base != tt.base || size != tt.size {
					t.Errorf("%q: Size = %#x, %d; want %#x, %d", tt.in, base, size, tt.base, tt.size)
				}
				if !slices.Equal(pages, tt.wantPages) {
					t.Errorf("%q: Pages(%#x, %d) = %#x, want %#x", tt.in, tt.addr, tt.n, pages, tt.wantPages)
				}
			}
		}
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}
