package station

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/journal"
)

// runSetup is a seeded DMS, simulated devices and their fixture, ready
// for "station run".
func runSetup(t *testing.T, devices int) (dir string, args []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir = t.TempDir()
	if _, err := setupDemoDMS(ctx, dir, devices, 64<<10); err != nil {
		t.Fatal(err)
	}
	fleet, fx, err := startSimFleet(ctx, filepath.Join(dir, "dev"), devices, "esp32", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	if err := writeFixture(filepath.Join(dir, "fixture.yaml"), fx); err != nil {
		t.Fatal(err)
	}
	return dir, []string{"run", "--fixture", filepath.Join(dir, "fixture.yaml"), "--dms", "sqlite:" + filepath.Join(dir, "dms.db"),
		"--journal", filepath.Join(dir, "journal.db"), "--station", "line-1", "--labels", filepath.Join(dir, "labels"),
		"--token-file", filepath.Join(dir, "token")}
}

func TestRunRefusesBadInput(t *testing.T) {
	dir, base := runSetup(t, 2)
	wo, err := os.ReadFile(filepath.Join(dir, "work-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, change func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(wo, &m); err != nil {
			t.Fatal(err)
		}
		change(m)
		b, _ := json.Marshal(m)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	artifact := func(m map[string]any) map[string]any {
		return m["bundle"].(map[string]any)["artifacts"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"malformed json", []string{"--work-order", writeRaw(t, dir, "bad.json", `{"id": "WO-1", "quantity": }`)}, ExitProblem,
			[]string{"not valid JSON at line 1"}},
		{"bad field", []string{"--work-order", write("neg.json", func(m map[string]any) { m["quantity"] = -2 })}, ExitProblem,
			[]string{"quantity: must be at least 1"}},
		{"wrong checksum", []string{"--work-order", write("sum.json", func(m map[string]any) {
			artifact(m)["sha256"] = strings.Repeat("ab", 32)
		})}, ExitProblem, []string{"thermostat-app.bin", "sha256", "nothing was flashed"}},
		{"missing artifact", []string{"--work-order", write("gone.json", func(m map[string]any) {
			artifact(m)["url"] = "no-such-file.bin"
		})}, ExitProblem, []string{"no-such-file.bin", "no such file"}},
		// Load-time checks (issue 14): refused before any device is
		// touched, naming the field.
		{"unknown label template", []string{"--work-order", write("label.json", func(m map[string]any) {
			m["label"] = map[string]any{"template": "fancy"}
		})}, ExitProblem, []string{"cannot run on this station; nothing was touched", `label: unknown label template "fancy"`}},
		{"gs1 label without a GTIN", []string{"--work-order", write("gs1.json", func(m map[string]any) {
			m["label"] = map[string]any{"template": "gs1"}
		})}, ExitProblem, []string{"label: gs1 label", "is not a 14-digit GTIN"}},
		{"a lock the chip does not have", []string{"--work-order", write("lock.json", func(m map[string]any) {
			m["lock"] = map[string]any{"dms": true, "device": []string{"rdp"}}
		})}, ExitProblem, []string{`lock.device[0]: slot`, `"rdp" is not a lock the ESP chip has`}},
		{"a printer that does not answer", append([]string{"--work-order", filepath.Join(dir, "work-order.json")}, "--labels", "tcp://"+deadPrinter(t)),
			ExitProblem, []string{"label: The label printer at", "does not answer"}},
		{"no work order", nil, ExitUsage, []string{"--work-order is required"}},
		{"unknown flag", []string{"--wrok-order", "x"}, ExitUsage, []string{"wrok-order"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runMain(t, append(append([]string{}, base...), tc.args...)...)
			if got := Code(err); got != tc.wantCode {
				t.Fatalf("station run = %v (exit %d), want exit %d\n%s", err, got, tc.wantCode, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error()+stderr, w) {
					t.Errorf("station run error %q does not say %q", err, w)
				}
			}
		})
	}
	// Nothing was written to any device: the journal holds no step.
	j, err := journal.Open(context.Background(), filepath.Join(dir, "journal.db"), "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	evs, err := j.Events(context.Background(), journal.Filter{Kind: journal.KindStep})
	if err != nil || len(evs) != 0 {
		t.Errorf("journal holds %d step events (%v) after refused work orders, want 0", len(evs), err)
	}
}

// deadPrinter is the address of a TCP port nothing listens on.
func deadPrinter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRunWithoutTokenSaysWhereToPutIt(t *testing.T) {
	dir, base := runSetup(t, 1)
	args := append(base[:len(base)-2:len(base)-2], "--work-order", filepath.Join(dir, "work-order.json"))
	_, _, err := runMain(t, args...)
	if Code(err) != ExitProblem || !strings.Contains(err.Error(), "--token-file or STATION_TOKEN") {
		t.Fatalf("station run without a token = %v, want it to say where the token goes", err)
	}
}

func TestRunPassesAndReportsJSON(t *testing.T) {
	dir, base := runSetup(t, 2)
	stdout, stderr, err := runMain(t, append(base, "--work-order", filepath.Join(dir, "work-order.json"), "--json")...)
	if err != nil {
		t.Fatalf("station run = %v\n%s", err, stderr)
	}
	var sum struct {
		Devices, Passed int
		Journal         string
		Results         []struct{ Outcome, Serial string }
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("station run --json printed %q: %v", stdout, err)
	}
	if sum.Devices != 2 || sum.Passed != 2 || sum.Journal == "" {
		t.Fatalf("summary = %+v, want 2 devices passed and the journal named", sum)
	}
	// Run again: both devices are recognised as done and the command
	// still succeeds.
	stdout, _, err = runMain(t, append(base, "--work-order", filepath.Join(dir, "work-order.json"), "--json")...)
	if err != nil || !strings.Contains(stdout, `"already_done": 2`) {
		t.Fatalf("second station run = %v: %s", err, stdout)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{&ExitError{Code: ExitFailed, Err: errors.New("2 of 8 devices failed")}, ExitFailed},
		{usageErr("bad flag"), ExitUsage},
		{errors.New("open journal: disk full"), ExitProblem},
	}
	for _, tc := range tests {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, cmd := range []string{"run", "demo", "sim"} {
		_, stderr, err := runMain(t, cmd, "--help")
		if Code(err) != ExitOK || !strings.Contains(stderr, "Examples:") || !strings.Contains(stderr, "Flags:") {
			t.Errorf("station %s --help = %v, %q; want examples and flags", cmd, err, stderr)
		}
	}
	stdout, _, err := runMain(t, "help")
	if err != nil || !strings.Contains(stdout, "demo") {
		t.Errorf("station help = %v, %q", err, stdout)
	}
}

func writeRaw(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunRefusesCorruptArtifactFromDMS: the firmware arrives from the
// DMS with bytes that do not match the work order's sha256. The station refuses it before touching any device, says so,
// and keeps nothing of it in its cache.
func TestRunRefusesCorruptArtifactFromDMS(t *testing.T) {
	ctx := context.Background()
	dir, args := runSetup(t, 2)
	st, err := dms.OpenSQLite(ctx, filepath.Join(dir, "dms.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := &dms.Service{Store: st}
	_, key, err := svc.CreateKey(ctx, dms.Key{Role: dms.RoleStation, Station: "line-1"})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "station.key")
	if err := os.WriteFile(keyFile, []byte(key.Reveal()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The wire flips one byte in the middle of every artifact the DMS
	// sends (the DMS itself checks what it stores).
	dmsHandler := server.New(server.Config{Service: svc})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/artifacts/") {
			dmsHandler.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		dmsHandler.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if len(body) > 1000 {
			body[1000] ^= 0x5a
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	defer srv.Close()
	for i, a := range args {
		if a == "--dms" {
			args[i+1] = srv.URL
		}
	}
	args = append(args, "--key-file", keyFile, "--work-order", "WO-DEMO-0001")
	_, _, err = runMain(t, args...)
	if Code(err) != ExitProblem || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), "nothing was flashed") {
		t.Fatalf("station run with a corrupt artifact = %v, want it refused before any flash, naming the sha256", err)
	}
	j, err := journal.Open(ctx, filepath.Join(dir, "journal.db"), "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if ev, err := j.Events(ctx, journal.Filter{Step: "flash"}); err != nil || len(ev) != 0 {
		t.Errorf("journal holds %d flash events (%v), want none", len(ev), err)
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "artifact-cache", "*"))
	if len(cached) != 0 {
		t.Errorf("the cache kept %v", cached)
	}
}

// zebra is a ZPL printer on raw TCP for tests: it answers ~HS with its
// status, out of paper for the first refusals, and records each job.
type zebra struct {
	ln       net.Listener
	refusals atomic.Int32
	mu       sync.Mutex
	jobs     []string
}

func startZebra(t *testing.T, refusals int32) *zebra {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &zebra{ln: ln}
	z.refusals.Store(refusals)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go z.serve(c)
		}
	}()
	return z
}

func (z *zebra) serve(c net.Conn) {
	defer c.Close()
	cmd := make([]byte, 3)
	if _, err := io.ReadFull(c, cmd); err != nil || string(cmd) != "~HS" {
		return
	}
	paper := "0"
	if z.refusals.Add(-1) >= 0 {
		paper = "1"
	}
	io.WriteString(c, "\x02030,"+paper+",0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,0,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n")
	job, _ := io.ReadAll(c)
	if len(job) > 0 {
		z.mu.Lock()
		z.jobs = append(z.jobs, string(job))
		z.mu.Unlock()
	}
}

// TestRunWaitsForThePrinter: the label printer is out of paper for its
// first answers; the devices wait at the label step, saying why, and each
// label prints once the paper is in.
func TestRunWaitsForThePrinter(t *testing.T) {
	dir, args := runSetup(t, 2)
	z := startZebra(t, 3)
	for i, a := range args {
		if a == "--labels" {
			args[i+1] = "tcp://" + z.ln.Addr().String()
		}
	}
	args = append(args, "--work-order", filepath.Join(dir, "work-order.json"), "--json", "--log-level", "warn")
	stdout, stderr, err := runMain(t, args...)
	if err != nil {
		t.Fatalf("station run = %v\n%s", err, stderr)
	}
	var sum struct{ Passed, Failed int }
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Passed != 2 {
		t.Fatalf("station run printed %q (%v); want both devices passed", stdout, err)
	}
	if !strings.Contains(stderr, "waiting for the label printer") || !strings.Contains(stderr, "out of paper") {
		t.Errorf("nothing said the devices waited for the printer:\n%s", stderr)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if len(z.jobs) != 2 {
		t.Fatalf("the printer received %d labels, want 2", len(z.jobs))
	}
	for _, j := range z.jobs {
		if !strings.HasPrefix(j, "^XA") || !strings.Contains(j, "THERMO-") {
			t.Errorf("the printer received %.80q, want a ZPL label with a serial", j)
		}
	}
}
