package station

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/station/internal/testkit"
	"github.com/station-dev/station/station/localapi"
)

// TestServeSimulated runs "station serve --simulate" and drives it as the
// kiosk does, over its unix socket, and as the operator's hands do, over
// the simulation's control socket.
func TestServeSimulated(t *testing.T) {
	dir := t.TempDir()
	ctx, line := startServe(t, "--simulate", "2", "--dir", dir, "--json", "--plug-delay", "300ms")
	var info struct {
		Socket, Control, Station string
		WorkOrder                string `json:"work_order"`
		Slots                    int
	}
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		t.Fatalf("startup line %q: %v", line, err)
	}
	if info.Slots != 2 || info.Socket != filepath.Join(dir, "api.sock") || info.WorkOrder == "" {
		t.Fatalf("startup line = %+v; want 2 slots, socket in %s, a work order", info, dir)
	}
	c := signInAndStart(ctx, t, info.Socket)
	st := follow(t, c, "both devices passed", func(st localapi.State) bool {
		return len(st.Slots) == 2 && st.Slots[0].Status == localapi.SlotPassed && st.Slots[1].Status == localapi.SlotPassed
	})
	first := st.Slots[0].Device

	// A new device in slot 0 starts by itself.
	ctl, err := net.Dial("unix", info.Control)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if _, err := ctl.Write([]byte("plug 0\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(ctl).ReadString('\n')
	if err != nil || strings.TrimSpace(reply) != "ok" {
		t.Fatalf("control plug 0 = %q, %v; want ok", reply, err)
	}
	st = follow(t, c, "the new device passed", func(st localapi.State) bool {
		return st.Slots[0].Status == localapi.SlotPassed && st.Slots[0].Device != first
	})
	if st.Counts.Done != 3 {
		t.Errorf("done = %d, want 3", st.Counts.Done)
	}
}

// follow reads the daemon's events until cond holds on its state.
func follow(t *testing.T, c *localapi.Client, what string, cond func(localapi.State) bool) localapi.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range c.Watch(ctx) {
		st, err := c.State(ctx)
		if err == nil && cond(st) {
			return st
		}
	}
	t.Fatalf("waiting for %s: timed out", what)
	return localapi.State{}
}

func TestServeCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, ExitUsage, "--config is required"},
		{[]string{"serve", "--config", filepath.Join(t.TempDir(), "none.yaml")}, ExitProblem, "read station config"},
		{[]string{"serve", "--config", "x.yaml", "--cycle", "1s"}, ExitProblem, "read station config"},
		{[]string{"serve", "--simulate", "0", "--cycle", "1s"}, ExitUsage, "--config is required"},
	}
	for _, tt := range tests {
		_, _, err := runMain(t, tt.args...)
		if Code(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("station %s = %v (exit %d), want exit %d with %q", strings.Join(tt.args, " "), err, Code(err), tt.code, tt.want)
		}
	}
}

// startServe runs "station serve args..." in this process until the test
// ends (then it must end without an error), and returns a context that
// ends with it and its startup line.
func startServe(t *testing.T, args ...string) (context.Context, string) {
	t.Helper()
	pr, pw := io.Pipe()
	var errb testkit.Buffer
	m := &Main{Stdout: pw, Stderr: &errb, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, append([]string{"serve"}, args...))
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("station serve = %v\n%s", err, errb.String())
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("station serve printed nothing: %v\n%s", err, errb.String())
	}
	go io.Copy(io.Discard, pr)
	return ctx, line
}

// signInAndStart signs the demo operator in at a simulated station's
// socket, waits for the simulation's work order (it loads by itself) and
// starts the run.
func signInAndStart(ctx context.Context, t *testing.T, socket string) *localapi.Client {
	t.Helper()
	c, err := localapi.NewClient("unix:"+socket, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SignIn(ctx, localapi.SignInRequest{PIN: "1234"}); err != nil {
		t.Fatalf("SignIn(demo operator) = %v", err)
	}
	follow(t, c, "work order loaded", func(st localapi.State) bool { return st.Run == localapi.RunReady })
	if _, err := c.Start(ctx); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	return c
}
