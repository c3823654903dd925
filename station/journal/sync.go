package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// The steps of the station events that record how the upstream took
// events it refused (see Refuse, Resend and Resent). An event's sync state
// is the last of these naming it: refused, to be sent again, or sent
// again.
const (
	// StepSyncRefused records an event the upstream refused for good:
	// data {"seq", "field"}, the upstream's reason as the error.
	StepSyncRefused = "sync_refused"
	// StepSyncResend marks refused events to be sent again: data
	// {"seqs": [...]}.
	StepSyncResend = "sync_resend"
	// StepSyncResent records that the upstream stored events sent again:
	// data {"seqs": [...]}.
	StepSyncResent = "sync_resent"
)

// maxMarkSeqs bounds the seqs one resend or resent event names, so that
// its data stays well under what the upstream takes (a DMS takes 64 KiB):
// more are marked by several events.
const maxMarkSeqs = 1000

// syncMark is the last sync mark of an event.
type syncMark int

const (
	markRefused syncMark = iota + 1 // refused: not sent
	markResend                      // to be sent again
	markResent                      // sent again: nothing pending
)

// syncMarks is the fold of the sync marks journaled after a seq: each
// event's last mark, and the last refusal of each.
type syncMarks struct {
	last     map[int64]syncMark
	refusals map[int64]Refusal
}

// readSyncMarks folds the sync marks journaled after seq after. The
// marks of an event the cursor has not passed all lie after the cursor,
// and so do those of a resend the upstream has not yet acknowledged: to
// know what to send, reading the marks after the cursor is enough. An
// event a resend revived is sent before the resend event itself (it is
// older), so once the cursor passed a resend its events went up, or were
// refused again.
func readSyncMarks(ctx context.Context, q queryer, station string, after int64) (syncMarks, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, step, error, time, data FROM events
		WHERE station = ? AND seq > ? AND kind = 'station' AND step IN (?, ?, ?) ORDER BY seq`,
		station, after, StepSyncRefused, StepSyncResend, StepSyncResent)
	if err != nil {
		return syncMarks{}, fmt.Errorf("read sync marks: %w", err)
	}
	defer rows.Close()
	m := syncMarks{last: map[int64]syncMark{}, refusals: map[int64]Refusal{}}
	for rows.Next() {
		var (
			seq              int64
			step, reason, at string
			data             sql.NullString
		)
		if err := rows.Scan(&seq, &step, &reason, &at, &data); err != nil {
			return syncMarks{}, fmt.Errorf("read sync marks: %w", err)
		}
		switch step {
		case StepSyncRefused:
			var d refusalData
			if json.Unmarshal([]byte(data.String), &d) != nil || d.Seq <= 0 {
				continue
			}
			when, _ := time.Parse(timeLayout, at)
			m.last[d.Seq] = markRefused
			m.refusals[d.Seq] = Refusal{Seq: d.Seq, Field: d.Field, Reason: reason, Time: when}
		case StepSyncResend, StepSyncResent:
			var d seqsData
			if json.Unmarshal([]byte(data.String), &d) != nil {
				continue
			}
			mark := markResend
			if step == StepSyncResent {
				mark = markResent
			}
			for _, s := range d.Seqs {
				if s > 0 {
					m.last[s] = mark
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return syncMarks{}, fmt.Errorf("read sync marks: %w", err)
	}
	return m, nil
}

// with returns the seqs whose last mark is mark, at or below upTo when
// upTo > 0, in order.
func (m syncMarks) with(mark syncMark, upTo int64) []int64 {
	var out []int64
	for s, k := range m.last {
		if k == mark && (upTo <= 0 || s <= upTo) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// seqsData is the data of a resend or resent event.
type seqsData struct {
	Seqs []int64 `json:"seqs"`
}

// jsonSeqs is seqs as a JSON array, for json_each.
func jsonSeqs(seqs []int64) string {
	if len(seqs) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(seqs)
	return string(b)
}

// Unsynced returns up to limit events to send upstream, in sequence
// order: first the events a resend revived (Resend) that the upstream has
// not stored yet, then those after the acknowledged sequence number,
// leaving out the events the upstream refused (Refuse) and that no resend
// revived.
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
		m, err := readSyncMarks(ctx, tx, j.station, acked)
		if err != nil {
			return err
		}
		if revived := m.with(markResend, acked); len(revived) > 0 {
			out, err = queryEvents(ctx, tx, "SELECT "+eventColumns+
				" FROM events WHERE station = ? AND seq IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?",
				j.station, jsonSeqs(revived), limit)
			if err != nil || len(out) == limit {
				return err
			}
		}
		fresh, err := queryEvents(ctx, tx, "SELECT "+eventColumns+
			" FROM events WHERE station = ? AND seq > ? AND seq NOT IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?",
			j.station, acked, jsonSeqs(m.with(markRefused, 0)), limit-len(out))
		out = append(out, fresh...)
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
// Unsynced leaves the event out and the cursor moves past it, until a
// resend (Resend) revives it; the event itself stays in the journal, for
// QA and exports. Refusing an event twice journals a second refusal and
// changes nothing else.
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

// Refusals lists every refusal the journal holds, in the order they were
// journaled, including those of events sent again since (Refused lists
// the events that stay refused).
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

// Refused lists the events that stay refused: refused (Refuse) and not
// marked to be sent again since (Resend), in sequence order, each with its
// last refusal.
func (j *Journal) Refused(ctx context.Context) ([]Refusal, error) {
	m, err := readSyncMarks(ctx, j.read, j.station, 0)
	if err != nil {
		return nil, fmt.Errorf("read refused events: %w", err)
	}
	var out []Refusal
	for _, s := range m.with(markRefused, 0) {
		out = append(out, m.refusals[s])
	}
	return out, nil
}

// Resend marks refused events (Refused) to be sent upstream again: for
// when the upstream refused them wrongly. It journals station events
// (step StepSyncResend, {"seqs": [...]} as data) and rewrites nothing:
// from then on Unsynced returns the events again, before the newer ones,
// until the upstream stores them (Resent) or refuses them again (Refuse).
// A seq that is not refused now is an error, and nothing is marked.
func (j *Journal) Resend(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return errors.New("resend refused events: no event named")
	}
	refused, err := j.Refused(ctx)
	if err != nil {
		return fmt.Errorf("resend refused events: %w", err)
	}
	now := map[int64]bool{}
	var list []string
	for _, r := range refused {
		now[r.Seq] = true
		list = append(list, strconv.FormatInt(r.Seq, 10))
	}
	for _, s := range seqs {
		if now[s] {
			continue
		}
		if len(list) == 0 {
			return fmt.Errorf("resend event %d: no event of this journal is refused now", s)
		}
		return fmt.Errorf("resend event %d: it is not refused now; the refused events are %s", s, strings.Join(list, ", "))
	}
	if err := j.markSeqs(ctx, StepSyncResend, seqs); err != nil {
		return fmt.Errorf("resend refused events: %w", err)
	}
	return nil
}

// Resent records that the upstream stored the events seqs, which a
// resend (Resend) revived: Unsynced returns them no more. It journals
// station events (step StepSyncResent, {"seqs": [...]} as data).
func (j *Journal) Resent(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	if err := j.markSeqs(ctx, StepSyncResent, seqs); err != nil {
		return fmt.Errorf("record events sent again: %w", err)
	}
	return nil
}

// markSeqs journals station events of step naming seqs, sorted and each
// once, at most maxMarkSeqs an event, in one transaction.
func (j *Journal) markSeqs(ctx context.Context, step string, seqs []int64) error {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	var events []Event
	for chunk := range slices.Chunk(seqs, maxMarkSeqs) {
		if chunk[0] <= 0 {
			return fmt.Errorf("seq %d: sequence numbers start at 1", chunk[0])
		}
		data, err := json.Marshal(seqsData{Seqs: chunk})
		if err != nil {
			return err
		}
		events = append(events, Event{Kind: KindStation, Step: step, Status: StatusInfo, Data: data})
	}
	_, err := j.Append(ctx, events...)
	return err
}

// Ack records that the upstream stored every event up to seq. The cursor
// only moves forward: acknowledging a seq at or below the cursor changes
// nothing (a late reply to an earlier batch), except that the cursor
// moves past events refused (Refuse) that follow it.
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
	// Refused events right after the cursor are not sent: move past
	// them to the event before the next one to send, or to the end.
	m, err := readSyncMarks(ctx, tx, j.station, acked)
	if err != nil {
		return fmt.Errorf("ack seq %d: %w", seq, err)
	}
	var next sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT min(seq) FROM events WHERE station = ? AND seq > ? AND seq NOT IN (SELECT value FROM json_each(?))",
		j.station, acked, jsonSeqs(m.with(markRefused, 0))).Scan(&next); err != nil {
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
