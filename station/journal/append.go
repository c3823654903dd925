package journal

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// timeLayout stores times as UTC RFC 3339 with nine fraction digits: 30
// characters for every year from 1 to 9999, so text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Append writes events to the journal in one transaction (BEGIN
// IMMEDIATE): all of them or none. It assigns each event the station's
// next sequence number and the journal's station id, and the current time
// if Time is zero (times are stored in UTC). Registered secrets are
// replaced first (see Redact). An event is refused unless its kind and
// status are known, a step event names its step and has a step status,
// and Data is empty or a JSON object. Append returns the events as
// stored. It is safe to call from many goroutines: their transactions
// run one after another on the journal's single writer connection.
func (j *Journal) Append(ctx context.Context, events ...Event) ([]Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	now := time.Now().UTC()
	secrets := j.secrets.list()
	out := make([]Event, len(events))
	for i, e := range events {
		data, err := normalData(e.Data)
		if err != nil {
			return nil, fmt.Errorf("append event %d of %d: %w", i+1, len(events), err)
		}
		e.Data = data
		e.Station = j.station
		if fields := redactEvent(secrets, &e); len(fields) > 0 {
			j.logger.Warn("secret redacted from a journal event", "kind", e.Kind, "work_order", e.WorkOrder,
				"slot", e.Slot, "device", e.Device, "step", e.Step, "status", e.Status, "fields", fields)
		}
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = e.Time.UTC()
		if err := validate(e); err != nil {
			return nil, fmt.Errorf("append event %d of %d: %w", i+1, len(events), err)
		}
		out[i] = e
	}
	if err := j.commit(ctx, out); err != nil {
		return nil, fmt.Errorf("append %d events: %w", len(out), err)
	}
	return out, nil
}

// group batches the appends of many goroutines into one transaction:
// group commit. With synchronous=FULL every commit syncs the WAL, and 32
// slots finishing a step together would otherwise queue for 32 syncs. An
// Append still returns only once its own events are committed.
type group struct {
	mu      sync.Mutex
	leading bool         // a goroutine is committing
	pending []*appendReq // waiting for the next commit
}

// appendReq is one Append waiting in the group.
type appendReq struct {
	events []Event
	done   chan appendResult
}

// appendResult tells a waiting Append that its events were committed
// (err) or that it is to lead the next commit.
type appendResult struct {
	err  error
	lead bool
}

// commit writes events, alone or together with the events of concurrent
// Appends. The first caller leads: it commits every request pending, then
// hands the lead to the oldest request that arrived meanwhile, so no
// caller commits for others for long.
func (j *Journal) commit(ctx context.Context, events []Event) error {
	req := &appendReq{events: events, done: make(chan appendResult, 1)}
	j.group.mu.Lock()
	j.group.pending = append(j.group.pending, req)
	if j.group.leading {
		j.group.mu.Unlock()
		res := <-req.done
		if !res.lead {
			return res.err
		}
		j.group.mu.Lock()
	}
	j.group.leading = true
	batch := j.group.pending
	j.group.pending = nil
	j.group.mu.Unlock()

	var all []Event
	for _, r := range batch {
		all = append(all, r.events...)
	}
	// The batch carries other callers' events: their cancellation is not
	// this caller's, so the commit runs to its end.
	err := j.insertAll(context.WithoutCancel(ctx), all)
	for _, r := range batch {
		if err == nil {
			copy(r.events, all[:len(r.events)])
		}
		all = all[len(r.events):]
		if r != req {
			r.done <- appendResult{err: err}
		}
	}

	j.group.mu.Lock()
	if len(j.group.pending) > 0 {
		next := j.group.pending[0]
		next.done <- appendResult{lead: true}
	} else {
		j.group.leading = false
	}
	j.group.mu.Unlock()
	return err
}

// insertAll assigns sequence numbers and inserts the events in one write
// transaction.
func (j *Journal) insertAll(ctx context.Context, events []Event) (err error) {
	tx, err := j.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM events WHERE station = ?", j.station).Scan(&last); err != nil {
		return fmt.Errorf("read last seq: %w", err)
	}
	ins := tx.StmtContext(ctx, j.insert)
	defer ins.Close()
	for i := range events {
		e := &events[i]
		e.Seq = last + int64(i) + 1
		var data sql.NullString
		if len(e.Data) > 0 {
			data = sql.NullString{String: string(e.Data), Valid: true}
		}
		if _, err := ins.ExecContext(ctx, e.Seq, e.Station, e.Time.Format(timeLayout), string(e.Kind),
			e.WorkOrder, e.Slot, e.Device, e.Operator, e.Step, string(e.Status),
			e.Attempt, int64(e.Duration), e.Error, data); err != nil {
			return fmt.Errorf("insert seq %d: %w", e.Seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// normalData returns the compact form of a JSON object, or nil for no
// data (empty or null). The error never quotes the data: it may hold
// what it must not.
func normalData(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, nil
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, errors.New("data is not a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, errors.New("data is not a JSON object")
	}
	return buf.Bytes(), nil
}

// validate checks what SQLite's constraints do not.
func validate(e Event) error {
	switch e.Kind {
	case KindStep, KindWorkOrder, KindOperator, KindStation:
	default:
		return fmt.Errorf("unknown kind %q", e.Kind)
	}
	switch e.Status {
	case StatusStarted, StatusPassed, StatusFailed, StatusSkipped, StatusInfo:
	default:
		return fmt.Errorf("unknown status %q", e.Status)
	}
	if e.Kind == KindStep {
		if e.Step == "" {
			return errors.New("step event names no step")
		}
		if e.Status == StatusInfo {
			return fmt.Errorf("step %s: status %q, want started, passed, failed or skipped", e.Step, e.Status)
		}
	}
	if e.Attempt < 0 {
		return fmt.Errorf("attempt %d is negative", e.Attempt)
	}
	if e.Duration < 0 {
		return fmt.Errorf("duration %s is negative", e.Duration)
	}
	if y := e.Time.Year(); y < 1 || y > 9999 {
		return fmt.Errorf("time %s is out of range", e.Time)
	}
	return nil
}
