package packaging

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startXvfb starts a real X server on a free display and returns the
// display's name (":N").
func startXvfb(t *testing.T, width, height int) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", width, height), "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if err != nil {
		t.Fatalf("Xvfb gave no display: %v", err)
	}
	return ":" + strings.TrimSpace(line)
}

// processesOf returns the ids of the processes running the program at path.
func processesOf(path string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestKioskSession runs the package's X session script in a real X server
// (Xvfb): the kiosk fills the screen, comes back when it crashes, and the
// session ends when the kiosk is closed on purpose.
func TestKioskSession(t *testing.T) {
	for _, tool := range []string{"Xvfb", "xwininfo", "go"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed")
	}
	root := repoRoot(t)
	kiosk := filepath.Join(t.TempDir(), "station-kiosk")
	build := exec.Command("go", "build", "-o", kiosk, "./ui/cmd/station-kiosk")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the kiosk: %v\n%s", err, out)
	}
	const width, height = 1024, 768
	display := startXvfb(t, width, height)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// No daemon answers on the socket: the kiosk shows that it is
	// reconnecting, which is all the session needs.
	session := exec.CommandContext(ctx, "sh", filepath.Join(root, "packaging/kiosk/station-kiosk-session"),
		"--api", "unix:"+filepath.Join(t.TempDir(), "api.sock"))
	session.Env = append(os.Environ(), "DISPLAY="+display, "STATION_KIOSK="+kiosk, "LIBGL_ALWAYS_SOFTWARE=1")
	var logs strings.Builder
	session.Stdout, session.Stderr = &logs, &logs
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- session.Wait() }()

	// waitKiosk waits for one kiosk process, other than old, with a window
	// the size of the screen.
	waitKiosk := func(what string, old int) int {
		t.Helper()
		for {
			pids := processesOf(kiosk)
			if len(pids) == 1 && pids[0] != old {
				out, _ := exec.Command("xwininfo", "-display", display, "-root", "-tree").Output()
				for _, line := range strings.Split(string(out), "\n") {
					if strings.Contains(line, `"Station"`) && strings.Contains(line, fmt.Sprintf("%dx%d+0+0", width, height)) {
						return pids[0]
					}
				}
			}
			select {
			case err := <-ended:
				t.Fatalf("%s: the session ended (%v)\n%s", what, err, logs.String())
			case <-ctx.Done():
				out, _ := exec.Command("xwininfo", "-display", display, "-root", "-tree").Output()
				t.Fatalf("%s: no full-screen kiosk window; kiosks %v; windows:\n%s\nlogs:\n%s", what, pids, out, logs.String())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	first := waitKiosk("start", 0)

	// A crash: the session starts the kiosk again.
	syscall.Kill(first, syscall.SIGKILL)
	second := waitKiosk("after a crash", first)

	// Closed on purpose (SIGTERM, as at log-out): the session ends, cleanly.
	syscall.Kill(second, syscall.SIGTERM)
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("the session ended with %v after the kiosk was closed\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Fatalf("the session did not end after the kiosk was closed\n%s", logs.String())
	}
	if pids := processesOf(kiosk); len(pids) != 0 {
		t.Errorf("kiosks still running after the session ended: %v", pids)
	}
}
