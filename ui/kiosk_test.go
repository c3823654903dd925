package ui

import (
	"context"
	"fmt"
	"image/color"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// harness runs a kiosk against a testController served by the real
// localapi handler over a unix socket, through the real client.
type harness struct {
	t      testing.TB
	k      *Kiosk
	c      *testController
	d      *daemon
	drawn  chan struct{}
	cancel context.CancelFunc
}

func newHarness(t testing.TB, c *testController, opts Options) *harness {
	t.Helper()
	d := startDaemon(t, c)
	h := runKiosk(t, d.client(), opts)
	h.c, h.d = c, d
	return h
}

// runKiosk runs a kiosk on api in Fyne's test driver and waits for its
// first state.
func runKiosk(t testing.TB, api API, opts Options) *harness {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ExportDir == "" {
		opts.ExportDir = t.TempDir()
	}
	h := &harness{t: t, drawn: make(chan struct{}, 1)}
	h.k = New(test.NewTempApp(t), api, opts)
	h.k.drawn = func() {
		select {
		case h.drawn <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	t.Cleanup(func() {
		cancel()
		h.k.Wait()
	})
	h.k.Run(ctx)
	h.waitFor("the first state", func() bool { return h.k.connected })
	return h
}

// ui runs f as the UI goroutine would: no drawing happens meanwhile.
func (h *harness) ui(f func()) {
	h.k.uiMu.Lock()
	defer h.k.uiMu.Unlock()
	f()
}

// waitFor waits until cond, checked on the UI goroutine after each
// drawing, holds; the kiosk draws at least once a second.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	// A bound for a kiosk that never gets there, not a measure of speed:
	// the suite may run beside a cold build on 2 cores.
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for {
		ok := false
		h.ui(func() { ok = cond() })
		if ok {
			return
		}
		select {
		case <-h.drawn:
		case <-deadline.C:
			h.t.Fatalf("waiting for %s: timed out", what)
		}
	}
}

// overlay returns the top overlay (a dialog), or nil.
func (h *harness) overlay() fyne.CanvasObject {
	return h.k.win.Canvas().Overlays().Top()
}

// overlayText returns the labels' texts of the top overlay.
func (h *harness) overlayText() string {
	o := h.overlay()
	if o == nil {
		return ""
	}
	var texts []string
	for _, x := range test.LaidOutObjects(o) {
		if l, ok := x.(*widget.Label); ok {
			texts = append(texts, l.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// overlayButton returns the top overlay's button labelled text.
func (h *harness) overlayButton(text string) *widget.Button {
	h.t.Helper()
	if o := h.overlay(); o != nil {
		for _, x := range test.LaidOutObjects(o) {
			if b, ok := x.(*widget.Button); ok && b.Text == text {
				return b
			}
		}
	}
	h.t.Fatalf("no button %q in the dialog", text)
	return nil
}

// scan types s into the window, as a barcode scanner does.
func (h *harness) scan(s string) {
	test.TypeOnCanvas(h.k.win.Canvas(), s)
}

func (h *harness) tile(name string) *tile {
	h.t.Helper()
	t := h.k.tiles[name]
	if t == nil {
		h.t.Fatalf("no tile %s", name)
	}
	return t
}

func TestTilesShowSlotStatus(t *testing.T) {
	started := time.Now().Add(-75 * time.Second)
	tests := []struct {
		slot       localapi.Slot
		words      string
		bg         color.NRGBA
		progress   float64
		wantReason string
	}{
		{localapi.Slot{Status: localapi.SlotPassed, Device: "24:6F:28:AA:BB:01", Serial: "SN-0001", Elapsed: 42 * time.Second}, "PASSED — REMOVE BOARD", colorPassed, 1, ""},
		{localapi.Slot{Status: localapi.SlotOverridden, Device: "24:6F:28:AA:BB:08", Step: "flash", Progress: 0.5, Reason: "accepted by Sam: scratch on the case"}, "OVERRIDDEN", colorOverridden, 0, "by Sam: scratch"},
		{localapi.Slot{Status: localapi.SlotRemoved, Device: "24:6F:28:AA:BB:09", Step: "flash", Reason: "The board was pulled out during flash: plug it back in"}, "REMOVED MID-FLASH", colorFailed, 0, "pulled out"},
		{localapi.Slot{Status: localapi.SlotFailed, Device: "24:6F:28:AA:BB:02", Step: "flash", Progress: 0.3, Reason: "flash verify failed at 0x10000"}, "FAILED", colorFailed, 0.3, "flash verify failed"},
		{localapi.Slot{Status: localapi.SlotRunning, Device: "24:6F:28:AA:BB:03", Step: "flash", Progress: 0.45, Started: started}, "FLASHING 45 %", colorRunning, 0.45, ""},
		{localapi.Slot{Status: localapi.SlotWaiting, Device: "24:6F:28:AA:BB:04", Step: "activate", Reason: "waiting for the DMS", Started: started}, "WAITING FOR DMS", colorWaiting, 0, "waiting for the DMS"},
		{localapi.Slot{Status: localapi.SlotEmpty}, "EMPTY", colorEmpty, 0, ""},
		{localapi.Slot{Status: localapi.SlotReady, Device: "24:6F:28:AA:BB:06"}, "READY", colorReady, 0, ""},
		{localapi.Slot{Status: localapi.SlotSkipped, Device: "24:6F:28:AA:BB:07", Reason: "skipped by the operator"}, "SKIPPED", colorSkipped, 0, "skipped"},
	}
	c := newTestController(len(tests))
	for i := range tests {
		tests[i].slot.Name = c.st.Slots[i].Name
		c.st.Slots[i] = tests[i].slot
	}
	h := newHarness(t, c, Options{})
	for _, tt := range tests {
		t.Run(tt.words, func(t *testing.T) {
			h.ui(func() {
				tl := h.tile(tt.slot.Name)
				if got := tl.status.Text; got != tt.words {
					t.Errorf("status = %q, want %q", got, tt.words)
				}
				if got := tl.bg.FillColor; got != tt.bg {
					t.Errorf("background = %v, want %v", got, tt.bg)
				}
				if got := tl.name.Text; got != tt.slot.Name {
					t.Errorf("name = %q, want %q", got, tt.slot.Name)
				}
				if tl.barFrame.Width == 0 {
					t.Fatal("the tile was not laid out")
				}
				if got := tl.bar.Size().Width / tl.barFrame.Width; abs(float64(got)-tt.progress) > 0.01 {
					t.Errorf("progress bar = %.2f of the track, want %.2f", got, tt.progress)
				}
				reason := tl.reason[0].Text + " " + tl.reason[1].Text
				if tt.wantReason != "" && !strings.Contains(strings.ToLower(reason), strings.ToLower(tt.wantReason)) {
					t.Errorf("reason = %q, want it to say %q", reason, tt.wantReason)
				}
				if tt.slot.Device != "" && !strings.Contains(tl.device.Text, tt.slot.Device[len(tt.slot.Device)-2:]) {
					t.Errorf("device = %q, want %q", tl.device.Text, tt.slot.Device)
				}
				if tt.slot.Serial != "" && !strings.Contains(tl.serial.Text, tt.slot.Serial) {
					t.Errorf("serial = %q, want %q", tl.serial.Text, tt.slot.Serial)
				}
				switch {
				case tt.slot.Elapsed > 0:
					if want := formatDuration(tt.slot.Elapsed); tl.timeT.Text != want {
						t.Errorf("elapsed = %q, want %q", tl.timeT.Text, want)
					}
				case !tt.slot.Started.IsZero():
					if !strings.HasPrefix(tl.timeT.Text, "1:") {
						t.Errorf("elapsed = %q, want 1:15 or more", tl.timeT.Text)
					}
				}
			})
		})
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestHeaderShowsWorkOrder(t *testing.T) {
	c := newTestController(4)
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-77", ProductName: "Sense board", PartNumber: "PN-100", BundleVersion: "1.4.2", BundleTag: "beta", Quantity: 50}
	c.st.Run = localapi.RunRunning
	c.st.Counts = localapi.Counts{Done: 12, Passed: 11, Failed: 1, Yield: 11.0 / 12}
	c.st.DMS = localapi.Link{OK: false, Detail: "3 events to sync"}
	c.st.Printer = localapi.Link{OK: true}
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.Alerts = []localapi.Alert{
		{Level: localapi.AlertError, Code: "token_spent"},
		{Level: localapi.AlertWarning, Code: "printer_paper", Message: "The printer is out of labels: load a new roll."},
		{Level: localapi.AlertError, Code: "device_failed", Slot: "S02", Message: "flash failed: unplug and replug the board"},
	}
	h := newHarness(t, c, Options{})
	h.ui(func() {
		// In a narrow window the header's texts are cut, and it stays
		// within the window.
		sc := h.k.Screen()
		if !sc.Header.Box.Inside(sc.Width, sc.Height) || sc.Header.Box.W > sc.Width {
			t.Errorf("header %+v in a %vx%v window", sc.Header.Box, sc.Width, sc.Height)
		}
		h.k.win.Resize(fyne.NewSize(1920, 1080)) // the station's screen
	})
	h.ui(func() {
		hd := h.k.header
		for _, tt := range []struct {
			what, got, want string
		}{
			{"work order", hd.workOrder.Text, "WO-77"},
			{"product", hd.product.Text, "Sense board"},
			{"detail", hd.detail.Text, "PN PN-100  ·  Bundle 1.4.2 (beta)"},
			{"done", hd.done.Text, "12 / 50"},
			{"yield", hd.yield.Text, "Yield 91.7 %  (11 passed, 1 failed)"},
			{"dms", hd.dms.Text, "DMS OFFLINE: 3 events to sync"},
			{"printer", hd.printer.Text, "Printer OK"},
			{"operator", hd.operator.Text, "Alice"},
			{"sign in button", hd.signIn.Text, "Sign out"},
			{"run", strings.TrimSpace(hd.run.Text), "RUNNING"},
		} {
			if tt.got != tt.want {
				t.Errorf("header %s = %q, want %q", tt.what, tt.got, tt.want)
			}
		}
		want := "The activation token is used up: no more devices can be activated. Ask the planner for a new token (and 1 more)  ·  1 slot needs you: S02"
		if got := h.k.alertBar.line; got != want {
			t.Errorf("alert line = %q, want %q", got, want)
		}
		if h.k.alertBar.word.Text != "ERROR" {
			t.Errorf("alert level = %q, want ERROR", h.k.alertBar.word.Text)
		}
	})
}

// TestAlertLineNeverGrowsHeader: one slot failing or twelve, the alerts
// take one line, the header stays whole and the slots do not move; once
// the alerts clear, nothing moves either.
func TestAlertLineNeverGrowsHeader(t *testing.T) {
	c := newTestController(16)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-77", Quantity: 50}
	c.st.Run = localapi.RunRunning
	h := newHarness(t, c, Options{})
	var gridY, headerH float32
	h.ui(func() {
		h.k.win.Resize(fyne.NewSize(1920, 1080))
		gridY = boxOf(h.k.grid).Y
		headerH = boxOf(h.k.header.box).H
		if got := h.k.alertBar.text.Text; got != "No alerts" {
			t.Errorf("alert line with no alert = %q", got)
		}
	})
	var failed []localapi.Alert
	var names []string
	for i := range 12 {
		name := fmt.Sprintf("S%02d", i+1)
		names = append(names, name)
		failed = append(failed, localapi.Alert{Level: localapi.AlertWarning, Code: "device_failed", Slot: name,
			Message: "Slot " + name + " failed: the device's flash refused a write"})
	}
	c.update(func(st *localapi.State) { st.Alerts = failed })
	h.waitFor("the alert line", func() bool { return strings.HasPrefix(h.k.alertBar.line, "12 slots need you") })
	h.ui(func() {
		if want := "12 slots need you: " + strings.Join(names, ", "); h.k.alertBar.line != want {
			t.Errorf("alert line = %q, want %q", h.k.alertBar.line, want)
		}
		if w := fyne.MeasureText(h.k.alertBar.text.Text, h.k.alertBar.text.TextSize, h.k.alertBar.text.TextStyle).Width; w > h.k.alertBar.Size().Width {
			t.Errorf("alert line %q is wider than the bar", h.k.alertBar.text.Text)
		}
		sc := h.k.Screen()
		if !sc.Header.Box.Inside(sc.Width, sc.Height) || sc.Header.Box.H != headerH {
			t.Errorf("header box %+v in %vx%v, want inside and %v high", sc.Header.Box, sc.Width, sc.Height, headerH)
		}
		if sc.GridBox.Y != gridY {
			t.Errorf("slots moved from y %v to %v with 12 alerts", gridY, sc.GridBox.Y)
		}
	})
	c.update(func(st *localapi.State) { st.Alerts = nil })
	h.waitFor("the alerts cleared", func() bool { return h.k.alertBar.line == "" })
	h.ui(func() {
		if y := boxOf(h.k.grid).Y; y != gridY {
			t.Errorf("slots at y %v after the alerts cleared, want %v", y, gridY)
		}
	})
}

func TestScannerLoadsWorkOrder(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	h := newHarness(t, c, Options{})
	h.ui(func() {
		if f := h.k.win.Canvas().Focused(); f != nil {
			t.Errorf("focus = %T, want none: the scanner types into the window", f)
		}
		h.scan("WO-1")
		if got := h.k.scanText.Text; got != "WO-1" {
			t.Errorf("scan line = %q while typing, want WO-1", got)
		}
		h.scan("\n")
	})
	h.waitFor("the work order in the header", func() bool { return h.k.header.workOrder.Text == "WO-1" })
	if got := c.called(); !slices.Contains(got, "load WO-1") {
		t.Errorf("calls = %q, want a load of WO-1", got)
	}
	h.ui(func() {
		if got := h.k.scanText.Text; got != "Scan a work order" {
			t.Errorf("scan line = %q after Enter, want the prompt", got)
		}
		if got := h.k.header.done.Text; got != "0 / 100" {
			t.Errorf("done = %q, want 0 / 100", got)
		}
	})

	// The loaded work order scanned again: said, nothing sent.
	h.ui(func() { h.scan("WO:WO-1\n") })
	h.waitFor("the note", func() bool { return h.k.scanNote.Text == "Work order WO-1 is already loaded" })
	if got := c.called(); len(got) != 1 {
		t.Errorf("calls = %q, want the first load only", got)
	}

	// An unknown work order: the kiosk's words in a dialog, without the
	// daemon's chain; Enter closes it.
	h.ui(func() { h.scan("WO-404\n") })
	h.waitFor("the error dialog", func() bool { return strings.Contains(h.overlayText(), "Work order WO-404 is not known to the DMS") })
	h.ui(func() {
		if txt := h.overlayText(); strings.Contains(txt, "not known to the DMS: check") {
			t.Errorf("dialog shows the daemon's chain: %q", txt)
		}
		h.scan("\n")
	})
	h.waitFor("the dialog closed by Enter", func() bool { return h.overlay() == nil })
}

// TestScansAreKept: a scan before anyone signed in, or while a dialog is
// open, is kept and sent once it can be.
func TestScansAreKept(t *testing.T) {
	c := newTestController(2)
	h := newHarness(t, c, Options{})
	h.ui(func() { h.scan("WO-1\n") })
	h.waitFor("the scan kept", func() bool { return strings.Contains(h.k.scanNote.Text, "sign in") })
	if got := c.called(); len(got) != 0 {
		t.Fatalf("calls before sign-in = %q, want none", got)
	}
	h.signIn("1234")
	h.waitFor("the kept scan loaded", func() bool { return h.k.header.workOrder.Text == "WO-1" })

	// A dialog is open: the scan waits for it to close.
	h.ui(func() { h.k.showError("Test", "A message.") })
	h.waitFor("the dialog", func() bool { return h.overlay() != nil })
	h.ui(func() { h.scan("WO-404\n") })
	h.waitFor("the scan kept", func() bool { return strings.Contains(h.k.scanNote.Text, "dialog") })
	if got := c.called(); slices.Contains(got, "load WO-404") {
		t.Fatalf("calls with a dialog open = %q, want no load of WO-404", got)
	}
	h.ui(func() { h.scan("\n") }) // Enter closes the dialog
	h.waitFor("the kept scan sent", func() bool { return slices.Contains(c.called(), "load WO-404") })
}

// signIn signs in with the PIN pad.
func (h *harness) signIn(pin string) {
	h.t.Helper()
	h.ui(func() { test.Tap(h.k.header.signIn) })
	h.waitFor("the PIN pad", func() bool { return h.k.pinPad != nil && h.overlay() != nil })
	h.ui(func() {
		for _, d := range pin {
			test.Tap(h.k.pinPad.digits[d-'0'])
		}
		test.Tap(h.k.pinPad.ok)
	})
	h.waitFor("the operator signed in", func() bool { return h.k.operator != nil && h.k.pinPad == nil })
}

func TestStartPause(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunReady
	h := newHarness(t, c, Options{})
	h.ui(func() {
		if h.k.pause.Disabled() == false {
			t.Error("Pause is enabled before the start")
		}
		test.Tap(h.k.start.btn)
	})
	h.waitFor("the run to start", func() bool { return h.k.run == localapi.RunRunning && !h.k.pause.Disabled() })
	h.ui(func() { test.Tap(h.k.pause.btn) })
	h.waitFor("the pause", func() bool { return h.k.run == localapi.RunPaused })
	h.ui(func() {
		if got := strings.TrimSpace(h.k.header.run.Text); got != "PAUSED" {
			t.Errorf("header run = %q, want PAUSED", got)
		}
	})
	if got, want := c.called(), []string{"start", "pause"}; !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

// TestCommandsFollowWhatTheDaemonTakes: Start is off with nobody signed
// in and says why; Stop is off for an operator and says a supervisor must
// sign in; a disabled button sends nothing.
func TestCommandsFollowWhatTheDaemonTakes(t *testing.T) {
	c := newTestController(4)
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunReady
	h := newHarness(t, c, Options{})
	h.ui(func() {
		for name, a := range map[string]*action{"start": h.k.start, "pause": h.k.pause, "stop": h.k.stop} {
			if !a.Disabled() || a.why.Text == "" {
				t.Errorf("%s with nobody signed in: enabled %v, why %q; want off with a reason", name, !a.Disabled(), a.why.Text)
			}
		}
		if got := h.k.start.why.Text; got != "sign in first" {
			t.Errorf("start's reason = %q", got)
		}
		test.Tap(h.k.start.btn)
	})
	h.signIn("1234")
	h.ui(func() {
		if !h.k.stop.Disabled() || !strings.Contains(h.k.stop.why.Text, "supervisor") {
			t.Errorf("stop for an operator: enabled %v, why %q", !h.k.stop.Disabled(), h.k.stop.why.Text)
		}
		if h.k.start.Disabled() {
			t.Errorf("start is off for an operator with a work order ready: %q", h.k.start.why.Text)
		}
	})
	if got := c.called(); len(got) != 0 {
		t.Errorf("calls = %q, want none: a disabled button sends nothing", got)
	}
}

// TestStopNeedsSupervisor: Stop, for a supervisor signed in, asks for a
// supervisor's own PIN; an operator's PIN is refused in the pad with the
// kiosk's words, a supervisor's stops the work order.
func TestStopNeedsSupervisor(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Sam", Supervisor: true}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunRunning
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.k.stop.btn) })
	h.waitFor("the supervisor's PIN pad", func() bool { return h.k.pinPad != nil && h.overlay() != nil })
	if got := c.called(); len(got) != 0 {
		t.Fatalf("calls before a PIN = %q, want none", got)
	}
	typePIN := func(pin string) {
		h.ui(func() {
			for _, d := range pin {
				test.Tap(h.k.pinPad.digits[d-'0'])
			}
			test.Tap(h.k.pinPad.ok)
		})
	}
	typePIN("1234")
	h.waitFor("the refusal", func() bool {
		return h.k.pinPad != nil && strings.Contains(h.k.pinPad.msg.Text, "Only a supervisor can do this")
	})
	h.ui(func() {
		if h.k.run != localapi.RunRunning {
			t.Errorf("run = %s after a refused stop, want running", h.k.run)
		}
	})
	typePIN("9999")
	h.waitFor("the pad closed and the run stopped", func() bool { return h.k.pinPad == nil && h.k.run == localapi.RunIdle })
	if got := c.called(); !slices.Equal(got, []string{"stop", "stop"}) {
		t.Errorf("calls = %q, want [stop stop]", got)
	}
}

func TestSignInWithPIN(t *testing.T) {
	c := newTestController(2)
	h := newHarness(t, c, Options{})
	h.ui(func() {
		if got := h.k.header.signIn.Text; got != "Sign in" {
			t.Fatalf("button = %q, want Sign in", got)
		}
		test.Tap(h.k.header.signIn)
	})
	h.waitFor("the PIN pad", func() bool { return h.k.pinPad != nil && h.overlay() != nil })

	// A wrong PIN: the daemon's words, the pad cleared.
	h.ui(func() {
		p := h.k.pinPad
		for _, d := range []int{5, 5, 5} {
			test.Tap(p.digits[d])
		}
		if got := p.dots.Text; got != "●●●" {
			t.Errorf("dots = %q, want 3", got)
		}
		test.Tap(p.ok)
	})
	h.waitFor("the refusal", func() bool { return strings.Contains(h.k.pinPad.msg.Text, "This PIN or badge is not known") })

	h.ui(func() {
		p := h.k.pinPad
		if p.pin != "" {
			t.Errorf("PIN = %q after a refusal, want it cleared", p.pin)
		}
		test.Tap(p.digits[7])
		test.Tap(p.clear)
		for _, d := range []int{1, 2, 3, 4} {
			test.Tap(p.digits[d])
		}
		test.Tap(p.ok)
	})
	h.waitFor("Alice in the header", func() bool {
		return h.k.header.operator.Text == "Alice" && h.k.header.signIn.Text == "Sign out" && h.overlay() == nil
	})

	// Sign out, then in again with a badge.
	h.ui(func() { test.Tap(h.k.header.signIn) })
	h.waitFor("nobody signed in", func() bool { return h.k.header.signIn.Text == "Sign in" })
	h.ui(func() { test.Tap(h.k.header.signIn) })
	h.waitFor("the PIN pad", func() bool { return h.k.pinPad != nil })
	h.ui(func() {
		if f := h.k.win.Canvas().Focused(); f != nil {
			t.Errorf("focus = %T, want none: the badge scanner types into the window", f)
		}
		h.scan("B-42\n")
	})
	h.waitFor("Bob in the header", func() bool { return h.k.header.operator.Text == "Bob" })
	if got := c.called(); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "load") }) {
		t.Errorf("calls = %q: the badge was taken for a work order", got)
	}
}

func TestReconnectBanner(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunReady
	h := newHarness(t, c, Options{})
	h.ui(func() {
		if h.k.banner.Visible() {
			t.Error("the reconnecting banner shows while connected")
		}
		if h.k.start.Disabled() {
			t.Error("Start is disabled while connected")
		}
	})

	h.d.stop() // the daemon goes away
	h.waitFor("the reconnecting banner", func() bool { return h.k.banner.Visible() })
	h.ui(func() {
		if got := h.k.bannerText.Text; got != "Station service restarting — reconnecting…" {
			t.Errorf("banner = %q", got)
		}
		for name, b := range map[string]interface{ Disabled() bool }{
			"start": h.k.start, "pause": h.k.pause, "stop": h.k.stop, "sign in": h.k.header.signIn,
		} {
			if !b.Disabled() {
				t.Errorf("%s is enabled while disconnected", name)
			}
		}
		if h.k.start.why.Text == "" {
			t.Error("start says nothing of why it is off")
		}
		if !h.k.greyOut.Visible() {
			t.Error("the slots are not greyed out")
		}
		// Nothing is known of the DMS or the printer while the daemon
		// is away: grey, not green.
		for _, l := range []*canvas.Text{h.k.header.dms, h.k.header.printer} {
			if l.Color != colorUnknown || !strings.Contains(l.Text, "?") {
				t.Errorf("link %q in %v while the daemon is away, want unknown in grey", l.Text, l.Color)
			}
		}
	})

	// The daemon comes back with another state: everything is redrawn.
	c.mu.Lock()
	c.st.Slots[2] = localapi.Slot{Name: "S03", Status: localapi.SlotPassed, Device: "AA", Seq: 1}
	c.st.Run = localapi.RunPaused
	c.mu.Unlock()
	h.d.start()
	h.waitFor("the banner to go", func() bool { return !h.k.banner.Visible() })
	h.ui(func() {
		if got := h.tile("S03").status.Text; got != "PASSED — REMOVE BOARD" {
			t.Errorf("S03 = %q after the reconnect, want PASSED — REMOVE BOARD", got)
		}
		if got := h.k.header.dms.Text; got != "DMS OK" {
			t.Errorf("DMS = %q after the reconnect, want DMS OK", got)
		}
		if h.k.start.Disabled() || h.k.greyOut.Visible() {
			t.Error("the commands are still greyed out")
		}
		if got := strings.TrimSpace(h.k.header.run.Text); got != "PAUSED" {
			t.Errorf("run = %q, want PAUSED", got)
		}
	})
}

func TestManySlotEventsAreCoalesced(t *testing.T) {
	const slots, perSlot = 32, 100
	c := newTestController(slots)
	h := newHarness(t, c, Options{})
	var last [slots]int64
	applied := map[string]int64{}
	hooks := 0
	h.k.OnApplied(func(seq map[string]int64) {
		hooks++
		for n, s := range seq {
			applied[n] = max(applied[n], s)
		}
	})
	before := h.k.Stats()
	for i := range perSlot {
		for s := range slots {
			sl := localapi.Slot{
				Name: fmt.Sprintf("S%02d", s+1), Status: localapi.SlotRunning, Step: "flash",
				Progress: float64(i+1) / perSlot, Device: fmt.Sprintf("DEV-%02d", s), Started: time.Now(),
			}
			if i == perSlot-1 && s%2 == 0 {
				sl.Status, sl.Reason = localapi.SlotFailed, fmt.Sprintf("flash failed on slot %d", s+1)
			}
			last[s] = c.setSlot(sl)
		}
	}
	h.waitFor("the last events drawn", func() bool {
		for s := range slots {
			if h.tile(fmt.Sprintf("S%02d", s+1)).slot.Seq != last[s] {
				return false
			}
		}
		return true
	})
	st := h.k.Stats()
	events := st.Events - before.Events
	updates := st.SlotUpdates - before.SlotUpdates
	t.Logf("%d events, %d tile updates in %d draws", events, updates, st.Draws-before.Draws)
	if events > slots*perSlot {
		t.Errorf("events = %d, want at most %d", events, slots*perSlot)
	}
	if updates > slots*perSlot/2 {
		t.Errorf("tile updates = %d for %d slot changes: not coalesced", updates, slots*perSlot)
	}
	h.ui(func() {
		if hooks == 0 {
			t.Fatal("OnApplied was never called")
		}
		for s := range slots {
			name := fmt.Sprintf("S%02d", s+1)
			tl := h.tile(name)
			want := "FLASHING 100 %"
			if s%2 == 0 {
				want = "FAILED"
				if !strings.Contains(tl.reason[0].Text+" "+tl.reason[1].Text, "Flash failed") {
					t.Errorf("%s reason = %q", name, tl.reason[0].Text)
				}
			}
			if tl.status.Text != want {
				t.Errorf("%s = %q, want %q", name, tl.status.Text, want)
			}
			if applied[name] != last[s] {
				t.Errorf("OnApplied saw %s at seq %d, want %d", name, applied[name], last[s])
			}
		}
		if got := gridColumns(len(h.k.tiles)); got != 8 {
			t.Errorf("columns = %d, want 8", got)
		}
	})
}

func TestDeviceView(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.Slots[1] = localapi.Slot{Name: "S02", Status: localapi.SlotFailed, Device: "DEV-2", Serial: "SN-2", Reason: "flash failed: bad cable", Seq: 1}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	c.logs["DEV-2"] = []localapi.LogLine{
		{Seq: 1, Time: t0, Step: "identify", Status: "passed", Duration: time.Second, Operator: "Alice"},
		{Seq: 2, Time: t0.Add(time.Second), Step: "flash", Status: "failed", Message: "bad cable", Operator: "Alice"},
	}
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.tile("S02")) })
	h.waitFor("the log", func() bool { return h.k.dev != nil && h.k.dev.list.Length() == 2 })
	h.ui(func() {
		v := h.k.dev
		if got := v.status.Text; got != "FAILED" {
			t.Errorf("status = %q, want FAILED", got)
		}
		if !strings.Contains(v.info.Text, "flash failed: bad cable") || !strings.Contains(v.info.Text, "SN-2") {
			t.Errorf("info = %q", v.info.Text)
		}
		if got := logLineWords(v.log[1]); !strings.Contains(got, "flash  FAILED") || !strings.Contains(got, "bad cable") || !strings.Contains(got, "by Alice") {
			t.Errorf("log line = %q", got)
		}
		// Alice may retry and skip; only a supervisor accepts, and a
		// failed board has no label to reprint.
		if v.retry.Disabled() || v.skip.Disabled() {
			t.Errorf("retry/skip off for a failed board: %q, %q", v.retry.why.Text, v.skip.why.Text)
		}
		if !v.override.Disabled() || !strings.Contains(v.override.why.Text, "supervisor") {
			t.Errorf("override for an operator: enabled %v, why %q", !v.override.Disabled(), v.override.why.Text)
		}
		if !v.reprint.Disabled() || v.reprint.why.Text == "" {
			t.Errorf("reprint of a failed board: enabled %v, why %q", !v.reprint.Disabled(), v.reprint.why.Text)
		}
		test.Tap(v.retry.btn)
	})
	h.waitFor("the retry", func() bool { return h.k.dev.note.Text == "Retrying from the last passed step." })

	// Sam, a supervisor, signs in: override is on.
	c.update(func(st *localapi.State) { st.Operator = &localapi.Operator{Name: "Sam", Supervisor: true} })
	h.waitFor("override on for a supervisor", func() bool { return !h.k.dev.override.Disabled() })
	h.ui(func() {
		v := h.k.dev
		test.Tap(v.override.btn)
		if got := v.note.Text; got != "Type why you accept this device first." {
			t.Errorf("note = %q", got)
		}
		test.Type(v.reason, "cosmetic only")
		h.k.win.Canvas().Unfocus()
		test.Tap(v.override.btn)
	})
	h.waitFor("the supervisor's PIN pad", func() bool { return h.k.pinPad != nil })
	h.ui(func() { h.scan("B-42\n") }) // Bob's badge
	h.waitFor("the refusal", func() bool {
		return h.k.pinPad != nil && strings.Contains(h.k.pinPad.msg.Text, "Only a supervisor can do this")
	})
	h.ui(func() { h.scan("9999\n") })
	h.waitFor("the pad closed and S02 overridden", func() bool {
		return h.k.pinPad == nil && h.k.dev.status.Text == "OVERRIDDEN"
	})
	want := []string{"retry S02", "override S02 cosmetic only", "override S02 cosmetic only"}
	if got := c.called(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	h.ui(func() {
		test.Tap(h.k.dev.backBtn)
		if h.k.dev != nil || h.k.body.Objects[0] != h.k.mainPage {
			t.Error("Back did not show the slots")
		}
	})
}

// TestDeviceViewFollowsItsDevice: the view of a running board reads its
// log again as it goes through its steps, not on every progress change;
// when the slot gets another board, the view stays on its own, says it
// left, and offers no command for the slot.
func TestDeviceViewFollowsItsDevice(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunRunning
	c.st.Slots[2] = localapi.Slot{Name: "S03", Status: localapi.SlotRunning, Device: "DEV-A", Step: "flash", Progress: 0.1, Seq: 1}
	c.logs["DEV-A"] = []localapi.LogLine{{Seq: 1, Step: "identify", Status: "passed"}}
	c.logs["DEV-B"] = []localapi.LogLine{{Seq: 9, Step: "identify", Status: "passed"}}
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.tile("S03")) })
	h.waitFor("the log of A", func() bool { return h.k.dev != nil && h.k.dev.list.Length() == 1 })
	reads := func(dev string) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.logReads[dev]
	}
	before := reads("DEV-A")
	for i := 2; i <= 9; i++ {
		c.setSlot(localapi.Slot{Name: "S03", Status: localapi.SlotRunning, Device: "DEV-A", Step: "flash", Progress: float64(i) / 10})
	}
	c.mu.Lock()
	c.logs["DEV-A"] = append(c.logs["DEV-A"], localapi.LogLine{Seq: 2, Step: "flash", Status: "passed"})
	c.mu.Unlock()
	c.setSlot(localapi.Slot{Name: "S03", Status: localapi.SlotRunning, Device: "DEV-A", Step: "verify"})
	h.waitFor("the log of A grown", func() bool { return h.k.dev.list.Length() == 2 })
	if n := reads("DEV-A") - before; n > 3 {
		t.Errorf("the log was read %d times for 9 changes of one step and one new step, want a few", n)
	}

	// --cycle: another board in S03.
	c.setSlot(localapi.Slot{Name: "S03", Status: localapi.SlotRunning, Device: "DEV-B", Step: "identify"})
	h.waitFor("the view on A, which left", func() bool { return strings.HasPrefix(h.k.dev.status.Text, "NO LONGER IN ITS SLOT") })
	h.ui(func() {
		v := h.k.dev
		if v.device != "DEV-A" || !strings.Contains(v.title.Text, "DEV-A") {
			t.Errorf("view on %q (%q), want DEV-A", v.device, v.title.Text)
		}
		if v.list.Length() != 2 {
			t.Errorf("log of %d lines, want A's 2", v.list.Length())
		}
		for name, a := range map[string]*action{"retry": v.retry, "skip": v.skip, "override": v.override, "reprint": v.reprint} {
			if !a.Disabled() || !strings.Contains(a.why.Text, "no longer") {
				t.Errorf("%s with the board gone: enabled %v, why %q", name, !a.Disabled(), a.why.Text)
			}
		}
	})
	if n := reads("DEV-B"); n != 0 {
		t.Errorf("B's log read %d times by A's view", n)
	}
}

func TestQAViewAndExport(t *testing.T) {
	c := newTestController(2)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	long := "SN-2026-LINE1-0000000000000002"
	c.rows = []localapi.DeviceRow{
		{WorkOrder: "WO-1", Device: "DEV-1", Serial: "SN-1", Result: "done", Attempts: 1, Operator: "Alice"},
		{WorkOrder: "WO-1", Device: "DEV-2", Serial: long, Result: "failed", LastError: "bad cable", Attempts: 2, Operator: "Bob", Override: "Sam: cosmetic"},
		{WorkOrder: "WO-0", Device: "DEV-9", Result: "done", Attempts: 1},
	}
	c.logs["DEV-2"] = []localapi.LogLine{{Seq: 1, Step: "flash", Status: "failed", Message: "bad cable"}}
	dir := t.TempDir()
	h := newHarness(t, c, Options{ExportDir: dir})
	h.ui(func() { test.Tap(h.k.header.qa) })
	h.waitFor("the loaded work order's devices", func() bool { return h.k.qa != nil && len(h.k.qa.rows) == 2 })
	h.ui(func() {
		v := h.k.qa
		if v.path.Text != dir {
			t.Errorf("default export folder = %q, want %q", v.path.Text, dir)
		}
		v.result.SetSelected("failed")
		test.Tap(v.search)
	})
	h.waitFor("the failed devices", func() bool { return len(h.k.qa.rows) == 1 && strings.HasPrefix(h.k.qa.count.Text, "1 devices") })
	h.ui(func() {
		v := h.k.qa
		if got := qaColumns[8].cell(v.rows[0]); got != "accepted by Sam: cosmetic" {
			t.Errorf("error or override column = %q", got)
		}
		// The whole serial fits its column.
		size := fyne.CurrentApp().Settings().Theme().Size("text")
		if w := fyne.MeasureText(long, size, fyne.TextStyle{}).Width; w > 512 {
			t.Fatalf("the serial measures %v: the test needs a shorter one", w)
		}
		test.Tap(v.export)
	})
	h.waitFor("the export", func() bool { return strings.HasPrefix(h.k.qa.msg.Text, "Signed export written to") })
	matches, _ := filepath.Glob(filepath.Join(dir, "station-export-WO-1-*", "devices.csv"))
	if len(matches) != 1 {
		t.Fatalf("export folders = %q, want one holding devices.csv", matches)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "DEV-2,failed\n"; string(b) != want {
		t.Errorf("devices.csv = %q, want %q", b, want)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(matches[0]), "transcripts", "x.txt")); err != nil {
		t.Errorf("the export's transcripts were not written: %v", err)
	}

	// A row opens its device; Back returns to the list.
	h.ui(func() { h.k.qa.table.OnSelected(widget.TableCellID{Row: 0, Col: 2}) })
	h.waitFor("the device view", func() bool { return h.k.dev != nil && h.k.dev.list.Length() == 1 })
	h.ui(func() {
		if h.k.dev.device != "DEV-2" {
			t.Errorf("view of %q, want DEV-2", h.k.dev.device)
		}
		test.Tap(h.k.dev.backBtn)
		if h.k.qa == nil || h.k.dev != nil {
			t.Error("Back did not return to the QA view")
		}
	})

	// A folder that cannot be written: said, and nothing left behind.
	h.ui(func() {
		h.k.qa.path.SetText(filepath.Join(t.TempDir(), "no-such-dir"))
		test.Tap(h.k.qa.export)
	})
	h.waitFor("the failure", func() bool { return strings.HasPrefix(h.k.qa.msg.Text, "Export failed") })
}

func TestRenderedTilesHaveStatusColours(t *testing.T) {
	c := newTestController(16)
	statuses := []localapi.SlotStatus{localapi.SlotPassed, localapi.SlotFailed, localapi.SlotRunning, localapi.SlotWaiting, localapi.SlotEmpty}
	for i, s := range statuses {
		c.st.Slots[i].Status = s
		c.st.Slots[i].Device = "DEV"
	}
	h := newHarness(t, c, Options{})
	h.ui(func() {
		cv := h.k.win.Canvas()
		img := cv.Capture()
		for i, s := range statuses {
			tl := h.tile(c.st.Slots[i].Name)
			pos := fyne.CurrentApp().Driver().AbsolutePositionForObject(tl)
			// Inside the tile, left of its text, half-way down.
			x, y := cv.PixelCoordinateForPosition(pos.Add(fyne.NewPos(3, tl.Size().Height/2)))
			want, _ := statusColors(s)
			got := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if !near(got, want) {
				t.Errorf("%s tile pixel (%d,%d) = %v, want %v", s, x, y, got, want)
			}
		}
		if got := gridColumns(16); got != 4 {
			t.Errorf("columns for 16 = %d, want 4", got)
		}
	})
}

// near reports whether two colours are within antialiasing of each other.
func near(a, b color.NRGBA) bool {
	d := func(x, y uint8) bool { return x-y < 8 || y-x < 8 }
	return d(a.R, b.R) && d(a.G, b.G) && d(a.B, b.B)
}

// TestPacedSlotEventsAreThrottled sends what a busy station sends: 32
// slots changing 20 times a second. The kiosk draws at most once per tick
// (and once a second for the clocks), each draw redrawing only the tiles
// that changed.
func TestPacedSlotEventsAreThrottled(t *testing.T) {
	const slots, rounds, tick = 32, 20, 100 * time.Millisecond
	c := newTestController(slots)
	h := newHarness(t, c, Options{Tick: tick})
	before := h.k.Stats()
	start := time.Now()
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	var last int64
	for i := range rounds {
		<-pace.C
		for s := range slots {
			last = c.setSlot(localapi.Slot{Name: fmt.Sprintf("S%02d", s+1), Status: localapi.SlotRunning, Step: "flash", Progress: float64(i+1) / rounds})
		}
	}
	h.waitFor("the last round drawn", func() bool { return h.tile(fmt.Sprintf("S%02d", slots)).slot.Seq == last })
	elapsed := time.Since(start)
	st := h.k.Stats()
	draws, updates := st.Draws-before.Draws, st.SlotUpdates-before.SlotUpdates
	t.Logf("%d slot changes in %v: %d draws, %d tile updates", slots*rounds, elapsed.Round(time.Millisecond), draws, updates)
	if maxDraws := int64(elapsed/tick) + int64(elapsed/time.Second) + 2; draws > maxDraws {
		t.Errorf("draws = %d in %v, want at most %d (one per tick)", draws, elapsed, maxDraws)
	}
	if updates > draws*slots {
		t.Errorf("tile updates = %d in %d draws of %d slots", updates, draws, slots)
	}
	h.ui(func() {
		for s := range slots {
			if got := h.tile(fmt.Sprintf("S%02d", s+1)).status.Text; got != "FLASHING 100 %" {
				t.Errorf("S%02d = %q, want FLASHING 100 %%", s+1, got)
			}
		}
	})
}

// TestDrawRateFollowsEvents: one slot's events are drawn at 10 Hz, 32
// slots' (as many events as the daemon sends a second) once a second.
func TestDrawRateFollowsEvents(t *testing.T) {
	k := &Kiosk{opts: Options{Tick: 100 * time.Millisecond, MaxTick: time.Second}}
	for _, tt := range []struct {
		rate float64
		want time.Duration
	}{{0, 100 * time.Millisecond}, {10, 100 * time.Millisecond}, {80, 320 * time.Millisecond}, {320, time.Second}, {5000, time.Second}} {
		if got := k.tick(tt.rate); got != tt.want {
			t.Errorf("tick(%v events/s) = %v, want %v", tt.rate, got, tt.want)
		}
	}
}

// TestNothingTicksWhenNothingRuns: the elapsed times wake the drawer only
// while a slot runs; a progress bar is redrawn only when it grows by a
// pixel.
func TestNothingTicksWhenNothingRuns(t *testing.T) {
	c := newTestController(4)
	c.st.Slots[0] = localapi.Slot{Name: "S01", Status: localapi.SlotPassed, Device: "D1", Elapsed: time.Minute, Seq: 1}
	h := newHarness(t, c, Options{})
	h.ui(func() {
		if h.k.ticking.Load() {
			t.Error("the drawer ticks with no slot running")
		}
	})
	c.setSlot(localapi.Slot{Name: "S02", Status: localapi.SlotRunning, Step: "flash", Progress: 0.5, Started: time.Now()})
	h.waitFor("S02 running", func() bool { return h.tile("S02").slot.Status == localapi.SlotRunning })
	h.ui(func() {
		if !h.k.ticking.Load() {
			t.Error("the drawer does not tick with a slot running")
		}
		tl := h.tile("S02")
		w := tl.bar.Size().Width
		tl.slot.Progress += 0.1 / float64(tl.barFrame.Width) // a tenth of a pixel
		tl.layoutBar()
		if tl.bar.Size().Width != w {
			t.Errorf("bar resized from %v to %v for a tenth of a pixel", w, tl.bar.Size().Width)
		}
	})
}
