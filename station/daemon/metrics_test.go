package daemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// sampleLine is one sample of the text format: name{labels} value.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)

// scrape writes the daemon's metrics and reads them back: series (the
// name with its labels, as written) to values.
func scrape(t *testing.T, b *bench) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	if err := b.d.WriteMetrics(t.Context(), &buf); err != nil {
		t.Fatalf("WriteMetrics() = %v", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("metrics line %q is not name{labels} value", line)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("metrics line %q: value: %v", line, err)
		}
		out[m[1]] = v
	}
	return out
}

// stepEvents reads the journal's step events with an outcome.
func stepEvents(t *testing.T, b *bench) []journal.Event {
	t.Helper()
	var out []journal.Event
	for _, st := range []journal.Status{journal.StatusPassed, journal.StatusFailed} {
		events, err := b.d.Journal().Events(t.Context(), journal.Filter{Kind: journal.KindStep, Status: st})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, events...)
	}
	return out
}

// checkAgainstJournal checks the step histogram, the bytes written and the
// events counted against what the (new) journal holds.
func checkAgainstJournal(t *testing.T, b *bench, m map[string]float64) {
	t.Helper()
	counts := map[string]float64{}
	var written float64
	for _, e := range stepEvents(t, b) {
		counts[fmt.Sprintf(`station_step_duration_seconds_count{step=%q,result=%q}`, e.Step, e.Status)]++
		if e.Step == "flash" && e.Status == journal.StatusPassed {
			var data struct{ Bytes float64 }
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatal(err)
			}
			written += data.Bytes
		}
	}
	if len(counts) == 0 {
		t.Fatal("the journal holds no step events")
	}
	for series, want := range counts {
		if m[series] != want {
			t.Errorf("%s = %v, want %v (the journal's step events)", series, m[series], want)
		}
	}
	if got := m[`station_bytes_written_total{protocol="esp"}`]; got != written || got == 0 {
		t.Errorf(`station_bytes_written_total{protocol="esp"} = %v, want %v (the journal's passed flash steps)`, got, written)
	}
	st, err := b.d.Journal().SyncState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := m["station_journal_events_total"]; got != float64(st.Last) {
		t.Errorf("station_journal_events_total = %v, want %d (every event of the new journal)", got, st.Last)
	}
}

func TestMetricsFollowTheRun(t *testing.T) {
	b := newBench(t, 2, 10, false)
	ctx := t.Context()

	m := scrape(t, b)
	for series, want := range map[string]float64{
		`station_slots`:                                2,
		`station_slots_busy`:                           0,
		`station_build_info{version="test"}`:           1,
		`station_devices_total{result="passed"}`:       0,
		`station_devices_total{result="failed"}`:       0,
		`station_devices_total{result="overridden"}`:   0,
		`station_bytes_written_total{protocol="esp"}`:  0,
		`station_devices_total{result="already_done"}`: 0,
		`station_devices_total{result="stopped"}`:      0,
		`station_devices_total{result="skipped"}`:      0,
		`station_sync_lag_seconds`:                     m[`station_sync_lag_seconds`],
		`station_sync_lag_events`:                      m[`station_sync_lag_events`],
		`station_journal_events_total`:                 m[`station_journal_events_total`],
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("before any device: %s = %v (present %t), want %v", series, got, ok, want)
		}
	}
	if _, ok := m[`station_step_duration_seconds_count{step="flash",result="passed"}`]; ok {
		t.Error("a flash step's time before any step ran")
	}

	b.signIn(pinOperator)
	if err := b.d.Load(ctx, b.sim.WorkOrder); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sawBusy := false
	waitFor(t, b.d, "both passed", func(st localapi.State) bool {
		m := scrape(t, b)
		if busy := m["station_slots_busy"]; busy < 0 || busy > 2 {
			t.Errorf("station_slots_busy = %v, want 0 to 2", busy)
		} else if busy > 0 {
			sawBusy = true
		}
		return allStatus(localapi.SlotPassed)(st)
	})
	if !sawBusy {
		t.Error("station_slots_busy was never above 0 while the devices ran")
	}
	m = scrape(t, b)
	if got := m[`station_devices_total{result="passed"}`]; got != 2 {
		t.Errorf(`station_devices_total{result="passed"} = %v, want 2`, got)
	}
	if got := m["station_slots_busy"]; got != 0 {
		t.Errorf("station_slots_busy after the run = %v, want 0", got)
	}
	if got := m[`station_step_duration_seconds_bucket{step="flash",result="passed",le="+Inf"}`]; got != 2 {
		t.Errorf("flash +Inf bucket = %v, want 2", got)
	}
	checkAgainstJournal(t, b, m)

	// A restart starts the counts from 0 (the journal is not read again);
	// the gauges are as before.
	b.shutdown()
	b.start()
	m = scrape(t, b)
	if got := m[`station_devices_total{result="passed"}`]; got != 0 {
		t.Errorf(`after a restart: station_devices_total{result="passed"} = %v, want 0`, got)
	}
	if got := m[`station_bytes_written_total{protocol="esp"}`]; got != 0 {
		t.Errorf(`after a restart: station_bytes_written_total = %v, want 0`, got)
	}
	if got := m["station_slots"]; got != 2 {
		t.Errorf("after a restart: station_slots = %v, want 2", got)
	}
}

func TestMetricsOfFailuresAndOverride(t *testing.T) {
	b := newBench(t, 2, 5, false)
	ctx := t.Context()
	b.runToFailure(ctx)
	m := scrape(t, b)
	if got := m[`station_devices_total{result="failed"}`]; got != 2 {
		t.Errorf(`station_devices_total{result="failed"} = %v, want 2`, got)
	}
	if got := m[`station_step_duration_seconds_count{step="flash",result="failed"}`]; got < 2 {
		t.Errorf(`flash failed count = %v, want at least 2 (one per device, more with retries)`, got)
	}
	if got := m[`station_bytes_written_total{protocol="esp"}`]; got != 0 {
		t.Errorf("bytes written by failed flashes = %v, want 0", got)
	}
	checkFailedAgainstJournal(t, b, m)

	if err := b.d.Override(ctx, "S02", "rework ticket 17", localapi.Credential{PIN: pinSupervisor}); err != nil {
		t.Fatalf("Override() = %v", err)
	}
	m = scrape(t, b)
	if got := m[`station_devices_total{result="overridden"}`]; got != 1 {
		t.Errorf(`station_devices_total{result="overridden"} = %v, want 1`, got)
	}
	if got := m[`station_devices_total{result="failed"}`]; got != 2 {
		t.Errorf(`station_devices_total{result="failed"} after an override = %v, want 2 (counts only go up)`, got)
	}
}

// checkFailedAgainstJournal checks the step counts against the journal
// when no flash passed.
func checkFailedAgainstJournal(t *testing.T, b *bench, m map[string]float64) {
	t.Helper()
	want := map[string]float64{}
	for _, e := range stepEvents(t, b) {
		want[fmt.Sprintf(`station_step_duration_seconds_count{step=%q,result=%q}`, e.Step, e.Status)]++
	}
	for series, n := range want {
		if m[series] != n {
			t.Errorf("%s = %v, want %v (the journal's step events)", series, m[series], n)
		}
	}
}

func TestMetricsSyncLag(t *testing.T) {
	b := newBench(t, 1, 5, false)
	// The syncer pushes the journal to the simulation's DMS: the lag
	// drains to nothing.
	// The sync changes nothing the state's watchers are told of, so poll.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m := scrape(t, b)
		if m["station_sync_lag_events"] == 0 && m["station_sync_lag_seconds"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sync lag did not drain: %v events, %v s", m["station_sync_lag_events"], m["station_sync_lag_seconds"])
		}
	}
	b.shutdown()

	// A DMS that cannot be reached: the events of this start wait.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.cfg.DMS.URL = "http://" + ln.Addr().String()
	ln.Close()
	b.start()
	st := waitFor(t, b.d, "the DMS offline", func(st localapi.State) bool { return !st.DMS.OK && st.DMS.Detail != "connecting" })
	m := scrape(t, b)
	js, err := b.d.Journal().SyncState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := m["station_sync_lag_events"]; got < 1 || got > float64(js.Lag) {
		t.Errorf("station_sync_lag_events = %v with the DMS away (%s), want 1 to %d", got, st.DMS.Detail, js.Lag)
	}
	if got := m["station_sync_lag_seconds"]; got <= 0 {
		t.Errorf("station_sync_lag_seconds = %v with events waiting, want more than 0", got)
	}
}
