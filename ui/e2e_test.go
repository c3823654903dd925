package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/station-dev/station/station/localapi"
)

// stationBinary builds the station program once per test binary.
func stationBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.TempDir(), "station-kiosk-e2e-"+strings.ReplaceAll(t.Name(), "/", "-"))
	cmd := exec.Command("go", "build", "-o", bin, "github.com/station-dev/station/station/cmd/station")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build station: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(bin) })
	return bin
}

// serveProcess is "station serve --simulate" in its own process.
type serveProcess struct {
	cmd  *exec.Cmd
	done chan error
	log  *bytes.Buffer
}

// startServe starts the daemon with simulated devices in dir and waits
// for its startup line.
func startServe(t *testing.T, bin, dir string, args ...string) *serveProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--dir", dir, "--socket", filepath.Join(dir, "api.sock"), "--json"}, args...)...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, done: make(chan error, 1), log: &logs}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	if err != nil {
		t.Fatalf("station serve printed no startup line: %v\n%s", err, logs.String())
	}
	var info struct{ Socket string }
	if err := json.Unmarshal([]byte(line), &info); err != nil || info.Socket == "" {
		t.Fatalf("station serve printed %q", line)
	}
	return p
}

func (p *serveProcess) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.cmd.Process = nil
	}
}

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
	h.ui(func() { test.Type(h.k.scanner, "WO-DEMO-0001\n") })
	h.waitFor("the work order in the header", func() bool {
		return h.k.header.workOrder.Text == "WO-DEMO-0001" && h.k.run == localapi.RunReady
	})
	h.ui(func() { test.Tap(h.k.start) })
	h.waitFor("every slot passed", h.allPassed)
	h.ui(func() {
		if got := h.k.header.done.Text; !strings.HasPrefix(got, "4 / ") {
			t.Errorf("header done = %q, want 4 of the quantity", got)
		}
		for _, name := range h.k.order {
			if tl := h.tile(name); !strings.Contains(tl.status.Text, "PASSED") {
				t.Errorf("tile %s says %q", name, tl.status.Text)
			}
		}
	})

	// QA: find the work order's devices and export their logs.
	h.ui(func() { test.Tap(h.k.header.qa) })
	h.waitFor("the devices in the QA view", func() bool { return h.k.qa != nil && len(h.k.qa.rows) == 4 })
	out := filepath.Join(t.TempDir(), "export.jsonl")
	h.ui(func() {
		h.k.qa.path.SetText(out)
		test.Tap(h.k.qa.export)
	})
	h.waitFor("the export", func() bool { return strings.HasPrefix(h.k.qa.msg.Text, "Exported") })
	b, err := os.ReadFile(out)
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
	h.ui(func() { test.Tap(h.k.start) })
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
	h.ui(func() {
		if got := h.k.header.workOrder.Text; got != "WO-DEMO-0001" {
			t.Errorf("after the restart the header shows work order %q, want WO-DEMO-0001", got)
		}
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
