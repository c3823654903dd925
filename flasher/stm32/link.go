package stm32

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/station-dev/station/flasher"
)

// Port is the serial transport the backend drives: go.bug.st/serial's
// port adapted by the fixture (fixtures.SerialPort), or a simulator in
// tests. The bootloader measures the host's baud rate from the init byte,
// so the backend never changes the line speed: the port stays at the rate
// and framing it was opened with.
type Port interface {
	io.ReadWriter
	// SetReadTimeout bounds a Read; one that times out returns (0, nil),
	// as go.bug.st/serial's does.
	SetReadTimeout(d time.Duration) error
	// SetDTR drives DTR; true is asserted.
	SetDTR(on bool) error
	// SetRTS drives RTS; true is asserted.
	SetRTS(on bool) error
	// ResetInputBuffer drops what was received and not read.
	ResetInputBuffer() error
}

// Timings, from stm32flash's stm32.c unless noted.
const (
	// pollInterval is the port's read timeout: how long a Read may block
	// before the backend looks at its context and deadlines again.
	pollInterval = 20 * time.Millisecond
	// ackTimeout is the wait for an ACK to a command or an address; the
	// bootloader answers at once.
	ackTimeout = time.Second
	// writeTimeout is STM32_BLKWRITE_TIMEOUT, the wait for the ACK of a
	// written block.
	writeTimeout = time.Second
	// pageEraseTimeout is STM32_PAGEERASE_TIMEOUT, per page.
	pageEraseTimeout = 5 * time.Second
	// massEraseTimeout is STM32_MASSERASE_TIMEOUT, also the wait for
	// READOUT UNPROTECT, which mass-erases.
	massEraseTimeout = 35 * time.Second
	// protectTimeout is STM32_RPROT_TIMEOUT: READOUT PROTECT programs
	// the option bytes before its second ACK.
	protectTimeout = time.Second
	// crcTimeoutPerMiB is how long GET CHECKSUM may take per MiB; the
	// CRC unit reads a word per cycle, this is a wide margin (not from a
	// source).
	crcTimeoutPerMiB = 2 * time.Second
)

// NackError means the bootloader answered NACK: it does not know the
// command, the command is refused under read protection, or it refused an
// address or a checksum.
type NackError struct {
	// Cmd is the command being run.
	Cmd Command
	// Stage is the part of the command NACKed: "command", "address",
	// "length", "data", "pages".
	Stage string
}

func (e *NackError) Error() string {
	return fmt.Sprintf("the bootloader refused the %s of %s (NACK)", e.Stage, e.Cmd)
}

// noAnswerError means the device sent nothing in time.
type noAnswerError struct {
	what string
	wait time.Duration
}

func (e *noAnswerError) Error() string {
	return fmt.Sprintf("no answer to %s within %v", e.what, e.wait)
}

// Unwrap makes silence a lost link; the connect step turns it into
// flasher.ErrNoResponse.
func (e *noAnswerError) Unwrap() error { return flasher.ErrLinkLost }

// link moves bytes of the AN3155 protocol and keeps the transcript.
type link struct {
	port    Port
	trace   io.Writer
	log     *slog.Logger
	start   time.Time
	pending []byte
	rbuf    []byte
	// byteTime is one byte's time on the line, for timeouts that grow
	// with what is sent.
	byteTime time.Duration
}

func newLink(port Port, trace io.Writer, log *slog.Logger, baud, bitsPerByte int) *link {
	return &link{
		port: port, trace: trace, log: log, start: time.Now(), rbuf: make([]byte, 512),
		byteTime: time.Duration(int64(bitsPerByte) * int64(time.Second) / int64(baud)),
	}
}

// tracef writes one line of the protocol transcript.
func (l *link) tracef(format string, args ...any) {
	if l.trace == nil {
		return
	}
	fmt.Fprintf(l.trace, "%9.3f "+format+"\n", append([]any{time.Since(l.start).Seconds()}, args...)...)
}

// lineTime is how long n bytes take on the line.
func (l *link) lineTime(n int) time.Duration { return time.Duration(n) * l.byteTime }

func (l *link) write(p []byte) error {
	if _, err := l.port.Write(p); err != nil {
		l.tracef("! write failed: %v", err)
		return fmt.Errorf("write to the port: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

// fill reads what the port has into pending, waiting at most one poll.
func (l *link) fill() error {
	n, err := l.port.Read(l.rbuf)
	l.pending = append(l.pending, l.rbuf[:n]...)
	if err != nil {
		l.tracef("! read failed: %v", err)
		return fmt.Errorf("read from the port: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

// readFull reads n bytes within timeout.
func (l *link) readFull(ctx context.Context, n int, what string, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for len(l.pending) < n {
		if err := flasher.CtxErr(ctx); err != nil {
			return nil, err
		}
		if !time.Now().Before(deadline) {
			l.tracef("< %s: no answer within %v (%d of %d bytes)", what, timeout, len(l.pending), n)
			return nil, &noAnswerError{what: what, wait: timeout}
		}
		if err := l.fill(); err != nil {
			return nil, err
		}
	}
	out := make([]byte, n)
	copy(out, l.pending)
	l.pending = append(l.pending[:0], l.pending[n:]...)
	return out, nil
}

// ack waits for ACK, skipping BUSY. A NACK returns a *NackError; any
// other byte means the two sides lost step.
func (l *link) ack(ctx context.Context, cmd Command, stage string, timeout time.Duration) error {
	what := cmd.String() + " " + stage
	for {
		b, err := l.readFull(ctx, 1, what, timeout)
		if err != nil {
			return err
		}
		switch b[0] {
		case ACK:
			return nil
		case NACK:
			l.tracef("< %s: NACK", what)
			return &NackError{Cmd: cmd, Stage: stage}
		case Busy:
			continue
		}
		l.tracef("< %s: unexpected byte %#02x", what, b[0])
		return fmt.Errorf("%s: the device answered %#02x, not ACK or NACK: %w", what, b[0], flasher.ErrLinkLost)
	}
}

// command sends a command byte and its complement and waits for the ACK.
func (l *link) command(ctx context.Context, cmd Command) error {
	if err := flasher.CtxErr(ctx); err != nil {
		return err
	}
	if err := l.write([]byte{byte(cmd), ^byte(cmd)}); err != nil {
		return err
	}
	return l.ack(ctx, cmd, "command", ackTimeout)
}

// send writes an argument frame and waits for its ACK.
func (l *link) send(ctx context.Context, cmd Command, stage string, frame []byte, timeout time.Duration) error {
	if err := l.write(frame); err != nil {
		return err
	}
	return l.ack(ctx, cmd, stage, timeout+l.lineTime(len(frame)+1))
}

// flush forgets everything received so far.
func (l *link) flush() error {
	l.pending = l.pending[:0]
	if err := l.port.ResetInputBuffer(); err != nil {
		return fmt.Errorf("flush the port's input: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

// isNack reports whether err is a NACK.
func isNack(err error) bool {
	var n *NackError
	return errors.As(err, &n)
}
