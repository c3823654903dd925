package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Filter selects events. Zero fields select everything.
type Filter struct {
	WorkOrder string
	Device    string
	Slot      string
	Kind      Kind
	Step      string
	Status    Status
	// Since selects events at or after it, Until events before it.
	Since time.Time
	Until time.Time
	// AfterSeq selects events with a greater sequence number.
	AfterSeq int64
	// Limit caps the number of events; 0 means no cap.
	Limit int
}

// eventColumns are the columns scanEvent reads, in order.
const eventColumns = "seq, station, time, kind, work_order, slot, device, operator, step, status, attempt, duration_ns, error, data"

// queryer is what both *sql.DB and *sql.Tx offer for reading.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Events returns the events f selects, in sequence order.
func (j *Journal) Events(ctx context.Context, f Filter) ([]Event, error) {
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("work_order", f.WorkOrder)
	eq("device", f.Device)
	eq("slot", f.Slot)
	eq("kind", string(f.Kind))
	eq("step", f.Step)
	eq("status", string(f.Status))
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, f.Since.UTC().Format(timeLayout))
	}
	if !f.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, f.Until.UTC().Format(timeLayout))
	}
	if f.AfterSeq > 0 {
		where = append(where, "seq > ?")
		args = append(args, f.AfterSeq)
	}
	q := "SELECT " + eventColumns + " FROM events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	events, err := queryEvents(ctx, j.read, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return events, nil
}

// Count returns the number of events in the journal.
func (j *Journal) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := j.read.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// queryEvents runs a query that selects eventColumns.
func queryEvents(ctx context.Context, q queryer, query string, args ...any) ([]Event, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func scanEvent(rows *sql.Rows) (Event, error) {
	var (
		e                Event
		at, kind, status string
		dur              int64
		data             sql.NullString
	)
	if err := rows.Scan(&e.Seq, &e.Station, &at, &kind, &e.WorkOrder, &e.Slot, &e.Device, &e.Operator,
		&e.Step, &status, &e.Attempt, &dur, &e.Error, &data); err != nil {
		return Event{}, fmt.Errorf("scan event: %w", err)
	}
	t, err := time.Parse(timeLayout, at)
	if err != nil {
		return Event{}, fmt.Errorf("event %d: time: %w", e.Seq, err)
	}
	e.Time = t.UTC()
	e.Kind, e.Status, e.Duration = Kind(kind), Status(status), time.Duration(dur)
	if data.Valid {
		e.Data = json.RawMessage(data.String)
	}
	return e, nil
}

// LastSeq returns the journal's last sequence number, 0 if it holds no
// event. Events are append-only, so reads bounded by it (HistoryPage's
// Through) see the journal as it was when LastSeq returned.
func (j *Journal) LastSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := j.read.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM events").Scan(&n); err != nil {
		return 0, fmt.Errorf("read last seq: %w", err)
	}
	return n, nil
}

// History is the events of one device in one work order, in sequence
// order.
type History struct {
	WorkOrder string
	// Device is the hardware id; never empty.
	Device string
	Events []Event
}

// HistoryPage selects one page of histories for Histories.
type HistoryPage struct {
	// WorkOrder and Device, when not empty, select the histories of one
	// work order and of one device.
	WorkOrder string
	Device    string
	// After is the cursor: the page starts with the first history whose
	// first event has a greater seq. 0 starts at the beginning; the next
	// page starts after the first seq of the last history of this one.
	After int64
	// Through, when not 0, leaves out the events with a greater seq, as
	// if they had not been journaled yet: the pages of one reader bounded
	// by one LastSeq see one journal.
	Through int64
	// Limit is the most histories in the page, at least 1. A page holds
	// every event of its histories.
	Limit int
}

// Histories returns a page of the journal's device histories (events
// with a hardware id, grouped by work order and device) in the order of
// their first events. A page with fewer than p.Limit histories is the
// last. Each page is one query: it finds the page's first events walking
// the journal from the cursor (by the index on device when p.Device is
// given, in seq order otherwise) and reads their histories by the index
// on work order and device, so reading every page costs about one pass
// over the journal, whatever the page size.
func (j *Journal) Histories(ctx context.Context, p HistoryPage) ([]History, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("read device histories: limit %d, want at least 1", p.Limit)
	}
	through := p.Through
	if through == 0 {
		through = math.MaxInt64
	}
	// first selects the events that open a history: no earlier event of
	// the same work order and device. "+f.work_order" keeps SQLite from
	// reading a work order's index from its start for every page.
	where := []string{"f.device <> ''", "f.seq > ?", "f.seq <= ?"}
	args := []any{p.After, through}
	if p.WorkOrder != "" {
		where = append(where, "+f.work_order = ?")
		args = append(args, p.WorkOrder)
	}
	if p.Device != "" {
		where = append(where, "f.device = ?")
		args = append(args, p.Device)
	}
	q := `WITH first (wo, dev, seq) AS (
		SELECT f.work_order, f.device, f.seq FROM events AS f
		WHERE ` + strings.Join(where, " AND ") + `
		AND NOT EXISTS (SELECT 1 FROM events AS b
			WHERE b.work_order = f.work_order AND b.device = f.device AND b.seq < f.seq)
		ORDER BY f.seq LIMIT ?)
	SELECT e.` + strings.ReplaceAll(eventColumns, ", ", ", e.") + ` FROM first
	JOIN events AS e ON e.work_order = first.wo AND e.device = first.dev AND e.seq <= ?
	ORDER BY first.seq, e.seq`
	args = append(args, p.Limit, through)
	events, err := queryEvents(ctx, j.read, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read device histories after seq %d: %w", p.After, err)
	}
	var out []History
	for start := 0; start < len(events); {
		e := events[start]
		end := start + 1
		for end < len(events) && events[end].WorkOrder == e.WorkOrder && events[end].Device == e.Device {
			end++
		}
		out = append(out, History{WorkOrder: e.WorkOrder, Device: e.Device, Events: events[start:end:end]})
		start = end
	}
	return out, nil
}
