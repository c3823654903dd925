package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/pgtest"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/internal/testkit"
	"github.com/station-dev/station/station/journal"
)

// Gate modes: what the wrapper around the real DMS does with a request.
const (
	pass      int32 = iota // hand it to the DMS
	down                   // answer 503 unavailable, as a proxy in front of a dead DMS does
	drop                   // drop the connection without an answer
	loseReply              // let the DMS do it, then drop the connection: the answer is lost
	stall                  // answer nothing until the client gives up
)

// gate wraps the real DMS handler. It can be switched to fail, and it
// records the sequence numbers of every ingest batch that reached the
// DMS.
type gate struct {
	next http.Handler
	mode atomic.Int32

	mu      sync.Mutex
	batches [][]int64 // seqs of each batch handed to the DMS
	// bug, when set, is a rule the DMS should not have: a batch holding
	// an event it refuses is answered as the DMS answers a refused event
	// (422 naming the seq and the field), as a DMS with that bug would.
	bug func(journal.Event) *dms.FieldError
}

// setBug gives the DMS a wrong rule (nil: fixed).
func (g *gate) setBug(bug func(journal.Event) *dms.FieldError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.bug = bug
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/test/redirect" {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		return
	}
	mode := g.mode.Load()
	switch mode {
	case down:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(dmsapi.Error{Error: dmsapi.ErrorBody{Code: dmsapi.CodeUnavailable, Message: "the DMS is down for the test"}})
		return
	case drop:
		panic(http.ErrAbortHandler)
	case stall:
		// Read the body, so that the server notices the client leave.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/events") {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req dmsapi.IngestRequest
		if json.Unmarshal(body, &req) == nil {
			seqs := make([]int64, len(req.Events))
			for i, e := range req.Events {
				seqs[i] = e.Seq
			}
			g.mu.Lock()
			g.batches = append(g.batches, seqs)
			bug := g.bug
			g.mu.Unlock()
			for _, e := range req.Events {
				if fe := bugRefusal(bug, e); fe != nil {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusUnprocessableEntity)
					json.NewEncoder(w).Encode(dmsapi.Error{Error: dmsapi.ErrorBody{
						Code: dmsapi.CodeInvalid, Message: fe.Error(), Field: fe.Field, Seq: fe.Seq}})
					return
				}
			}
		}
	}
	if mode == loseReply {
		g.next.ServeHTTP(httptest.NewRecorder(), r)
		panic(http.ErrAbortHandler)
	}
	g.next.ServeHTTP(w, r)
}

// bugRefusal is bug's refusal of e, if any.
func bugRefusal(bug func(journal.Event) *dms.FieldError, e journal.Event) *dms.FieldError {
	if bug == nil {
		return nil
	}
	return bug(e)
}

// count returns the number of batches recorded.
func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.batches)
}

// sent returns the batches handed to the DMS since the last call.
func (g *gate) sent() [][]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.batches
	g.batches = nil
	return b
}

// testDMS is the real DMS server on SQLite, behind a gate, over loopback.
type testDMS struct {
	svc   *dms.Service
	clock *testkit.Clock
	gate  *gate
	srv   *httptest.Server
	key   jobs.Secret // a station key for station st-1
	seed  dms.SeedResult
	files map[string][]byte
}

const testStation = "st-1"

func newTestDMS(t testing.TB) *testDMS {
	t.Helper()
	return newTestDMSOn(t, "sqlite:"+filepath.Join(t.TempDir(), "dms.db"))
}

// backends are the stores a DMS of the tests runs on: SQLite in a
// temporary folder and a fresh database on the test binary's throwaway
// PostgreSQL cluster.
var backends = []struct {
	name string
	dsn  func(t testing.TB) string
}{
	{"sqlite", func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "dms.db") }},
	{"postgres", func(t testing.TB) string { return pgtest.NewDatabase(t) }},
}

// newTestDMSOn is newTestDMS on the database dsn.
func newTestDMSOn(t testing.TB, dsn string) *testDMS {
	t.Helper()
	ctx := context.Background()
	st, err := dms.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("dms.Open = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	clk := testkit.NewClock(time.Now().UTC())
	svc := &dms.Service{Store: st, Clock: clk.Now}
	g := &gate{next: server.New(server.Config{Service: svc, UploadDir: t.TempDir()})}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	_, key, err := svc.CreateKey(ctx, dms.Key{Role: dms.RoleStation, Station: testStation, Name: "test"})
	if err != nil {
		t.Fatalf("CreateKey(station) = %v", err)
	}
	files := map[string][]byte{"app.bin": image("2.0", 150_000), "boot.bin": image("boot", 5000)}
	res, err := svc.Seed(ctx, dms.SeedSpec{
		Customer: dms.Customer{ID: "ACME", Name: "Acme Heating"},
		Product:  jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-100-A", Stage: jobs.StageProduction},
		Bundle: jobs.Bundle{Version: "2.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{
			{Name: "boot.bin", Target: "esp", Address: jobs.NewAddress(0x1000), Format: "bin", URL: "boot.bin"},
			{Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Format: "bin", URL: "app.bin"},
		}},
		Files:     files,
		Claims:    100,
		WorkOrder: dms.WorkOrderSpec{ID: "WO-1", Quantity: 100},
	})
	if err != nil {
		t.Fatalf("Seed = %v", err)
	}
	return &testDMS{svc: svc, clock: clk, gate: g, srv: srv, key: key, seed: res, files: files}
}

// client returns a client of d with the station key, logging to logs.
func (d *testDMS) client(t testing.TB, logs *logBuffer) *Client {
	t.Helper()
	c, err := New(Config{URL: d.srv.URL, Key: d.key, Station: testStation, HTTP: d.srv.Client(), Logger: newLogger(logs)})
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return c
}

// image returns n bytes of firmware that differ by version.
func image(version string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ version[0] ^ byte(i>>9)
	}
	copy(b, "firmware "+version)
	return b
}

func hwID(n int) flasher.HardwareID {
	return flasher.HardwareID(fmt.Sprintf("aa:bb:cc:00:%02x:%02x", n>>8, n&0xff))
}

// logBuffer collects a component's logs for the secret checks.
type logBuffer = testkit.Buffer

func newLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// assertNoSecret fails if text holds any of the secrets.
func assertNoSecret(t testing.TB, what, text string, secrets ...jobs.Secret) {
	t.Helper()
	for _, s := range secrets {
		if v := s.Reveal(); v != "" && strings.Contains(text, v) {
			t.Errorf("%s holds a secret (%.6s…)", what, v)
		}
	}
}

// openJournal opens a journal for the test station in dir.
func openJournal(t testing.TB, dir string, logs *logBuffer) *journal.Journal {
	t.Helper()
	j, err := journal.Open(context.Background(), filepath.Join(dir, "journal.db"), testStation, newLogger(logs))
	if err != nil {
		t.Fatalf("journal.Open = %v", err)
	}
	return j
}

// appendEvents appends n step events to j.
func appendEvents(t testing.TB, j *journal.Journal, n int) {
	t.Helper()
	const chunk = 1000
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		events := make([]journal.Event, k)
		for i := range events {
			st := journal.StatusStarted
			if (done+i)%2 == 1 {
				st = journal.StatusPassed
			}
			events[i] = journal.Event{
				Kind: journal.KindStep, WorkOrder: "WO-1", Slot: fmt.Sprintf("A%d", (done+i)%4),
				Device: string(hwID((done + i) / 16)), Step: "flash", Status: st, Attempt: 1,
				Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, done+i)),
			}
		}
		if _, err := j.Append(context.Background(), events...); err != nil {
			t.Fatalf("Append = %v", err)
		}
	}
}
