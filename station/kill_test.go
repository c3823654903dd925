package station

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/journal"
)

// buildStation builds the station binary once per test binary run.
func buildStation(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.TempDir(), fmt.Sprintf("station-test-%d", os.Getpid()))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	args := append([]string{"build", "-o", bin}, proctest.BuildFlags()...)
	cmd := exec.Command("go", append(args, "./cmd/station")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build station: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(bin) })
	return bin
}

// startSim starts "station sim" with n devices in dir and returns when
// its fixture file is written.
func startSim(t *testing.T, bin, dir string, n int) {
	t.Helper()
	cmd := exec.Command(bin, "sim", "--count", fmt.Sprint(n), "--dir", dir, "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	proctest.Isolate(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("station sim printed nothing: %v", err)
	}
	var v struct{ Fixture string }
	if err := json.Unmarshal([]byte(line), &v); err != nil || v.Fixture == "" {
		t.Fatalf("station sim printed %q", line)
	}
}

// countPassed counts the passed events of a step, reading the journal
// file while another process writes it.
func countPassed(t *testing.T, db *sql.DB, step string) int {
	t.Helper()
	var n int
	err := db.QueryRow("SELECT count(*) FROM events WHERE step = ? AND status = 'passed'", step).Scan(&n)
	// The station creates the file and its schema after it starts.
	if err != nil && !strings.Contains(err.Error(), "no such table") && !strings.Contains(err.Error(), "unable to open") {
		t.Fatal(err)
	}
	return n
}

func TestRunResumesAfterSIGKILL(t *testing.T) {
	const devices = 6
	ctx := context.Background()
	bin := buildStation(t)
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	startSim(t, bin, simDir, devices)

	// An embedded DMS seeded with the work order, as an administrator
	// would; the work order file leaves the token out.
	env, err := setupDemoDMS(ctx, dir, devices, 128<<10)
	if err != nil {
		t.Fatal(err)
	}
	journalPath := filepath.Join(dir, "journal.db")
	args := []string{"run", "--work-order", filepath.Join(dir, "work-order.json"), "--token-file", filepath.Join(dir, "token"),
		"--fixture", filepath.Join(simDir, "fixture.yaml"), "--dms", "sqlite:" + filepath.Join(dir, "dms.db"),
		"--journal", journalPath, "--station", "line-1", "--labels", filepath.Join(dir, "labels"),
		"--parallel", "2", "--json"}

	// First run: killed with SIGKILL once three devices are activated,
	// while others are still being flashed.
	run := exec.Command(bin, args...)
	run.Stderr = os.Stderr
	proctest.Isolate(run)
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	ro := openReadOnly(t, journalPath)
	waitFor(t, "three activations", waited, func() bool { return countPassed(t, ro, "activate") >= 3 })
	if err := run.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-waited
	doneBefore := countPassed(t, ro, "done")
	if doneBefore >= devices {
		t.Fatalf("all %d devices were done before the kill; the test killed nothing mid-batch", devices)
	}
	ro.Close()
	if n := interrupted(t, journalPath); n == 0 {
		t.Fatal("the kill interrupted no step; the test proves nothing")
	}

	// Second run: carries on and finishes every device.
	second := exec.Command(bin, args...)
	proctest.Isolate(second)
	out, err := second.Output()
	if err != nil {
		t.Fatalf("second station run = %v\n%s", err, out)
	}
	t.Logf("second run: %s", out)
	var sum struct {
		Passed      int
		AlreadyDone int `json:"already_done"`
		Failed      int
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("second run printed %q: %v", out, err)
	}
	if sum.Failed != 0 || sum.Passed+sum.AlreadyDone != devices || sum.AlreadyDone != doneBefore {
		t.Errorf("second run: %d passed, %d already done, %d failed; want %d done before the kill left alone and the rest passed",
			sum.Passed, sum.AlreadyDone, sum.Failed, doneBefore)
	}

	j, err := journal.Open(ctx, journalPath, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.IntegrityCheck(ctx); err != nil {
		t.Fatalf("PRAGMA integrity_check: %v", err)
	}
	states, err := j.Devices(ctx, "WO-DEMO-0001")
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != devices {
		t.Fatalf("journal knows %d devices, want %d", len(states), devices)
	}
	for _, st := range states {
		if st.Result != journal.ResultDone || st.DoneCount != 1 || st.ActivateCount != 1 {
			t.Errorf("device %s: %s, done %d times, activated %d times; want done exactly once", st.Device, st.Result, st.DoneCount, st.ActivateCount)
		}
		dev, err := env.Device(ctx, flasher.HardwareID(st.Device))
		if err != nil {
			t.Fatal(err)
		}
		claims := 0
		for _, e := range dev.History {
			if e.Kind == dms.EventActivated {
				claims++
			}
		}
		if claims != 1 {
			t.Errorf("DMS activated device %s %d times, want 1", st.Device, claims)
		}
	}
}

// setupDemoDMS seeds the demo's embedded DMS in dir and returns its
// service; the work order and token files are written next to it.
func setupDemoDMS(ctx context.Context, dir string, devices, imageSize int) (*dms.Service, error) {
	seed, err := seedDemo(ctx, demoSpec{dir: dir, devices: devices, imageSize: imageSize, baud: 921600,
		locks: []string{"JTAG_DISABLE"}}, nil)
	if err != nil {
		return nil, err
	}
	// The test reads the DMS after the station's runs wrote it; SQLite
	// shares the file between processes.
	go func() { <-ctx.Done(); seed.store.Close() }()
	return seed.svc, nil
}

// interrupted counts the devices the journal shows in the middle of a
// step.
func interrupted(t *testing.T, path string) int {
	t.Helper()
	j, err := journal.Open(context.Background(), path, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st, err := j.WorkOrder(context.Background(), "WO-DEMO-0001")
	if err != nil {
		t.Fatal(err)
	}
	return st.Interrupted
}
