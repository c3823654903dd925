package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
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
