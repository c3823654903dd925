package dms

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/station/journal"
)

// MaxIngestBatch bounds the events one ingest call takes.
const MaxIngestBatch = 5000

// IngestResult says what an ingest did.
type IngestResult struct {
	// Stored counts the events new to the DMS; Duplicates those it had
	// already (a batch sent again after a timeout or a crash).
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
	// LastSeq is the highest sequence number the DMS holds for the
	// station.
	LastSeq int64 `json:"last_seq"`
}

// IngestEvents stores a batch of one station's journal events, each
// (station, seq) once, in one transaction: all of the batch or none. An
// event of another station, or with no sequence number, refuses the batch.
func (s *Service) IngestEvents(ctx context.Context, station string, events []journal.Event) (IngestResult, error) {
	if err := checkID("station", station); err != nil {
		return IngestResult{}, err
	}
	if len(events) > MaxIngestBatch {
		return IngestResult{}, fail(ErrInvalid, "a batch holds at most %d events, not %d: send it in parts", MaxIngestBatch, len(events))
	}
	for i, e := range events {
		switch {
		case e.Station != station:
			return IngestResult{}, fail(ErrInvalid, "event %d of the batch is station %q's, not %q's", i+1, e.Station, station)
		case e.Seq <= 0:
			return IngestResult{}, fail(ErrInvalid, "event %d of the batch has no sequence number", i+1)
		case e.Kind == "" || e.Status == "":
			return IngestResult{}, fail(ErrInvalid, "event %d (seq %d) has no kind or status", i+1, e.Seq)
		case e.Time.IsZero():
			return IngestResult{}, fail(ErrInvalid, "event %d (seq %d) has no time", i+1, e.Seq)
		}
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			return IngestResult{}, fail(ErrInvalid, "event %d (seq %d) has data that is not JSON", i+1, e.Seq)
		}
	}
	var res IngestResult
	now := formatTime(s.now())
	err := s.Store.update(ctx, func(t *tx) error {
		res = IngestResult{} // counted afresh if the transaction runs again
		for _, e := range events {
			var data sql.NullString
			if len(e.Data) > 0 {
				data = sql.NullString{String: string(e.Data), Valid: true}
			}
			r, err := t.exec(ctx, `INSERT INTO station_events (station, seq, time, kind, work_order, slot, device,
				operator, step, status, attempt, duration_ns, error, data, received)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
				ON CONFLICT (station, seq) DO NOTHING`,
				station, e.Seq, formatTime(e.Time), string(e.Kind), e.WorkOrder, e.Slot, e.Device, e.Operator,
				e.Step, string(e.Status), e.Attempt, int64(e.Duration), e.Error, data, now)
			if err != nil {
				return fmt.Errorf("store event %d: %w", e.Seq, err)
			}
			if n, _ := r.RowsAffected(); n > 0 {
				res.Stored++
			} else {
				res.Duplicates++
			}
		}
		return t.queryRow(ctx, "SELECT coalesce(max(seq), 0) FROM station_events WHERE station = $1", station).Scan(&res.LastSeq)
	})
	if err != nil {
		return IngestResult{}, fmt.Errorf("ingest %d events of station %s: %w", len(events), station, err)
	}
	return res, nil
}

// EventFilter selects ingested events. Empty fields match everything;
// Since is inclusive, Until exclusive.
type EventFilter struct {
	Station   string
	WorkOrder string
	Device    string
	Since     time.Time
	Until     time.Time
	// Products limits the events to work orders of these products; nil
	// means any (a support key sets its one product).
	Products []string
	// AfterSeq and Limit page through one station's events.
	AfterSeq int64
	Limit    int
}

// Events returns ingested events in (station, seq) order.
func (s *Service) Events(ctx context.Context, f EventFilter) ([]journal.Event, error) {
	var out []journal.Event
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		out, err = t.stationEvents(ctx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

func (t *tx) stationEvents(ctx context.Context, f EventFilter) ([]journal.Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Station != "" {
		add("station = ?", f.Station)
	}
	if f.WorkOrder != "" {
		add("work_order = ?", f.WorkOrder)
	}
	if f.Device != "" {
		add("device = ?", f.Device)
	}
	if !f.Since.IsZero() {
		add("time >= ?", formatTime(f.Since))
	}
	if !f.Until.IsZero() {
		add("time < ?", formatTime(f.Until))
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if f.Products != nil {
		var ph []string
		for _, p := range f.Products {
			args = append(args, p)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		if len(ph) == 0 {
			ph = []string{"NULL"}
		}
		where = append(where, "work_order IN (SELECT id FROM work_orders WHERE product IN ("+strings.Join(ph, ", ")+"))")
	}
	q := `SELECT station, seq, time, kind, work_order, slot, device, operator, step, status, attempt,
		duration_ns, error, data FROM station_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY station, seq"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []journal.Event
	for rows.Next() {
		var e journal.Event
		var tm, kind, status string
		var dur int64
		var data sql.NullString
		if err := rows.Scan(&e.Station, &e.Seq, &tm, &kind, &e.WorkOrder, &e.Slot, &e.Device, &e.Operator,
			&e.Step, &status, &e.Attempt, &dur, &e.Error, &data); err != nil {
			return nil, err
		}
		if e.Time, err = parseTime(tm); err != nil {
			return nil, err
		}
		e.Kind, e.Status, e.Duration = journal.Kind(kind), journal.Status(status), time.Duration(dur)
		if data.Valid {
			e.Data = json.RawMessage(data.String)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// FlashLog is one device's record in one work order, across every
// station that worked on it, derived from the ingested events.
type FlashLog struct {
	journal.DeviceState
	// Stations lists the stations that worked on the device, in the
	// order they first did.
	Stations []string `json:"stations"`
}

// FlashLogFilter selects flash logs: EventFilter's fields, and Result
// ("done", "failed", ...) when set.
type FlashLogFilter struct {
	EventFilter
	Result journal.Result
}

// FlashLogs returns the flash log of every device the filter selects, by
// work order and device.
func (s *Service) FlashLogs(ctx context.Context, f FlashLogFilter) ([]FlashLog, error) {
	ef := f.EventFilter
	ef.AfterSeq, ef.Limit = 0, 0
	events, err := s.Events(ctx, ef)
	if err != nil {
		return nil, err
	}
	type key struct{ wo, dev string }
	groups := map[key][]journal.Event{}
	var order []key
	for _, e := range events {
		if e.Kind != journal.KindStep || e.Device == "" {
			continue
		}
		k := key{e.WorkOrder, e.Device}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	var out []FlashLog
	for _, k := range order {
		evs := groups[k]
		// Stations' clocks differ; their events interleave by time.
		slices.SortStableFunc(evs, func(a, b journal.Event) int { return a.Time.Compare(b.Time) })
		var stations []string
		for _, e := range evs {
			if !slices.Contains(stations, e.Station) {
				stations = append(stations, e.Station)
			}
		}
		st := journal.Fold(evs)
		if f.Result != "" && st.Result != f.Result {
			continue
		}
		out = append(out, FlashLog{DeviceState: st, Stations: stations})
	}
	slices.SortFunc(out, func(a, b FlashLog) int {
		if c := strings.Compare(a.WorkOrder, b.WorkOrder); c != 0 {
			return c
		}
		return strings.Compare(a.Device, b.Device)
	})
	return out, nil
}
