package station

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Smart thermostat", "Smart thermostat"},
		{"Thermostat · Ünïcode ✓", "Thermostat · Ünïcode ✓"},
		{"evil\x1b]0;pwned\x07name", `evil\x1b]0;pwned\x07name`},
		{"line\nbreak\rback\ttab", `line\x0abreak\x0dback\x09tab`},
		{"del\x7f c1\u009b", `del\x7f c1\u009b`},
		{"abc\u202eexe.txt", `abc\u202eexe.txt`},
		{"bad \xff utf-8", `bad \xff utf-8`},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestProgressEscapesNames draws the progress of slots whose texts carry
// escape sequences, as a hostile work order or device could: no control
// character but the table's own reaches the output.
func TestProgressEscapesNames(t *testing.T) {
	evil := "\x1b]0;owned\x07\x1b[2J"
	states := []jobs.SlotState{
		{Slot: "A1", Status: jobs.SlotFailed, Step: "flash", Device: flasher.HardwareID("24:6f" + evil), Message: "bad" + evil},
		{Slot: "A2", Status: jobs.SlotRunning, Step: "activate", Waiting: "DMS says" + evil, Started: time.Now()},
		{Slot: "A3", Status: jobs.SlotPassed, Serial: "SN" + evil},
	}
	var b bytes.Buffer
	p := newProgress(&b, "Work order WO-1 · Thermo"+evil, []string{"A1", "A2", "A3"})
	p.table(states)
	for _, s := range states {
		b.WriteString(lineFor(s) + "\n")
	}
	out := b.String()
	for _, bad := range []string{"\x1b]", "\x07", "\x1b[2J"} {
		if strings.Contains(out, bad) {
			t.Errorf("progress wrote %q raw:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, `Thermo\x1b]0;owned\x07`) {
		t.Errorf("progress = %q, want the title's escape shown escaped", out)
	}
}
