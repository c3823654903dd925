// Package rsp implements the wire format of the GDB remote serial
// protocol: packet framing and checksums, the escaping of binary data,
// run-length decoding of replies, error replies, the memory map XML and
// the CRC-32 that qCRC computes. It does no I/O of its own beyond pulling
// bytes from an io.Reader in [Reader].
//
// Reference: GDB manual, appendix "Remote Serial Protocol", sections
// "Overview" (framing, acknowledgments, escapes, run-length encoding),
// "Packets" (m, M, X, qCRC), "General Query Packets" (qSupported, qXfer,
// qRcmd), "Notification Packets", and appendix "Memory Map Format";
// libiberty crc32.c (xcrc32) and gdb/remote.c (the qCRC comparison).
package rsp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Framing bytes ("Overview").
const (
	packetStart = '$'  // starts a packet
	packetEnd   = '#'  // ends packet data; two hex checksum digits follow
	notifyStart = '%'  // starts a notification packet (non-stop mode)
	escapeByte  = '}'  // 0x7d: the next byte is XORed with 0x20
	runLength   = '*'  // the previous byte repeats (next byte - 29) times
	escapeXOR   = 0x20 // what an escaped byte is XORed with
	rleBias     = 29   // a repeat count n is sent as the byte n+29
	// Ack and Nack are the acknowledgments of a packet received with a
	// good or a bad checksum.
	Ack  = '+'
	Nack = '-'
	// Interrupt is the byte a client sends to stop a running target.
	Interrupt = 0x03
)

// DefaultMaxPacket is the largest packet data a zero Reader accepts. Real
// servers announce PacketSize of 0x1000 (QEMU) to 0x4000 (OpenOCD); the
// bound only protects against a stream that never sends '#'.
const DefaultMaxPacket = 1 << 20

// Checksum returns the packet checksum of data: the sum of its bytes
// modulo 256.
func Checksum(data []byte) byte {
	var s byte
	for _, c := range data {
		s += c
	}
	return s
}

// AppendPacket appends the packet "$data#cc" to dst. data goes on the
// wire as given: build binary parts with AppendEscaped first.
func AppendPacket(dst, data []byte) []byte {
	dst = append(dst, packetStart)
	dst = append(dst, data...)
	dst = append(dst, packetEnd)
	return appendHexByte(dst, Checksum(data))
}

// PacketLen returns the length of the packet AppendPacket makes of n bytes
// of data.
func PacketLen(n int) int { return n + 4 }

const hexDigits = "0123456789abcdef"

func appendHexByte(dst []byte, b byte) []byte {
	return append(dst, hexDigits[b>>4], hexDigits[b&15])
}

// needsEscape reports whether b must be escaped in binary data: '$', '#'
// and '}' always, and '*' so that a receiver never reads it as a run
// length ("Overview": "Responses sent by the stub must also escape 0x2a").
// GDB escapes '*' in what it sends too; servers accept it.
func needsEscape(b byte) bool {
	return b == packetStart || b == packetEnd || b == escapeByte || b == runLength
}

// AppendEscaped appends data to dst with the binary escapes applied.
func AppendEscaped(dst, data []byte) []byte {
	for _, b := range data {
		if needsEscape(b) {
			dst = append(dst, escapeByte, b^escapeXOR)
		} else {
			dst = append(dst, b)
		}
	}
	return dst
}

// EscapedLen returns how many bytes AppendEscaped adds for data.
func EscapedLen(data []byte) int {
	n := len(data)
	for _, b := range data {
		if needsEscape(b) {
			n++
		}
	}
	return n
}

// EscapedPrefix returns how many leading bytes of data fit in room bytes
// once escaped.
func EscapedPrefix(data []byte, room int) int {
	used := 0
	for i, b := range data {
		w := 1
		if needsEscape(b) {
			w = 2
		}
		if used+w > room {
			return i
		}
		used += w
	}
	return len(data)
}

// Errors Decode reports.
var (
	// ErrBadEscape means the data ended right after '}'.
	ErrBadEscape = errors.New("rsp: escape at the end of packet data")
	// ErrBadRunLength means '*' came first, or last, or with a count
	// outside the range the protocol allows.
	ErrBadRunLength = errors.New("rsp: invalid run-length encoding")
)

// Decode undoes the binary escapes and expands run-length encoding in
// received packet data, appending the result to dst. A stub escapes '*'
// in binary replies, so one pass decodes both ("Overview": "Binary data"
// and "Run-length encoding"). A run "X*n" stands for X followed by n-29
// more copies of X.
func Decode(dst, data []byte) ([]byte, error) {
	start := len(dst)
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case escapeByte:
			i++
			if i == len(data) {
				return dst, ErrBadEscape
			}
			dst = append(dst, data[i]^escapeXOR)
		case runLength:
			i++
			if i == len(data) || len(dst) == start {
				return dst, ErrBadRunLength
			}
			n := int(data[i]) - rleBias
			if n < 0 || n > 126-rleBias {
				return dst, ErrBadRunLength
			}
			prev := dst[len(dst)-1]
			for range n {
				dst = append(dst, prev)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// AppendRunLength appends data to dst run-length encoded as a stub may
// send it: a run of four or more equal bytes becomes "X*n". Counts that
// would put '#' or '$' on the wire (6 and 7 repeats) are avoided, as the
// manual requires. data must not need escapes (hex or plain text).
func AppendRunLength(dst, data []byte) []byte {
	for i := 0; i < len(data); {
		c := data[i]
		j := i + 1
		for j < len(data) && data[j] == c && j-i-1 < 126-rleBias {
			j++
		}
		rep := j - i - 1 // copies after the first
		for rep == 6 || rep == 7 {
			rep--
			j--
		}
		dst = append(dst, c)
		if rep >= 3 {
			dst = append(dst, runLength, byte(rep+rleBias))
		} else {
			for range rep {
				dst = append(dst, c)
			}
		}
		i = j
	}
	return dst
}

// Kind says what a Reader found on the wire.
type Kind int

// Kinds of Event.
const (
	// KindPacket is a "$data#cc" packet; Event.Data holds its raw data.
	KindPacket Kind = iota + 1
	// KindNotification is a "%data#cc" notification packet.
	KindNotification
	// KindAck is a '+' acknowledgment.
	KindAck
	// KindNack is a '-' request to send the last packet again.
	KindNack
	// KindInterrupt is a 0x03 byte outside a packet.
	KindInterrupt
)

func (k Kind) String() string {
	switch k {
	case KindPacket:
		return "packet"
	case KindNotification:
		return "notification"
	case KindAck:
		return "ack"
	case KindNack:
		return "nack"
	case KindInterrupt:
		return "interrupt"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one thing read from the wire.
type Event struct {
	Kind Kind
	// Data is the packet data exactly as sent, escapes and run lengths
	// still in place; call Decode for the bytes it stands for.
	Data []byte
	// BadChecksum is set on a packet whose checksum did not match; the
	// receiver answers such a packet with a Nack.
	BadChecksum bool
}

// ErrTooLong means a packet grew past the Reader's maximum; the Reader
// drops it and carries on.
var ErrTooLong = errors.New("rsp: packet too long")

// Reader pulls events from a byte stream. Bytes outside packets other
// than acknowledgments and 0x03 are skipped, as GDB does.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader over r accepting packets of up to max data
// bytes; 0 means DefaultMaxPacket.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxPacket
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next event. The returned Data is valid until the next
// call. A read error ends the stream: io.EOF or the transport's error is
// returned as it is, with io.ErrUnexpectedEOF for a stream cut inside a
// packet.
func (r *Reader) Next() (Event, error) {
	for {
		c, err := r.readByte(false)
		if err != nil {
			return Event{}, err
		}
		switch c {
		case Ack:
			return Event{Kind: KindAck}, nil
		case Nack:
			return Event{Kind: KindNack}, nil
		case Interrupt:
			return Event{Kind: KindInterrupt}, nil
		case packetStart, notifyStart:
			ev, err := r.packet()
			if err != nil {
				return Event{}, err
			}
			if c == notifyStart {
				ev.Kind = KindNotification
			}
			return ev, nil
		}
	}
}

func (r *Reader) readByte(inPacket bool) (byte, error) {
	for {
		c, err := r.r.ReadByte()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, io.ErrNoProgress) {
			// A serial port in go.bug.st/serial returns (0, nil) on its
			// read timeout, which bufio turns into ErrNoProgress after
			// many empty reads: keep waiting.
			continue
		}
		if inPacket && errors.Is(err, io.EOF) {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
}

// packet reads the rest of a packet after its start byte.
func (r *Reader) packet() (Event, error) {
	r.buf = r.buf[:0]
	tooLong := false
	for {
		c, err := r.readByte(true)
		if err != nil {
			return Event{}, err
		}
		if c == packetEnd {
			break
		}
		if c == packetStart {
			// A new packet starts before this one ended: GDB drops
			// the first and starts over.
			r.buf, tooLong = r.buf[:0], false
			continue
		}
		if len(r.buf) >= r.max {
			tooLong = true
			continue
		}
		r.buf = append(r.buf, c)
	}
	var cs [2]byte
	for i := range cs {
		c, err := r.readByte(true)
		if err != nil {
			return Event{}, err
		}
		cs[i] = c
	}
	if tooLong {
		return Event{}, fmt.Errorf("%w: more than %d bytes", ErrTooLong, r.max)
	}
	want, err := strconv.ParseUint(string(cs[:]), 16, 8)
	bad := err != nil || byte(want) != Checksum(r.buf)
	return Event{Kind: KindPacket, Data: r.buf, BadChecksum: bad}, nil
}
