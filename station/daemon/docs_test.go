package daemon_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/station"
	"github.com/station-dev/station/station/daemon"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/export"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// docExample is a command or a YAML block a doc shows in a code block.
type docExample struct {
	line int    // where it starts in the doc
	text string // the command line as shown, or the YAML block
	yaml bool
}

// docCommandPrefixes start the lines of code blocks that are commands.
var docCommandPrefixes = []string{"curl ", "scurl ", "alias ", "station ", "scripts/"}

// docExamples returns the commands (lines of indented or fenced code
// blocks that start with one of docCommandPrefixes) and the ```yaml
// blocks of the doc at path, in order.
func docExamples(t *testing.T, path string) []docExample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []docExample
		fenced  bool
		lang    string
		block   strings.Builder
		started int
	)
	for i, l := range strings.Split(string(b), "\n") {
		if fence, ok := strings.CutPrefix(strings.TrimSpace(l), "```"); ok {
			if !fenced {
				fenced, lang, started = true, strings.TrimSpace(fence), i+2
				block.Reset()
				continue
			}
			fenced = false
			if lang == "yaml" || lang == "yml" {
				out = append(out, docExample{line: started, text: block.String(), yaml: true})
			}
			continue
		}
		if fenced && (lang == "yaml" || lang == "yml") {
			block.WriteString(l + "\n")
			continue
		}
		if !fenced && !strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "\t") {
			continue
		}
		cmd := strings.TrimSpace(l)
		for _, p := range docCommandPrefixes {
			if strings.HasPrefix(cmd, p) {
				out = append(out, docExample{line: i + 1, text: cmd})
				break
			}
		}
	}
	return out
}

// matchDocExamples pairs every example of a doc with the one key of
// keys it contains, and fails the test for an example no key or two keys
// match (the doc gained an example the test does not know) and for a key
// no example or two examples match (the doc dropped one). It returns the
// examples by key.
func matchDocExamples(t *testing.T, doc string, examples []docExample, keys []string) map[string]docExample {
	t.Helper()
	byKey := map[string]docExample{}
	seen := map[string]int{}
	for _, e := range examples {
		var hits []string
		for _, k := range keys {
			if strings.Contains(e.text, k) {
				hits = append(hits, k)
			}
		}
		switch len(hits) {
		case 0:
			t.Errorf("%s:%d shows %q, which the test does not know: add it to the test's table with what it must return", doc, e.line, firstLine(e.text))
		case 1:
			byKey[hits[0]] = e
			seen[hits[0]]++
		default:
			t.Errorf("%s:%d shows %q, which the test's keys %q all match: make them tell the examples apart", doc, e.line, firstLine(e.text), hits)
		}
	}
	for _, k := range keys {
		if n := seen[k]; n != 1 {
			t.Errorf("%s shows %d example(s) with %q, want 1: update the test's table", doc, n, k)
		}
	}
	return byKey
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// The example values of docs/local-api.md, which the station under test
// is made to have: its slots, work order, operators and devices.
const (
	docSocket     = "/run/station/api.sock"
	docWorkOrder  = "WO-1182"
	docPIN        = "1234"
	docBadge      = "04A1B2C3"
	docDeviceA1   = "24:6f:28:aa:bb:04"
	docDeviceA2   = "24:6f:28:aa:bb:05"
	docRetried    = "24:6f:28:aa:bb:06" // A2's first device: fails, is retried
	docOverridden = "checked on the bench: label and flash are fine"
)

// docStation is a station set up as docs/local-api.md's examples
// expect: slots A1 and A2, work order WO-1182 in its DMS, an operator
// with PIN 1234 and a supervisor with badge 04A1B2C3, the unix socket
// and a loopback listener with a key.
type docStation struct {
	b      *bench
	socket string
	port   string
	key    string
	alias  string // the doc's alias line, which the scurl examples use
}

func newDocStation(t *testing.T) *docStation {
	t.Helper()
	ctx := t.Context()
	b := newBench(t, 2, 10, true)
	b.shutdown()
	dir := t.TempDir()

	// The simulated fixture's slots, named as the doc names them.
	fx, err := fixtures.Load(b.cfg.Fixture)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fx.Slots {
		fx.Slots[i].Name = fmt.Sprintf("A%d", i+1)
	}
	data, err := fx.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b.cfg.Fixture = filepath.Join(dir, "fixture.yaml")
	if err := os.WriteFile(b.cfg.Fixture, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// WO-1182: the simulation's work order under the doc's id.
	store, err := dms.Open(ctx, "sqlite:"+filepath.Join(b.sim.Dir, "dms.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc := &dms.Service{Store: store}
	spec, err := svc.WorkOrderSpec(ctx, b.sim.WorkOrder)
	if err != nil {
		t.Fatal(err)
	}
	spec.ID = docWorkOrder
	if _, err := svc.CreateWorkOrder(ctx, spec); err != nil {
		t.Fatal(err)
	}

	s := &docStation{b: b, socket: b.cfg.API.Socket, key: "doc-example-key"}
	b.cfg.Operators = []daemon.Operator{
		{Name: "Ada", PINSHA256: daemon.HashSecret(docPIN)},
		{Name: "Sam", BadgeSHA256: daemon.HashSecret(docBadge), Supervisor: true},
	}
	b.cfg.API.KeyFile = filepath.Join(dir, "api.key")
	if err := os.WriteFile(b.cfg.API.KeyFile, []byte(s.key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	return s
}

// start runs the daemon with a loopback listener on a free port. Its
// listeners are up when start returns.
func (s *docStation) start(t *testing.T) {
	t.Helper()
	b := s.b
	for attempt := 1; ; attempt++ {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, s.port, _ = net.SplitHostPort(probe.Addr().String())
		probe.Close()
		b.cfg.API.Listen = "127.0.0.1:" + s.port
		if err := b.cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		backend, err := station.OpenBackend(t.Context(), b.cfg, func(string) string { return "" }, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := daemon.New(t.Context(), b.cfg, daemon.Options{Backend: backend, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Listen(); err != nil {
			// Run closes the journal and the backend.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			d.Run(done)
			if errors.Is(err, syscall.EADDRINUSE) && attempt < 5 {
				continue // another process took the port meanwhile
			}
			t.Fatalf("Listen() = %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.d, b.stop, b.done = d, cancel, make(chan error, 1)
		go func() { b.done <- d.Run(ctx) }()
		return
	}
}

// script is the shell script that runs cmd as a reader would: in a shell
// where the doc's scurl alias is defined, with the doc's socket and port
// replaced by the station's ($KEY is in the environment).
func (s *docStation) script(cmd string) string {
	r := strings.NewReplacer(docSocket, s.socket, "127.0.0.1:PORT", "127.0.0.1:"+s.port)
	return "shopt -s expand_aliases\n" + r.Replace(s.alias) + "\n" + r.Replace(cmd) + "\n"
}

func (s *docStation) command(ctx context.Context, dir, key, cmd string) *exec.Cmd {
	c := exec.CommandContext(ctx, "bash", "-c", s.script(cmd))
	c.Dir = dir
	c.Env = append(os.Environ(), "KEY="+key)
	return c
}

// run runs the example cmd in dir with the station's key and returns its
// output.
func (s *docStation) run(t *testing.T, dir, cmd string) []byte {
	t.Helper()
	return s.runWithKey(t, dir, s.key, cmd)
}

func (s *docStation) runWithKey(t *testing.T, dir, key, cmd string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := proctest.Output(s.command(ctx, dir, key, cmd))
	if err != nil {
		t.Fatalf("%s = %v, want success\n%s", cmd, err, out)
	}
	return out
}

// firstEvent runs the streaming example cmd until it has written its
// first server-sent event, ends it and returns that event.
func (s *docStation) firstEvent(t *testing.T, dir, cmd string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := s.command(ctx, dir, s.key, cmd)
	stderr := &proctest.Buffer{}
	c.Stdout, c.Stderr = w, stderr
	p := proctest.Start(t, c)
	w.Close()
	defer p.Kill()
	deadline, _ := ctx.Deadline()
	r.SetReadDeadline(deadline)
	var ev bytes.Buffer
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: no whole event (%v); got %q\n%s", cmd, err, ev.String()+line, stderr.String())
		}
		switch {
		case line == "\n" && ev.Len() > 0:
			return ev.Bytes()
		case line == "\n", strings.HasPrefix(line, ":"): // a heartbeat
		default:
			ev.WriteString(line)
		}
	}
}

// decodeStrict decodes out, which must be one JSON value of v's type with
// no unknown field (an error answer is not).
func decodeStrict(t *testing.T, cmd string, out []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s = %s, want a %T: %v", cmd, bytes.TrimSpace(out), v, err)
	}
}

// docState decodes the State a call answers.
func docState(t *testing.T, cmd string, out []byte) localapi.State {
	t.Helper()
	var st localapi.State
	decodeStrict(t, cmd, out, &st)
	return st
}

// apiError decodes the error a call answers.
func apiError(t *testing.T, cmd string, out []byte) localapi.ErrorBody {
	t.Helper()
	var e localapi.Error
	decodeStrict(t, cmd, out, &e)
	return e.Error
}

// docMetrics parses the Prometheus text a call answers.
func docMetrics(t *testing.T, cmd string, out []byte) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			continue
		}
		f := sampleLine.FindStringSubmatch(line)
		if f == nil {
			t.Fatalf("%s: line %q is not name{labels} value\n%s", cmd, line, out)
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			t.Fatalf("%s: line %q: %v", cmd, line, err)
		}
		m[f[1]] = v
	}
	if len(m) == 0 {
		t.Fatalf("%s = %q, want metrics", cmd, out)
	}
	return m
}

// signIn signs in by PIN or badge through the daemon.
func (s *docStation) signIn(t *testing.T, req localapi.SignInRequest) {
	t.Helper()
	if _, err := s.b.d.SignIn(t.Context(), req); err != nil {
		t.Fatalf("SignIn(%+v) = %v", req, err)
	}
}

// plug puts a new device with the given MAC into slot i, which the
// daemon shows empty first.
func (s *docStation) plug(t *testing.T, i int, mac string) {
	t.Helper()
	name := fmt.Sprintf("A%d", i+1)
	if err := s.b.sim.Bench.Unplug(i); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s.b.d, name+" empty", func(st localapi.State) bool { return slot(st, name).Status == localapi.SlotEmpty })
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.b.sim.Fleet.Devices()[i].Swap(sim.Config{MAC: hw}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s.b.d, name+" ready", func(st localapi.State) bool { return slot(st, name).Status == localapi.SlotReady })
}

// failFlash makes the device in slot i refuse writes from half its
// flash.
func (s *docStation) failFlash(i int, fail bool) {
	esp := s.b.sim.Fleet.Devices()[i].ESP()
	if fail {
		esp.SetFaults(sim.Faults{FailWritesFrom: 50})
	} else {
		esp.ClearFaults()
	}
}

func (s *docStation) wait(t *testing.T, name string, want localapi.SlotStatus) localapi.State {
	t.Helper()
	return waitFor(t, s.b.d, fmt.Sprintf("%s %s", name, want), func(st localapi.State) bool { return slot(st, name).Status == want })
}

// labelFile is the file the label of the device in slot name was
// printed to (the station has no printer).
func (s *docStation) labelFile(t *testing.T, name string) string {
	t.Helper()
	serial := slot(s.b.d.State(t.Context()), name).Serial
	if serial == "" {
		t.Fatalf("slot %s has no serial", name)
	}
	return filepath.Join(s.b.cfg.LabelsDir(), serial+".zpl")
}

// apiDocExample is what TestLocalAPIDocExamples knows of an example of
// docs/local-api.md: the station's state it applies to, and what it
// returns.
type apiDocExample struct {
	// key is a part of the example that picks it out.
	key string
	// given puts the station where the example applies; may be nil.
	given func(t *testing.T, s *docStation)
	// stream: the example streams, and check gets its first event.
	stream bool
	// check checks what the doc says the example returns.
	check docCheck
}

// docCheck checks the output of the example cmd, run in dir.
type docCheck func(t *testing.T, s *docStation, cmd, dir string, out []byte)

// TestLocalAPIDocExamples runs every command docs/local-api.md shows (the
// curl and scurl lines of its code blocks, scurl being the doc's own
// alias), as shown, with the real curl in bash, against a real daemon on
// a simulated fixture. Only the socket path, $KEY and PORT are replaced;
// the station is set up to have the doc's slots, work order, PIN, badge
// and devices. Each example runs in the doc's order, with the station
// first put where the example applies, and must return what the doc
// says. A command or YAML block the doc gains that the table does not
// know fails the test, and so does one the doc drops.
func TestLocalAPIDocExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("curl is not installed (scripts/lib.sh TEST_PACKAGES lists it): %v", err)
		}
		t.Skipf("curl is not installed: scripts/test installs it (apt-get install curl): %v", err)
	}
	const doc = "docs/local-api.md"
	examples := []apiDocExample{
		{key: "alias scurl=", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if len(out) != 0 {
				t.Errorf("%s = %q, want no output", cmd, out)
			}
		}},
		{key: "http://station/v1/state", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			st := docState(t, cmd, out)
			var names []string
			for _, sl := range st.Slots {
				names = append(names, sl.Name)
			}
			if st.Station != stationID || st.Run != localapi.RunIdle || !slices.Equal(names, []string{"A1", "A2"}) {
				t.Errorf("%s = station %q, run %s, slots %q; want %q, idle, [A1 A2]", cmd, st.Station, st.Run, names, stationID)
			}
		}},
		{key: "/v1/work-order", given: func(t *testing.T, s *docStation) {
			s.signIn(t, localapi.SignInRequest{PIN: docPIN})
		}, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			st := docState(t, cmd, out)
			if st.WorkOrder == nil || st.WorkOrder.ID != docWorkOrder || st.Run != localapi.RunReady {
				t.Errorf("%s = work order %+v, run %s; want %s, ready", cmd, st.WorkOrder, st.Run, docWorkOrder)
			}
		}},
		{key: "/v1/start", check: runIs(localapi.RunRunning)},
		{key: "/v1/pause", check: runIs(localapi.RunPaused)},
		{key: "/v1/stop", given: func(t *testing.T, s *docStation) {
			// Ada, an operator, is signed in: the supervisor's badge
			// in the request is what counts.
			s.signIn(t, localapi.SignInRequest{PIN: docPIN})
		}, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if st := docState(t, cmd, out); st.Run != localapi.RunIdle || st.WorkOrder != nil {
				t.Errorf("%s = run %s, work order %+v; want idle, none", cmd, st.Run, st.WorkOrder)
			}
		}},
		{key: "/A2/retry", given: func(t *testing.T, s *docStation) {
			// A1's device passes; A2's fails its flash, then the
			// fault is gone.
			ctx := t.Context()
			if err := s.b.d.Load(ctx, docWorkOrder); err != nil {
				t.Fatalf("Load(%s) = %v", docWorkOrder, err)
			}
			s.plug(t, 0, docDeviceA1)
			s.plug(t, 1, docRetried)
			s.failFlash(1, true)
			if err := s.b.d.Start(ctx); err != nil {
				t.Fatalf("Start() = %v", err)
			}
			waitFor(t, s.b.d, "A1 passed, A2 failed", func(st localapi.State) bool {
				return slot(st, "A1").Status == localapi.SlotPassed && slot(st, "A2").Status == localapi.SlotFailed
			})
			s.failFlash(1, false)
		}, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			switch a2 := slot(docState(t, cmd, out), "A2"); a2.Status {
			case localapi.SlotReady, localapi.SlotRunning, localapi.SlotPassed:
			default:
				t.Errorf("%s = A2 %s (%s), want at work again", cmd, a2.Status, a2.Reason)
			}
		}},
		{key: "/A2/skip", given: func(t *testing.T, s *docStation) {
			s.wait(t, "A2", localapi.SlotPassed)
		}, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			// A device that ended keeps its result, marked skipped.
			if a2 := slot(docState(t, cmd, out), "A2"); a2.Status != localapi.SlotPassed || !strings.Contains(a2.Reason, "skipped by") {
				t.Errorf("%s = A2 %s (%s), want passed, skipped", cmd, a2.Status, a2.Reason)
			}
		}},
		{key: "/A1/reprint", given: func(t *testing.T, s *docStation) {
			if err := os.Remove(s.labelFile(t, "A1")); err != nil {
				t.Fatalf("the label A1's device passed with: %v", err)
			}
		}, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if a1 := slot(docState(t, cmd, out), "A1"); a1.Status != localapi.SlotPassed {
				t.Errorf("%s = A1 %s, want passed", cmd, a1.Status)
			}
			if _, err := os.Stat(s.labelFile(t, "A1")); err != nil {
				t.Errorf("%s printed no label: %v", cmd, err)
			}
		}},
		{key: "/A2/override", given: func(t *testing.T, s *docStation) {
			// A new device in A2, 24:6f:28:aa:bb:05, fails its flash.
			ctx := t.Context()
			s.signIn(t, localapi.SignInRequest{Badge: docBadge})
			if err := s.b.d.Pause(ctx); err != nil {
				t.Fatalf("Pause() = %v", err)
			}
			s.plug(t, 1, docDeviceA2)
			s.failFlash(1, true)
			if err := s.b.d.Start(ctx); err != nil {
				t.Fatalf("Start() = %v", err)
			}
			s.wait(t, "A2", localapi.SlotFailed)
		}, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if a2 := slot(docState(t, cmd, out), "A2"); a2.Status != localapi.SlotOverridden || !strings.Contains(a2.Reason, docOverridden) {
				t.Errorf("%s = A2 %s (%s), want overridden with the reason", cmd, a2.Status, a2.Reason)
			}
		}},
		{key: `{"pin":"1234"}`, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			var op localapi.Operator
			decodeStrict(t, cmd, out, &op)
			if op.Name != "Ada" || op.Supervisor {
				t.Errorf("%s = %+v, want Ada, no supervisor", cmd, op)
			}
		}},
		{key: `{"badge":"04A1B2C3"}`, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			var op localapi.Operator
			decodeStrict(t, cmd, out, &op)
			if !op.Supervisor {
				t.Errorf("%s = %+v, want a supervisor", cmd, op)
			}
		}},
		{key: "/v1/sign-out", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if st := docState(t, cmd, out); st.Operator != nil {
				t.Errorf("%s = operator %+v, want none", cmd, st.Operator)
			}
		}},
		{key: "/v1/devices?", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			var rows []localapi.DeviceRow
			decodeStrict(t, cmd, out, &rows)
			if len(rows) != 1 || rows[0].Device != docDeviceA2 || rows[0].Slot != "A2" || rows[0].Result != "failed" || rows[0].WorkOrder != docWorkOrder {
				t.Errorf("%s = %+v, want the failed %s of A2 alone", cmd, rows, docDeviceA2)
			}
		}},
		{key: "/log", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			var lines []localapi.LogLine
			decodeStrict(t, cmd, out, &lines)
			failed := false
			for _, l := range lines {
				if l.WorkOrder != docWorkOrder || l.Slot != "A2" {
					t.Errorf("%s: line %+v, want %s on A2", cmd, l, docWorkOrder)
				}
				failed = failed || l.Step == "flash" && l.Status == "failed"
			}
			if !failed {
				t.Errorf("%s = %+v, want the failed flash among the steps", cmd, lines)
			}
		}},
		{key: "wo-1182.tar", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			// Unpacked, the signed export verifies; its CSV names the
			// override of A2's device with its supervisor and reason.
			f, err := os.Open(filepath.Join(dir, "wo-1182.tar"))
			if err != nil {
				t.Fatalf("%s wrote no file: %v\n%s", cmd, err, out)
			}
			defer f.Close()
			exp := filepath.Join(dir, "export")
			tr := tar.NewReader(f)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: not a tar archive: %v", cmd, err)
				}
				p := filepath.Join(exp, filepath.FromSlash(h.Name))
				if h.Typeflag == tar.TypeDir {
					os.MkdirAll(p, 0o755)
					continue
				}
				os.MkdirAll(filepath.Dir(p), 0o755)
				b, _ := io.ReadAll(tr)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := export.Verify(exp, nil); err != nil {
				t.Fatalf("%s: the unpacked export does not verify: %v", cmd, err)
			}
			csv, err := os.ReadFile(filepath.Join(exp, export.DevicesFile))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(csv), docOverridden) || !strings.Contains(string(csv), docDeviceA2) {
				t.Errorf("%s: devices.csv lacks A2's override:\n%s", cmd, csv)
			}
		}},
		{key: "wo-1182.ndjson", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			b, err := os.ReadFile(filepath.Join(dir, "wo-1182.ndjson"))
			if err != nil {
				t.Fatalf("%s wrote no file: %v\n%s", cmd, err, out)
			}
			token, err := os.ReadFile(s.b.cfg.DMS.TokenFile)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, bytes.TrimSpace(token)) {
				t.Errorf("%s: the export holds the activation token", cmd)
			}
			devices := map[string]bool{}
			for i, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
				var e journal.Event
				if err := json.Unmarshal(l, &e); err != nil || e.WorkOrder != docWorkOrder {
					t.Fatalf("%s: line %d = %s, want an event of %s (%v)", cmd, i+1, l, docWorkOrder, err)
				}
				devices[e.Device] = true
			}
			for _, d := range []string{docDeviceA1, docDeviceA2, docRetried} {
				if !devices[d] {
					t.Errorf("%s: the export holds no event of %s", cmd, d)
				}
			}
		}},
		{key: "/v1/events", stream: true, check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			typ, data, _ := strings.Cut(string(out), "\n")
			var ev localapi.Event
			data, ok := strings.CutPrefix(data, "data: ")
			if typ != "event: state" || !ok {
				t.Fatalf("%s = first event %q, want event: state, data: …", cmd, out)
			}
			decodeStrict(t, cmd, []byte(data), &ev)
			if ev.Type != "state" || ev.State == nil || ev.State.Station != stationID {
				t.Errorf("%s = first event %s, want the state of %s", cmd, data, stationID)
			}
		}},
		{key: "/label.png", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			b, err := os.ReadFile(filepath.Join(dir, "label.png"))
			if err != nil {
				t.Fatalf("%s wrote no file: %v\n%s", cmd, err, out)
			}
			if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
				t.Errorf("%s = %.200q, want a PNG", cmd, b)
			}
		}},
		{key: "scurl http://station/metrics", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if m := docMetrics(t, cmd, out); m["station_slots"] != 2 {
				t.Errorf("%s = station_slots %v, want 2", cmd, m["station_slots"])
			}
		}},
		{key: "127.0.0.1:PORT/metrics", check: func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
			if m := docMetrics(t, cmd, out); m["station_slots"] != 2 {
				t.Errorf("%s = station_slots %v, want 2", cmd, m["station_slots"])
			}
			// The doc: 401 without the key.
			if e := apiError(t, cmd, s.runWithKey(t, dir, "", cmd)); e.Code != "unauthorized" {
				t.Errorf("%s without KEY = %+v, want unauthorized", cmd, e)
			}
		}},
	}
	// The Prometheus scrape configuration: valid YAML that scrapes the
	// loopback listener with the key, as the curl example above does.
	const scrapeKey = "scrape_configs:"

	keys := []string{scrapeKey}
	for _, e := range examples {
		keys = append(keys, e.key)
	}
	byKey := matchDocExamples(t, doc, docExamples(t, filepath.Join("..", "..", doc)), keys)
	if t.Failed() {
		return
	}

	t.Run("prometheus scrape config", func(t *testing.T) {
		var c struct {
			ScrapeConfigs []struct {
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
				Authorization struct {
					Type            string `yaml:"type"`
					CredentialsFile string `yaml:"credentials_file"`
				} `yaml:"authorization"`
			} `yaml:"scrape_configs"`
		}
		if err := yaml.Unmarshal([]byte(byKey[scrapeKey].text), &c); err != nil {
			t.Fatalf("yaml.Unmarshal(scrape config) = %v", err)
		}
		if len(c.ScrapeConfigs) != 1 || len(c.ScrapeConfigs[0].StaticConfigs) != 1 ||
			!slices.Equal(c.ScrapeConfigs[0].StaticConfigs[0].Targets, []string{"127.0.0.1:PORT"}) ||
			c.ScrapeConfigs[0].Authorization.Type != "Bearer" {
			t.Errorf("scrape config = %+v, want one job on 127.0.0.1:PORT with a Bearer key", c)
		}
	})

	s := newDocStation(t)
	s.alias = byKey["alias scurl="].text
	for _, e := range examples {
		cmd := byKey[e.key].text
		ok := t.Run(cmd, func(t *testing.T) {
			if e.given != nil {
				e.given(t, s)
			}
			dir := t.TempDir()
			var out []byte
			if e.stream {
				out = s.firstEvent(t, dir, cmd)
			} else {
				out = s.run(t, dir, cmd)
			}
			e.check(t, s, cmd, dir, out)
		})
		if !ok {
			t.Fatalf("%s failed: the later examples build on the station it leaves", cmd)
		}
	}
}

// runIs checks that a command answers the State with the run in want.
func runIs(want localapi.RunState) docCheck {
	return func(t *testing.T, s *docStation, cmd, dir string, out []byte) {
		if st := docState(t, cmd, out); st.Run != want {
			t.Errorf("%s = run %s, want %s", cmd, st.Run, want)
		}
	}
}

// docFixture is a fixture file for the full example of
// docs/station-yaml.md, which names one (fixtures are documented apart).
const docFixture = `name: line1
slots:
  - name: A1
    protocol: esp
    port: /dev/ttyUSB0
`

// TestStationYAMLDocExamples checks the station.yaml examples of
// docs/station-yaml.md: each is read by the strict decoder and loads and
// validates with the daemon's loader (the full example next to a fixture
// file of its own), and the doc's command, station config check --config
// station.yaml, run through the station command line on it, finds nothing
// wrong with the file. The full example names a printer and a DMS on the
// plant's network, which the test must not contact: its check runs with
// --offline, which the doc documents. A command or YAML block the doc
// gains that the test does not know fails the test.
func TestStationYAMLDocExamples(t *testing.T) {
	const (
		doc      = "docs/station-yaml.md"
		check    = "station config check --config station.yaml"
		full     = "station: line1-st3"
		simulate = "simulate:"
	)
	byKey := matchDocExamples(t, doc, docExamples(t, filepath.Join("..", "..", doc)), []string{check, full, simulate})
	if t.Failed() {
		return
	}

	// The command's comment names the default file.
	shown := byKey[check].text
	if _, comment, ok := strings.Cut(shown, "#"); ok {
		if def, ok := strings.CutPrefix(strings.TrimSpace(comment), "default "); !ok || def != station.DefaultConfig {
			t.Errorf("%s: the comment says %q, want default %s", shown, comment, station.DefaultConfig)
		}
	}
	cmd, _, _ := strings.Cut(shown, "#")
	cmd = strings.TrimSpace(cmd)
	if strings.ContainsAny(cmd, `'"$\`) {
		t.Fatalf("%s: the test splits commands at spaces and quotes nothing", shown)
	}
	args := strings.Fields(cmd)[1:] // after "station"

	for _, tc := range []struct {
		name  string
		key   string
		files map[string]string // besides station.yaml
		args  []string          // added to the doc's command
		// errorsOK are the checks that may find errors: the files the
		// example names outside its folder, which this machine lacks.
		errorsOK []string
		want     func(cfg daemon.Config) string // what the example must say, or ""
	}{
		{"full", full, map[string]string{"fixture.yaml": docFixture}, []string{"--offline"},
			[]string{"dms.key_file", "dms.token_file", "api.key_file", "api.group"},
			func(cfg daemon.Config) string {
				if cfg.Simulate != nil || cfg.API.Listen != "127.0.0.1:7070" || len(cfg.Operators) != 2 || cfg.WorkOrder != "WO-1042" {
					return "a real fixture, a loopback listener, two operators and a work order"
				}
				return ""
			}},
		{"simulated", simulate, nil, nil, nil,
			func(cfg daemon.Config) string {
				if cfg.Simulate == nil || cfg.Simulate.Devices != 16 || cfg.Fixture != "" || cfg.DMS.URL != "" {
					return "16 simulated devices and no fixture or DMS"
				}
				return ""
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := byKey[tc.key].text
			cfg, err := daemon.ParseConfig([]byte(text))
			if err != nil {
				t.Fatalf("ParseConfig(%s example) = %v", tc.name, err)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "station.yaml")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			for name, data := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if cfg, err = daemon.LoadConfig(path); err != nil {
				t.Fatalf("LoadConfig(%s example) = %v", tc.name, err)
			}
			if want := tc.want(cfg); want != "" {
				t.Errorf("LoadConfig(%s example) = %+v, want %s", tc.name, cfg, want)
			}

			t.Chdir(dir)
			var out bytes.Buffer
			m := &station.Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
			err = m.Run(t.Context(), append(slices.Clone(args), tc.args...))
			run := strings.Join(append([]string{cmd}, tc.args...), " ")
			errs, valid := 0, false
			for _, l := range strings.Split(out.String(), "\n") {
				f := splitFinding(l)
				if f == nil {
					continue
				}
				if f[0] == "error" {
					errs++
					if !slices.Contains(tc.errorsOK, f[1]) {
						t.Errorf("%s: finding %q, want no error but about the files the example names outside its folder", run, strings.TrimSpace(l))
					}
				}
				if f[1] == "config" {
					valid = f[0] == "ok"
				}
			}
			if !valid {
				t.Errorf("%s = %q, want the file found valid (ok config)", run, out.String())
			}
			if want := min(errs, 1); station.Code(err) != want {
				t.Errorf("%s = exit %d (%v), want %d for %d error(s)\n%s", run, station.Code(err), err, want, errs, out.String())
			}
		})
	}
}

// splitFinding splits a finding line of station config check ("  level
// check  message", in columns) into its level, check and message; nil for
// another line.
func splitFinding(l string) []string {
	rest, ok := strings.CutPrefix(l, "  ")
	if !ok {
		return nil
	}
	f := strings.SplitN(rest, "  ", 2)
	if len(f) != 2 || (f[0] != "ok" && f[0] != "warning" && f[0] != "error") {
		return nil
	}
	check, msg, _ := strings.Cut(strings.TrimLeft(f[1], " "), "  ")
	return []string{f[0], check, strings.TrimSpace(msg)}
}
