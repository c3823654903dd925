package station

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/doccmd"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/upstream"
)

// The commands docs/architecture.md and "station sync --help" show, as
// shown. TestSyncResendDocCommands checks that both show exactly these;
// TestSyncResendCommand runs them, the journal's path made the test's.
const (
	docResendSeqs = "station sync resend --journal /var/lib/station/journal.db --seq 17 --seq 19"
	docResendAll  = "station sync resend --journal /var/lib/station/journal.db --all --json"
)

// TestSyncResendDocCommands: the station sync commands docs/architecture.md
// shows, and the examples of the command's help, are the ones
// TestSyncResendCommand runs.
func TestSyncResendDocCommands(t *testing.T) {
	want := []string{docResendSeqs, docResendAll}
	b, err := os.ReadFile(filepath.Join("..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, c := range doccmd.Shell(string(b)) {
		if strings.HasPrefix(c.Text, "station sync") {
			docs = append(docs, c.Text)
		}
	}
	if !slices.Equal(docs, want) {
		t.Errorf("docs/architecture.md shows %q, want %q: run what it shows in TestSyncResendCommand", docs, want)
	}
	_, examples, _ := strings.Cut(syncHelp, "Examples:\n")
	var help []string
	for _, l := range strings.Split(strings.TrimSpace(examples), "\n") {
		help = append(help, strings.Join(strings.Fields(l), " "))
	}
	if !slices.Equal(help, want) {
		t.Errorf("station sync --help shows %q, want %q: run what it shows in TestSyncResendCommand", help, want)
	}
}

// buggyDMS is the real DMS, in process, with a bug the test can switch
// on: it refuses the events of the devices named, as it refuses an event
// (422 naming its seq). It records the seqs of every batch it is sent.
type buggyDMS struct {
	next http.Handler
	srv  *httptest.Server
	svc  *dms.Service

	mu      sync.Mutex
	refuse  []string // devices whose events the bug refuses
	batches [][]int64
}

func newBuggyDMS(t *testing.T) (*buggyDMS, *upstream.Client) {
	t.Helper()
	ctx := t.Context()
	store, err := dms.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "dms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d := &buggyDMS{svc: &dms.Service{Store: store}}
	d.next = server.New(server.Config{Service: d.svc, UploadDir: t.TempDir()})
	d.srv = httptest.NewServer(d)
	t.Cleanup(d.srv.Close)
	_, key, err := d.svc.CreateKey(ctx, dms.Key{Role: dms.RoleStation, Station: "line-1", Name: "line 1"})
	if err != nil {
		t.Fatal(err)
	}
	// WO-1, which the journal's events name: line-1 takes it with its
	// first batch, since a station sends the events of its own work
	// orders only.
	if _, err := d.svc.Seed(ctx, dms.SeedSpec{
		Product: jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-100-A", Stage: jobs.StageDevelopment},
		Bundle: jobs.Bundle{Version: "1.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{
			{Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Format: "bin", URL: "app.bin"},
		}},
		Files:     map[string][]byte{"app.bin": bytes.Repeat([]byte{0xA5}, 4096)},
		WorkOrder: dms.WorkOrderSpec{ID: "WO-1", Quantity: 20},
	}); err != nil {
		t.Fatalf("Seed(WO-1) = %v", err)
	}
	c, err := upstream.New(upstream.Config{URL: d.srv.URL, Key: key, Station: "line-1", HTTP: d.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func (d *buggyDMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/events") {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req dmsapi.IngestRequest
		if json.Unmarshal(body, &req) == nil {
			d.mu.Lock()
			var seqs []int64
			var bad *journal.Event
			for _, e := range req.Events {
				seqs = append(seqs, e.Seq)
				if bad == nil && slices.Contains(d.refuse, e.Device) {
					bad = &e
				}
			}
			d.batches = append(d.batches, seqs)
			d.mu.Unlock()
			if bad != nil {
				fe := &dms.FieldError{Field: "device", Seq: bad.Seq, Problem: "is not a device the DMS knows"}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnprocessableEntity)
				json.NewEncoder(w).Encode(dmsapi.Error{Error: dmsapi.ErrorBody{Code: dmsapi.CodeInvalid, Message: fe.Error(), Field: fe.Field, Seq: fe.Seq}})
				return
			}
		}
	}
	d.next.ServeHTTP(w, r)
}

// setBug makes the DMS refuse the events of devices; none: fixed.
func (d *buggyDMS) setBug(devices ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refuse = devices
}

// sent returns how often each seq was sent since the last call.
func (d *buggyDMS) sent() map[int64]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := map[int64]int{}
	for _, b := range d.batches {
		for _, s := range b {
			n[s]++
		}
	}
	d.batches = nil
	return n
}

// stored returns the seqs the DMS holds of line-1.
func (d *buggyDMS) stored(t *testing.T) []int64 {
	t.Helper()
	events, err := d.svc.Events(t.Context(), dms.EventFilter{Station: "line-1"})
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range events {
		out = append(out, e.Seq)
	}
	return out
}

// seqRange returns from to to.
func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestSyncResendCommand: a DMS with a bug refuses events 17, 19 and 20 of
// a station's journal; the DMS is fixed; "station sync resend" as the
// docs show it marks 17 and 19, and the next sync sends them, once each,
// and no event the DMS stored before; --all then marks 20, the one that
// stays refused, and the sync after sends it.
func TestSyncResendCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	d, c := newBuggyDMS(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	j, err := journal.Open(ctx, path, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var events []journal.Event
	for i := range 20 {
		events = append(events, journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "A1",
			Device: fmt.Sprintf("D%d", i+1), Step: "flash", Status: journal.StatusPassed})
	}
	if _, err := j.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	flush := func(when string) {
		t.Helper()
		if err := upstream.NewSyncer(c, j, upstream.SyncConfig{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}).Flush(ctx); err != nil {
			t.Fatalf("Flush %s = %v", when, err)
		}
	}
	d.setBug("D17", "D19", "D20")
	flush("with the bug")
	// 17, 19 and 20 refused: the refusals are 21 to 23.
	without := slices.DeleteFunc(seqRange(1, 23), func(s int64) bool { return s == 17 || s == 19 || s == 20 })
	if got := d.stored(t); !slices.Equal(got, without) {
		t.Fatalf("DMS holds seqs %v, want %v", got, without)
	}
	d.setBug()
	d.sent()

	run := func(cmd string) (string, error) {
		t.Helper()
		args := strings.Fields(strings.ReplaceAll(cmd, "/var/lib/station/journal.db", path))[1:]
		stdout, stderr, err := runMain(t, args...)
		if err != nil {
			return stdout, fmt.Errorf("%w; stderr: %s", err, stderr)
		}
		return stdout, nil
	}
	out, err := run(docResendSeqs)
	if err != nil || !strings.Contains(out, "marked to be sent again: 2 (seqs 17, 19)") || !strings.Contains(out, "stay refused: 1") {
		t.Fatalf("%s = %q, %v; want 17 and 19 marked, 1 left", docResendSeqs, out, err)
	}
	flush("after the resend") // sends 17, 19 and the resend (24), then their record (25)
	if got, want := d.stored(t), append(slices.Clone(without), 17, 19, 24, 25); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("DMS holds seqs %v after the resend, want %v", got, want)
	}
	if got, want := d.sent(), map[int64]int{17: 1, 19: 1, 24: 1, 25: 1}; !mapsEqual(got, want) {
		t.Errorf("sent after the resend: %v, want %v: only the events sent again and their records, once each", got, want)
	}

	out, err = run(docResendAll)
	var sum struct {
		Journal      string  `json:"journal"`
		Station      string  `json:"station"`
		Resend       int     `json:"resend"`
		Seqs         []int64 `json:"seqs"`
		StillRefused int     `json:"still_refused"`
	}
	if err != nil || json.Unmarshal([]byte(out), &sum) != nil || sum.Resend != 1 || !slices.Equal(sum.Seqs, []int64{20}) ||
		sum.StillRefused != 0 || sum.Station != "line-1" || sum.Journal != path {
		t.Fatalf("%s = %q, %v; want 20 marked and none left", docResendAll, out, err)
	}
	flush("after --all")
	if got, want := d.stored(t), seqRange(1, 27); !slices.Equal(got, want) {
		t.Errorf("DMS holds seqs %v, want every event, %v", got, want)
	}
	if got, want := d.sent(), map[int64]int{20: 1, 26: 1, 27: 1}; !mapsEqual(got, want) {
		t.Errorf("sent after --all: %v, want %v", got, want)
	}

	// Nothing is refused now: --all marks nothing, and says so.
	out, err = run("station sync resend --journal " + path + " --all")
	if err != nil || !strings.Contains(out, "nothing to send again") {
		t.Errorf("resend --all with nothing refused = %q, %v; want it to say nothing is refused", out, err)
	}
	if st, err := j.SyncState(ctx); err != nil || st.Last != 27 {
		t.Errorf("journal's last seq = %+v, %v; want 27: a resend of nothing journals nothing", st, err)
	}
}

func mapsEqual(a, b map[int64]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSyncResendRefuses: wrong command lines exit 2, a seq that is not
// refused or a missing journal 3, and nothing is marked.
func TestSyncResendRefuses(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(ctx, path, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Append(ctx, journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Device: "D1", Step: "flash", Status: journal.StatusPassed},
		journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Device: "D2", Step: "flash", Status: journal.StatusPassed}); err != nil {
		t.Fatal(err)
	}
	if err := j.Refuse(ctx, 2, "device", "is not a device the DMS knows"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no subcommand", []string{"sync"}, ExitUsage, "station sync resend"},
		{"unknown subcommand", []string{"sync", "send"}, ExitUsage, "station sync resend"},
		{"no events named", []string{"sync", "resend", "--journal", path}, ExitUsage, "--seq N"},
		{"both", []string{"sync", "resend", "--journal", path, "--all", "--seq", "2"}, ExitUsage, "not both"},
		{"not a number", []string{"sync", "resend", "--journal", path, "--seq", "x"}, ExitUsage, "whole number"},
		{"zero", []string{"sync", "resend", "--journal", path, "--seq", "0"}, ExitUsage, "whole number"},
		{"not refused", []string{"sync", "resend", "--journal", path, "--seq", "2", "--seq", "1"}, ExitProblem, "event 1: it is not refused now; the refused events are 2"},
		{"no journal", []string{"sync", "resend", "--journal", path + ".missing", "--all"}, ExitProblem, "no journal at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runMain(t, tc.args...)
			if Code(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("station %s = %v (exit %d), want exit %d saying %q", strings.Join(tc.args, " "), err, Code(err), tc.code, tc.msg)
			}
		})
	}
	if refused, err := j.Refused(ctx); err != nil || len(refused) != 1 || refused[0].Seq != 2 {
		t.Errorf("Refused() after the refused commands = %+v, %v; want 2 still refused", refused, err)
	}
	for _, args := range [][]string{{"sync", "--help"}, {"sync", "resend", "--help"}} {
		stdout, stderr, err := runMain(t, args...)
		if Code(err) != ExitOK || !strings.Contains(stdout+stderr, "Examples:") || !strings.Contains(stdout+stderr, "sync_refused") {
			t.Errorf("station %s = %v; want the help with its examples", strings.Join(args, " "), err)
		}
	}
	if _, stderr, err := runMain(t, "sync", "resend", "--help"); err == nil || !strings.Contains(stderr, "Flags:") {
		t.Errorf("station sync resend --help = %v, %q; want the flags", err, stderr)
	}
}
