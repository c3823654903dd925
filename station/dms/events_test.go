package dms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
