package esp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp/packet"
	"github.com/station-dev/station/flasher/esp/slip"
)

// Port is the serial transport the backend drives: go.bug.st/serial's
// Port adapted by the fixture, or a simulator in tests.
type Port interface {
	io.ReadWriter
	SetBaud(baud int) error               // change the host side's line speed
	SetReadTimeout(d time.Duration) error // a Read that times out returns (0, nil), as go.bug.st/serial does
	SetDTR(on bool) error                 // true = asserted
	SetRTS(on bool) error
	ResetInputBuffer() error
}

// Timings of the ROM protocol, from esptool loader.py unless noted.
const (
	// romBaud is the rate every ESP32-family ROM starts at
	// (serial-protocol.rst, "Initialization").
	romBaud = 115200
	// defaultTimeout is DEFAULT_TIMEOUT, the wait for most responses and
	// the floor of the size-scaled ones.
	defaultTimeout = 3 * time.Second
	// syncTimeout is SYNC_TIMEOUT.
	syncTimeout = 100 * time.Millisecond
	// maxTimeout is MAX_TIMEOUT (CHIP_ERASE_TIMEOUT * 2), the cap on any
	// one command's wait.
	maxTimeout = 240 * time.Second
	// md5PerMB is MD5_TIMEOUT_PER_MB.
	md5PerMB = 8
	// eraseRegionPerMB is ERASE_REGION_TIMEOUT_PER_MB: the ROM erases the
	// whole region at FLASH_BEGIN / FLASH_DEFL_BEGIN.
	eraseRegionPerMB = 40
	// eraseWritePerMB is ERASE_WRITE_TIMEOUT_PER_MB, per compressed block
	// scaled by what it inflates to.
	eraseWritePerMB = 40
	// writeBlockAttempts is WRITE_BLOCK_ATTEMPTS: a data block is sent at
	// most this many times.
	writeBlockAttempts = 3
	// pollInterval is the port's read timeout: how long a Read may block
	// before the backend looks at its context and deadlines again.
	pollInterval = 50 * time.Millisecond
	// drainTime is how long the link reads away the repeated refusals a
	// ROM sends for a command it does not accept (loader.py
	// drain_input_buffer).
	drainTime = 200 * time.Millisecond
)

// timeoutPerMB scales a timeout by size as esptool's timeout_per_mb does:
// never under defaultTimeout; and, as its command() does, never over
// maxTimeout.
func timeoutPerMB(secondsPerMB float64, size int) time.Duration {
	d := time.Duration(secondsPerMB * float64(size) / 1e6 * float64(time.Second))
	return min(max(d, defaultTimeout), maxTimeout)
}

// noAnswerError means the device sent no response to a command in time.
type noAnswerError struct {
	op   packet.Op
	wait time.Duration
}

func (e *noAnswerError) Error() string {
	return fmt.Sprintf("no answer to %s within %v", e.op, e.wait)
}

// Unwrap makes a silent device a lost link; the connect step turns it
// into flasher.ErrNoResponse.
func (e *noAnswerError) Unwrap() error { return flasher.ErrLinkLost }

// refusedError means the ROM answered a command with "invalid message"
// under another opcode, as it does for commands it does not accept in its
// current mode (esptool loader.py command(): UnsupportedCommandError).
type refusedError struct {
	op packet.Op
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("the ROM does not accept %s in its current mode", e.op)
}

// Unwrap makes a refusal a lock: the ROM refuses commands it does not
// know and those its restricted modes forbid (Secure Download Mode,
// serial-protocol.rst "Supported in Secure Download Mode"), and the
// backend sends each chip only commands its ROM knows.
func (e *refusedError) Unwrap() error { return flasher.ErrLocked }

// link is the command layer: it frames requests, reads responses, keeps
// the trace and the last bytes the device printed outside frames.
type link struct {
	port  Port
	tail  *tailReader
	r     *slip.Reader
	trace io.Writer
	start time.Time
	log   *slog.Logger
	wbuf  []byte
}

func newLink(port Port, trace io.Writer, log *slog.Logger) *link {
	t := &tailReader{r: port}
	return &link{port: port, tail: t, r: slip.NewReader(t, 0), trace: trace, start: time.Now(), log: log}
}

// tracef writes one line of the protocol transcript.
func (l *link) tracef(format string, args ...any) {
	if l.trace == nil {
		return
	}
	el := time.Since(l.start)
	fmt.Fprintf(l.trace, "%9.3fs %s\n", el.Seconds(), fmt.Sprintf(format, args...))
}

// send writes one request frame.
func (l *link) send(op packet.Op, data []byte, chk uint32) error {
	req := packet.Request{Op: op, Checksum: chk, Data: data}
	l.wbuf = slip.Encode(l.wbuf[:0], req.Marshal())
	l.tracef("> %s %s", op, describeRequest(op, data, chk))
	if _, err := l.port.Write(l.wbuf); err != nil {
		l.tracef("! write failed: %v", err)
		return fmt.Errorf("write %s to the port: %w: %w", op, err, flasher.ErrLinkLost)
	}
	return nil
}

// command sends a request and waits up to timeout for the response with
// the same opcode.
func (l *link) command(ctx context.Context, op packet.Op, data []byte, chk uint32, timeout time.Duration) (packet.Response, error) {
	if err := flasher.CtxErr(ctx); err != nil {
		return packet.Response{}, err
	}
	if err := l.send(op, data, chk); err != nil {
		return packet.Response{}, err
	}
	return l.await(ctx, op, timeout)
}

// await reads frames until a response to op arrives. Other responses
// (the extra answers to SYNC, a late answer to a retried block) are
// skipped, as esptool's command() does.
func (l *link) await(ctx context.Context, op packet.Op, timeout time.Duration) (packet.Response, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := flasher.CtxErr(ctx); err != nil {
			return packet.Response{}, err
		}
		f, err := l.r.ReadFrame()
		switch {
		case errors.Is(err, slip.ErrNoData):
			if !time.Now().Before(deadline) {
				l.tracef("< %s: no answer within %v", op, timeout)
				return packet.Response{}, &noAnswerError{op: op, wait: timeout}
			}
			continue
		case errors.Is(err, slip.ErrBadEscape), errors.Is(err, slip.ErrTooLong):
			l.tracef("< dropped a corrupt frame: %v", err)
			continue
		case err != nil:
			l.tracef("! read failed: %v", err)
			return packet.Response{}, fmt.Errorf("read the answer to %s: %w: %w", op, err, flasher.ErrLinkLost)
		}
		resp, err := packet.ParseResponse(f)
		if err != nil {
			l.tracef("< dropped a %d byte frame: %v", len(f), err)
			continue
		}
		if resp.Op == op {
			l.tracef("< %s %s", op, describeResponse(resp))
			return resp, nil
		}
		if failed, code := statusOf(resp.Data, 0); failed && code == packet.ErrCodeInvalidMessage {
			l.tracef("< %s: refused under %s (invalid message)", op, resp.Op)
			l.drain(ctx)
			return packet.Response{}, &refusedError{op: op}
		}
		l.tracef("< skipped %s while waiting for %s", resp.Op, op)
		if !time.Now().Before(deadline) {
			return packet.Response{}, &noAnswerError{op: op, wait: timeout}
		}
	}
}

// check runs a command and checks its status bytes, which follow
// payloadLen bytes of payload. Like esptool's check_command it reads the
// status right after the expected payload, so ROMs that send 4 status
// bytes and stubs that send 2 both work.
func (l *link) check(ctx context.Context, op packet.Op, data []byte, chk uint32, payloadLen int, timeout time.Duration) (packet.Response, []byte, error) {
	resp, err := l.command(ctx, op, data, chk, timeout)
	if err != nil {
		return resp, nil, err
	}
	if len(resp.Data) < payloadLen+2 {
		if failed, code := statusOf(resp.Data, 0); failed {
			return resp, nil, &packet.ROMError{Op: op, Code: code}
		}
		return resp, nil, fmt.Errorf("%s: answer has %d data bytes, want %d and the status: %w",
			op, len(resp.Data), payloadLen, flasher.ErrLinkLost)
	}
	if failed, code := statusOf(resp.Data, payloadLen); failed {
		return resp, nil, &packet.ROMError{Op: op, Code: code}
	}
	return resp, resp.Data[:payloadLen], nil
}

// statusOf reads the status and error bytes at offset off of data.
func statusOf(data []byte, off int) (failed bool, code byte) {
	if len(data) < off+2 {
		return false, 0
	}
	return data[off] != 0, data[off+1]
}

// readReg reads one 32-bit register.
func (l *link) readReg(ctx context.Context, addr uint32) (uint32, error) {
	resp, _, err := l.check(ctx, packet.ReadReg, packet.Words(addr), 0, 0, defaultTimeout)
	if err != nil {
		return 0, fmt.Errorf("read register %#08x: %w", addr, err)
	}
	return resp.Value, nil
}

// writeReg writes one 32-bit register; delayAfter adds esptool's dummy
// write with that delay (loader.py write_reg delay_after_us).
func (l *link) writeReg(ctx context.Context, addr, value uint32, delayAfter time.Duration, dateReg uint32) error {
	data := packet.Words(addr, value, 0xFFFFFFFF, 0)
	if delayAfter > 0 {
		data = append(data, packet.Words(dateReg, 0, 0, uint32(delayAfter/time.Microsecond))...)
	}
	if _, _, err := l.check(ctx, packet.WriteReg, data, 0, 0, defaultTimeout); err != nil {
		return fmt.Errorf("write register %#08x: %w", addr, err)
	}
	return nil
}

// flush forgets everything received so far.
func (l *link) flush() error {
	l.r.Discard()
	if err := l.port.ResetInputBuffer(); err != nil {
		return fmt.Errorf("flush the port's input: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

// drain reads for drainTime and then flushes, to be rid of the repeated
// refusals a ROM sends (loader.py drain_input_buffer).
func (l *link) drain(ctx context.Context) {
	end := time.Now().Add(drainTime)
	for time.Now().Before(end) && ctx.Err() == nil {
		if _, err := l.r.ReadFrame(); err != nil && !errors.Is(err, slip.ErrNoData) &&
			!errors.Is(err, slip.ErrBadEscape) && !errors.Is(err, slip.ErrTooLong) {
			break
		}
	}
	_ = l.flush()
}

// describeRequest summarises a request for the transcript: opcode
// arguments and sizes, never the payload of a data block.
func describeRequest(op packet.Op, data []byte, chk uint32) string {
	w := func(i int) uint32 { v, _ := packet.Word(data, i); return v }
	switch op {
	case packet.Sync:
		return fmt.Sprintf("(%d B)", len(data))
	case packet.ReadReg:
		return fmt.Sprintf("addr=%#08x", w(0))
	case packet.WriteReg:
		s := fmt.Sprintf("addr=%#08x value=%#08x mask=%#08x delay=%dus", w(0), w(1), w(2), w(3))
		if len(data) >= 32 {
			s += fmt.Sprintf(" then wait %dus", w(7))
		}
		return s
	case packet.FlashBegin, packet.FlashDeflBegin:
		s := fmt.Sprintf("size=%d blocks=%d block_size=%d offset=%#x", w(0), w(1), w(2), w(3))
		if len(data) >= 20 {
			s += fmt.Sprintf(" encrypted=%d", w(4))
		}
		return s
	case packet.FlashData, packet.FlashDeflData, packet.MemData:
		return fmt.Sprintf("seq=%d len=%d checksum=%#02x", w(1), w(0), chk)
	case packet.SPIFlashMD5:
		return fmt.Sprintf("addr=%#x size=%d", w(0), w(1))
	case packet.ChangeBaudrate:
		return fmt.Sprintf("new=%d old=%d", w(0), w(1))
	case packet.SPISetParams:
		return fmt.Sprintf("total_size=%d block=%d sector=%d page=%d", w(1), w(2), w(3), w(4))
	case packet.FlashEnd, packet.FlashDeflEnd:
		return fmt.Sprintf("flag=%d", w(0))
	}
	return fmt.Sprintf("(%d B)", len(data))
}

// describeResponse summarises a response for the transcript.
func describeResponse(r packet.Response) string {
	var b strings.Builder
	if r.Value != 0 || r.Op == packet.ReadReg {
		fmt.Fprintf(&b, "value=%#08x ", r.Value)
	}
	n := len(r.Data)
	st := 4
	if n < 4 {
		st = n
	}
	if n > st {
		fmt.Fprintf(&b, "data=%d B ", n-st)
	}
	if failed, code := statusOf(r.Data[n-st:], 0); failed {
		fmt.Fprintf(&b, "status=error %#02x (%s)", code, packet.CodeText(code))
	} else {
		b.WriteString("status=ok")
	}
	return b.String()
}

// tailReader passes reads through and keeps the last bytes read, so that
// a failed connect can say what the chip printed (its boot mode).
type tailReader struct {
	r   io.Reader
	buf []byte
}

const tailMax = 2048

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.buf = append(t.buf, p[:n]...)
		if len(t.buf) > tailMax {
			t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
		}
	}
	return n, err
}

func (t *tailReader) reset() { t.buf = t.buf[:0] }

func (t *tailReader) bytes() []byte { return bytes.Clone(t.buf) }
