package export

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// redactCases are texts whose tokens sit at every place a cut could
// fall: at the start and end, after a multi-byte character, next to
// '-' and '_', inside a word (no \b, not a token), and runs of token
// bytes longer than the buffer.
var redactCases = []string{
	"",
	"stk_abcd",
	"> GET stk_live_9fA7bQ2x\n< OK dmk_x-y_z0 done",
	"tokenstk_notone x-stk_abcd1 _stk_abcd2 é stk_abcd3é\xc3stk_abcd4\xa9dmk_abcd5",
	"stk_abc stk_ dmk_ab-c stk_abcd" + strings.Repeat("x", 40) + " tail",
	strings.Repeat("a", 50) + "stk_abcdef" + strings.Repeat("-", 30),
	"line1\r\nstk_abcd\tdmk_abcd\x00stk_abcd",
}

func TestCopyRedacted(t *testing.T) {
	for _, text := range redactCases {
		want := tokenPattern.ReplaceAllString(text, redactedValue)
		for _, size := range []int{1, 2, 3, 5, 8, 13, bufferSize} {
			var got bytes.Buffer
			r := iotest.OneByteReader(strings.NewReader(text))
			if size > 3 {
				r = iotest.HalfReader(strings.NewReader(text))
			}
			if err := copyRedacted(&got, r, make([]byte, size)); err != nil {
				t.Fatalf("copyRedacted(%q, buffer %d) error = %v", text, size, err)
			}
			if got.String() != want {
				t.Errorf("copyRedacted(%q, buffer %d) = %q, want %q", text, size, got.String(), want)
			}
		}
	}
	if err := copyRedacted(&bytes.Buffer{}, iotest.ErrReader(iotest.ErrTimeout), make([]byte, 8)); err != iotest.ErrTimeout {
		t.Errorf("copyRedacted of a failing reader = %v, want its error", err)
	}
}

func FuzzCopyRedacted(f *testing.F) {
	for _, text := range redactCases {
		f.Add(text, uint8(3))
	}
	f.Fuzz(func(t *testing.T, text string, size uint8) {
		var got bytes.Buffer
		if err := copyRedacted(&got, iotest.HalfReader(strings.NewReader(text)), make([]byte, int(size)%64+1)); err != nil {
			t.Fatal(err)
		}
		if want := tokenPattern.ReplaceAllString(text, redactedValue); got.String() != want {
			t.Errorf("copyRedacted(%q, buffer %d) = %q, want %q", text, int(size)%64+1, got.String(), want)
		}
	})
}
