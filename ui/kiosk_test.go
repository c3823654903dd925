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
		{localapi.Slot{Status: localapi.SlotPassed, Device: "24:6F:28:AA:BB:01", Serial: "SN-0001", Elapsed: 42 * time.Second}, "PASSED", colorPassed, 1, ""},
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
				if tt.wantReason != "" && !strings.Contains(reason, tt.wantReason) {
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
		var alerts []string
		for _, o := range test.LaidOutObjects(h.k.alertsBox) {
			if l, ok := o.(*widget.Label); ok {
				alerts = append(alerts, l.Text)
			}
		}
		want := []string{
			"The activation token is used up: no more devices can be activated. Ask the planner for a new token.",
			"The printer is out of labels: load a new roll.",
			"Slot S02: flash failed: unplug and replug the board",
		}
		if !slices.Equal(alerts, want) {
			t.Errorf("alerts = %q, want %q", alerts, want)
		}
	})
}

func TestScannerLoadsWorkOrder(t *testing.T) {
	c := newTestController(4)
	h := newHarness(t, c, Options{})
	h.waitFor("the scanner to have the focus", func() bool { return h.k.win.Canvas().Focused() == h.k.scanner })
	h.ui(func() { test.Type(h.k.scanner, "WO-1\n") })
	h.waitFor("the work order in the header", func() bool { return h.k.header.workOrder.Text == "WO-1" })
	if got := c.called(); !slices.Contains(got, "load WO-1") {
		t.Errorf("calls = %q, want a load of WO-1", got)
	}
	h.ui(func() {
		if h.k.scanner.Text != "" {
			t.Errorf("scanner text = %q after Enter, want it empty", h.k.scanner.Text)
		}
		if got := h.k.header.done.Text; got != "0 / 100" {
			t.Errorf("done = %q, want 0 / 100", got)
		}
	})

	// An unknown work order: the daemon's words in a dialog.
	h.ui(func() { test.Type(h.k.scanner, "WO-404\n") })
	h.waitFor("the error dialog", func() bool { return strings.Contains(h.overlayText(), "WO-404 is not known to the DMS") })
	h.ui(func() { test.Tap(h.overlayButton("OK")) })
	h.waitFor("the scanner to have the focus again", func() bool {
		return h.overlay() == nil && h.k.win.Canvas().Focused() == h.k.scanner
	})
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
		test.Tap(h.k.start)
	})
	h.waitFor("the run to start", func() bool { return h.k.run == localapi.RunRunning && !h.k.pause.Disabled() })
	h.ui(func() { test.Tap(h.k.pause) })
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

func TestStartWithoutOperatorShowsDaemonError(t *testing.T) {
	c := newTestController(2)
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunReady
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.k.start) })
	h.waitFor("the error dialog", func() bool { return strings.Contains(h.overlayText(), "sign in before you start") })
}

// TestStopNeedsSupervisor: Stop asks for a supervisor's own PIN, whoever
// is signed in; an operator's PIN is refused in the pad with the daemon's
// words, a supervisor's stops the work order.
func TestStopNeedsSupervisor(t *testing.T) {
	c := newTestController(4)
	c.st.Operator = &localapi.Operator{Name: "Alice"}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.st.Run = localapi.RunRunning
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.k.stop) })
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
	h.waitFor("the daemon's refusal", func() bool {
		return h.k.pinPad != nil && strings.Contains(h.k.pinPad.msg.Text, "Alice is not a supervisor")
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
	h.waitFor("the refusal", func() bool { return strings.Contains(h.k.pinPad.msg.Text, "this PIN or badge is not known") })

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
		if f := h.k.win.Canvas().Focused(); f != h.k.pinPad.badge {
			t.Errorf("focus = %T, want the badge field", f)
		}
		test.Type(h.k.pinPad.badge, "B-42\n")
	})
	h.waitFor("Bob in the header", func() bool { return h.k.header.operator.Text == "Bob" })
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
			"start": h.k.start, "pause": h.k.pause, "stop": h.k.stop, "scanner": h.k.scanner, "sign in": h.k.header.signIn,
		} {
			if !b.Disabled() {
				t.Errorf("%s is enabled while disconnected", name)
			}
		}
		if !h.k.greyOut.Visible() {
			t.Error("the slots are not greyed out")
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
		if got := h.tile("S03").status.Text; got != "PASSED" {
			t.Errorf("S03 = %q after the reconnect, want PASSED", got)
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
				if !strings.Contains(tl.reason[0].Text+" "+tl.reason[1].Text, "flash failed") {
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
		{Seq: 1, Time: t0, Step: "identify", Status: "passed", Duration: time.Second},
		{Seq: 2, Time: t0.Add(time.Second), Step: "flash", Status: "failed", Message: "bad cable"},
	}
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.tile("S02")) })
	h.waitFor("the log", func() bool { return h.k.dev != nil && h.k.dev.list.Length() == 2 })
	h.waitFor("the label's preview", func() bool { return h.k.dev.label.Visible() && h.k.dev.label.Resource != nil })
	h.ui(func() {
		v := h.k.dev
		if got := v.status.Text; got != "FAILED" {
			t.Errorf("status = %q, want FAILED", got)
		}
		if !strings.Contains(v.info.Text, "flash failed: bad cable") || !strings.Contains(v.info.Text, "SN-2") {
			t.Errorf("info = %q", v.info.Text)
		}
		if got := logLineWords(v.log[1]); !strings.Contains(got, "flash  FAILED") || !strings.Contains(got, "bad cable") {
			t.Errorf("log line = %q", got)
		}
		test.Tap(v.retry)
	})
	h.waitFor("the retry", func() bool { return h.k.dev.note.Text == "Retrying from the last passed step." })

	h.ui(func() {
		v := h.k.dev
		test.Tap(v.override)
		if got := v.note.Text; got != "Type why you accept this device first." {
			t.Errorf("note = %q", got)
		}
		test.Type(v.reason, "cosmetic only")
	})
	h.ui(func() { test.Tap(h.k.dev.override) })
	h.waitFor("the supervisor's PIN pad", func() bool { return h.k.pinPad != nil })
	h.ui(func() { test.Type(h.k.pinPad.badge, "B-42\n") })
	h.waitFor("the refusal", func() bool {
		return h.k.pinPad != nil && strings.Contains(h.k.pinPad.msg.Text, "Bob is not a supervisor: only a supervisor can accept a failed device")
	})
	h.ui(func() { test.Tap(h.k.pinPad.cancel) })
	h.waitFor("the pad closed", func() bool { return h.k.pinPad == nil })
	want := []string{"retry S02", "override S02 cosmetic only"}
	if got := c.called(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	h.ui(func() {
		test.Tap(h.k.dev.back)
		if h.k.dev != nil || h.k.body.Objects[0] != h.k.mainPage {
			t.Error("Back did not show the slots")
		}
	})
}

func TestQAViewAndExport(t *testing.T) {
	c := newTestController(2)
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Quantity: 10}
	c.rows = []localapi.DeviceRow{
		{WorkOrder: "WO-1", Device: "DEV-1", Serial: "SN-1", Result: "done", Attempts: 1},
		{WorkOrder: "WO-1", Device: "DEV-2", Serial: "SN-2", Result: "failed", LastError: "bad cable", Attempts: 2},
		{WorkOrder: "WO-0", Device: "DEV-9", Result: "done", Attempts: 1},
	}
	h := newHarness(t, c, Options{})
	h.ui(func() { test.Tap(h.k.header.qa) })
	h.waitFor("the loaded work order's devices", func() bool { return h.k.qa != nil && len(h.k.qa.rows) == 2 })
	out := filepath.Join(t.TempDir(), "export.jsonl")
	h.ui(func() {
		v := h.k.qa
		if !strings.HasPrefix(filepath.Base(v.path.Text), "station-export-") || !strings.HasSuffix(v.path.Text, ".jsonl") {
			t.Errorf("default export path = %q", v.path.Text)
		}
		v.result.SetSelected("failed")
		test.Tap(v.search)
	})
	h.waitFor("the failed devices", func() bool { return len(h.k.qa.rows) == 1 && h.k.qa.count.Text == "1 devices" })
	h.ui(func() {
		v := h.k.qa
		if got := qaColumns[6].cell(v.rows[0]); got != "bad cable" {
			t.Errorf("error column = %q", got)
		}
		v.path.SetText(out)
		test.Tap(v.export)
	})
	h.waitFor("the export", func() bool { return strings.HasPrefix(h.k.qa.msg.Text, "Exported") })
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"device\":\"DEV-2\",\"result\":\"failed\"}\n"; string(b) != want {
		t.Errorf("export = %q, want %q", b, want)
	}

	// A file that cannot be written: said, and nothing left behind.
	h.ui(func() {
		h.k.qa.path.SetText(filepath.Join(t.TempDir(), "no-such-dir", "x.jsonl"))
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
