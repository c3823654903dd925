package station

import (
	"context"
	"database/sql"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/journal"
)

// freeAddr returns a loopback address no one listens on, for a server
// that must come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// dmsProcess is a "station dms" running as its own process.
type dmsProcess struct {
	cmd *exec.Cmd
	log string
}

// startDMS starts "station dms" on addr over the SQLite file db and waits
// until it answers. Its log goes to logPath (appended), for the secret
// search.
func startDMS(t *testing.T, bin, db, addr, logPath string) *dmsProcess {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "dms", "--db", "sqlite:"+db, "--listen", addr, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	proctest.Isolate(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &dmsProcess{cmd: cmd, log: logPath}
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("station dms on %s did not answer within a minute: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the DMS the hard way: what a power cut does to it.
func (p *dmsProcess) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// waitFor polls cond until it holds, failing the test after a while or
// when the process behind done ends first.
func waitFor(t *testing.T, what string, done <-chan error, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		select {
		case err := <-done:
			t.Fatalf("station run ended before %s: %v", what, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within two minutes", what)
		}
	}
}

// TestSyncThroughDMSRestartAndStationKill runs a batch against a "station
// dms" in its own process. The DMS is killed while devices are being
// activated; the station flashes and verifies on and is then killed
// itself; it starts again while the DMS is still down, working from the
// work order it kept; the DMS comes back. Afterwards every device is done
// once, and the DMS holds every journal event exactly once.
func TestSyncThroughDMSRestartAndStationKill(t *testing.T) {
	const devices = 6
	ctx := context.Background()
	bin := buildStation(t)
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	startSim(t, bin, simDir, devices)

	seed, err := seedDemo(ctx, demoSpec{dir: dir, devices: devices, imageSize: 256 << 10, baud: 921600,
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
	seed.store.Close()
	token := seed.wo.Authorization.Token.Reveal()

	dbPath := filepath.Join(dir, "dms.db")
	dmsLog := filepath.Join(dir, "dms.log")
	addr := freeAddr(t)
	dmsProc := startDMS(t, bin, dbPath, addr, dmsLog)

	journalPath := filepath.Join(dir, "station", "journal.db")
	runLog := filepath.Join(dir, "run.log")
	args := []string{"run", "--dms", "http://" + addr, "--work-order", "WO-DEMO-0001",
		"--key-file", keyFile, "--token-file", filepath.Join(dir, "token"),
		"--fixture", filepath.Join(simDir, "fixture.yaml"), "--journal", journalPath, "--station", "line-1",
		"--labels", filepath.Join(dir, "labels"), "--json", "--sync-wait", "2m", "--log-level", "debug"}
	start := func() (*exec.Cmd, <-chan error, *strings.Builder) {
		logf, err := os.OpenFile(runLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		var stdout strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, logf
		proctest.Isolate(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd, done, &stdout
	}

	// First run: the DMS dies once every device passed preflight, while
	// they are being flashed.
	run, runDone, _ := start()
	ro := openReadOnly(t, journalPath)
	waitFor(t, "every preflight", runDone, func() bool { return countPassed(t, ro, "preflight") >= devices })
	dmsProc.kill()
	// The station goes on flashing and verifying without it.
	if n := countPassed(t, ro, "verify"); n == devices {
		t.Fatalf("every device was verified before the DMS went down; the test proves nothing")
	}
	waitFor(t, "a verify while the DMS is down", runDone, func() bool { return countPassed(t, ro, "verify") > 0 })
	waitFor(t, "a slot waiting for the DMS", runDone, func() bool { return strings.Contains(readFile(t, runLog), "waiting for the DMS") })
	if err := run.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-runDone
	if countPassed(t, ro, "done") >= devices {
		t.Fatal("every device was done before the kill; the test killed nothing mid-batch")
	}

	// Second run: starts while the DMS is still down, from the work order
	// it kept; the DMS comes back while it waits.
	events := countEvents(t, ro)
	_, runDone, stdout := start()
	waitFor(t, "the second run to start", runDone, func() bool { return countEvents(t, ro) > events })
	if !strings.Contains(readFile(t, runLog), "as fetched before") {
		t.Error("the second run did not say it runs the work order kept from before")
	}
	dmsProc = startDMS(t, bin, dbPath, addr, dmsLog)
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("second station run = %v\n%s\n%s", err, stdout.String(), readFile(t, runLog))
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the second run did not end within three minutes")
	}
	ro.Close()
	var sum struct {
		Passed, Failed int
		AlreadyDone    int   `json:"already_done"`
		Synced         int64 `json:"synced_events"`
		Unsynced       int64 `json:"unsynced_events"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &sum); err != nil {
		t.Fatalf("second run printed %q: %v", stdout.String(), err)
	}
	if sum.Failed != 0 || sum.Passed+sum.AlreadyDone != devices || sum.Unsynced != 0 {
		t.Fatalf("second run: %d passed, %d already done, %d failed, %d events unsynced; want every device done and nothing unsynced",
			sum.Passed, sum.AlreadyDone, sum.Failed, sum.Unsynced)
	}
	dmsProc.kill()

	// The journal and the DMS hold the same events, each once.
	j, err := journal.Open(ctx, journalPath, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	local, err := j.Events(ctx, journal.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := dms.OpenSQLite(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := &dms.Service{Store: st}
	remote, err := svc.Events(ctx, dms.EventFilter{Station: "line-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(remote) != len(local) || sum.Synced != int64(len(local)) {
		t.Fatalf("the DMS holds %d events, the journal %d, the summary says %d synced", len(remote), len(local), sum.Synced)
	}
	for i := range local {
		l, r := local[i], remote[i]
		if l.Seq != r.Seq || l.Step != r.Step || l.Status != r.Status || l.Device != r.Device || !l.Time.Equal(r.Time) {
			t.Fatalf("event %d: journal %+v, DMS %+v", i, l, r)
		}
	}
	states, err := j.Devices(ctx, "WO-DEMO-0001")
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range states {
		if ds.Result != journal.ResultDone || ds.DoneCount != 1 || ds.ActivateCount != 1 {
			t.Errorf("device %s: %s, done %d times, activated %d times; want done exactly once", ds.Device, ds.Result, ds.DoneCount, ds.ActivateCount)
		}
	}
	if len(states) != devices {
		t.Errorf("journal knows %d devices, want %d", len(states), devices)
	}

	// The token and the station's key appear nowhere: not in the
	// journal, the labels, the kept work order, the station's log or
	// the DMS's.
	for _, secret := range []string{token, key.Reveal()} {
		assertSecretAbsent(t, secret, dir, map[string]bool{"token": true, "station.key": true})
	}
}

// assertSecretAbsent fails when secret appears in any file under dir but
// the ones named in allowed (the files that hold it on purpose).
func assertSecretAbsent(t *testing.T, secret, dir string, allowed map[string]bool) {
	t.Helper()
	if len(secret) < 16 {
		t.Fatalf("secret %d bytes long: too short to search for", len(secret))
	}
	searched := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || allowed[d.Name()] || d.Type()&os.ModeType != 0 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		searched++
		if strings.Contains(string(b), secret) {
			t.Errorf("%s holds a secret (%d bytes, starting %q)", p, len(secret), secret[:4])
		}
		return nil
	})
	if searched < 5 {
		t.Errorf("searched only %d files for the secret", searched)
	}
}

func openReadOnly(t *testing.T, path string) *sql.DB {
	t.Helper()
	ro, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	return ro
}

func countEvents(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	err := db.QueryRow("SELECT count(*) FROM events").Scan(&n)
	if err != nil && !strings.Contains(err.Error(), "no such table") && !strings.Contains(err.Error(), "unable to open") {
		t.Fatal(err)
	}
	return n
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}
