package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SyncState is how far the upstream sync has come.
type SyncState struct {
	// Acked is the highest sequence number the upstream acknowledged.
	Acked int64 `json:"acked"`
	// Last is the journal's last sequence number.
	Last int64 `json:"last"`
	// Lag is the number of events not yet acknowledged.
	Lag int64 `json:"lag"`
}

// StepSyncRefused is the step of the station event that records an event
// the upstream refused for good (see Refuse).
const StepSyncRefused = "sync_refused"

// refusedSeqs selects the seqs of the events refused after acked: a
// refusal is journaled after the event it names, so those of unsent
// events all lie after the cursor, and the query reads only the tail.
const refusedSeqs = `SELECT CAST(json_extract(data, '$.seq') AS INTEGER) FROM events
	WHERE seq > ? AND kind = 'station' AND step = '` + StepSyncRefused + `'
	AND json_extract(data, '$.seq') IS NOT NULL`

// Unsynced returns up to limit events after the acknowledged sequence
// number, in sequence order, leaving out those the upstream refused for
// good (Refuse): the next batch to send upstream.
func (j *Journal) Unsynced(ctx context.Context, limit int) ([]Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read unsynced events: limit %d, want at least 1", limit)
	}
	var out []Event
	err := j.readTx(ctx, func(tx *sql.Tx) error {
		var acked int64
		if err := tx.QueryRowContext(ctx, "SELECT acked_seq FROM sync_cursor WHERE id = 1").Scan(&acked); err != nil {
			return fmt.Errorf("read sync cursor: %w", err)
		}
		var err error
		out, err = queryEvents(ctx, tx, "SELECT "+eventColumns+
			" FROM events WHERE station = ? AND seq > ? AND seq NOT IN ("+refusedSeqs+") ORDER BY seq LIMIT ?",
			j.station, acked, acked, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read unsynced events: %w", err)
	}
	return out, nil
}

// Refusal is an event the upstream refused for good, as Refuse journaled
// it.
type Refusal struct {
	// Seq is the refused event's sequence number.
	Seq int64 `json:"seq"`
	// Field is the field the upstream named, if any.
	Field string `json:"field,omitempty"`
	// Reason is the upstream's message.
	Reason string `json:"reason"`
	// Time is when the refusal was journaled.
	Time time.Time `json:"time"`
}

// refusalData is the data of a refusal event.
type refusalData struct {
	Seq   int64  `json:"seq"`
	Field string `json:"field,omitempty"`
}

// Refuse journals that the upstream refused the event seq for good, and
// why: a station event (step StepSyncRefused, the reason as its error,
// {"seq", "field"} as its data), redacted like any other. From then on
// Unsynced leaves the event out and the cursor moves past it; the event
// itself stays in the journal, for QA and exports. Refusing an event
// twice journals a second refusal and changes nothing else.
func (j *Journal) Refuse(ctx context.Context, seq int64, field, reason string) error {
	st, err := j.SyncState(ctx)
	if err != nil {
		return fmt.Errorf("refuse seq %d: %w", seq, err)
	}
	if seq <= 0 || seq > st.Last {
		return fmt.Errorf("refuse seq %d: the journal holds seqs 1 to %d", seq, st.Last)
	}
	data, err := json.Marshal(refusalData{Seq: seq, Field: field})
	if err != nil {
		return fmt.Errorf("refuse seq %d: %w", seq, err)
	}
	if _, err := j.Append(ctx, Event{Kind: KindStation, Step: StepSyncRefused, Status: StatusInfo,
		Error: reason, Data: data}); err != nil {
		return fmt.Errorf("refuse seq %d: %w", seq, err)
	}
	// Move the cursor past the refusal now when nothing else waits
	// before it; Ack does so too, so a crash here loses nothing.
	if err := j.Ack(ctx, st.Acked); err != nil {
		return fmt.Errorf("refuse seq %d: %w", seq, err)
	}
	return nil
}

// Refusals lists the events the upstream refused for good, in the order
// they were refused.
func (j *Journal) Refusals(ctx context.Context) ([]Refusal, error) {
	events, err := j.Events(ctx, Filter{Kind: KindStation, Step: StepSyncRefused})
	if err != nil {
		return nil, fmt.Errorf("read refused events: %w", err)
	}
	var out []Refusal
	for _, e := range events {
		var d refusalData
		if err := json.Unmarshal(e.Data, &d); err != nil || d.Seq <= 0 {
			continue
		}
		out = append(out, Refusal{Seq: d.Seq, Field: d.Field, Reason: e.Error, Time: e.Time})
	}
	return out, nil
}

// Ack records that the upstream stored every event up to seq. The cursor
// only moves forward: acknowledging a seq at or below the cursor changes
// nothing (a late reply to an earlier batch), except that the cursor
// moves past events refused for good (Refuse) that follow it.
// Acknowledging a seq the journal does not hold yet is an error.
func (j *Journal) Ack(ctx context.Context, seq int64) (err error) {
	if seq < 0 {
		return fmt.Errorf("ack seq %d: negative", seq)
	}
	tx, err := j.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ack seq %d: begin: %w", seq, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM events WHERE station = ?", j.station).Scan(&last); err != nil {
		return fmt.Errorf("ack seq %d: read last seq: %w", seq, err)
	}
	if seq > last {
		return fmt.Errorf("ack seq %d: the journal's last seq is %d", seq, last)
	}
	var acked int64
	if err := tx.QueryRowContext(ctx, "SELECT acked_seq FROM sync_cursor WHERE id = 1").Scan(&acked); err != nil {
		return fmt.Errorf("ack seq %d: read sync cursor: %w", seq, err)
	}
	acked = max(acked, seq)
	// Refused events right after the cursor are never sent: move past
	// them to the event before the next one to send, or to the end.
	var next sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT min(seq) FROM events WHERE station = ? AND seq > ? AND seq NOT IN ("+refusedSeqs+")",
		j.station, acked, acked).Scan(&next); err != nil {
		return fmt.Errorf("ack seq %d: read next unsent event: %w", seq, err)
	}
	if next.Valid {
		acked = max(acked, next.Int64-1)
	} else {
		acked = last
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sync_cursor SET acked_seq = ? WHERE id = 1 AND acked_seq < ?", acked, acked); err != nil {
		return fmt.Errorf("ack seq %d: %w", seq, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ack seq %d: commit: %w", seq, err)
	}
	return nil
}

// SyncState returns the acknowledged and last sequence numbers and the
// lag between them.
func (j *Journal) SyncState(ctx context.Context) (SyncState, error) {
	var st SyncState
	err := j.read.QueryRowContext(ctx, `SELECT
		(SELECT acked_seq FROM sync_cursor WHERE id = 1),
		(SELECT coalesce(max(seq), 0) FROM events WHERE station = ?)`, j.station).Scan(&st.Acked, &st.Last)
	if err != nil {
		return SyncState{}, fmt.Errorf("read sync state: %w", err)
	}
	st.Lag = st.Last - st.Acked
	return st, nil
}
