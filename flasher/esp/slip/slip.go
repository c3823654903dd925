// Package slip implements the SLIP framing (RFC 1055) that the ESP ROM
// serial bootloader wraps around every command and response.
//
// Reference: esptool documentation, "Serial Protocol", section "Low Level
// Protocol": a frame starts and ends with 0xC0; inside it 0xC0 is sent as
// 0xDB 0xDC and 0xDB as 0xDB 0xDD.
//
// The package does no I/O of its own: Encode builds a frame, Decoder turns
// a byte stream into frames, Reader pulls frames from an io.Reader.
package slip

import (
	"errors"
	"io"
)

const (
	end    = 0xC0 // frame delimiter
	esc    = 0xDB // escape introducer
	escEnd = 0xDC // escaped 0xC0
	escEsc = 0xDD // escaped 0xDB
)

// DefaultMaxFrame is the largest decoded frame a zero Decoder accepts. The
// biggest ESP request is a FLASH_DATA block of 16 KiB plus headers.
const DefaultMaxFrame = 64 << 10

// Errors a Decoder reports for a frame it drops. Decoding carries on with
// the next frame.
var (
	// ErrBadEscape means 0xDB was followed by something other than
	// 0xDC or 0xDD.
	ErrBadEscape = errors.New("slip: invalid escape sequence")
	// ErrTooLong means a frame grew past the decoder's maximum.
	ErrTooLong = errors.New("slip: frame too long")
	// ErrNoData is returned by Reader.ReadFrame when a read from the
	// underlying reader completed no frame: it returned no bytes and no
	// error, as a serial port does when its read timeout expires, or only
	// bytes of a frame still open or outside any frame (a chatty boot
	// log). The partial frame is kept; call ReadFrame again.
	ErrNoData = errors.New("slip: no data")
)

// Encode appends the SLIP frame holding p to dst and returns the result.
func Encode(dst, p []byte) []byte {
	dst = append(dst, end)
	for _, b := range p {
		switch b {
		case end:
			dst = append(dst, esc, escEnd)
		case esc:
			dst = append(dst, esc, escEsc)
		default:
			dst = append(dst, b)
		}
	}
	return append(dst, end)
}

// EncodedLen returns the length of the frame Encode makes of p.
func EncodedLen(p []byte) int {
	n := 2 + len(p)
	for _, b := range p {
		if b == end || b == esc {
			n++
		}
	}
	return n
}

// Decoder turns a stream of bytes into frames. Bytes outside a frame (a
// boot message printed before the bootloader speaks SLIP) are ignored. Its
// zero value is ready to use.
type Decoder struct {
	// Max is the largest frame accepted; 0 means DefaultMaxFrame.
	Max int

	buf     []byte
	inFrame bool
	escaped bool
	bad     error // set while discarding the rest of a bad frame
}

// Feed decodes p and calls emit for every complete frame, in order. The
// frame slice is only valid during the call. It returns the first error of
// a frame it dropped, after decoding all of p.
func (d *Decoder) Feed(p []byte, emit func(frame []byte)) error {
	var first error
	max := d.Max
	if max <= 0 {
		max = DefaultMaxFrame
	}
	for _, b := range p {
		if b == end {
			switch {
			case d.bad != nil:
				if first == nil {
					first = d.bad
				}
			case d.inFrame && d.escaped:
				if first == nil {
					first = ErrBadEscape
				}
			case d.inFrame && len(d.buf) > 0:
				emit(d.buf)
			}
			// An end byte both closes a frame and may open the
			// next one: senders often put 0xC0 on both sides.
			d.buf, d.inFrame, d.escaped, d.bad = d.buf[:0], true, false, nil
			continue
		}
		if !d.inFrame || d.bad != nil {
			continue
		}
		if d.escaped {
			d.escaped = false
			switch b {
			case escEnd:
				b = end
			case escEsc:
				b = esc
			default:
				d.bad = ErrBadEscape
				continue
			}
		} else if b == esc {
			d.escaped = true
			continue
		}
		if len(d.buf) >= max {
			d.bad = ErrTooLong
			continue
		}
		d.buf = append(d.buf, b)
	}
	return first
}

// Reset forgets any partial frame.
func (d *Decoder) Reset() {
	d.buf, d.inFrame, d.escaped, d.bad = d.buf[:0], false, false, nil
}

// Reader reads whole frames from an io.Reader.
type Reader struct {
	r     io.Reader
	dec   Decoder
	buf   []byte
	queue [][]byte
	errs  []error
	err   error // error the underlying reader returned along with data, not yet reported
}

// NewReader returns a Reader of frames from r. Frames longer than max are
// dropped; max 0 means DefaultMaxFrame.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: r, dec: Decoder{Max: max}, buf: make([]byte, 4096)}
}

// ReadFrame returns the next complete frame. A dropped frame is reported by
// its error (ErrBadEscape, ErrTooLong) and the next call carries on. It
// reads from the underlying reader at most once per call: when that read
// completes no frame (no bytes and no error, as on a serial port's read
// timeout, or bytes that do not end a frame), ReadFrame returns ErrNoData
// so that the caller can check its own deadline. An error the underlying
// reader returned is passed on once the frames read before it have been
// returned.
func (r *Reader) ReadFrame() ([]byte, error) {
	if f, err, ok := r.pending(); ok {
		return f, err
	}
	n, err := r.r.Read(r.buf)
	if n == 0 {
		if err != nil {
			return nil, err
		}
		return nil, ErrNoData
	}
	ferr := r.dec.Feed(r.buf[:n], func(f []byte) {
		r.queue = append(r.queue, append([]byte(nil), f...))
	})
	if ferr != nil {
		r.errs = append(r.errs, ferr)
	}
	// io.Reader may return data and an error in one call: hand out the
	// frames that came with the error first, then the error.
	r.err = err
	if f, err, ok := r.pending(); ok {
		return f, err
	}
	return nil, ErrNoData
}

// pending pops a queued frame, a decoding error or the reader's error.
func (r *Reader) pending() ([]byte, error, bool) {
	switch {
	case len(r.queue) > 0:
		f := r.queue[0]
		r.queue = r.queue[1:]
		return f, nil, true
	case len(r.errs) > 0:
		err := r.errs[0]
		r.errs = r.errs[1:]
		return nil, err, true
	case r.err != nil:
		err := r.err
		r.err = nil
		return nil, err, true
	}
	return nil, nil, false
}

// Discard forgets buffered frames and any partial frame, as after a
// resynchronisation.
func (r *Reader) Discard() {
	r.queue, r.errs = nil, nil
	r.dec.Reset()
}
