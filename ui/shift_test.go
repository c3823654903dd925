package ui

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/station/localapi"
)

// shiftFaults are the twelve faults of TestShiftWithFaults: eleven boards
// that fail their flash or verify, and one (S05) pulled out mid-flash.
// S13 to S16 pass.
var shiftFaults = []string{
	"S01=write-error@50", "S02=write-error@50", "S03=corrupt-flash", "S04=write-error@30",
	"S05=unplug@40", "S06=write-error@50", "S07=corrupt-flash", "S08=write-error@60",
	"S09=write-error@50", "S10=write-error@40", "S11=write-error@50", "S12=corrupt-flash",
}

// shiftOverride is the reason the supervisor accepts S03's board with.
const shiftOverride = "cosmetic: verify differs in the config sector, QA ticket 4711"

// readScreen reads the real kiosk's screen file.
func readScreen(path string) (Screen, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Screen{}, false
	}
	var s Screen
	return s, json.Unmarshal(b, &s) == nil
}

// waitScreen waits until the real kiosk's screen file satisfies cond.
func waitScreen(t *testing.T, path, what string, cond func(Screen) bool) Screen {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, ok := readScreen(path)
		if ok && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for the kiosk's screen to show %s: timed out; last screen: %+v", what, s)
		}
		time.Sleep(100 * time.Millisecond) // the kiosk writes it at most twice a second
	}
}

// tileStates maps a screen's tiles to their statuses.
func tileStates(s Screen) map[string]string {
	out := map[string]string{}
	for _, t := range s.Tiles {
		out[t.Name] = t.Status
	}
	return out
}

// wantStates are the slots' states after the faults, the skips and the
// override: red slots for the failed boards, S03 accepted, S05 pulled
// out, S13 to S16 passed.
func wantStates() map[string]localapi.SlotStatus {
	want := map[string]localapi.SlotStatus{}
	for i := 1; i <= 16; i++ {
		want[fmt.Sprintf("S%02d", i)] = localapi.SlotFailed
		if i > 12 {
			want[fmt.Sprintf("S%02d", i)] = localapi.SlotPassed
		}
	}
	want["S05"] = localapi.SlotRemoved
	return want
}

// TestShiftWithFaults drives a real "station serve" with 16 simulated
// boards, twelve of them faulty, through a shift: operator A (Operator)
// scans the work order before signing in and starts; eleven boards fail
// and one is pulled out mid-flash; A skips every failed board from its
// device view; B (Supervisor) takes over, accepts one failed board with a
// reason and plugs in a new board; the daemon is killed and started again.
// The in-process kiosk drives and checks its widgets; a real kiosk in a
// real X server (Xvfb) shows the same, which its screen file and one
// screenshot check: the header whole on the screen, the one alert line,
// the tiles' states and counts. The signed export names the operator who
// started each board and the override with its reason.
func TestShiftWithFaults(t *testing.T) {
	for _, tool := range []string{"Xvfb", "import"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/test installs it): %v", tool, err)
		}
	}
	bin := stationBinary(t)
	dir := t.TempDir()
	kiosk := kioskBinary(t, dir)
	args := []string{"--simulate", "16", "--idle"}
	for _, f := range shiftFaults {
		args = append(args, "--fault", f)
	}
	serve := startServe(t, bin, dir, args...)
	sock := filepath.Join(dir, "api.sock")

	// The real kiosk, full screen in a 1920×1080 X server.
	display := proctest.StartXvfb(t.Context(), t, 1920, 1080)
	screen := filepath.Join(dir, "screen.json")
	real := exec.Command(kiosk, "--api", "unix:"+sock, "--screen", screen)
	real.Env = append(os.Environ(), "DISPLAY="+display, "LANG=C.UTF-8")
	klogs := &proctest.Buffer{}
	real.Stdout, real.Stderr = klogs, klogs
	proctest.Start(t, real)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the real kiosk's log:\n%s", klogs.String())
		}
	})

	h := e2eKiosk(t, sock)

	// Shift A. The work order scanned before anyone signed in is kept,
	// and loaded once A signs in.
	h.ui(func() { h.scan("WO:WO-DEMO-0001\n") })
	h.waitFor("the scan kept", func() bool { return strings.Contains(h.k.scanNote.Text, "sign in") })
	h.signInWithPIN("1234")
	h.waitFor("the kept work order loaded", func() bool {
		return h.k.header.workOrder.Text == "WO-DEMO-0001" && h.k.run == localapi.RunReady && !h.k.start.Disabled()
	})
	h.ui(func() { test.Tap(h.k.start.btn) })
	want := wantStates()
	slotsAre := func(want map[string]localapi.SlotStatus) func() bool {
		return func() bool {
			for name, w := range want {
				if s, _ := h.k.m.slot(name); s.Status != w {
					return false
				}
			}
			return true
		}
	}
	h.waitFor("eleven boards failed, S05 pulled out, four passed", slotsAre(want))
	h.waitFor("the header counting them", func() bool {
		return h.k.header.full[h.k.header.yield] == "Yield 25.0 %  (4 passed, 12 failed)"
	})
	h.ui(func() {
		if want := "12 slots need you: S01, S02, S03, S04, S05, S06, S07, S08, S09, S10, S11, S12"; h.k.alertBar.line != want {
			t.Errorf("alert line = %q, want %q", h.k.alertBar.line, want)
		}
		if got := h.tile("S05").status.Text; got != "REMOVED MID-FLASH" {
			t.Errorf("S05 = %q, want REMOVED MID-FLASH", got)
		}
	})

	// A skips every failed board from its device view: the tiles stay
	// red, the alert line keeps only the board pulled out.
	for name, st := range want {
		if st != localapi.SlotFailed {
			continue
		}
		h.ui(func() { test.Tap(h.tile(name)) })
		h.waitFor("the device view of "+name+" with Skip on", func() bool { return h.k.dev != nil && h.k.dev.slot == name && !h.k.dev.skip.Disabled() })
		h.ui(func() {
			if !h.k.dev.override.Disabled() {
				t.Errorf("%s: override is on for an operator", name)
			}
			test.Tap(h.k.dev.skip.btn)
		})
		h.waitFor(name+" skipped", func() bool { return h.k.dev.note.Text == "Skipped until the board is unplugged." })
		h.ui(func() { test.Tap(h.k.dev.backBtn) })
	}
	h.waitFor("the alert line with S05 alone", func() bool { return h.k.alertBar.line == "1 slot needs you: S05" })
	h.ui(func() {
		if got := h.tile("S01").status.Text; got != "FAILED" {
			t.Errorf("S01 after the skip = %q, want FAILED", got)
		}
	})

	// Shift change: A signs out, B signs in.
	h.ui(func() { test.Tap(h.k.header.signIn) })
	h.waitFor("A signed out", func() bool { return h.k.header.signIn.Text == "Sign in" })
	h.signInWithPIN("0000")

	// B accepts S03's board, with a reason, on the supervisor's PIN pad.
	h.ui(func() { test.Tap(h.tile("S03")) })
	h.waitFor("Override on for the supervisor", func() bool { return h.k.dev != nil && h.k.dev.slot == "S03" && !h.k.dev.override.Disabled() })
	h.ui(func() {
		test.Type(h.k.dev.reason, shiftOverride)
		h.k.win.Canvas().Unfocus()
		test.Tap(h.k.dev.override.btn)
	})
	h.waitFor("the supervisor's PIN pad", func() bool { return h.k.pinPad != nil })
	h.ui(func() {
		for _, d := range "0000" {
			test.Tap(h.k.pinPad.digits[d-'0'])
		}
		test.Tap(h.k.pinPad.ok)
	})
	h.waitFor("S03 overridden", func() bool { return h.k.pinPad == nil && h.k.dev.status.Text == "OVERRIDDEN" })
	h.ui(func() { test.Tap(h.k.dev.backBtn) })
	want["S03"] = localapi.SlotOverridden

	// B plugs a new board into S13: it runs on B's shift.
	old13, _ := h.k.m.slot("S13")
	serve.command(t, "plug 12")
	h.waitFor("S13's new board passed", func() bool {
		s, _ := h.k.m.slot("S13")
		return s.Status == localapi.SlotPassed && s.Device != "" && s.Device != old13.Device
	})
	new13, _ := h.k.m.slot("S13")

	// The daemon dies and comes back: the same slots and counts.
	serve.kill()
	h.waitFor("the reconnecting banner", func() bool { return !h.k.connected })
	startServe(t, bin, dir, args...)
	counts := localapi.Counts{Done: 5, Passed: 5, Overridden: 1, Failed: 11, Yield: 5.0 / 17}
	var seen string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the kiosk's last state: %s", seen)
		}
	})
	h.waitFor("the slots and counts restored", func() bool {
		h.k.m.mu.Lock()
		c := h.k.m.st.Counts
		seen = fmt.Sprintf("counts %+v, slots:", c)
		for _, s := range h.k.m.st.Slots {
			seen += fmt.Sprintf(" %s=%s", s.Name, s.Status)
		}
		h.k.m.mu.Unlock()
		seen += fmt.Sprintf("; connected %v, work order %q, slots as wanted %v, counts as wanted %v", h.k.connected, h.k.header.full[h.k.header.workOrder], slotsAre(want)(), c == counts)
		return h.k.connected && h.k.header.full[h.k.header.workOrder] == "WO-DEMO-0001" && slotsAre(want)() && c == counts
	})
	h.ui(func() {
		red := 0
		for _, name := range h.k.order {
			if s := h.tile(name).slot.Status; s == localapi.SlotFailed || s == localapi.SlotRemoved {
				red++
			}
		}
		if red != counts.Failed {
			t.Errorf("%d red tiles, the header counts %d failed", red, counts.Failed)
		}
		if got, want := h.k.header.full[h.k.header.yield], "Yield 29.4 %  (5 passed, 1 overridden, 11 failed)"; got != want {
			t.Errorf("header counts = %q, want %q", got, want)
		}
		if got := h.k.alertBar.line; got != "1 slot needs you: S05" {
			t.Errorf("alert line after the restart = %q, want S05's alone (the skips are kept)", got)
		}
	})

	// The real kiosk shows the same: the header whole on the screen,
	// one alert line under it, the slots below, each tile's state.
	sc := waitScreen(t, screen, "the restored slots", func(s Screen) bool {
		st := tileStates(s)
		for name, w := range want {
			if st[name] != string(w) {
				return false
			}
		}
		return s.Connected && s.AlertLine == "1 slot needs you: S05" && strings.Contains(s.Header.Counts, "11 failed")
	})
	if !sc.Header.Box.Inside(sc.Width, sc.Height) || sc.Width != 1920 || sc.Height != 1080 {
		t.Errorf("header %+v in a %vx%v window, want it whole in 1920x1080", sc.Header.Box, sc.Width, sc.Height)
	}
	if sc.AlertBox.H != alertBarHeight || sc.AlertBox.Y < sc.Header.Box.Y+sc.Header.Box.H || sc.GridBox.Y < sc.AlertBox.Y+sc.AlertBox.H {
		t.Errorf("header %+v, alert line %+v, slots %+v: want them one under the other, the alert line one line high", sc.Header.Box, sc.AlertBox, sc.GridBox)
	}
	for _, tl := range sc.Tiles {
		if !tl.Box.Inside(sc.Width, sc.Height) {
			t.Errorf("tile %s %+v is not whole on the screen", tl.Name, tl.Box)
		}
	}
	if sc.Header.WorkOrder != "WO-DEMO-0001" || sc.Header.Done != "5 / 1600" {
		t.Errorf("header shows %q %q, want WO-DEMO-0001 5 / 1600", sc.Header.WorkOrder, sc.Header.Done)
	}

	// One screenshot of the X server: the colours where the screen file
	// says the header and the tiles are.
	shot := filepath.Join(dir, "screen.png")
	if out, err := exec.Command("import", "-display", display, "-window", "root", shot).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := image.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("decode the screenshot: %v", err)
	}
	at := func(b ScreenBox, fx, fy float32) color.NRGBA {
		return color.NRGBAModel.Convert(img.At(int(b.X+b.W*fx), int(b.Y+b.H*fy))).(color.NRGBA)
	}
	if got := at(sc.Header.Box, 0.5, 0.05); !near(got, color.NRGBA{0x1c, 0x20, 0x28, 0xff}) {
		t.Errorf("screenshot: header background %v at the header's place", got)
	}
	for _, tl := range sc.Tiles {
		wantBg, _ := statusColors(localapi.SlotStatus(tl.Status))
		if got := at(tl.Box, 0.012, 0.5); !near(got, wantBg) {
			t.Errorf("screenshot: tile %s (%s) is %v, want %v", tl.Name, tl.Status, got, wantBg)
		}
	}

	// QA: the signed export of the work order, written by the kiosk.
	h.ui(func() { test.Tap(h.k.header.qa) })
	h.waitFor("the QA view", func() bool { return h.k.qa != nil && len(h.k.qa.rows) == 17 })
	out := t.TempDir()
	h.ui(func() {
		h.k.qa.path.SetText(out)
		test.Tap(h.k.qa.export)
	})
	h.waitFor("the export", func() bool { return strings.HasPrefix(h.k.qa.msg.Text, "Signed export written") })
	folders, _ := filepath.Glob(filepath.Join(out, "station-export-*"))
	if len(folders) != 1 {
		t.Fatalf("export folders = %q, want one", folders)
	}
	if v, err := exec.Command(bin, "export", "verify", folders[0]).CombinedOutput(); err != nil {
		t.Fatalf("station export verify: %v\n%s", err, v)
	}
	f, err = os.Open(filepath.Join(folders[0], "devices.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	col := func(name string) int {
		i := slices.Index(rows[0], name)
		if i < 0 {
			t.Fatalf("devices.csv has no column %s", name)
		}
		return i
	}
	s03, _ := h.k.m.slot("S03")
	for _, r := range rows[1:] {
		dev, slot := r[col("hardware_id")], r[col("slot")]
		wantOp, wantBy, wantReason := "Operator", "", ""
		switch dev {
		case new13.Device:
			wantOp = "Supervisor"
		case s03.Device:
			wantBy, wantReason = "Supervisor", shiftOverride
		}
		if got := r[col("operator")]; got != wantOp {
			t.Errorf("device %s (%s): operator %q, want %q", dev, slot, got, wantOp)
		}
		if r[col("override_by")] != wantBy || r[col("override_reason")] != wantReason {
			t.Errorf("device %s (%s): override %q %q, want %q %q", dev, slot, r[col("override_by")], r[col("override_reason")], wantBy, wantReason)
		}
		if r[col("result")] == "done" && r[col("attempts")] != "1" {
			t.Errorf("device %s (%s) passed at its first run: attempts %s, want 1", dev, slot, r[col("attempts")])
		}
	}
	tr, err := os.ReadFile(filepath.Join(folders[0], "transcripts", strings.ReplaceAll(s03.Device, ":", "_")+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Operator signed out", "Supervisor signed in", "reason: " + shiftOverride} {
		if !strings.Contains(string(tr), w) {
			t.Errorf("S03's transcript lacks %q:\n%s", w, tr)
		}
	}
}
