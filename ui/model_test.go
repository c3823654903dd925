package ui

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"

	"github.com/station-dev/station/station/localapi"
)

func slotEvent(name string, seq int64, st localapi.SlotStatus) localapi.Event {
	return localapi.Event{Type: localapi.EventSlot, Slot: &localapi.Slot{Name: name, Status: st, Seq: seq}}
}

func TestModelCoalesces(t *testing.T) {
	m := newModel()
	st := localapi.State{Run: localapi.RunRunning}
	for i := range 32 {
		st.Slots = append(st.Slots, localapi.Slot{Name: fmt.Sprintf("S%02d", i+1), Status: localapi.SlotEmpty})
	}
	m.apply(localapi.Event{Type: localapi.EventState, State: &st})
	c := m.take()
	if !c.full || len(c.state.Slots) != 32 || !c.conn || !c.connected || !c.header || !c.alertsSet {
		t.Fatalf("first take = %+v, want a full redraw of 32 slots, connected", c)
	}
	if c := m.take(); !c.empty() {
		t.Fatalf("second take = %+v, want nothing", c)
	}

	var seq int64
	for range 20 {
		for i := range 32 {
			seq++
			m.apply(slotEvent(fmt.Sprintf("S%02d", i+1), seq, localapi.SlotRunning))
		}
	}
	c = m.take()
	if c.full || len(c.slots) != 32 {
		t.Fatalf("take after 640 slot events = %d slots (full %v), want 32", len(c.slots), c.full)
	}
	for _, s := range c.slots {
		var i int
		fmt.Sscanf(s.Name, "S%d", &i)
		if want := int64(19*32 + i); s.Seq != want {
			t.Errorf("%s seq = %d, want the last one %d", s.Name, s.Seq, want)
		}
	}
	if c.header || c.alertsSet {
		t.Errorf("header/alerts changed without a change: %+v", c)
	}
}

func TestModelEvents(t *testing.T) {
	base := localapi.State{Run: localapi.RunReady, Slots: []localapi.Slot{{Name: "A", Seq: 5}, {Name: "B", Seq: 1}}}
	counts := localapi.Counts{Done: 3}
	tests := []struct {
		name string
		ev   localapi.Event
		want func(c change) string
	}{
		{"older slot event is ignored", slotEvent("A", 4, localapi.SlotFailed), func(c change) string {
			if len(c.slots) != 0 {
				return fmt.Sprintf("slots = %v", c.slots)
			}
			return ""
		}},
		{"newer slot event", slotEvent("A", 6, localapi.SlotFailed), func(c change) string {
			if len(c.slots) != 1 || c.slots[0].Status != localapi.SlotFailed {
				return fmt.Sprintf("slots = %v", c.slots)
			}
			return ""
		}},
		{"unknown slot redraws all", slotEvent("C", 1, localapi.SlotReady), func(c change) string {
			if !c.full || len(c.state.Slots) != 3 {
				return fmt.Sprintf("full = %v, slots %d", c.full, len(c.state.Slots))
			}
			return ""
		}},
		{"counts and run change the header", localapi.Event{Type: localapi.EventAlert, Counts: &counts, Run: localapi.RunPaused}, func(c change) string {
			if !c.header || c.state.Counts != counts || c.state.Run != localapi.RunPaused {
				return fmt.Sprintf("header %v counts %v run %s", c.header, c.state.Counts, c.state.Run)
			}
			if !c.alertsSet || c.alerts != nil {
				return "alert event without alerts must clear them"
			}
			return ""
		}},
		{"disconnected", localapi.Event{Type: localapi.EventDisconnected}, func(c change) string {
			if !c.conn || c.connected {
				return fmt.Sprintf("conn %v connected %v", c.conn, c.connected)
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newModel()
			st := base
			st.Slots = slices.Clone(base.Slots)
			st.Alerts = []localapi.Alert{{Code: "x"}}
			m.apply(localapi.Event{Type: localapi.EventState, State: &st})
			m.take()
			m.apply(tt.ev)
			if msg := tt.want(m.take()); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestMergeStateKeepsNewerSlots(t *testing.T) {
	m := newModel()
	m.apply(localapi.Event{Type: localapi.EventState, State: &localapi.State{Slots: []localapi.Slot{{Name: "A", Seq: 9, Status: localapi.SlotPassed}}}})
	m.take()
	m.mergeState(localapi.State{Run: localapi.RunRunning, Slots: []localapi.Slot{{Name: "A", Seq: 3, Status: localapi.SlotRunning}}})
	c := m.take()
	if s, _ := m.slot("A"); s.Seq != 9 {
		t.Errorf("slot A seq = %d after merging an older answer, want 9", s.Seq)
	}
	if !c.header || c.state.Run != localapi.RunRunning {
		t.Errorf("header = %v run %s, want running", c.header, c.state.Run)
	}
}

func TestStatusWords(t *testing.T) {
	tests := []struct {
		slot localapi.Slot
		want string
	}{
		{localapi.Slot{Status: localapi.SlotEmpty}, "EMPTY"},
		{localapi.Slot{Status: localapi.SlotPassed}, "PASSED — REMOVE BOARD"},
		{localapi.Slot{Status: localapi.SlotOverridden}, "OVERRIDDEN"},
		{localapi.Slot{Status: localapi.SlotRemoved, Step: "flash"}, "REMOVED MID-FLASH"},
		{localapi.Slot{Status: localapi.SlotRemoved}, "REMOVED MID-RUN"},
		{localapi.Slot{Status: localapi.SlotFailed}, "FAILED"},
		{localapi.Slot{Status: localapi.SlotRunning, Step: "flash", Progress: 0.454}, "FLASHING 45 %"},
		{localapi.Slot{Status: localapi.SlotRunning, Step: "identify"}, "IDENTIFYING"},
		{localapi.Slot{Status: localapi.SlotRunning, Step: "burn-in"}, "BURN-IN"},
		{localapi.Slot{Status: localapi.SlotRunning}, "RUNNING"},
		{localapi.Slot{Status: localapi.SlotWaiting, Reason: "waiting for the DMS"}, "WAITING FOR DMS"},
		{localapi.Slot{Status: localapi.SlotWaiting, Reason: "the printer is out of paper"}, "WAITING FOR PRINTER"},
		{localapi.Slot{Status: localapi.SlotWaiting}, "WAITING"},
		{localapi.Slot{Status: localapi.SlotSkipped}, "SKIPPED"},
	}
	for _, tt := range tests {
		if got := statusWords(tt.slot); got != tt.want {
			t.Errorf("statusWords(%+v) = %q, want %q", tt.slot, got, tt.want)
		}
	}
}

func TestGridColumns(t *testing.T) {
	for _, tt := range []struct{ n, want int }{{1, 1}, {2, 2}, {4, 2}, {8, 3}, {9, 3}, {16, 4}, {24, 7}, {32, 8}} {
		if got := gridColumns(tt.n); got != tt.want {
			t.Errorf("gridColumns(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{0, "0:00"}, {75 * time.Second, "1:15"}, {time.Hour + 2*time.Minute + 3*time.Second, "1:02:03"}, {-time.Second, "0:00"}} {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFitAndWrapText(t *testing.T) {
	style := fyne.TextStyle{Monospace: true}
	const size = 18
	w := fyne.MeasureText("0123456789", size, style).Width
	if got := fitText("0123456789", w, size, style); got != "0123456789" {
		t.Errorf("fitText of a fitting text = %q", got)
	}
	got := fitText("0123456789ABCDEFGHIJ", w, size, style)
	if fyne.MeasureText(got, size, style).Width > w || got[0] != '0' || got[len(got)-1] != 'J' {
		t.Errorf("fitText = %q, want the ends kept within the width", got)
	}
	lines := wrapText("flash verify failed at 0x10000 replug the board and retry", w*2, size, style, 2)
	if len(lines) != 2 {
		t.Fatalf("wrapText = %q, want 2 lines", lines)
	}
	for _, l := range lines {
		if fyne.MeasureText(l, size, style).Width > w*2 {
			t.Errorf("line %q is wider than %v", l, w*2)
		}
	}
	if l := lines[1]; l[len(l)-len("…"):] != "…" {
		t.Errorf("last line %q does not end with an ellipsis", l)
	}
}

func TestOperatorPart(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"slot S06, device 24:0a:c4:ef:e0:00, step flash: esp 24:0a:c4:ef:e0:00: FLASH_DEFL_DATA refused by the ROM: flash write failed. Retry once.", "Flash write failed. Retry once."},
		{"slot S02, step flash: unplug and replug the board", "Slot S02, step flash: unplug and replug the board"},
		{"press Start", "Press Start"},
		{"waiting for the DMS: x", "Waiting for the DMS: x"},
		{"flash failed: bad cable (skipped by Olga: unplug the device)", "Skipped by Olga: unplug the device. Flash failed: bad cable"},
	} {
		if got := operatorPart(c.in); got != c.want {
			t.Errorf("operatorPart(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestErrorWordsForEveryCode: every error code of the local API is said
// in the operator's words; a daemon's message that carries a technical
// chain never reaches the screen.
func TestErrorWordsForEveryCode(t *testing.T) {
	chain := "work order WO-9 cannot be loaded: read work order WO-9: GET http://127.0.0.1:43111/v1/work-orders/WO-9: read work order WO-9: dial tcp 127.0.0.1:43111: connect: connection refused"
	codes := []string{localapi.CodeInvalid, localapi.CodeUnauthorized, localapi.CodeSignIn, localapi.CodeSupervisor,
		localapi.CodeNotFound, localapi.CodeState, localapi.CodeUnavailable, localapi.CodeInternal, localapi.CodeWrongPIN,
		localapi.CodeWait, localapi.CodeLockedOut, localapi.CodeWorkOrder, localapi.CodeNoWorkOrder, localapi.CodeNothingToDo,
		localapi.CodeAlreadyLoaded, "some_new_code"}
	seen := map[string]string{}
	for _, code := range codes {
		got := errorWords(&localapi.APIError{Status: 500, Code: code, Message: chain, RetryAfter: 4 * time.Second})
		for _, bad := range []string{"http://", "127.0.0.1", "dial tcp", "read work order"} {
			if strings.Contains(got, bad) {
				t.Errorf("errorWords(%s) = %q: the technical chain reached the screen", code, got)
			}
		}
		if len(got) < 20 || !strings.HasSuffix(got, ".") {
			t.Errorf("errorWords(%s) = %q, want a sentence", code, got)
		}
		if other, ok := seen[got]; ok && code != "some_new_code" {
			t.Errorf("codes %s and %s say the same: %q", code, other, got)
		}
		seen[got] = code
	}
	if got := errorWords(&localapi.APIError{Code: localapi.CodeWait, RetryAfter: 4 * time.Second}); !strings.Contains(got, "wait 4 s") {
		t.Errorf("wait = %q, want the time to wait", got)
	}
	if got := errorWords(&localapi.APIError{Code: localapi.CodeNothingToDo, Message: "slot S02 is at work"}); got != "Not now: slot S02 is at work." {
		t.Errorf("nothing_to_do = %q, want the daemon's words about the slot", got)
	}
	if got := loadErrorWords("WO-9", &localapi.APIError{Code: localapi.CodeNotFound, Message: chain}); !strings.HasPrefix(got, "Work order WO-9 is not known to the DMS.") {
		t.Errorf("loadErrorWords(not_found) = %q", got)
	}
	if got := errorWords(fmt.Errorf("decode: %w", localapi.ErrDaemonDown)); !strings.Contains(got, "not answering") {
		t.Errorf("daemon down = %q", got)
	}
}

// TestTileReasonsEndAtAWord: a reason too long for a tile's two lines is
// cut between words, never within one.
func TestTileReasonsEndAtAWord(t *testing.T) {
	const size = 18
	style := fyne.TextStyle{Bold: true}
	reason := "The device's flash refused a write. Retry once; if it fails again, set the device aside as faulty and call a technician"
	for _, width := range []float32{120, 160, 200, 260} {
		lines := wrapText(reason, width, size, style, 2)
		if len(lines) == 0 || len(lines) > 2 {
			t.Fatalf("wrapText(width %v) = %q", width, lines)
		}
		words := strings.Fields(reason)
		for _, l := range lines {
			if w := fyne.MeasureText(l, size, style).Width; w > width {
				t.Errorf("line %q is %v wide, more than %v", l, w, width)
			}
			for _, w := range strings.Fields(strings.TrimSuffix(l, "…")) {
				w = strings.TrimRight(w, ",;:.")
				if !slices.ContainsFunc(words, func(x string) bool { return strings.TrimRight(x, ",;:.") == w }) {
					t.Errorf("width %v: line %q holds %q, a cut word", width, l, w)
				}
			}
		}
	}
}

func TestAlertSummary(t *testing.T) {
	alerts := []localapi.Alert{
		{Level: localapi.AlertError, Code: "dms_offline", Message: "The DMS cannot be reached."},
		{Level: localapi.AlertWarning, Code: "device_failed", Slot: "S02", Message: "Slot S02 failed"},
		{Level: localapi.AlertWarning, Code: "device_removed", Slot: "S05", Message: "Slot S05: pulled out"},
		{Level: localapi.AlertWarning, Code: "device_failed", Slot: "S11", Message: "Slot S11 failed"},
		{Level: localapi.AlertInfo, Code: "complete", Message: "Work order WO-1 is complete."},
	}
	level, line := alertSummary(alerts)
	if want := "The DMS cannot be reached (and 1 more)  ·  3 slots need you: S02, S05, S11"; line != want || level != localapi.AlertError {
		t.Errorf("alertSummary = %s %q, want error %q", level, line, want)
	}
	if level, line := alertSummary(nil); level != "" || line != "" {
		t.Errorf("alertSummary(nil) = %s %q", level, line)
	}
}
