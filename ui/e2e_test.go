package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/station/localapi"
)

// stationBinary builds the station program once per test binary.
func stationBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.TempDir(), "station-kiosk-e2e-"+strings.ReplaceAll(t.Name(), "/", "-"))
	// Built as scripts/demo builds it (no -race: the daemon runs the
	// simulated devices, which the race detector would slow several
	// times), so that both share the build cache.
	cmd := exec.Command("go", "build", "-o", bin, "github.com/station-dev/station/station/cmd/station")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build station: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(bin) })
	return bin
}

// serveProcess is "station serve --simulate" in its own process.
type serveProcess struct {
	p   *proctest.Process
	log *proctest.Buffer
	// control is the simulation's control socket (unplug N, plug N).
	control string
}

// startServe starts the daemon with simulated devices in dir and waits
// for its startup line. The daemon runs in its own process group and
// dies with the test binary; its logs are shown if the test fails.
func startServe(t *testing.T, bin, dir string, args ...string) *serveProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--dir", dir, "--socket", filepath.Join(dir, "api.sock"), "--json"}, args...)...)
	logs := &proctest.Buffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{p: proctest.Start(t, cmd), log: logs}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("station serve's log:\n%s", logs.String())
		}
	})
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	// Keep reading what it prints, into its log, so that it never blocks
	// on a full pipe and a failure shows it.
	go io.Copy(logs, r)
	if err != nil {
		t.Fatalf("station serve printed no startup line: %v\n%s", err, logs.String())
	}
	var info struct{ Socket, Control string }
	if err := json.Unmarshal([]byte(line), &info); err != nil || info.Socket == "" {
		t.Fatalf("station serve printed %q", line)
	}
	p.control = info.Control
	return p
}

// command sends one line to the simulation's control socket ("plug 12")
// and fails the test unless it answers ok.
func (p *serveProcess) command(t *testing.T, line string) {
	t.Helper()
	c, err := net.Dial("unix", p.control)
	if err != nil {
		t.Fatalf("simulation control socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(reply) != "ok" {
		t.Fatalf("simulation %q = %q, %v", line, reply, err)
	}
}

func (p *serveProcess) kill() { p.p.Kill() }

// e2eKiosk is the kiosk, in Fyne's test driver, on a real daemon's socket.
func e2eKiosk(t *testing.T, sock string) *harness {
	t.Helper()
	client, err := localapi.NewClient("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	return runKiosk(t, client, Options{})
}

// allPassed reports that every tile shows a passed device.
func (h *harness) allPassed() bool {
	if len(h.k.order) == 0 {
		return false
	}
	for _, name := range h.k.order {
		if s, ok := h.k.m.slot(name); !ok || s.Status != localapi.SlotPassed {
			return false
		}
	}
	return true
}

// tapWhenOn taps a command's button once the daemon takes the command
// (its state, which turns the button on, may come a moment after the
// answer to the command before).
func (h *harness) tapWhenOn(what string, a *action) {
	h.t.Helper()
	h.waitFor(what+" on", func() bool { return !a.Disabled() })
	h.ui(func() { test.Tap(a.btn) })
}

// signInWithPIN types the PIN on the kiosk's pad.
func (h *harness) signInWithPIN(pin string) {
	h.ui(func() { test.Tap(h.k.header.signIn) })
	h.waitFor("the PIN pad", func() bool { return h.k.pinPad != nil && h.overlay() != nil })
	h.ui(func() {
		for _, r := range pin {
			test.Tap(h.k.pinPad.digits[r-'0'])
		}
		test.Tap(h.k.pinPad.ok)
	})
	h.waitFor("the operator in the header", func() bool { return h.k.header.signIn.Text == "Sign out" })
}

// TestEndToEnd drives the kiosk against a real "station serve" with four
// simulated devices: sign in with the PIN pad, scan the work order, Start,
// every slot passes, and the QA view exports the devices' logs.
func TestEndToEnd(t *testing.T) {
	bin := stationBinary(t)
	dir := t.TempDir()
	startServe(t, bin, dir, "--simulate", "4", "--idle")
	h := e2eKiosk(t, filepath.Join(dir, "api.sock"))

	h.signInWithPIN("1234")
	h.ui(func() { h.scan("WO-DEMO-0001\n") })
	h.waitFor("the work order in the header", func() bool {
		return h.k.header.workOrder.Text == "WO-DEMO-0001" && h.k.run == localapi.RunReady
	})
	h.tapWhenOn("Start", h.k.start)
	// A tile turns PASSED with the device's last step; the header counts
	// the device once the daemon has recorded its result, a moment later.
	h.waitFor("every slot passed and the header counting 4 done", func() bool {
		return h.allPassed() && strings.HasPrefix(h.k.header.done.Text, "4 / ")
	})
	h.ui(func() {
		for _, name := range h.k.order {
			if tl := h.tile(name); tl.status.Text != "PASSED — REMOVE BOARD" {
				t.Errorf("tile %s says %q", name, tl.status.Text)
			}
		}
	})

	// QA: find the work order's devices and write their signed export.
	h.ui(func() { test.Tap(h.k.header.qa) })
	h.waitFor("the devices in the QA view", func() bool { return h.k.qa != nil && len(h.k.qa.rows) == 4 })
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
	if verify, err := exec.Command(bin, "export", "verify", folders[0]).CombinedOutput(); err != nil {
		t.Fatalf("station export verify %s: %v\n%s", folders[0], err, verify)
	}
	b, err := os.ReadFile(filepath.Join(folders[0], "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e struct{ Device, Step, Status string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if e.Step == "done" && e.Status == "passed" {
			done[e.Device]++
		}
	}
	if len(done) != 4 {
		t.Errorf("the export shows %d devices done (%v), want 4", len(done), done)
	}
	token, err := os.ReadFile(filepath.Join(dir, "simulation", "token"))
	if err != nil {
		t.Fatal(err)
	}
	if tok := strings.TrimSpace(string(token)); len(tok) < 16 || bytes.Contains(b, []byte(tok)) {
		t.Errorf("the export holds the activation token (or the token file is empty)")
	}
}

// TestKioskFollowsDaemonRestart kills "station serve" with SIGKILL while
// its devices are being flashed and starts it again: the kiosk says it is
// reconnecting, then shows the same work order and slots, the run goes on,
// and no device is lost or run twice.
func TestKioskFollowsDaemonRestart(t *testing.T) {
	bin := stationBinary(t)
	dir := t.TempDir()
	args := []string{"--simulate", "4", "--image-size", "1MiB"}
	serve := startServe(t, bin, dir, args...)
	sock := filepath.Join(dir, "api.sock")
	h := e2eKiosk(t, sock)
	h.signInWithPIN("1234")
	h.tapWhenOn("Start", h.k.start)
	h.waitFor("devices being flashed", func() bool {
		for _, name := range h.k.order {
			if s, _ := h.k.m.slot(name); s.Step == "flash" && s.Progress > 0 {
				return true
			}
		}
		return false
	})

	serve.kill()
	h.waitFor("the reconnecting banner", func() bool { return !h.k.connected })
	startServe(t, bin, dir, args...)
	h.waitFor("the daemon back", func() bool { return h.k.connected })
	// The daemon serves its socket before it has restored the run (it
	// loads the work order again, from the DMS): the kiosk may first show
	// no work order, then the restored one.
	h.waitFor("the work order restored in the header", func() bool { return h.k.header.workOrder.Text == "WO-DEMO-0001" })
	h.ui(func() {
		if len(h.k.order) != 4 {
			t.Errorf("after the restart the kiosk shows %d slots, want 4", len(h.k.order))
		}
	})
	h.waitFor("every slot passed after the restart", h.allPassed)

	// Every device was activated and finished exactly once.
	client, err := localapi.NewClient("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.Export(ctx, localapi.DeviceQuery{WorkOrder: "WO-DEMO-0001"}, &export); err != nil {
		t.Fatal(err)
	}
	activated, done := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(export.String()), "\n") {
		var e struct{ Device, Step, Status string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if e.Status == "passed" && e.Step == "activate" {
			activated[e.Device]++
		}
		if e.Status == "passed" && e.Step == "done" {
			done[e.Device]++
		}
	}
	if len(done) != 4 || len(activated) != 4 {
		t.Fatalf("%d devices done and %d activated, want 4 of each", len(done), len(activated))
	}
	for dev, n := range done {
		if n != 1 || activated[dev] != 1 {
			t.Errorf("device %s: done %d times, activated %d times; want once each", dev, n, activated[dev])
		}
	}
}

// readmeLine returns the command of README.md that starts with prefix.
func readmeLine(t *testing.T, prefix string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			if i := strings.Index(l, " #"); i >= 0 {
				l = l[:i]
			}
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("README.md shows no command starting with %q", prefix)
	return ""
}

// TestREADMEQuickStart runs README.md's "try both with no hardware" as
// shown: station serve with simulated slots on a socket, then the kiosk
// through go run on that socket, in a real X server. The kiosk must open
// its window and draw the daemon's state. The socket lives in the test's
// folder instead of /tmp; the kiosk also gets --stats, to report what it
// received when it is closed.
func TestREADMEQuickStart(t *testing.T) {
	for _, tool := range []string{"Xvfb", "xwininfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/test installs it): %v", tool, err)
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "station.sock")
	serveLine := readmeLine(t, "station serve --simulate")
	kioskLine := readmeLine(t, "go run ./ui/cmd/station-kiosk")
	serveArgs := strings.Fields(strings.ReplaceAll(serveLine, "/tmp/station.sock", sock))
	kioskArgs := strings.Fields(strings.ReplaceAll(kioskLine, "/tmp/station.sock", sock))

	// go run builds the kiosk first, which on a cold build cache takes
	// minutes (Fyne's C parts): built here beforehand, bound only by the
	// test binary's deadline, so that the wait below is for the kiosk to
	// start and connect, not for the compiler.
	kioskBinary(t, dir)

	// station serve, as shown: it makes its work folder in its working
	// directory.
	serve := exec.Command(stationBinary(t), serveArgs[1:]...)
	serve.Dir = dir
	logs := &proctest.Buffer{}
	serve.Stdout, serve.Stderr = logs, logs
	served := proctest.Start(t, serve)
	client, err := localapi.NewClient("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var st localapi.State
	for {
		if st, err = client.State(ctx); err == nil {
			break
		}
		select {
		case <-served.Done():
			t.Fatalf("%s exited: %v\n%s", serveLine, served.Err(), logs.String())
		case <-ctx.Done():
			t.Fatalf("%s: no state on %s: %v\n%s", serveLine, sock, err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(st.Slots) != 16 {
		t.Fatalf("%s shows %d slots, want 16", serveLine, len(st.Slots))
	}

	display := proctest.StartXvfb(ctx, t, 1024, 768)
	stats := filepath.Join(dir, "kiosk-stats.json")
	kiosk := exec.Command(kioskArgs[0], append(kioskArgs[1:], "--stats", stats)...)
	kiosk.Dir = ".." // the repository, where ./ui/cmd/station-kiosk is
	// go run builds with the test binary's own flags (-race under
	// scripts/test), so that the kiosk comes from the build cache.
	kiosk.Env = proctest.GoEnv(append(os.Environ(), "DISPLAY="+display))
	klogs := &proctest.Buffer{}
	kiosk.Stdout, kiosk.Stderr = klogs, klogs
	k := proctest.Start(t, kiosk)

	// The window, once go run has built and started the kiosk, and the
	// daemon's state drawn in it (the kiosk logs each whole state it draws).
	for {
		out, _ := exec.CommandContext(ctx, "xwininfo", "-display", display, "-root", "-tree").Output()
		if strings.Contains(string(out), `"Station"`) && strings.Contains(klogs.String(), "showing the station's state") {
			break
		}
		select {
		case <-k.Done():
			t.Fatalf("%s exited: %v\n%s", kioskLine, k.Err(), klogs.String())
		case <-ctx.Done():
			t.Fatalf("%s opened no window named Station, or did not connect:\n%s", kioskLine, klogs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Closed as at log-out: SIGTERM to the kiosk (go run's child), which
	// writes its stats; go run then ends with it.
	for _, pid := range childrenOf(kiosk.Process.Pid) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if err := k.Wait(ctx); err != nil {
		t.Logf("%s after SIGTERM: %v", kioskLine, err)
	}
	b, err := os.ReadFile(stats)
	if err != nil {
		t.Fatalf("the kiosk wrote no stats: %v\n%s", err, klogs.String())
	}
	var got struct {
		Events      int64 `json:"events"`
		FullRedraws int64 `json:"full_redraws"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Events == 0 || got.FullRedraws == 0 {
		t.Errorf("the kiosk received %d events and drew the whole state %d times, want both > 0:\n%s", got.Events, got.FullRedraws, klogs.String())
	}
}

// kioskBinary builds station-kiosk into dir with the test binary's own
// build flags, so that it comes from the build cache the test's build
// filled, and returns its path.
func kioskBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "station-kiosk")
	build := exec.CommandContext(t.Context(), "go", append(append([]string{"build"}, proctest.BuildFlags()...),
		"-o", bin, "./ui/cmd/station-kiosk")...)
	build.Dir = ".."
	if out, err := proctest.Output(build); err != nil {
		t.Fatalf("build the kiosk: %v\n%s", err, out)
	}
	return bin
}

// childrenOf returns the ids of pid's child processes, whichever of its
// threads started them.
func childrenOf(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(w); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}
