package stm32

import (
	"bytes"
	"testing"

	"github.com/station-dev/station/flasher"
)

func TestWriteRuns(t *testing.T) {
	seg := func(addr uint64, data ...byte) flasher.Segment {
		return flasher.Segment{Name: "s", Addr: addr, Data: data}
	}
	const ff = 0xFF
	cases := []struct {
		name string
		unit uint32
		segs []flasher.Segment
		want []flasher.Segment
	}{
		{"aligned", 8, []flasher.Segment{seg(0x100, 1, 2, 3, 4, 5, 6, 7, 8)},
			[]flasher.Segment{seg(0x100, 1, 2, 3, 4, 5, 6, 7, 8)}},
		{"double word: start and end widened", 8, []flasher.Segment{seg(0x104, 1, 2, 3, 4, 5)},
			[]flasher.Segment{seg(0x100, ff, ff, ff, ff, 1, 2, 3, 4, 5, ff, ff, ff, ff, ff, ff, ff)}},
		{"double word shared by two segments: one run", 8, []flasher.Segment{seg(0x100, 1, 2, 3), seg(0x104, 4, 5, 6, 7)},
			[]flasher.Segment{seg(0x100, 1, 2, 3, ff, 4, 5, 6, 7)}},
		{"half-words: whole words apart", 2, []flasher.Segment{seg(0x100, 1, 2, 3), seg(0x104, 4, 5, 6, 7)},
			[]flasher.Segment{seg(0x100, 1, 2, 3, ff), seg(0x104, 4, 5, 6, 7)}},
		{"bytes: padded to a word", 1, []flasher.Segment{seg(0x100, 1, 2, 3, 4, 5, 6)},
			[]flasher.Segment{seg(0x100, 1, 2, 3, 4, 5, 6, ff, ff)}},
		{"double words apart: two runs", 8, []flasher.Segment{seg(0x100, 1, 2, 3, 4), seg(0x108, 5, 6, 7, 8)},
			[]flasher.Segment{seg(0x100, 1, 2, 3, 4, ff, ff, ff, ff), seg(0x108, 5, 6, 7, 8, ff, ff, ff, ff)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := writeRuns(flasher.Image{Segments: tc.segs}, tc.unit)
			if len(got) != len(tc.want) {
				t.Fatalf("writeRuns() = %d runs %+v, want %+v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i].Addr != tc.want[i].Addr || !bytes.Equal(got[i].Data, tc.want[i].Data) {
					t.Errorf("writeRuns()[%d] = %#x % x, want %#x % x", i, got[i].Addr, got[i].Data, tc.want[i].Addr, tc.want[i].Data)
				}
			}
		})
	}
}
