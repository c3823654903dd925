package slip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"empty", nil, []byte{0xC0, 0xC0}},
		{"plain", []byte{1, 2, 3}, []byte{0xC0, 1, 2, 3, 0xC0}},
		{"end byte", []byte{0xC0}, []byte{0xC0, 0xDB, 0xDC, 0xC0}},
		{"escape byte", []byte{0xDB}, []byte{0xC0, 0xDB, 0xDD, 0xC0}},
		{"escaped values stay literal", []byte{0xDC, 0xDD}, []byte{0xC0, 0xDC, 0xDD, 0xC0}},
		{"mixed", []byte{0x00, 0xC0, 0xDB, 0xC0, 0xFF}, []byte{0xC0, 0x00, 0xDB, 0xDC, 0xDB, 0xDD, 0xDB, 0xDC, 0xFF, 0xC0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Encode(nil, tt.in)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Encode(nil, % X) = % X, want % X", tt.in, got, tt.want)
			}
			if n := EncodedLen(tt.in); n != len(tt.want) {
				t.Errorf("EncodedLen(% X) = %d, want %d", tt.in, n, len(tt.want))
			}
		})
	}
}

func TestEncodeAppends(t *testing.T) {
	got := Encode([]byte{0xAA}, []byte{0x01})
	want := []byte{0xAA, 0xC0, 0x01, 0xC0}
	if !bytes.Equal(got, want) {
		t.Errorf("Encode([AA], [01]) = % X, want % X", got, want)
	}
}

// feed runs chunks through a Decoder and collects frames and errors.
func feed(d *Decoder, chunks ...[]byte) (frames [][]byte, errs []error) {
	for _, c := range chunks {
		err := d.Feed(c, func(f []byte) { frames = append(frames, append([]byte(nil), f...)) })
		if err != nil {
			errs = append(errs, err)
		}
	}
	return frames, errs
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name       string
		max        int
		chunks     [][]byte
		wantFrames [][]byte
		wantErrs   []error
	}{
		{
			name:       "one frame",
			chunks:     [][]byte{{0xC0, 1, 2, 3, 0xC0}},
			wantFrames: [][]byte{{1, 2, 3}},
		},
		{
			name:       "escapes",
			chunks:     [][]byte{{0xC0, 0xDB, 0xDC, 0xDB, 0xDD, 0x07, 0xC0}},
			wantFrames: [][]byte{{0xC0, 0xDB, 0x07}},
		},
		{
			name:       "split across reads",
			chunks:     [][]byte{{0xC0, 1}, {2, 0xDB}, {0xDC}, {3, 0xC0}},
			wantFrames: [][]byte{{1, 2, 0xC0, 3}},
		},
		{
			name:       "garbage before the first end byte",
			chunks:     [][]byte{[]byte("ets Jun  8 2016\r\nwaiting for download\r\n"), {0xC0, 9, 0xC0}},
			wantFrames: [][]byte{{9}},
		},
		{
			name:       "garbage with escape bytes before the first end byte",
			chunks:     [][]byte{{0xDB, 0x11, 0xDB}, {0xC0, 9, 0xC0}},
			wantFrames: [][]byte{{9}},
		},
		{
			name:       "back to back frames sharing no end byte",
			chunks:     [][]byte{{0xC0, 1, 0xC0, 0xC0, 2, 0xC0}},
			wantFrames: [][]byte{{1}, {2}},
		},
		{
			name:       "back to back frames sharing one end byte",
			chunks:     [][]byte{{0xC0, 1, 0xC0, 2, 0xC0}},
			wantFrames: [][]byte{{1}, {2}},
		},
		{
			name:   "empty frames are skipped",
			chunks: [][]byte{{0xC0, 0xC0, 0xC0, 0xC0}},
		},
		{
			name:       "bad escape drops the frame only",
			chunks:     [][]byte{{0xC0, 1, 0xDB, 0x01, 2, 0xC0, 3, 0xC0}},
			wantFrames: [][]byte{{3}},
			wantErrs:   []error{ErrBadEscape},
		},
		{
			name:       "escape then end",
			chunks:     [][]byte{{0xC0, 1, 0xDB, 0xC0, 4, 0xC0}},
			wantFrames: [][]byte{{4}},
			wantErrs:   []error{ErrBadEscape},
		},
		{
			name:       "too long",
			max:        3,
			chunks:     [][]byte{{0xC0, 1, 2, 3, 4, 0xC0, 5, 6, 7, 0xC0}},
			wantFrames: [][]byte{{5, 6, 7}},
			wantErrs:   []error{ErrTooLong},
		},
		{
			name:       "too long split across reads",
			max:        2,
			chunks:     [][]byte{{0xC0, 1, 2}, {3}, {0xC0}, {0xC0, 8, 0xC0}},
			wantFrames: [][]byte{{8}},
			wantErrs:   []error{ErrTooLong},
		},
		{
			name:       "escaped byte counts once against the maximum",
			max:        2,
			chunks:     [][]byte{{0xC0, 0xDB, 0xDC, 0xDB, 0xDD, 0xC0}},
			wantFrames: [][]byte{{0xC0, 0xDB}},
		},
		{
			name:       "unfinished frame is not emitted",
			chunks:     [][]byte{{0xC0, 1, 2}},
			wantFrames: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Decoder{Max: tt.max}
			frames, errs := feed(d, tt.chunks...)
			if fmt.Sprint(frames) != fmt.Sprint(tt.wantFrames) {
				t.Errorf("Feed(% X) frames = % X, want % X", tt.chunks, frames, tt.wantFrames)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("Feed(% X) errors = %v, want %v", tt.chunks, errs, tt.wantErrs)
			}
			for i := range errs {
				if !errors.Is(errs[i], tt.wantErrs[i]) {
					t.Errorf("Feed(% X) error %d = %v, want %v", tt.chunks, i, errs[i], tt.wantErrs[i])
				}
			}
		})
	}
}

func TestDecoderReportsFirstErrorOfAFeed(t *testing.T) {
	var d Decoder
	in := []byte{0xC0, 0xDB, 0x00, 0xC0}
	in = append(in, bytes.Repeat([]byte{1}, DefaultMaxFrame+1)...)
	in = append(in, 0xC0)
	_, errs := feed(&d, in)
	if len(errs) != 1 || !errors.Is(errs[0], ErrBadEscape) {
		t.Errorf("Feed(bad escape, then too long) = %v, want [%v]", errs, ErrBadEscape)
	}
}

func TestDecoderReset(t *testing.T) {
	var d Decoder
	feed(&d, []byte{0xC0, 1, 2, 0xDB})
	d.Reset()
	frames, errs := feed(&d, []byte{3, 0xC0, 0xC0, 4, 0xC0})
	if fmt.Sprint(frames) != fmt.Sprint([][]byte{{4}}) || errs != nil {
		t.Errorf("after Reset, Feed = % X, %v, want [[04]], no errors", frames, errs)
	}
}

// stream is three frames, one of them bad, in one byte stream.
func stream() (in []byte, want [][]byte) {
	want = [][]byte{{0x01, 0x08, 0xC0, 0xDB}, bytes.Repeat([]byte{0x55}, 5000), {0x42}}
	in = append(in, "boot log\r\n"...)
	in = Encode(in, want[0])
	in = append(in, 0xC0, 0x01, 0xDB, 0x77, 0xC0) // bad escape
	in = Encode(in, want[1])
	in = Encode(in, want[2])
	return in, want
}

// readAll reads frames until err is neither nil, ErrNoData nor a dropped
// frame's error.
func readAll(r *Reader) (frames [][]byte, dropped []error, err error) {
	for range 100000 {
		f, err := r.ReadFrame()
		switch {
		case err == nil:
			frames = append(frames, f)
		case errors.Is(err, ErrNoData):
		case errors.Is(err, ErrBadEscape), errors.Is(err, ErrTooLong):
			dropped = append(dropped, err)
		default:
			return frames, dropped, err
		}
	}
	return frames, dropped, errors.New("reader never ended")
}

func TestReader(t *testing.T) {
	in, want := stream()
	tests := []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(in)},
		{"OneByteReader", iotest.OneByteReader(bytes.NewReader(in))},
		{"HalfReader", iotest.HalfReader(bytes.NewReader(in))},
		{"DataErrReader", iotest.DataErrReader(bytes.NewReader(in))},
		{"DataErrReader of OneByteReader", iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(in)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, dropped, err := readAll(NewReader(tt.r, 0))
			if !errors.Is(err, io.EOF) {
				t.Errorf("ReadFrame() final error = %v, want %v", err, io.EOF)
			}
			if fmt.Sprint(frames) != fmt.Sprint(want) {
				t.Errorf("ReadFrame() frames = %d frames, want %d: got % X", len(frames), len(want), frames)
			}
			if len(dropped) != 1 || !errors.Is(dropped[0], ErrBadEscape) {
				t.Errorf("ReadFrame() dropped = %v, want [%v]", dropped, ErrBadEscape)
			}
		})
	}
}

// timeoutReader returns (0, nil) between chunks, as a serial port does
// when its read timeout expires.
type timeoutReader struct {
	chunks [][]byte
	idle   bool
}

func (r *timeoutReader) Read(p []byte) (int, error) {
	if r.idle = !r.idle; r.idle {
		return 0, nil
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

func TestReaderNoData(t *testing.T) {
	r := NewReader(&timeoutReader{chunks: [][]byte{{0xC0, 1}, {2, 0xC0}}}, 0)
	var got []string
	for {
		f, err := r.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			got = append(got, err.Error())
			continue
		}
		got = append(got, fmt.Sprintf("% X", f))
	}
	want := []string{ErrNoData.Error(), ErrNoData.Error(), ErrNoData.Error(), "01 02", ErrNoData.Error()}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ReadFrame() sequence = %q, want %q", got, want)
	}
}

// TestReaderChattyInput checks that a stream with no frame in it still
// hands control back to the caller after every read, so a deadline can
// be checked.
func TestReaderChattyInput(t *testing.T) {
	chatter := bytes.Repeat([]byte("I (31) boot: ESP-IDF v5.1 2nd stage bootloader\r\n"), 1000)
	r := NewReader(iotest.HalfReader(bytes.NewReader(chatter)), 0)
	for i := range 3 {
		if _, err := r.ReadFrame(); !errors.Is(err, ErrNoData) {
			t.Fatalf("ReadFrame() call %d on chatter = %v, want %v", i, err, ErrNoData)
		}
	}
}

func TestReaderTimeoutError(t *testing.T) {
	in := Encode(nil, []byte{7})
	r := NewReader(iotest.TimeoutReader(bytes.NewReader(in)), 0)
	f, err := r.ReadFrame()
	if err != nil || !bytes.Equal(f, []byte{7}) {
		t.Fatalf("ReadFrame() = % X, %v, want 07, nil", f, err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("ReadFrame() second = %v, want %v", err, iotest.ErrTimeout)
	}
}

func TestReaderDiscard(t *testing.T) {
	in := Encode(nil, []byte{1})
	in = append(in, 0xC0, 2, 3) // a partial frame
	r := NewReader(bytes.NewReader(in), 0)
	if _, err := r.ReadFrame(); err != nil {
		t.Fatalf("ReadFrame() = %v", err)
	}
	r.Discard()
	r.r = bytes.NewReader([]byte{4, 0xC0, 0xC0, 5, 0xC0})
	frames, _, _ := readAll(r)
	if fmt.Sprint(frames) != fmt.Sprint([][]byte{{5}}) {
		t.Errorf("after Discard, frames = % X, want [[05]]", frames)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, []byte{0xC0, 0xDB, 0xDC})
	f.Add([]byte{0xC0, 0xC0, 0xDB}, []byte{0xDB, 0x00, 0xC0})
	f.Add(bytes.Repeat([]byte{0xDB}, 300), []byte("ets Jun  8 2016"))
	f.Fuzz(func(t *testing.T, payload, noise []byte) {
		// Round trip: whatever came before, the frame decodes to itself.
		var d Decoder
		d.Feed(noise, func([]byte) {})
		in := Encode(nil, payload)
		var got [][]byte
		err := d.Feed(in, func(fr []byte) { got = append(got, append([]byte(nil), fr...)) })
		// An empty payload makes no frame of its own; one past the
		// maximum is dropped by design.
		if len(payload) > 0 && len(payload) <= DefaultMaxFrame &&
			(len(got) == 0 || !bytes.Equal(got[len(got)-1], payload)) {
			t.Errorf("decode(encode(% X)) after noise % X = % X, %v", payload, noise, got, err)
		}
		// Arbitrary input never panics and never yields an over-long frame.
		d2 := Decoder{Max: 16}
		d2.Feed(noise, func(fr []byte) {
			if len(fr) > 16 {
				t.Errorf("Feed emitted a %d byte frame past Max 16", len(fr))
			}
		})
		r := NewReader(iotest.OneByteReader(bytes.NewReader(noise)), 8)
		if _, _, err := readAll(r); !errors.Is(err, io.EOF) {
			t.Errorf("Reader on noise ended with %v, want %v", err, io.EOF)
		}
	})
}
