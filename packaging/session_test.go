package packaging

import (
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

	"github.com/station-dev/station/fixtures/proctest"
)

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
	ctx := testContext(t)
	root := repoRoot(t)
	kiosk := filepath.Join(t.TempDir(), "station-kiosk")
	args := append([]string{"build", "-o", kiosk}, proctest.BuildFlags()...)
	build := exec.CommandContext(ctx, "go", append(args, "./ui/cmd/station-kiosk")...)
	build.Dir = root
	if out, err := proctest.Output(build); err != nil {
		t.Fatalf("build the kiosk: %v\n%s", childErr(ctx, err), out)
	}
	const width, height = 1024, 768
	display := proctest.StartXvfb(ctx, t, width, height)
	windows := func() string {
		out, _ := proctest.Output(exec.CommandContext(ctx, "xwininfo", "-display", display, "-root", "-tree"))
		return string(out)
	}

	sessionCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// No daemon answers on the socket: the kiosk shows that it is
	// reconnecting, which is all the session needs. The session's kiosks
	// are in its process group, and end with it.
	cmd := exec.CommandContext(sessionCtx, "sh", filepath.Join(root, "packaging/kiosk/station-kiosk-session"),
		"--api", "unix:"+filepath.Join(t.TempDir(), "api.sock"))
	cmd.Env = append(os.Environ(), "DISPLAY="+display, "STATION_KIOSK="+kiosk, "LIBGL_ALWAYS_SOFTWARE=1")
	var logs proctest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	session := proctest.Start(t, cmd)

	// waitKiosk waits for one kiosk process, other than old, with a window
	// the size of the screen.
	waitKiosk := func(what string, old int) int {
		t.Helper()
		for {
			pids := processesOf(kiosk)
			if len(pids) == 1 && pids[0] != old {
				for _, line := range strings.Split(windows(), "\n") {
					if strings.Contains(line, `"Station"`) && strings.Contains(line, fmt.Sprintf("%dx%d+0+0", width, height)) {
						return pids[0]
					}
				}
			}
			select {
			case <-session.Done():
				t.Fatalf("%s: the session ended (%v)\n%s", what, session.Err(), logs.String())
			case <-sessionCtx.Done():
				t.Fatalf("%s: no full-screen kiosk window; kiosks %v; windows:\n%s\nlogs:\n%s", what, pids, windows(), logs.String())
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
	case <-session.Done():
		if err := session.Err(); err != nil {
			t.Errorf("the session ended with %v after the kiosk was closed\n%s", err, logs.String())
		}
	case <-sessionCtx.Done():
		t.Fatalf("the session did not end after the kiosk was closed\n%s", logs.String())
	}
	if pids := processesOf(kiosk); len(pids) != 0 {
		t.Errorf("kiosks still running after the session ended: %v", pids)
	}
}
