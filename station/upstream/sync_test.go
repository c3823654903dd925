package upstream

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/journal"
)

// fastSync retries quickly, so that tests spend no time in backoff.
var fastSync = SyncConfig{MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Poll: 10 * time.Millisecond}

// waitFor polls cond until it holds or the test's deadline nears.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	for !cond() {
		if time.Now().After(deadline.Add(-5 * time.Second)) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runSyncer starts s.Run and returns a function that stops it and
// checks that it returned nil.
func runSyncer(t *testing.T, s *Syncer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	}
}

// checkExactlyOnce compares the DMS's events of the station with the
// journal's: every (station, seq) once, with the same content.
func checkExactlyOnce(t *testing.T, svc *dms.Service, j *journal.Journal) {
	t.Helper()
	ctx := context.Background()
	got, err := svc.Events(ctx, dms.EventFilter{Station: testStation})
	if err != nil {
		t.Fatalf("DMS Events = %v", err)
	}
	want, err := j.Events(ctx, journal.Filter{})
	if err != nil {
		t.Fatalf("journal Events = %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("DMS holds %d events of %s, the journal %d", len(got), testStation, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Station != w.Station || g.Seq != w.Seq || g.Kind != w.Kind || g.Step != w.Step || g.Status != w.Status ||
			g.Device != w.Device || g.Slot != w.Slot || string(g.Data) != string(w.Data) || !g.Time.Equal(w.Time) {
			t.Fatalf("DMS event %d = %+v, journal has %+v", i, g, w)
		}
	}
}

func TestSyncerStoreAndForward(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := newTestDMS(t)
	logs := &logBuffer{}
	c := d.client(t, logs)
	dir := t.TempDir()
	j := openJournal(t, dir, logs)

	cfg := fastSync
	cfg.Logger = newLogger(logs)
	s := NewSyncer(c, j, cfg)
	appendEvents(t, j, 1200)
	stop := runSyncer(t, s)
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if st := s.State(); !st.Online || st.Acked != 1200 || st.Last != 1200 || st.Lag != 0 || st.LastError != "" {
		t.Errorf("State() after Flush = %+v, want online, 1200 acked, no lag", st)
	}
	if b := d.gate.sent(); len(b) < 3 || slices.ContainsFunc(b, func(s []int64) bool { return len(s) > MaxBatch }) {
		t.Errorf("1200 events went in %d batches, want at least 3 of at most %d", len(b), MaxBatch)
	}

	// The DMS goes away: events wait, the state says so.
	for _, mode := range []int32{down, drop} {
		acked := s.State().Acked
		d.gate.mode.Store(mode)
		appendEvents(t, j, 300)
		s.Notify()
		waitFor(t, "the syncer to see the DMS gone", func() bool { st := s.State(); return !st.Online && st.LastError != "" })
		if st := s.State(); !strings.Contains(st.LastError, "DMS") || st.Acked != acked {
			t.Errorf("State() with the DMS away = %+v, want the error and %d acked", st, acked)
		}
		// It comes back.
		d.gate.mode.Store(pass)
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush after the DMS came back = %v", err)
		}
		waitFor(t, "the syncer to see the DMS back", func() bool { return s.State().Online })
	}

	// The DMS stores a batch but its answer is lost: the batch goes again
	// and is stored once.
	d.gate.sent()
	d.gate.mode.Store(loseReply)
	appendEvents(t, j, 100)
	s.Notify()
	waitFor(t, "a batch whose answer was lost", func() bool { return d.gate.count() > 0 })
	d.gate.mode.Store(pass)
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush after a lost answer = %v", err)
	}
	if b := d.gate.sent(); len(b) < 2 || b[0][0] != 1801 || b[len(b)-1][0] != 1801 {
		t.Errorf("batches after a lost answer = %d, want the batch from 1801 sent again", len(b))
	}
	stop()
	if st := s.State(); st.Acked != 1900 || st.Lag != 0 {
		t.Errorf("State() = %+v, want 1900 acked", st)
	}
	checkExactlyOnce(t, d.svc, j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart: a new journal handle on the same file, a new Syncer. It
	// sends only what came after the cursor.
	d.gate.sent()
	j2 := openJournal(t, dir, logs)
	defer j2.Close()
	appendEvents(t, j2, 50)
	s2 := NewSyncer(c, j2, cfg)
	stop2 := runSyncer(t, s2)
	if err := s2.Flush(ctx); err != nil {
		t.Fatalf("Flush after restart = %v", err)
	}
	stop2()
	var resent []int64
	for _, b := range d.gate.sent() {
		resent = append(resent, b...)
	}
	if len(resent) != 50 || resent[0] != 1901 || resent[49] != 1950 {
		t.Errorf("after a restart the syncer sent %d events (%v…), want 1901 to 1950 only", len(resent), resent[:min(len(resent), 3)])
	}
	checkExactlyOnce(t, d.svc, j2)

	text := logs.String()
	for _, want := range []string{"DMS unreachable", "DMS back"} {
		if n := strings.Count(text, want); n != 3 {
			t.Errorf("logs say %q %d times, want 3 (once per outage, not per retry):\n%s", want, n, text)
		}
	}
	assertNoSecret(t, "logs", text, d.key, d.seed.Token)
}

func TestSyncerKeyRefused(t *testing.T) {
	ctx := context.Background()
	d := newTestDMS(t)
	logs := &logBuffer{}
	tests := []struct {
		name    string
		key     func(t *testing.T) jobs.Secret
		wantMsg string
	}{
		{"unknown key", func(*testing.T) jobs.Secret { return jobs.NewSecret("dmk_unknown-key-value") }, "refused the station's API key"},
		{"another station's key", func(t *testing.T) jobs.Secret {
			_, k, err := d.svc.CreateKey(ctx, dms.Key{Role: dms.RoleStation, Station: "st-2"})
			if err != nil {
				t.Fatal(err)
			}
			return k
		}, "refused the station's API key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key(t)
			c, err := New(Config{URL: d.srv.URL, Key: key, Station: testStation, Logger: newLogger(logs)})
			if err != nil {
				t.Fatal(err)
			}
			j := openJournal(t, t.TempDir(), logs)
			defer j.Close()
			appendEvents(t, j, 10)
			cfg := fastSync
			cfg.Logger = newLogger(logs)
			s := NewSyncer(c, j, cfg)
			stop := runSyncer(t, s)
			waitFor(t, "the refusal", func() bool { return s.State().LastError != "" })
			stop()
			st := s.State()
			if st.Online || !strings.Contains(st.LastError, tc.wantMsg) || !strings.Contains(st.LastError, "administrator") || st.Acked != 0 {
				t.Errorf("State() = %+v, want offline, nothing acked, and an error saying %q and what to do", st, tc.wantMsg)
			}
			fctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if err := s.Flush(fctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Flush(refused key) = %v, want the context's deadline", err)
			}
			assertNoSecret(t, "state", st.LastError, key)
			assertNoSecret(t, "logs", logs.String(), key, d.key)
		})
	}
}

func TestSyncerIdleProbe(t *testing.T) {
	d := newTestDMS(t)
	c := d.client(t, &logBuffer{})
	j := openJournal(t, t.TempDir(), &logBuffer{})
	defer j.Close()
	s := NewSyncer(c, j, fastSync)
	if st := s.State(); st.Online {
		t.Errorf("State() before Run = %+v, want offline", st)
	}
	stop := runSyncer(t, s)
	waitFor(t, "the first contact", func() bool { return s.State().Online })
	stop()
	if err := s.Flush(context.Background()); err != nil {
		t.Errorf("Flush(empty journal) = %v", err)
	}
}

func TestSyncerDMSAhead(t *testing.T) {
	// The DMS already holds events 1 to 30 of the station (its journal
	// was replaced): the new journal's events 1 to 20 count as
	// duplicates, the cursor still moves, and the logs say so once.
	ctx := context.Background()
	d := newTestDMS(t)
	old := openJournal(t, t.TempDir(), &logBuffer{})
	appendEvents(t, old, 30)
	events, err := old.Unsynced(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	if _, err := d.svc.IngestEvents(ctx, testStation, events); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	j := openJournal(t, t.TempDir(), logs)
	defer j.Close()
	appendEvents(t, j, 20)
	cfg := fastSync
	cfg.Batch = 5
	cfg.Logger = newLogger(logs)
	s := NewSyncer(d.client(t, logs), j, cfg)
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if st := s.State(); st.Acked != 20 || st.Lag != 0 {
		t.Errorf("State() = %+v, want 20 acked", st)
	}
	if n := strings.Count(logs.String(), "journal replaced"); n != 1 {
		t.Errorf("logs warn of a replaced journal %d times, want once:\n%s", n, logs.String())
	}
}
