package dms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// stepEvents returns a device's journal through the whole pipeline as a
// station writes it, from sequence number first.
func stepEvents(station, wo, device string, first int64, at time.Time) []journal.Event {
	var out []journal.Event
	seq := first
	for _, step := range jobs.StepNames() {
		for _, st := range []journal.Status{journal.StatusStarted, journal.StatusPassed} {
			e := journal.Event{Seq: seq, Station: station, Time: at.Add(time.Duration(seq) * time.Millisecond),
				Kind: journal.KindStep, WorkOrder: wo, Slot: "S01", Device: device, Step: step, Status: st, Attempt: 1}
			if step == "activate" && st == journal.StatusPassed {
				e.Data = json.RawMessage(`{"serial":"P-000001"}`)
			}
			out = append(out, e)
			seq++
		}
	}
	return out
}

func TestIngestEventsExactlyOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, clock := newTestService(t, b)
		evs := stepEvents("line-1", "WO-1", "aa:01", 1, clock.Now())
		res, err := s.IngestEvents(ctx, "line-1", evs[:10])
		if err != nil || res.Stored != 10 || res.Duplicates != 0 || res.LastSeq != 10 {
			t.Fatalf("IngestEvents(first 10) = %+v, %v", res, err)
		}
		// The same batch again (a timeout), and an overlapping one: only the
		// new events are stored.
		if res, err := s.IngestEvents(ctx, "line-1", evs[:10]); err != nil || res.Stored != 0 || res.Duplicates != 10 {
			t.Fatalf("IngestEvents(again) = %+v, %v; want 10 duplicates", res, err)
		}
		if res, err := s.IngestEvents(ctx, "line-1", evs[5:]); err != nil || res.Stored != len(evs)-10 || res.Duplicates != 5 || res.LastSeq != int64(len(evs)) {
			t.Fatalf("IngestEvents(overlap) = %+v, %v", res, err)
		}
		// Concurrent senders of the same events store each once.
		var wg sync.WaitGroup
		more := stepEvents("line-2", "WO-1", "aa:02", 1, clock.Now())
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.IngestEvents(ctx, "line-2", more); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		all, err := s.Events(ctx, EventFilter{})
		if err != nil || len(all) != len(evs)+len(more) {
			t.Fatalf("Events() = %d events, %v; want %d", len(all), err, len(evs)+len(more))
		}
		seen := map[string]bool{}
		for _, e := range all {
			k := fmt.Sprintf("%s/%d", e.Station, e.Seq)
			if seen[k] {
				t.Errorf("event %s stored twice", k)
			}
			seen[k] = true
		}
		got := all[3]
		if want := evs[3]; got.Step != want.Step || got.Status != want.Status || !got.Time.Equal(want.Time) || got.Device != want.Device {
			t.Errorf("stored event = %+v, want %+v", got, want)
		}
	})
}

func TestIngestRefusesBadBatches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, clock := newTestService(t, b)
		good := stepEvents("line-1", "WO-1", "aa:01", 1, clock.Now())[:2]
		tests := []struct {
			name    string
			station string
			change  func(e []journal.Event)
		}{
			{"another station's event", "line-1", func(e []journal.Event) { e[1].Station = "line-9" }},
			{"no sequence number", "line-1", func(e []journal.Event) { e[0].Seq = 0 }},
			{"no time", "line-1", func(e []journal.Event) { e[0].Time = time.Time{} }},
			{"bad data", "line-1", func(e []journal.Event) { e[0].Data = json.RawMessage("{") }},
			{"bad station id", "line 1", func([]journal.Event) {}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				evs := append([]journal.Event(nil), good...)
				tc.change(evs)
				if _, err := s.IngestEvents(ctx, tc.station, evs); !errors.Is(err, ErrInvalid) {
					t.Errorf("IngestEvents() = %v, want ErrInvalid", err)
				}
			})
		}
		if all, _ := s.Events(ctx, EventFilter{}); len(all) != 0 {
			t.Errorf("refused batches stored %d events", len(all))
		}
	})
}

func TestFlashLogs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, clock := newTestService(t, b)
		// Device aa:01 done on line-1; aa:02 failed on line-1 at flash, then
		// done on line-2.
		evs := stepEvents("line-1", "WO-1", "aa:01", 1, clock.Now())
		failed := []journal.Event{
			{Seq: 17, Station: "line-1", Time: clock.Now().Add(time.Second), Kind: journal.KindStep, WorkOrder: "WO-1", Device: "aa:02", Step: "flash", Status: journal.StatusStarted},
			{Seq: 18, Station: "line-1", Time: clock.Now().Add(2 * time.Second), Kind: journal.KindStep, WorkOrder: "WO-1", Device: "aa:02", Step: "flash", Status: journal.StatusFailed, Error: "link lost"},
		}
		if _, err := s.IngestEvents(ctx, "line-1", append(evs, failed...)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.IngestEvents(ctx, "line-2", stepEvents("line-2", "WO-1", "aa:02", 1, clock.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		logs, err := s.FlashLogs(ctx, FlashLogFilter{EventFilter: EventFilter{WorkOrder: "WO-1"}})
		if err != nil || len(logs) != 2 {
			t.Fatalf("FlashLogs(WO-1) = %d, %v; want 2", len(logs), err)
		}
		if l := logs[1]; l.Device != "aa:02" || l.Result != journal.ResultDone || len(l.Stations) != 2 || l.Serial != "P-000001" {
			t.Errorf("flash log of aa:02 = %+v; want done on two stations with its serial", l)
		}
		done, err := s.FlashLogs(ctx, FlashLogFilter{EventFilter: EventFilter{Device: "aa:01"}, Result: journal.ResultDone})
		if err != nil || len(done) != 1 {
			t.Errorf("FlashLogs(aa:01, done) = %d, %v; want 1", len(done), err)
		}
		none, err := s.FlashLogs(ctx, FlashLogFilter{Result: journal.ResultFailed})
		if err != nil || len(none) != 0 {
			t.Errorf("FlashLogs(failed) = %d, %v; want 0", len(none), err)
		}
	})
}

// TestIngestStationEvents: a station's own key sends the events of the
// work orders assigned to its station, and of none; an event that names
// any other work order refuses the batch, naming the event's seq and its
// field, in the same words whether the work order exists or not, and
// nothing of the batch is stored or taken.
func TestIngestStationEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, clock := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageDevelopment)
		tok, _ := addToken(t, s, "P", 10, time.Time{})
		addWorkOrder(t, s, "WO-OWN", "P", tok, "line-1")
		addWorkOrder(t, s, "WO-SHARED", "P", tok, "line-2", "line-1")
		addWorkOrder(t, s, "WO-OTHER", "P", tok, "line-2")
		addWorkOrder(t, s, "WO-OFF", "P", tok, "line-1")
		if err := s.UnassignStation(ctx, "WO-OFF", "line-1"); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"WO-OPEN", "WO-OPEN-2", "WO-OPEN-3"} {
			addWorkOrder(t, s, id, "P", tok)
		}
		addWorkOrder(t, s, "WO-LATER", "P", tok, "line-1")

		var seq int64
		event := func(wo string) journal.Event {
			seq++
			e := journal.Event{Seq: seq, Station: "line-1", Time: clock.Now().Add(time.Duration(seq) * time.Second),
				Kind: journal.KindStep, WorkOrder: wo, Slot: "S01", Device: "aa:01", Step: "identify", Status: journal.StatusPassed}
			if wo == "" {
				e.Kind, e.Status, e.Operator, e.Slot, e.Device, e.Step = journal.KindOperator, journal.StatusInfo, "ana", "", "", ""
			}
			return e
		}
		stored := func() int {
			t.Helper()
			all, err := s.Events(ctx, EventFilter{Station: "line-1"})
			if err != nil {
				t.Fatal(err)
			}
			return len(all)
		}
		line2Takes := func(id string) func(t *testing.T) {
			return func(t *testing.T) {
				e := journal.Event{Seq: 1, Station: "line-2", Time: clock.Now(), Kind: journal.KindStep, WorkOrder: id, Step: "identify", Status: journal.StatusPassed}
				if _, err := s.IngestStationEvents(ctx, "line-2", []journal.Event{e}); err != nil {
					t.Fatalf("IngestStationEvents(line-2, %s) = %v, want it taken by line-2", id, err)
				}
			}
		}
		takenOffAfterWork := func(t *testing.T) {
			if _, err := s.IngestStationEvents(ctx, "line-1", []journal.Event{event("WO-LATER")}); err != nil {
				t.Fatalf("IngestStationEvents(WO-LATER) while assigned = %v", err)
			}
			if err := s.UnassignStation(ctx, "WO-LATER", "line-1"); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name       string
			first      func(t *testing.T) // if set, done before the batch
			workOrders []string           // one event each, in this order
			refused    int                // the index of the event refused, or -1
			lists      map[string][]string
		}{
			{"its own work order", nil, []string{"WO-OWN", "WO-OWN"}, -1, nil},
			{"a work order shared with another station", nil, []string{"WO-SHARED"}, -1, nil},
			{"no work order", nil, []string{""}, -1, nil},
			{"a work order that has never listed a station is taken", nil, []string{"WO-OPEN", "WO-OWN"}, -1,
				map[string][]string{"WO-OPEN": {"line-1"}}},
			{"a work order that does not exist", nil, []string{"WO-OWN", "WO-NONE", "WO-OWN"}, 1, nil},
			{"another station's work order", nil, []string{"WO-OTHER"}, 0, nil},
			{"a work order it was taken off", nil, []string{"", "WO-OFF"}, 1, nil},
			{"the backlog of a work order it was taken off after working under it", takenOffAfterWork, []string{"WO-LATER", "WO-OWN"}, -1,
				map[string][]string{"WO-LATER": nil}},
			{"a work order id that is no id", nil, []string{"WO NONE"}, 0, nil},
			{"a refused batch takes nothing", nil, []string{"WO-OPEN-2", "WO-OTHER"}, 1,
				map[string][]string{"WO-OPEN-2": nil}},
			{"another station took it first", line2Takes("WO-OPEN-3"), []string{"WO-OPEN-3"}, 0,
				map[string][]string{"WO-OPEN-3": {"line-2"}}},
		}
		var refusals []string // each refusal's words, its seq taken out
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.first != nil {
					tt.first(t)
				}
				var events []journal.Event
				for _, wo := range tt.workOrders {
					events = append(events, event(wo))
				}
				before := stored()
				res, err := s.IngestStationEvents(ctx, "line-1", events)
				if tt.refused < 0 {
					if err != nil || res.Stored != len(events) || res.LastSeq != seq {
						t.Fatalf("IngestStationEvents(%q) = %+v, %v; want %d stored, last seq %d", tt.workOrders, res, err, len(events), seq)
					}
				} else {
					want := events[tt.refused].Seq
					var fe *FieldError
					if !errors.As(err, &fe) || fe.Field != "work_order" || fe.Seq != want || !errors.Is(err, ErrInvalid) {
						t.Fatalf("IngestStationEvents(%q) = %+v, %v; want a *FieldError of work_order, seq %d", tt.workOrders, res, err, want)
					}
					if strings.Contains(err.Error(), events[tt.refused].WorkOrder) {
						t.Errorf("IngestStationEvents(%q) = %v: the refusal quotes the work order", tt.workOrders, err)
					}
					refusals = append(refusals, strings.ReplaceAll(err.Error(), fmt.Sprint(want), "{seq}"))
					if n := stored(); n != before {
						t.Errorf("IngestStationEvents(%q) was refused but stored %d events", tt.workOrders, n-before)
					}
				}
				for wo, want := range tt.lists {
					if got, err := s.Stations(ctx, wo); err != nil || !slices.Equal(got, want) {
						t.Errorf("after the batch, Stations(%s) = %q, %v; want %q", wo, got, err, want)
					}
				}
			})
		}
		for _, r := range refusals[1:] {
			if r != refusals[0] {
				t.Errorf("refusals read %q and %q: a station must not tell the work orders it may not report on apart", refusals[0], r)
			}
		}

		// An event stored while its work order was the station's stays a
		// duplicate once the station is taken off: a batch sent again
		// after a lost answer is not refused.
		addWorkOrder(t, s, "WO-LATE", "P", tok, "line-1")
		batch := []journal.Event{event("WO-LATE")}
		if _, err := s.IngestStationEvents(ctx, "line-1", batch); err != nil {
			t.Fatal(err)
		}
		if err := s.UnassignStation(ctx, "WO-LATE", "line-1"); err != nil {
			t.Fatal(err)
		}
		if res, err := s.IngestStationEvents(ctx, "line-1", batch); err != nil || res.Duplicates != 1 {
			t.Errorf("IngestStationEvents(again, after the station was taken off) = %+v, %v; want 1 duplicate", res, err)
		}
		// IngestEvents, for a key that reaches every work order, takes
		// the work orders as they are.
		if _, err := s.IngestEvents(ctx, "line-1", []journal.Event{event("WO-OTHER"), event("WO-NONE")}); err != nil {
			t.Errorf("IngestEvents(another station's work order, one that does not exist) = %v, want them stored", err)
		}
	})
}

// TestIngestStationEventsFirstUse races stations, from two stores on one
// database (two DMS processes), to send the first events of a work order
// that has never listed a station: exactly one takes it, and the others'
// batches are refused, naming the event.
func TestIngestStationEventsFirstUse(t *testing.T) {
	const stations = 8
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		svcs := []*Service{{Store: openStore(t, dsn), TokenKey: testKey}, {Store: openStore(t, dsn), TokenKey: testKey}}
		addProduct(t, svcs[0], "P", jobs.StageDevelopment)
		tok, _ := addToken(t, svcs[0], "P", 10, time.Time{})
		addWorkOrder(t, svcs[0], "WO-RACE", "P", tok)

		errs := make([]error, stations)
		var wg sync.WaitGroup
		for i := range stations {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := fmt.Sprintf("line-%d", i)
				evs := stepEvents(st, "WO-RACE", "aa:01", 1, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))[:4]
				_, errs[i] = svcs[i%2].IngestStationEvents(ctx, st, evs)
			}()
		}
		wg.Wait()
		var won []string
		for i, err := range errs {
			var fe *FieldError
			switch {
			case err == nil:
				won = append(won, fmt.Sprintf("line-%d", i))
			case !errors.As(err, &fe) || fe.Field != "work_order" || fe.Seq != 1:
				t.Errorf("IngestStationEvents(line-%d) = %v, want it stored or its seq 1 refused", i, err)
			}
		}
		got, err := svcs[0].Stations(ctx, "WO-RACE")
		if len(won) != 1 || err != nil || !slices.Equal(got, won) {
			t.Errorf("%d stations raced for WO-RACE: %q took it, Stations = %q, %v; want one, listed alone", stations, won, got, err)
		}
		all, err := svcs[0].Events(ctx, EventFilter{WorkOrder: "WO-RACE"})
		if err != nil || len(all) != 4 {
			t.Errorf("Events(WO-RACE) = %d events, %v; want the winner's 4", len(all), err)
		}
	})
}
