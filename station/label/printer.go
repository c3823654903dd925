package label

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/station-dev/station/jobs"
)

// Printer problems reported in PrinterError.Problem.
const (
	ProblemPaperOut = "paper out"
	ProblemHeadOpen = "head open"
	ProblemPaused   = "paused"
	ProblemNoAnswer = "no answer"
)

// PrinterError says why a label printer cannot print right now. The label
// was not printed; Kept says whether a Queue holds it for a later retry.
type PrinterError struct {
	// Problem is one of ProblemPaperOut, ProblemHeadOpen, ProblemPaused,
	// ProblemNoAnswer.
	Problem string
	// Printer names the printer (its address or queue).
	Printer string
	// Kept is true when a Queue keeps the label and prints it once the
	// printer is back.
	Kept bool
	// Err is the underlying network error, if any.
	Err error
}

// Error says what is wrong with the printer and what the operator does.
func (e *PrinterError) Error() string {
	var what, fix string
	switch e.Problem {
	case ProblemPaperOut:
		what, fix = "is out of paper", "load a new roll"
	case ProblemHeadOpen:
		what, fix = "has its print head open", "close the print head"
	case ProblemPaused:
		what, fix = "is paused", "press the pause button on the printer to resume"
	case ProblemNoAnswer:
		what, fix = "does not answer", "check that it is switched on and its network cable is plugged in"
	default:
		what, fix = "reports "+e.Problem, "check the printer"
	}
	then := "then print the label again"
	if e.Kept {
		then = "the label is kept and printed when it is back"
	}
	msg := fmt.Sprintf("The label printer at %s %s: %s; %s.", e.Printer, what, fix, then)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

// Unwrap returns the network error, if any.
func (e *PrinterError) Unwrap() error { return e.Err }

// Is makes a printer problem a jobs.ErrPrinterUnavailable: the label step
// waits for the printer, the slot saying why.
func (e *PrinterError) Is(target error) bool { return target == jobs.ErrPrinterUnavailable && !e.Kept }

// HostStatus is the part of a ZPL ~HS host status reply the station uses.
type HostStatus struct {
	PaperOut bool // string 1, field 2
	Paused   bool // string 1, field 3
	HeadUp   bool // string 2, field 3
}

// Problem returns the first problem that stops printing, or "".
func (s HostStatus) Problem() string {
	switch {
	case s.HeadUp:
		return ProblemHeadOpen
	case s.PaperOut:
		return ProblemPaperOut
	case s.Paused:
		return ProblemPaused
	}
	return ""
}

// ParseHostStatus parses the three STX…ETX strings a printer sends in
// answer to ~HS (ZPL II Programming Guide, ~HS).
func ParseHostStatus(reply []byte) (HostStatus, error) {
	var lines [][]string
	for _, part := range bytes.Split(reply, []byte{0x03}) {
		i := bytes.IndexByte(part, 0x02)
		if i < 0 {
			continue
		}
		lines = append(lines, strings.Split(string(part[i+1:]), ","))
	}
	if len(lines) < 2 || len(lines[0]) < 3 || len(lines[1]) < 3 {
		return HostStatus{}, fmt.Errorf("printer sent an unreadable status %q", reply)
	}
	flag := func(s string) bool { return strings.TrimSpace(s) == "1" }
	return HostStatus{PaperOut: flag(lines[0][1]), Paused: flag(lines[0][2]), HeadUp: flag(lines[1][2])}, nil
}

// TCPPrinter prints ZPL on a network label printer over raw TCP (port
// 9100). Before each job it asks the printer's status with ~HS and refuses
// to send the job when the printer cannot print it.
type TCPPrinter struct {
	// Addr is host:port; a host alone means port 9100.
	Addr string
	// Timeout bounds connecting and each read or write; 0 means 5 seconds.
	Timeout time.Duration
	// Renderer renders the labels.
	Renderer Renderer
}

var _ jobs.Printer = (*TCPPrinter)(nil)

func (p *TCPPrinter) addr() string {
	if _, _, err := net.SplitHostPort(p.Addr); err != nil {
		return net.JoinHostPort(p.Addr, "9100")
	}
	return p.Addr
}

// Print renders l and sends it. A printer that cannot print yields a
// *PrinterError.
func (p *TCPPrinter) Print(ctx context.Context, l jobs.Label) error {
	z, err := p.Renderer.ZPL(l)
	if err != nil {
		return err
	}
	return p.Send(ctx, z)
}

// Send checks the printer's status and sends zpl as is.
func (p *TCPPrinter) Send(ctx context.Context, zpl []byte) error {
	return p.session(ctx, func(conn net.Conn) error {
		conn.SetDeadline(time.Now().Add(p.timeout()))
		if _, err := conn.Write(zpl); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return p.noAnswer(fmt.Errorf("send label: %w", err))
		}
		return nil
	})
}

// Status asks the printer for its host status (~HS) without printing:
// nil when it could print now, else a *PrinterError saying why not.
func (p *TCPPrinter) Status(ctx context.Context) error {
	return p.session(ctx, func(net.Conn) error { return nil })
}

func (p *TCPPrinter) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 5 * time.Second
	}
	return p.Timeout
}

func (p *TCPPrinter) noAnswer(err error) error {
	return &PrinterError{Problem: ProblemNoAnswer, Printer: p.Addr, Err: err}
}

// session connects, checks the host status and, when the printer can
// print, calls then on the same connection.
func (p *TCPPrinter) session(ctx context.Context, then func(net.Conn) error) error {
	timeout := p.timeout()
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", p.addr())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return p.noAnswer(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("~HS")); err != nil {
		return p.noAnswer(err)
	}
	r := bufio.NewReader(conn)
	var reply []byte
	for n := 0; n < 3; n++ {
		part, err := r.ReadBytes(0x03)
		reply = append(reply, part...)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return p.noAnswer(fmt.Errorf("status reply: %w", err))
		}
	}
	st, err := ParseHostStatus(reply)
	if err != nil {
		return p.noAnswer(err)
	}
	if pr := st.Problem(); pr != "" {
		return &PrinterError{Problem: pr, Printer: p.Addr}
	}
	return then(conn)
}

// CUPSPrinter prints raw ZPL through a CUPS queue with lp.
type CUPSPrinter struct {
	// Queue is the CUPS printer name (lp -d).
	Queue string
	// Command is the lp program; "" means "lp" from PATH.
	Command string
	// StatusCommand is the lpstat program; "" means "lpstat" from PATH.
	StatusCommand string
	// Renderer renders the labels.
	Renderer Renderer
}

var _ jobs.Printer = (*CUPSPrinter)(nil)

// Print runs lp -d Queue -o raw with the label's ZPL on its input.
func (p *CUPSPrinter) Print(ctx context.Context, l jobs.Label) error {
	z, err := p.Renderer.ZPL(l)
	if err != nil {
		return err
	}
	name := p.Command
	if name == "" {
		name = "lp"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("cannot print on CUPS queue %q: %s is not installed: install the CUPS client (apt install cups-client) or configure a network printer", p.Queue, name)
	}
	cmd := exec.CommandContext(ctx, path, "-d", p.Queue, "-o", "raw")
	cmd.Stdin = bytes.NewReader(z)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("CUPS queue %q refused the label (%s): check the queue with lpstat -p %s: %w", p.Queue, strings.TrimSpace(string(out)), p.Queue, err)
	}
	return nil
}

// Queue wraps a printer and keeps the labels it could not print because
// of a *PrinterError, retrying them in order with backoff while Run runs.
type Queue struct {
	// Printer prints the labels.
	Printer jobs.Printer
	// Backoff is the first retry delay (0 means 2 s); it doubles up to
	// MaxBackoff (0 means 1 min).
	Backoff, MaxBackoff time.Duration
	// Logger, if not nil, logs retries.
	Logger *slog.Logger

	mu      sync.Mutex
	pending []jobs.Label
	problem string
	wake    chan struct{}
}

var _ jobs.Printer = (*Queue)(nil)

// Print prints l, or keeps it when the printer cannot print now (or older
// labels are still waiting) and returns a *PrinterError with Kept set: the
// caller must not print it again. Other errors (a label that cannot be
// rendered) are returned and the label is not kept.
func (q *Queue) Print(ctx context.Context, l jobs.Label) error {
	if c, ok := q.Printer.(checker); ok {
		if err := c.Check(l); err != nil {
			return err
		}
	}
	q.mu.Lock()
	if len(q.pending) > 0 {
		q.pending = append(q.pending, l)
		pr := q.problem
		q.mu.Unlock()
		q.poke()
		return &PrinterError{Problem: pr, Printer: q.printerName(), Kept: true}
	}
	q.mu.Unlock()
	err := q.Printer.Print(ctx, l)
	var pe *PrinterError
	if !errors.As(err, &pe) {
		if err == nil {
			q.setProblem("")
		}
		return err
	}
	q.mu.Lock()
	q.pending = append(q.pending, l)
	q.problem = pe.Problem
	q.mu.Unlock()
	q.poke()
	kept := *pe
	kept.Kept = true
	return &kept
}

// checker is a printer that can tell whether it can render a label.
type checker interface {
	Check(l jobs.Label) error
}

// Check reports whether l can be rendered (it fits the label), without
// printing it.
func (p *TCPPrinter) Check(l jobs.Label) error {
	_, err := p.Renderer.layout(l)
	return err
}

// Check reports whether l can be rendered (it fits the label), without
// printing it.
func (p *CUPSPrinter) Check(l jobs.Label) error {
	_, err := p.Renderer.layout(l)
	return err
}

// Reachable reports whether the printer answers: nil when it does, even
// out of paper, open or paused (the label step waits for those, saying
// why); a *PrinterError when it does not answer.
func (p *TCPPrinter) Reachable(ctx context.Context) error { return reachable(p.Status(ctx)) }

// Reachable reports whether CUPS knows the queue; a paused queue is
// reachable.
func (p *CUPSPrinter) Reachable(ctx context.Context) error { return reachable(p.Status(ctx)) }

// reachable keeps a status error only when the printer cannot be
// reached at all.
func reachable(err error) error {
	if pe := (*PrinterError)(nil); errors.As(err, &pe) && pe.Problem != ProblemNoAnswer {
		return nil
	}
	return err
}

// Check reports whether the queue's printer can render l.
func (q *Queue) Check(l jobs.Label) error {
	if c, ok := q.Printer.(checker); ok {
		return c.Check(l)
	}
	return nil
}

func (q *Queue) printerName() string {
	switch p := q.Printer.(type) {
	case *TCPPrinter:
		return p.Addr
	case *CUPSPrinter:
		return p.Queue
	}
	return "label printer"
}

func (q *Queue) setProblem(p string) {
	q.mu.Lock()
	q.problem = p
	q.mu.Unlock()
}

func (q *Queue) poke() {
	q.mu.Lock()
	if q.wake == nil {
		q.wake = make(chan struct{}, 1)
	}
	w := q.wake
	q.mu.Unlock()
	select {
	case w <- struct{}{}:
	default:
	}
}

// Pending returns how many labels wait for the printer.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Status reports whether the printer printed its last job, and if not the
// problem ("paper out", "head open", "paused", "no answer").
func (q *Queue) Status() (ok bool, problem string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.problem == "", q.problem
}

// Run retries kept labels until ctx ends, oldest first. It returns
// ctx.Err().
func (q *Queue) Run(ctx context.Context) error {
	first, maxB := q.Backoff, q.MaxBackoff
	if first <= 0 {
		first = 2 * time.Second
	}
	if maxB <= 0 {
		maxB = time.Minute
	}
	q.poke()
	q.mu.Lock()
	wake := q.wake
	q.mu.Unlock()
	delay := first
	for {
		q.mu.Lock()
		n := len(q.pending)
		q.mu.Unlock()
		if n == 0 {
			delay = first
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if q.retry(ctx) {
			delay = first
		} else {
			delay = min(2*delay, maxB)
		}
	}
}

// retry prints kept labels until one fails; it reports whether all printed.
func (q *Queue) retry(ctx context.Context) bool {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.problem = ""
			q.mu.Unlock()
			return true
		}
		l := q.pending[0]
		q.mu.Unlock()
		err := q.Printer.Print(ctx, l)
		var pe *PrinterError
		switch {
		case err == nil:
		case errors.As(err, &pe):
			q.setProblem(pe.Problem)
			if q.Logger != nil {
				q.Logger.Warn("label printer still not ready", "problem", pe.Problem, "pending", q.Pending())
			}
			return false
		case ctx.Err() != nil:
			return false
		default:
			// The label itself cannot print; keeping it would block the rest.
			if q.Logger != nil {
				q.Logger.Error("kept label dropped", "serial", l.Serial, "err", err)
			}
		}
		q.mu.Lock()
		q.pending = q.pending[1:]
		q.mu.Unlock()
		if err == nil && q.Logger != nil {
			q.Logger.Info("kept label printed", "serial", l.Serial)
		}
	}
}

// OpenPrinter returns the printer spec names: "tcp://HOST[:PORT]" (a raw
// ZPL printer, port 9100 by default), "cups:QUEUE" (a CUPS raw queue),
// or "dir:FOLDER" / a folder path (ZPL and PNG files).
func OpenPrinter(spec string) (jobs.Printer, error) {
	switch {
	case strings.HasPrefix(spec, "tcp://"):
		addr := strings.TrimPrefix(spec, "tcp://")
		if addr == "" {
			return nil, fmt.Errorf("printer %q: give the printer's address, as in tcp://192.168.1.50:9100", spec)
		}
		return &TCPPrinter{Addr: addr}, nil
	case strings.HasPrefix(spec, "cups:"):
		q := strings.TrimPrefix(spec, "cups:")
		if q == "" {
			return nil, fmt.Errorf("printer %q: give the CUPS queue, as in cups:zebra-line3", spec)
		}
		return &CUPSPrinter{Queue: q}, nil
	case spec == "":
		return nil, fmt.Errorf("no printer given: use tcp://HOST:9100, cups:QUEUE or a folder")
	}
	return &DirSink{Dir: strings.TrimPrefix(spec, "dir:")}, nil
}

// Status asks CUPS about the queue (lpstat -p): nil when it exists and
// is enabled.
func (p *CUPSPrinter) Status(ctx context.Context) error {
	name := p.StatusCommand
	if name == "" {
		name = "lpstat"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("cannot ask CUPS about queue %q: %s is not installed: install the CUPS client (apt install cups-client)", p.Queue, name)
	}
	out, err := exec.CommandContext(ctx, path, "-p", p.Queue).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		return fmt.Errorf("CUPS has no usable queue %q (%s): list the queues with lpstat -p and fix the printer line", p.Queue, text)
	}
	if strings.Contains(text, "disabled") {
		return &PrinterError{Problem: ProblemPaused, Printer: p.Queue, Err: errors.New(text)}
	}
	return nil
}
