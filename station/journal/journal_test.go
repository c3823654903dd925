package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testStation = "station-1"

// openTest opens a new journal in a temporary folder, closed at the end
// of the test.
func openTest(t testing.TB) *Journal {
	t.Helper()
	j, err := Open(context.Background(), filepath.Join(t.TempDir(), "journal.db"), testStation, nil)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return j
}

// info is a valid non-step event.
func info(wo, action string) Event {
	return Event{Kind: KindWorkOrder, WorkOrder: wo, Step: action, Status: StatusInfo}
}

func mustAppend(t testing.TB, j *Journal, events ...Event) []Event {
	t.Helper()
	out, err := j.Append(context.Background(), events...)
	if err != nil {
		t.Fatalf("Append() error = %v", err)
	}
	return out
}

func allEvents(t testing.TB, j *Journal) []Event {
	t.Helper()
	events, err := j.Events(context.Background(), Filter{})
	if err != nil {
		t.Fatalf("Events() error = %v", err)
	}
	return events
}

// checkSeqs fails unless the events are numbered 1..len with no gap.
func checkSeqs(t testing.TB, events []Event) {
	t.Helper()
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("events[%d].Seq = %d, want %d", i, e.Seq, i+1)
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := t.Context()
	// A folder that does not exist yet, with characters a SQLite URI
	// must escape.
	path := filepath.Join(t.TempDir(), "new folder", "odd #name? 100%", "journal.db")
	j, err := Open(ctx, path, testStation, nil)
	if err != nil {
		t.Fatalf("Open(%q) error = %v", path, err)
	}
	defer j.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("journal file: %v", err)
	}
	if j.Path() != path {
		t.Errorf("Path() = %q, want %q", j.Path(), path)
	}
	if j.StationID() != testStation {
		t.Errorf("StationID() = %q, want %q", j.StationID(), testStation)
	}
	writer := map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "5000",
		"user_version": "1",
	}
	for pragma, want := range writer {
		var got string
		if err := j.write.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatalf("writer PRAGMA %s: %v", pragma, err)
		}
		if got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	if got := j.write.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer MaxOpenConnections = %d, want 1", got)
	}
	var queryOnly string
	if err := j.read.QueryRowContext(ctx, "PRAGMA query_only").Scan(&queryOnly); err != nil {
		t.Fatalf("reader PRAGMA query_only: %v", err)
	}
	if queryOnly != "1" {
		t.Errorf("reader PRAGMA query_only = %s, want 1", queryOnly)
	}
	if _, err := j.read.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('x', 'y')"); err == nil {
		t.Errorf("insert through the read pool succeeded, want it refused")
	}
	if err := j.IntegrityCheck(ctx); err != nil {
		t.Errorf("IntegrityCheck() = %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, path, station string
		want                string
	}{
		{"no path", "", testStation, "no path"},
		{"no station", filepath.Join(dir, "a.db"), "", "no station id"},
		{"folder is a file", filepath.Join(dir, "file", "a.db"), testStation, "create journal folder"},
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Open(t.Context(), tt.path, tt.station, nil)
			if err == nil {
				j.Close()
				t.Fatalf("Open(%q, %q) error = nil, want %q", tt.path, tt.station, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%q, %q) error = %v, want %q", tt.path, tt.station, err, tt.want)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(ctx, path, testStation, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, info("WO-1", "loaded"), info("WO-1", "started"), info("WO-1", "paused"))
	if err := j.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	t.Run("another station is refused", func(t *testing.T) {
		j, err := Open(ctx, path, "station-2", nil)
		if err == nil {
			j.Close()
			t.Fatal(`Open(station-2) error = nil, want "belongs to station"`)
		}
		for _, want := range []string{`belongs to station "station-1"`, `not "station-2"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Open(station-2) error = %v, want %q", err, want)
			}
		}
	})

	t.Run("seq continues", func(t *testing.T) {
		j, err := Open(ctx, path, testStation, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		got := mustAppend(t, j, info("WO-1", "resumed"), info("WO-1", "completed"))
		if got[0].Seq != 4 || got[1].Seq != 5 {
			t.Errorf("Append() after reopen seqs = %d, %d, want 4, 5", got[0].Seq, got[1].Seq)
		}
		n, err := j.Count(ctx)
		if err != nil || n != 5 {
			t.Errorf("Count() = %d, %v, want 5, nil", n, err)
		}
		checkSeqs(t, allEvents(t, j))
	})
}

func TestOpenNewerSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(ctx, path, testStation, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.write.ExecContext(ctx, "PRAGMA user_version = 7"); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err = Open(ctx, path, testStation, nil)
	if err == nil {
		j.Close()
		t.Fatal("Open() of a newer schema error = nil, want refused")
	}
	if !strings.Contains(err.Error(), "schema version 7 is newer") {
		t.Errorf("Open() of a newer schema error = %v, want it to name version 7", err)
	}
}

func TestAppendAssigns(t *testing.T) {
	j := openTest(t)
	at := time.Date(2025, 3, 4, 12, 30, 0, 123456789, time.FixedZone("CET", 3600))
	before := time.Now().UTC()
	got := mustAppend(t, j,
		Event{Kind: KindStation, Step: "started", Status: StatusInfo, Seq: 99, Station: "forged"},
		Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Device: "aa:bb", Operator: "ann",
			Step: "flash", Status: StatusPassed, Attempt: 1, Duration: 1500 * time.Millisecond,
			Time: at, Data: json.RawMessage(` { "bytes" : 4096 } `)},
	)
	if got[0].Seq != 1 || got[1].Seq != 2 {
		t.Errorf("Append() seqs = %d, %d, want 1, 2", got[0].Seq, got[1].Seq)
	}
	for i, e := range got {
		if e.Station != testStation {
			t.Errorf("Append()[%d].Station = %q, want %q", i, e.Station, testStation)
		}
	}
	if got[0].Time.Before(before) || got[0].Time.Location() != time.UTC {
		t.Errorf("Append()[0].Time = %v, want now in UTC", got[0].Time)
	}
	if !got[1].Time.Equal(at) || got[1].Time.Location() != time.UTC {
		t.Errorf("Append()[1].Time = %v, want %v in UTC", got[1].Time, at)
	}
	if string(got[1].Data) != `{"bytes":4096}` {
		t.Errorf("Append()[1].Data = %s, want compact JSON", got[1].Data)
	}
	stored := allEvents(t, j)
	if !reflect.DeepEqual(stored, got) {
		t.Errorf("Events() = %+v, want what Append returned %+v", stored, got)
	}
	if n, err := j.Append(t.Context()); n != nil || err != nil {
		t.Errorf("Append() with no events = %v, %v, want nil, nil", n, err)
	}
}

func TestAppendValidates(t *testing.T) {
	ok := Event{Kind: KindStep, WorkOrder: "WO-1", Device: "d1", Step: "flash", Status: StatusStarted}
	with := func(f func(*Event)) Event {
		e := ok
		f(&e)
		return e
	}
	tests := []struct {
		name string
		e    Event
		want string // "" for a valid event
	}{
		{"valid step", ok, ""},
		{"valid info", info("WO-1", "loaded"), ""},
		{"null data is no data", with(func(e *Event) { e.Data = json.RawMessage("null") }), ""},
		{"unknown kind", with(func(e *Event) { e.Kind = "stepp" }), `unknown kind "stepp"`},
		{"no kind", with(func(e *Event) { e.Kind = "" }), `unknown kind ""`},
		{"unknown status", with(func(e *Event) { e.Status = "ok" }), `unknown status "ok"`},
		{"step without step", with(func(e *Event) { e.Step = "" }), "names no step"},
		{"step with info status", with(func(e *Event) { e.Status = StatusInfo }), "want started, passed"},
		{"data array", with(func(e *Event) { e.Data = json.RawMessage(`[1,2]`) }), "not a JSON object"},
		{"data string", with(func(e *Event) { e.Data = json.RawMessage(`"x"`) }), "not a JSON object"},
		{"data broken", with(func(e *Event) { e.Data = json.RawMessage(`{"a":`) }), "not a JSON object"},
		{"negative attempt", with(func(e *Event) { e.Attempt = -1 }), "attempt -1"},
		{"negative duration", with(func(e *Event) { e.Duration = -time.Second }), "duration -1s"},
		{"time out of range", with(func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := openTest(t)
			// The valid first event must not be stored when the second
			// is refused: a batch is all or nothing.
			_, err := j.Append(t.Context(), info("WO-1", "loaded"), tt.e)
			n, cerr := j.Count(t.Context())
			if cerr != nil {
				t.Fatal(cerr)
			}
			if tt.want == "" {
				if err != nil || n != 2 {
					t.Errorf("Append(%+v) = %v with %d events stored, want nil with 2", tt.e, err, n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "event 2 of 2") {
				t.Errorf("Append(%+v) error = %v, want %q in event 2 of 2", tt.e, err, tt.want)
			}
			if n != 0 {
				t.Errorf("Count() after a refused batch = %d, want 0", n)
			}
		})
	}
}

func TestAppendOnly(t *testing.T) {
	j := openTest(t)
	mustAppend(t, j, info("WO-1", "loaded"), info("WO-1", "started"))
	now := time.Now().UTC().Format(timeLayout)
	tests := []struct {
		name string
		sql  string
		args []any
		want string
	}{
		{"update", "UPDATE events SET status = 'passed' WHERE seq = 1", nil, "append-only, update refused"},
		{"delete", "DELETE FROM events WHERE seq = 2", nil, "append-only, delete refused"},
		{"delete all", "DELETE FROM events", nil, "append-only, delete refused"},
		{"replace", "INSERT OR REPLACE INTO events (seq, station, time, kind, status) VALUES (1, ?, ?, 'station', 'info')",
			[]any{testStation, now}, "must follow the last seq"},
		{"gap", "INSERT INTO events (seq, station, time, kind, status) VALUES (4, ?, ?, 'station', 'info')",
			[]any{testStation, now}, "must follow the last seq"},
		{"other station", "INSERT INTO events (seq, station, time, kind, status) VALUES (1, 'station-2', ?, 'station', 'info')",
			[]any{now}, "another station"},
		{"station id changed", "UPDATE meta SET value = 'station-2' WHERE key = 'station_id'", nil, "never changes"},
		{"sync cursor back", "UPDATE sync_cursor SET acked_seq = -1", nil, "only moves forward"},
		{"sync cursor deleted", "DELETE FROM sync_cursor", nil, "never deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := j.write.ExecContext(t.Context(), tt.sql, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Exec(%q) error = %v, want %q", tt.sql, err, tt.want)
			}
		})
	}
	events := allEvents(t, j)
	if len(events) != 2 || events[0].Step != "loaded" || events[1].Step != "started" {
		t.Errorf("Events() after refused changes = %+v, want the two events unchanged", events)
	}
}

func TestConcurrentAppend(t *testing.T) {
	j := openTest(t)
	const goroutines, batches = 32, 12
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	got := make([][]Event, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for b := range batches {
				size := 1 + (g+b)%3
				var batch []Event
				for i := range size {
					batch = append(batch, Event{Kind: KindStep, WorkOrder: "WO-1", Slot: fmt.Sprintf("S%02d", g),
						Device: fmt.Sprintf("dev-%02d", g), Step: "flash", Status: StatusStarted,
						Data: json.RawMessage(fmt.Sprintf(`{"g":%d,"b":%d,"i":%d}`, g, b, i))})
				}
				out, err := j.Append(context.Background(), batch...)
				if err != nil {
					errs <- err
					return
				}
				got[g] = append(got[g], out...)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append() from a goroutine: %v", err)
	}
	want := 0
	seen := map[int64]bool{}
	for g, events := range got {
		for i, e := range events {
			if seen[e.Seq] {
				t.Fatalf("seq %d returned twice", e.Seq)
			}
			seen[e.Seq] = true
			// A batch takes consecutive seqs.
			if i > 0 && dataInt(t, e, "i") > 0 && e.Seq != events[i-1].Seq+1 {
				t.Errorf("goroutine %d: batch seqs %d then %d, want consecutive", g, events[i-1].Seq, e.Seq)
			}
		}
		want += len(events)
	}
	stored := allEvents(t, j)
	if len(stored) != want {
		t.Fatalf("Events() = %d events, want %d", len(stored), want)
	}
	checkSeqs(t, stored)
	if err := j.IntegrityCheck(t.Context()); err != nil {
		t.Errorf("IntegrityCheck() = %v", err)
	}
}

func dataInt(t testing.TB, e Event, key string) int {
	t.Helper()
	var m map[string]int
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("event %d data %s: %v", e.Seq, e.Data, err)
	}
	return m[key]
}

func TestReadersDoNotBlockWriter(t *testing.T) {
	ctx := t.Context()
	j := openTest(t)
	for range 5 {
		mustAppend(t, j, info("WO-1", "a"), info("WO-1", "b"), info("WO-1", "c"), info("WO-1", "d"))
	}
	// A long read: a read transaction with a query half consumed.
	tx, err := j.read.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT seq FROM events ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("rows.Next() = false, want a first row: %v", rows.Err())
	}

	// Were the reader blocking it, each Append would wait busy_timeout
	// and fail with SQLITE_BUSY.
	for range 20 {
		mustAppend(t, j, info("WO-1", "more"))
	}
	if err := j.Ack(ctx, 40); err != nil {
		t.Fatalf("Ack(40) during a read = %v", err)
	}

	// The reader still sees its snapshot of 20 events.
	n := 1
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("long read saw %d events, want its snapshot of 20", n)
	}
	if got, err := j.Count(ctx); err != nil || got != 40 {
		t.Errorf("Count() = %d, %v, want 40, nil", got, err)
	}
}

func TestEvents(t *testing.T) {
	j := openTest(t)
	t0 := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	mustAppend(t, j,
		Event{Kind: KindWorkOrder, WorkOrder: "WO-1", Step: "loaded", Status: StatusInfo, Time: at(0)},
		Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Device: "d1", Step: "flash", Status: StatusStarted, Time: at(1)},
		Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S2", Device: "d2", Step: "flash", Status: StatusStarted, Time: at(2)},
		Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Device: "d1", Step: "flash", Status: StatusPassed, Time: at(3)},
		Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S2", Device: "d2", Step: "flash", Status: StatusFailed, Time: at(4)},
		Event{Kind: KindStep, WorkOrder: "WO-2", Slot: "S1", Device: "d1", Step: "identify", Status: StatusPassed, Time: at(5)},
		Event{Kind: KindOperator, Operator: "ann", Step: "signed_out", Status: StatusInfo, Time: at(6)},
	)
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5, 6, 7}},
		{"work order", Filter{WorkOrder: "WO-1"}, []int64{1, 2, 3, 4, 5}},
		{"device", Filter{Device: "d1"}, []int64{2, 4, 6}},
		{"slot", Filter{Slot: "S2"}, []int64{3, 5}},
		{"kind", Filter{Kind: KindStep}, []int64{2, 3, 4, 5, 6}},
		{"step", Filter{Step: "flash"}, []int64{2, 3, 4, 5}},
		{"status", Filter{Status: StatusFailed}, []int64{5}},
		{"since is inclusive", Filter{Since: at(3)}, []int64{4, 5, 6, 7}},
		{"until is exclusive", Filter{Until: at(3)}, []int64{1, 2, 3}},
		{"since in another zone", Filter{Since: at(3).In(time.FixedZone("X", -5*3600))}, []int64{4, 5, 6, 7}},
		{"after seq", Filter{AfterSeq: 5}, []int64{6, 7}},
		{"limit", Filter{AfterSeq: 1, Limit: 2}, []int64{2, 3}},
		{"combined", Filter{WorkOrder: "WO-1", Device: "d1", Status: StatusPassed}, []int64{4}},
		{"none", Filter{Device: "d9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := j.Events(t.Context(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range events {
				got = append(got, e.Seq)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Events(%+v) seqs = %v, want %v", tt.f, got, tt.want)
			}
		})
	}
}

func TestSync(t *testing.T) {
	ctx := t.Context()
	j := openTest(t)
	state := func() SyncState {
		t.Helper()
		st, err := j.SyncState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if got, want := state(), (SyncState{}); got != want {
		t.Errorf("SyncState() of a new journal = %+v, want %+v", got, want)
	}
	for range 5 {
		mustAppend(t, j, info("WO-1", "x"))
	}
	unsynced := func(limit int) []int64 {
		t.Helper()
		events, err := j.Unsynced(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range events {
			seqs = append(seqs, e.Seq)
		}
		return seqs
	}
	if got := unsynced(3); !reflect.DeepEqual(got, []int64{1, 2, 3}) {
		t.Errorf("Unsynced(3) = %v, want [1 2 3]", got)
	}
	if err := j.Ack(ctx, 3); err != nil {
		t.Fatalf("Ack(3) = %v", err)
	}
	if got, want := state(), (SyncState{Acked: 3, Last: 5, Lag: 2}); got != want {
		t.Errorf("SyncState() = %+v, want %+v", got, want)
	}
	if got := unsynced(10); !reflect.DeepEqual(got, []int64{4, 5}) {
		t.Errorf("Unsynced(10) = %v, want [4 5]", got)
	}
	// A late ack of an earlier batch does not move the cursor back.
	if err := j.Ack(ctx, 2); err != nil {
		t.Errorf("Ack(2) after Ack(3) = %v, want nil", err)
	}
	if got := state().Acked; got != 3 {
		t.Errorf("SyncState().Acked after Ack(2) = %d, want 3", got)
	}
	if err := j.Ack(ctx, 6); err == nil || !strings.Contains(err.Error(), "last seq is 5") {
		t.Errorf("Ack(6) = %v, want an error naming last seq 5", err)
	}
	if err := j.Ack(ctx, -1); err == nil {
		t.Errorf("Ack(-1) = nil, want an error")
	}
	if _, err := j.Unsynced(ctx, 0); err == nil {
		t.Errorf("Unsynced(0) error = nil, want an error")
	}
	if err := j.Ack(ctx, 5); err != nil {
		t.Fatalf("Ack(5) = %v", err)
	}
	if got := unsynced(10); got != nil {
		t.Errorf("Unsynced(10) after Ack(5) = %v, want none", got)
	}
	if got, want := state(), (SyncState{Acked: 5, Last: 5}); got != want {
		t.Errorf("SyncState() = %+v, want %+v", got, want)
	}
}

func TestIntegrityCheckFindsDamage(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(ctx, path, testStation, nil)
	if err != nil {
		t.Fatal(err)
	}
	var batch []Event
	for i := range 400 {
		batch = append(batch, Event{Kind: KindStep, WorkOrder: "WO-1", Device: fmt.Sprintf("dev-%03d", i),
			Step: "flash", Status: StatusPassed})
	}
	mustAppend(t, j, batch...)
	if err := j.IntegrityCheck(ctx); err != nil {
		t.Fatalf("IntegrityCheck() before damage = %v", err)
	}
	var pageSize, pages int64
	if err := j.read.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil { // checkpoints the WAL into the file
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pages = int64(len(raw)) / pageSize
	if pages < 4 {
		t.Fatalf("journal has %d pages, want enough to damage one", pages)
	}
	// Scribble over the cells of the last page, keeping its header.
	last := (pages - 1) * pageSize
	for i := last + pageSize/2; i < last+pageSize; i++ {
		raw[i] = 0x5a
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err = Open(ctx, path, testStation, nil)
	if err != nil {
		t.Fatalf("Open() after damage = %v", err)
	}
	defer j.Close()
	if err := j.IntegrityCheck(ctx); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("IntegrityCheck() after damage = %v, want a damaged journal", err)
	}
}
