package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// Unsynced returns up to limit events after the acknowledged sequence
// number, in sequence order: the next batch to send upstream.
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
			" FROM events WHERE station = ? AND seq > ? ORDER BY seq LIMIT ?", j.station, acked, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read unsynced events: %w", err)
	}
	return out, nil
}

// Ack records that the upstream stored every event up to seq. The cursor
// only moves forward: acknowledging a seq at or below the cursor changes
// nothing (a late reply to an earlier batch). Acknowledging a seq the
// journal does not hold yet is an error.
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
	if _, err := tx.ExecContext(ctx, "UPDATE sync_cursor SET acked_seq = ? WHERE id = 1 AND acked_seq < ?", seq, seq); err != nil {
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
