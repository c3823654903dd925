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
	"sync"
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
		t.Fatalf("last station run = %v\n%s", err, out)
	}
	t.Logf("second run: %s", out)
	var sum struct {
		Passed      int
		AlreadyDone int `json:"already_done"`
		Failed      int
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("last run printed %q: %v", out, err)
	}
	if sum.Failed != 0 || sum.Passed+sum.AlreadyDone != devices || sum.AlreadyDone != doneBefore {
		t.Errorf("last run: %d passed, %d already done, %d failed; want %d done before the kill left alone and the rest passed",
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

// killFigures adds up what the kill harness saw.
type killFigures struct {
	cases, kills, devices, lost, doubled int
}

// killAt names a write to die after: the at-th of kind point in a run
// (the points are listed in killswitch.go).
type killAt struct {
	point string
	at    int
}

func (k killAt) String() string { return fmt.Sprintf("%s:%d", k.point, k.at) }

// TestKillAtEveryWrite is the kill harness. For each kind of durable
// write the station makes (a step's passed record in the journal, a claim,
// a lock record and a completion at the DMS, a batch of journal events
// stored by the DMS), it runs "station run" on 8 simulated ESP devices
// against a "station dms" over HTTP, has it SIGKILL itself right after the
// chosen write (the STATION_TEST_KILL hook, killswitch.go), runs it again
// to completion and checks: every device done exactly once in the journal
// and at the DMS, one claim each, the token's count equal to the devices,
// the quantity never exceeded, the same events in the journal and at the
// DMS, the journal's integrity. The last case kills run after run, at a
// different write each time, before the run that finishes.
func TestKillAtEveryWrite(t *testing.T) {
	const devices = 8
	bin := buildStation(t)
	cases := [][]killAt{
		{{"journal:identify", 3}},
		{{"journal:flash", 3}},
		{{"dms:activate", 3}},
		{{"journal:activate", 3}},
		{{"dms:lock", 3}},
		{{"journal:lock", 3}},
		{{"journal:label", 3}},
		{{"dms:done", 3}},
		{{"journal:done", 3}},
		{{"sync", 1}},
		{{"dms:activate", 2}, {"sync", 1}, {"dms:lock", 2}, {"dms:done", 2}, {"dms:done", 1}},
	}
	var (
		mu    sync.Mutex
		total killFigures
	)
	// Three cases at a time: each is mostly waiting on its simulated
	// serial lines and processes, so they overlap well on 2 cores.
	slots := make(chan struct{}, 3)
	t.Run("cases", func(t *testing.T) {
		for _, kills := range cases {
			name := kills[0].point
			if len(kills) > 1 {
				name = "chain"
			}
			t.Run(strings.ReplaceAll(name, ":", "-"), func(t *testing.T) {
				t.Parallel()
				slots <- struct{}{}
				defer func() { <-slots }()
				f := killAndResume(t, bin, devices, kills)
				t.Logf("%v: kills %d, devices %d, lost %d, doubled %d", kills, f.kills, f.devices, f.lost, f.doubled)
				mu.Lock()
				defer mu.Unlock()
				total.cases++
				total.kills += f.kills
				total.devices += f.devices
				total.lost += f.lost
				total.doubled += f.doubled
			})
		}
	})
	t.Logf("kill harness: %d cases, kills %d, devices %d, lost %d, doubled %d",
		total.cases, total.kills, total.devices, total.lost, total.doubled)
}

// killAndResume runs one case of the kill harness: a batch killed right
// after each write of kills in turn, run after run, then run again to
// completion.
func killAndResume(t *testing.T, bin string, devices int, kills []killAt) killFigures {
	t.Helper()
	ctx := context.Background()
	var f killFigures
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	startSim(t, bin, simDir, devices)
	seed, err := seedDemo(ctx, demoSpec{dir: dir, devices: devices, imageSize: 16 << 10, baud: 921600,
		locks: []string{"JTAG_DISABLE"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := seed.svc.CreateKey(ctx, dms.Key{Role: dms.RoleStation, Station: "line-1", Name: "line 1"})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "station.key")
	if err := os.WriteFile(keyFile, []byte(key.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	woID := seed.wo.ID
	seed.store.Close()
	dbPath := filepath.Join(dir, "dms.db")
	addr := freeAddr(t)
	startDMS(t, bin, dbPath, addr, filepath.Join(dir, "dms.log"))

	journalPath := filepath.Join(dir, "station", "journal.db")
	args := []string{"run", "--dms", "http://" + addr, "--work-order", woID,
		"--key-file", keyFile, "--token-file", filepath.Join(dir, "token"),
		"--fixture", filepath.Join(simDir, "fixture.yaml"), "--journal", journalPath, "--station", "line-1",
		"--labels", filepath.Join(dir, "labels"), "--json", "--sync-wait", "2m"}
	runLog := filepath.Join(dir, "run.log")
	run := func(env ...string) (*exec.Cmd, string, error) {
		logf, err := os.OpenFile(runLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		var stdout strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = &stdout, logf
		proctest.Isolate(cmd)
		err = cmd.Run()
		return cmd, stdout.String(), err
	}

	// Each run but the last kills itself at its write.
	for _, k := range kills {
		cmd, _, err := run(killEnv + "=" + k.String())
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("station run with %s=%v = %v; want it killed by SIGKILL at that write\n%s", killEnv, k, err, readFile(t, runLog))
		}
		f.kills++
		svc, closeDMS := readDMS(t, dbPath)
		journalDone, dmsDone := countDone(t, journalPath, woID), dmsDoneCount(t, svc, woID)
		closeDMS()
		if k.point == "dms:done" && dmsDone <= journalDone {
			t.Errorf("after the kill at %v the DMS holds %d devices done and the journal %d: the kill missed the window between the two", k, dmsDone, journalDone)
		}
	}

	// The last run, with no hook, finishes the work order.
	_, out, err := run()
	if err != nil {
		t.Fatalf("last station run = %v\n%s\n%s", err, out, readFile(t, runLog))
	}
	var sum struct {
		Passed, Failed, Skipped int
		AlreadyDone             int   `json:"already_done"`
		Done                    int   `json:"done"`
		Unsynced                int64 `json:"unsynced_events"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("last run printed %q: %v", out, err)
	}
	if sum.Failed != 0 || sum.Skipped != 0 || sum.Passed+sum.AlreadyDone != devices || sum.Unsynced != 0 {
		t.Errorf("last run: %d passed, %d already done, %d skipped, %d failed, %d events unsynced; want every device done and nothing unsynced",
			sum.Passed, sum.AlreadyDone, sum.Skipped, sum.Failed, sum.Unsynced)
	}
	if sum.Done != devices {
		t.Errorf("last run's summary counts %d devices done, want %d", sum.Done, devices)
	}

	j, err := journal.Open(ctx, journalPath, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.IntegrityCheck(ctx); err != nil {
		t.Errorf("journal integrity: %v", err)
	}
	svc, closeDMS := readDMS(t, dbPath)
	defer closeDMS()

	// Every device done exactly once, in the journal and at the DMS,
	// with one claim each.
	states, err := j.Devices(ctx, woID)
	if err != nil {
		t.Fatal(err)
	}
	f.devices = len(states)
	if len(states) != devices {
		t.Errorf("the journal knows %d devices, want %d", len(states), devices)
		f.lost += max(devices-len(states), 0)
	}
	for _, st := range states {
		if st.Result != journal.ResultDone || st.DoneCount != 1 || st.ActivateCount != 1 {
			t.Errorf("journal: device %s %s, done %d times, activated %d times; want done exactly once", st.Device, st.Result, st.DoneCount, st.ActivateCount)
		}
		dev, err := svc.Device(ctx, flasher.HardwareID(st.Device))
		if err != nil {
			t.Errorf("DMS: %v", err)
			f.lost++
			continue
		}
		kinds := map[dms.EventKind]int{}
		for _, e := range dev.History {
			kinds[e.Kind]++
		}
		if kinds[dms.EventDone] != 1 || kinds[dms.EventClaimed] != 1 || kinds[dms.EventActivated] != 1 {
			t.Errorf("DMS: device %s done %d times, claimed %d times, activated %d times; want each once",
				st.Device, kinds[dms.EventDone], kinds[dms.EventClaimed], kinds[dms.EventActivated])
		}
		switch {
		case st.Result != journal.ResultDone || kinds[dms.EventDone] == 0:
			f.lost++
		case st.DoneCount > 1 || st.ActivateCount > 1 || kinds[dms.EventDone] > 1 || kinds[dms.EventClaimed] > 1:
			f.doubled++
		}
	}

	// The token's count and the quantity.
	spec, err := svc.WorkOrderSpec(ctx, woID)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Token(ctx, spec.TokenID)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Used != devices {
		t.Errorf("token %s used %d claims, want %d", tok.ID, tok.Used, devices)
	}
	if n := dmsDoneCount(t, svc, woID); n != devices || n > spec.Quantity {
		t.Errorf("the DMS holds %d devices done by %s, want %d (quantity %d)", n, woID, devices, spec.Quantity)
	}
	if n := countDone(t, journalPath, woID); n > spec.Quantity {
		t.Errorf("the journal holds %d devices done, more than the quantity %d", n, spec.Quantity)
	}

	// The same events on both sides, each once.
	local, err := j.Events(ctx, journal.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := svc.Events(ctx, dms.EventFilter{Station: "line-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(remote) != len(local) {
		t.Errorf("the DMS holds %d events of the station, the journal %d", len(remote), len(local))
		if len(remote) > len(local) {
			f.doubled += len(remote) - len(local)
		} else {
			f.lost += len(local) - len(remote)
		}
	}
	logs, err := svc.FlashLogs(ctx, dms.FlashLogFilter{EventFilter: dms.EventFilter{WorkOrder: woID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		if l.Result != journal.ResultDone || l.DoneCount != 1 {
			t.Errorf("DMS flash log: device %s %s, done %d times; want done once", l.Device, l.Result, l.DoneCount)
		}
	}
	if len(logs) != devices {
		t.Errorf("the DMS has %d flash logs of %s, want %d", len(logs), woID, devices)
	}
	for i := range min(len(local), len(remote)) {
		l, r := local[i], remote[i]
		if l.Seq != r.Seq || l.Step != r.Step || l.Status != r.Status || l.Device != r.Device || !l.Time.Equal(r.Time) {
			t.Errorf("event %d: journal %+v, DMS %+v", i, l, r)
			break
		}
	}
	return f
}

// readDMS opens the DMS's database beside the running "station dms", for
// reading.
func readDMS(t *testing.T, path string) (*dms.Service, func()) {
	t.Helper()
	st, err := dms.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return &dms.Service{Store: st}, func() { st.Close() }
}

// countDone counts the devices the journal holds as done in a work order.
func countDone(t *testing.T, path, workOrder string) int {
	t.Helper()
	j, err := journal.Open(context.Background(), path, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st, err := j.WorkOrder(context.Background(), workOrder)
	if err != nil {
		t.Fatal(err)
	}
	return st.Done
}

// dmsDoneCount counts the devices the DMS holds as done by a work order.
func dmsDoneCount(t *testing.T, svc *dms.Service, workOrder string) int {
	t.Helper()
	n, err := svc.WorkOrderDone(context.Background(), workOrder)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
