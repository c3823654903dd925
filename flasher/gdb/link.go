package gdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/gdb/rsp"
)

// noAnswerError means the server sent no reply in time.
type noAnswerError struct {
	what string
	wait time.Duration
}

func (e *noAnswerError) Error() string {
	return fmt.Sprintf("no reply to %s within %v", e.what, e.wait)
}

// Unwrap makes a silent server a lost link; Identify turns a silence at
// the first packet into flasher.ErrNoResponse.
func (e *noAnswerError) Unwrap() error { return flasher.ErrLinkLost }

// event is what the reader goroutine hands over: a decoded event, or the
// error that ended the stream.
type event struct {
	ev  rsp.Event
	err error
}

// link is the packet layer over one connection: framing, acknowledgments,
// the reader goroutine, console output, replies left over by a cancelled
// request, and pipelining.
type link struct {
	conn   io.ReadWriteCloser
	events chan event
	done   chan struct{} // closed when the reader goroutine ends
	quit   chan struct{} // closed by close: the reader stops handing over events

	mu      sync.Mutex // guards readErr
	readErr error

	noAck   bool // QStartNoAckMode is in force
	stale   int  // replies still owed to requests abandoned by a timeout or cancellation
	last    []byte
	wbuf    []byte
	output  strings.Builder // console output (O packets) since the last take
	trace   io.Writer
	log     *slog.Logger
	start   time.Time
	closeMu sync.Once
}

func newLink(conn io.ReadWriteCloser, maxPacket int, trace io.Writer, log *slog.Logger) *link {
	l := &link{conn: conn, events: make(chan event, 256), done: make(chan struct{}), quit: make(chan struct{}), trace: trace, log: log, start: time.Now()}
	go l.readLoop(rsp.NewReader(conn, maxPacket))
	return l
}

// readLoop turns the byte stream into events until it ends.
func (l *link) readLoop(r *rsp.Reader) {
	defer close(l.done)
	for {
		ev, err := r.Next()
		if errors.Is(err, rsp.ErrTooLong) {
			l.tracef("< dropped: %v", err)
			continue
		}
		if err != nil {
			l.mu.Lock()
			l.readErr = err
			l.mu.Unlock()
			close(l.events)
			return
		}
		if ev.Kind == rsp.KindPacket || ev.Kind == rsp.KindNotification {
			ev.Data = append([]byte(nil), ev.Data...)
		}
		select {
		case l.events <- event{ev: ev}:
		case <-l.quit:
			return
		}
	}
}

func (l *link) close() error {
	var err error
	l.closeMu.Do(func() {
		close(l.quit)
		err = l.conn.Close()
	})
	return err
}

// tracef writes one line of the protocol transcript.
func (l *link) tracef(format string, args ...any) {
	if l.trace == nil {
		return
	}
	fmt.Fprintf(l.trace, "%9.3fs %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

// describe shortens packet data for the transcript and for errors: the
// command and its arguments, never bulk data.
func describe(data []byte) string {
	s := data
	if i := indexAny(s, ":"); i >= 0 && len(s) > 0 && (s[0] == 'X' || s[0] == 'M' || strings.HasPrefix(string(s), "vFlashWrite")) {
		return fmt.Sprintf("%s:<%d bytes>", s[:i], len(s)-i-1)
	}
	if len(s) > 64 {
		return fmt.Sprintf("%s…(%d bytes)", s[:48], len(s))
	}
	return string(s)
}

func indexAny(b []byte, chars string) int {
	return strings.IndexAny(string(b), chars)
}

// linkErr says why the stream ended.
func (l *link) linkErr(what string) error {
	l.mu.Lock()
	err := l.readErr
	l.mu.Unlock()
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: the GDB server closed the connection: %w", what, flasher.ErrLinkLost)
	}
	return fmt.Errorf("%s: %w: %w", what, err, flasher.ErrLinkLost)
}

// send writes one packet.
func (l *link) send(data []byte) error {
	l.wbuf = rsp.AppendPacket(l.wbuf[:0], data)
	l.last = append(l.last[:0], l.wbuf...)
	l.tracef("> %s", describe(data))
	if _, err := l.conn.Write(l.wbuf); err != nil {
		l.tracef("! write failed: %v", err)
		return fmt.Errorf("send %s: %w: %w", describe(data), err, flasher.ErrLinkLost)
	}
	return nil
}

// sendRaw writes bytes that are not a packet (an ack).
func (l *link) sendRaw(b []byte) error {
	if _, err := l.conn.Write(b); err != nil {
		return fmt.Errorf("send an acknowledgment: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

// reply waits for the next reply packet, acknowledging it when acks are
// on, collecting console output and skipping the replies owed to
// abandoned requests. canResend says a nack may be answered by sending
// the last packet again (only one request is outstanding).
func (l *link) reply(ctx context.Context, what string, timeout time.Duration, canResend bool) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	nacks := 0
	for {
		var e event
		var ok bool
		select {
		case <-ctx.Done():
			l.stale++
			return nil, fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-t.C:
			l.stale++
			l.tracef("< %s: no reply within %v", what, timeout)
			return nil, &noAnswerError{what: what, wait: timeout}
		case e, ok = <-l.events:
		}
		if !ok {
			return nil, l.linkErr(what)
		}
		ev := e.ev
		switch ev.Kind {
		case rsp.KindAck, rsp.KindInterrupt, rsp.KindNotification:
			continue
		case rsp.KindNack:
			if l.noAck {
				continue
			}
			nacks++
			if !canResend || nacks > 3 {
				return nil, fmt.Errorf("%s: the server rejected the packet's checksum %d times: %w", what, nacks, flasher.ErrLinkLost)
			}
			l.tracef("< nack: sending again")
			if _, err := l.conn.Write(l.last); err != nil {
				return nil, fmt.Errorf("%s: %w: %w", what, err, flasher.ErrLinkLost)
			}
			continue
		}
		if ev.BadChecksum {
			if l.noAck {
				return nil, fmt.Errorf("%s: reply with a bad checksum in no-ack mode: %w", what, flasher.ErrLinkLost)
			}
			l.tracef("< bad checksum: nack")
			if err := l.sendRaw([]byte{rsp.Nack}); err != nil {
				return nil, err
			}
			continue
		}
		if !l.noAck {
			if err := l.sendRaw([]byte{rsp.Ack}); err != nil {
				return nil, err
			}
		}
		data, err := rsp.Decode(nil, ev.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", what, err, flasher.ErrLinkLost)
		}
		if rsp.IsOutput(data) {
			text, _ := rsp.ParseHex(nil, data[1:])
			l.output.Write(text)
			l.tracef("< output %q", text)
			continue
		}
		if l.stale > 0 {
			l.stale--
			l.tracef("< skipped a late reply %s", describe(data))
			continue
		}
		l.tracef("< %s", describe(data))
		return data, nil
	}
}

// roundTrip sends one packet and waits for its reply.
func (l *link) roundTrip(ctx context.Context, data []byte, timeout time.Duration) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", describe(data), context.Cause(ctx))
	}
	if err := l.send(data); err != nil {
		return nil, err
	}
	return l.reply(ctx, describe(data), timeout, true)
}

// takeOutput returns the console output collected so far and forgets it.
func (l *link) takeOutput() string {
	s := l.output.String()
	l.output.Reset()
	return s
}

// pipeline sends the packets next produces keeping up to window requests
// in flight, and hands each reply to handle in order. next returns nil
// when there is nothing more to send; handle returns an error to stop.
// With window 1 it is a plain request-reply loop.
func (l *link) pipeline(ctx context.Context, window int, timeout time.Duration, next func() []byte, handle func(req int, reply []byte) error) error {
	window = max(window, 1)
	var names []string // what each outstanding request was, oldest first
	sent, got := 0, 0
	more := true
	for {
		for more && len(names) < window {
			if err := ctx.Err(); err != nil {
				l.stale += len(names)
				return context.Cause(ctx)
			}
			p := next()
			if p == nil {
				more = false
				break
			}
			if err := l.send(p); err != nil {
				return err
			}
			names = append(names, describe(p))
			sent++
		}
		if len(names) == 0 {
			return nil
		}
		r, err := l.reply(ctx, names[0], timeout, len(names) == 1)
		if err != nil {
			// reply counted the request it waited for; the others are
			// still owed.
			l.stale += len(names) - 1
			return err
		}
		names = names[1:]
		if err := handle(got, r); err != nil {
			l.stale += len(names)
			return err
		}
		got++
	}
}
