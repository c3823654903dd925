package station

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress shows every slot's live state. On a terminal it redraws a table
// a few times a second; elsewhere it writes one line per step change, which
// reads well in a CI log or a file.
type progress struct {
	w     io.Writer
	tty   bool
	title string
	slots []string
	// last is each slot's last printed state, to print only changes.
	last  map[string]jobs.SlotState
	drawn int
}

// newProgress returns the progress of a run on w. title, as every text
// from outside (the work order, the DMS, a device), is written through
// printable.
func newProgress(w io.Writer, title string, slots []string) *progress {
	return &progress{w: w, tty: isTerminal(w), title: printable(title), slots: slots, last: map[string]jobs.SlotState{}}
}

// printable makes s safe to write to a terminal: control characters (C0,
// DEL, C1: an ESC in a product name would start an escape sequence that
// moves the cursor, rewrites the window title or worse), bidirectional
// overrides and invalid UTF-8 are written as Go escapes ("\x1b",
// "\u202e"), visible and inert. Other text is unchanged.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune reports whether r must not reach a terminal as it is.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// printableState is s with every text in it made printable.
func printableState(s jobs.SlotState) jobs.SlotState {
	s.Slot, s.Device, s.Serial = printable(s.Slot), flasher.HardwareID(printable(string(s.Device))), printable(s.Serial)
	s.Message, s.Waiting = printable(s.Message), printable(s.Waiting)
	return s
}

// follow renders the bus until ctx is done, then renders once more.
func (p *progress) follow(ctx context.Context, bus *jobs.Bus) {
	sub := bus.Subscribe()
	defer sub.Close()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.render(bus.Snapshot(), sub.Changes())
			return
		case <-sub.C():
			if !p.tty {
				p.render(nil, sub.Changes())
			}
		case <-tick.C:
			if p.tty {
				p.render(bus.Snapshot(), sub.Changes())
			}
		}
	}
}

func (p *progress) render(all, changes []jobs.SlotState) {
	if p.tty {
		p.table(all)
		return
	}
	for _, s := range changes {
		prev := p.last[s.Slot]
		if prev.Status == s.Status && prev.Step == s.Step && prev.Device == s.Device && prev.Waiting == s.Waiting {
			continue
		}
		p.last[s.Slot] = s
		if s.Status == jobs.SlotIdle {
			continue
		}
		fmt.Fprintln(p.w, lineFor(s))
	}
}

// lineFor is one slot's state as a log line.
func lineFor(s jobs.SlotState) string {
	s = printableState(s)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-8s", time.Now().Format("15:04:05"), s.Slot)
	if s.Device != "" {
		fmt.Fprintf(&b, " %s", s.Device)
	}
	switch s.Status {
	case jobs.SlotRunning:
		fmt.Fprintf(&b, " %s", s.Step)
		if s.Attempt > 1 {
			fmt.Fprintf(&b, " (attempt %d)", s.Attempt)
		}
		if s.Waiting != "" {
			fmt.Fprintf(&b, ": %s", s.Waiting)
		}
	case jobs.SlotPassed:
		fmt.Fprintf(&b, " PASSED serial %s", s.Serial)
		if s.Message != "" && s.Message != "passed" {
			fmt.Fprintf(&b, " (%s)", s.Message)
		}
	case jobs.SlotFailed:
		fmt.Fprintf(&b, " FAILED at %s: %s", s.Step, s.Message)
	case jobs.SlotSkipped:
		fmt.Fprintf(&b, " SKIPPED: %s", s.Message)
	}
	return b.String()
}

// table redraws the whole slot table in place.
func (p *progress) table(all []jobs.SlotState) {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	counts := map[jobs.SlotStatus]int{}
	for _, s := range all {
		counts[s.Status]++
	}
	lines := []string{p.title, fmt.Sprintf("  %d running · %d passed · %d failed · %d skipped · %d waiting",
		counts[jobs.SlotRunning], counts[jobs.SlotPassed], counts[jobs.SlotFailed], counts[jobs.SlotSkipped], counts[jobs.SlotIdle])}
	for _, s := range all {
		lines = append(lines, rowFor(s))
	}
	for _, l := range lines {
		b.WriteString("\x1b[2K" + l + "\n")
	}
	p.drawn = len(lines)
	io.WriteString(p.w, b.String())
}

// rowFor is one slot's state as a table row with a progress bar.
func rowFor(s jobs.SlotState) string {
	s = printableState(s)
	elapsed := ""
	if !s.Started.IsZero() {
		end := s.Updated
		if s.Status == jobs.SlotRunning {
			end = time.Now()
		}
		elapsed = end.Sub(s.Started).Truncate(100 * time.Millisecond).String()
	}
	dev := string(s.Device)
	if dev == "" {
		dev = "-"
	}
	switch s.Status {
	case jobs.SlotRunning:
		bar, pct := strings.Repeat("·", 20), ""
		if s.Total > 0 {
			n := int(20 * s.Done / s.Total)
			bar = strings.Repeat("█", n) + strings.Repeat("·", 20-n)
			pct = fmt.Sprintf("%3d%%", 100*s.Done/s.Total)
		}
		if s.Waiting != "" {
			return fmt.Sprintf("  %-8s %-17s %-9s \x1b[33m%s\x1b[0m %8s", s.Slot, dev, s.Step, truncate(s.Waiting, 70), elapsed)
		}
		return fmt.Sprintf("  %-8s %-17s %-9s %s %4s %8s", s.Slot, dev, s.Step, bar, pct, elapsed)
	case jobs.SlotPassed:
		return fmt.Sprintf("  %-8s %-17s \x1b[32mPASSED\x1b[0m  serial %-14s %8s", s.Slot, dev, s.Serial, elapsed)
	case jobs.SlotFailed:
		return fmt.Sprintf("  %-8s %-17s \x1b[31mFAILED\x1b[0m  at %s: %s", s.Slot, dev, s.Step, truncate(s.Message, 90))
	case jobs.SlotSkipped:
		return fmt.Sprintf("  %-8s %-17s SKIPPED %s", s.Slot, dev, truncate(s.Message, 90))
	}
	return fmt.Sprintf("  %-8s waiting", s.Slot)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// printSummary writes the human summary of a run.
func printSummary(w io.Writer, sum jobs.Summary, extra [][2]string) {
	fmt.Fprintf(w, "\nWork order %s: %d devices, %d passed, %d failed, %d skipped, %d already done (%d of %d done in all) in %.1fs\n",
		printable(sum.WorkOrder), sum.Devices, sum.Passed, sum.Failed, sum.Skipped, sum.AlreadyDone, sum.Done, sum.Quantity, sum.Wall.Seconds())
	for _, r := range sum.Results {
		switch r.Outcome {
		case jobs.OutcomeFailed:
			fmt.Fprintf(w, "  %-8s %-17s FAILED at %s: %s\n", printable(r.Slot), printable(string(r.Device)), r.Step, printable(r.Message))
		case jobs.OutcomeSkipped, jobs.OutcomeAlreadyDone:
			fmt.Fprintf(w, "  %-8s %-17s %s\n", printable(r.Slot), printable(string(r.Device)), printable(r.Message))
		}
	}
	for _, kv := range extra {
		fmt.Fprintf(w, "  %-8s %s\n", kv[0]+":", kv[1])
	}
}
