package journal

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Result is where a device stands in a work order, derived from its
// events.
type Result string

// Results, in the order Fold decides them.
const (
	// ResultDone means the device passed the done step.
	ResultDone Result = "done"
	// ResultInterrupted means the device's last event is a started step
	// with no outcome: the station died (or, while the station runs, the
	// step is still running; the journal cannot tell the two apart).
	ResultInterrupted Result = "interrupted"
	// ResultFailed means the device's last outcome is a failed step.
	ResultFailed Result = "failed"
	// ResultSkipped means the device's last event is a skipped step and
	// it passed no step in this work order.
	ResultSkipped Result = "skipped"
	// ResultInProgress means the device passed steps but not done: the
	// pipeline stopped between two steps or carries on.
	ResultInProgress Result = "in_progress"
)

// The steps the derived state knows by name. They mirror jobs.Steps,
// which this package cannot import (jobs imports it).
const (
	stepIdentify = "identify"
	stepActivate = "activate"
	stepDone     = "done"
)

// pipelineOrder is the pipeline's step order (jobs.Steps); Passed is
// sorted by it, with steps it does not name after, by name.
var pipelineOrder = []string{"identify", "preflight", "flash", "verify", "activate", "lock", "label", "done"}

// DeviceState is what the journal knows of one device in one work order,
// derived from the device's step events only.
type DeviceState struct {
	WorkOrder string `json:"work_order"`
	Device    string `json:"device"`
	// Slot is the slot of the device's last event.
	Slot   string `json:"slot,omitempty"`
	Result Result `json:"result"`
	// Passed lists the steps the device passed at least once, in
	// pipeline order.
	Passed []string `json:"passed,omitempty"`
	// LastStep and LastStatus are those of the device's last event.
	LastStep   string `json:"last_step"`
	LastStatus Status `json:"last_status"`
	// LastError is the Error of the device's last failed step.
	LastError string `json:"last_error,omitempty"`
	// Attempts counts the runs of each step: a started event opens a
	// run, and a passed or failed event with no run open counts as one.
	// Skipped steps are not runs.
	Attempts map[string]int `json:"attempts,omitempty"`
	// Runs counts the runs of the pipeline on the device until it was
	// done (every run starts with identify): a device that passed at its
	// first try ran once, whatever its number of step events, and a
	// check that finds it done later is no run.
	Runs int `json:"runs"`
	// Serial is the "serial" field of the data of the device's last
	// passed activate step.
	Serial string `json:"serial,omitempty"`
	// ActivateCount and DoneCount count the passed activate and done
	// events: more than one means something happened twice.
	ActivateCount int `json:"activate_count"`
	DoneCount     int `json:"done_count"`
	// Events counts the device's step events.
	Events   int       `json:"events"`
	FirstSeq int64     `json:"first_seq"`
	LastSeq  int64     `json:"last_seq"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// WorkOrderState counts a work order's devices by result, derived from
// its events.
type WorkOrderState struct {
	ID          string `json:"id"`
	Devices     int    `json:"devices"`
	Done        int    `json:"done"`
	Failed      int    `json:"failed"`
	Interrupted int    `json:"interrupted"`
	InProgress  int    `json:"in_progress"`
	Skipped     int    `json:"skipped"`
	// Events counts every event of the work order, of any kind.
	Events int64     `json:"events"`
	First  time.Time `json:"first,omitzero"`
	Last   time.Time `json:"last,omitzero"`
}

// Fold derives a device's state from its step events in one work order,
// in sequence order. It is the one definition of device state: every
// query of this package that reports one goes through it.
func Fold(events []Event) DeviceState {
	var st DeviceState
	passed := map[string]bool{}
	open := map[string]bool{}
	for _, e := range events {
		if e.Kind != KindStep {
			continue
		}
		if st.Events == 0 {
			st.WorkOrder, st.Device = e.WorkOrder, e.Device
			st.FirstSeq, st.First = e.Seq, e.Time
		}
		st.Events++
		st.LastSeq, st.Last = e.Seq, e.Time
		if e.Slot != "" {
			st.Slot = e.Slot
		}
		st.LastStep, st.LastStatus = e.Step, e.Status
		switch e.Status {
		case StatusStarted:
			st.attempt(e.Step)
			st.run(e.Step)
			open[e.Step] = true
		case StatusPassed, StatusFailed:
			if !open[e.Step] {
				st.attempt(e.Step)
				st.run(e.Step)
			}
			open[e.Step] = false
		}
		switch e.Status {
		case StatusPassed:
			passed[e.Step] = true
			switch e.Step {
			case stepActivate:
				st.ActivateCount++
				if s := dataString(e.Data, "serial"); s != "" {
					st.Serial = s
				}
			case stepDone:
				st.DoneCount++
			}
		case StatusFailed:
			st.LastError = e.Error
		}
	}
	for s := range passed {
		st.Passed = append(st.Passed, s)
	}
	slices.SortFunc(st.Passed, compareSteps)
	switch {
	case st.Events == 0:
	case st.DoneCount > 0:
		st.Result = ResultDone
	case st.LastStatus == StatusStarted:
		st.Result = ResultInterrupted
	case st.LastStatus == StatusFailed:
		st.Result = ResultFailed
	case st.LastStatus == StatusSkipped && len(st.Passed) == 0:
		st.Result = ResultSkipped
	default:
		st.Result = ResultInProgress
	}
	return st
}

// run counts a run of the pipeline, when step opens one before the
// device is done.
func (st *DeviceState) run(step string) {
	if step == stepIdentify && st.DoneCount == 0 {
		st.Runs++
	}
}

func (st *DeviceState) attempt(step string) {
	if st.Attempts == nil {
		st.Attempts = map[string]int{}
	}
	st.Attempts[step]++
}

// compareSteps orders steps as the pipeline runs them.
func compareSteps(a, b string) int {
	ia, ib := slices.Index(pipelineOrder, a), slices.Index(pipelineOrder, b)
	switch {
	case ia >= 0 && ib >= 0:
		return cmp.Compare(ia, ib)
	case ia >= 0:
		return -1
	case ib >= 0:
		return 1
	}
	return cmp.Compare(a, b)
}

// dataString returns a string field of an event's data, "" if absent.
func dataString(data json.RawMessage, key string) string {
	if len(data) == 0 {
		return ""
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return ""
	}
	var s string
	if err := json.Unmarshal(m[key], &s); err != nil {
		return ""
	}
	return s
}

// Device returns the state of a device (its hardware id) in a work order,
// and false if the work order has no step event of it.
func (j *Journal) Device(ctx context.Context, workOrder, device string) (DeviceState, bool, error) {
	st, ok, err := deviceState(ctx, j.read, workOrder, device)
	if err != nil {
		return DeviceState{}, false, fmt.Errorf("read device %s in work order %s: %w", device, workOrder, err)
	}
	return st, ok, nil
}

func deviceState(ctx context.Context, q queryer, workOrder, device string) (DeviceState, bool, error) {
	events, err := queryEvents(ctx, q, "SELECT "+eventColumns+
		" FROM events WHERE work_order = ? AND device = ? AND kind = ? ORDER BY seq",
		workOrder, device, string(KindStep))
	if err != nil {
		return DeviceState{}, false, err
	}
	if len(events) == 0 {
		return DeviceState{}, false, nil
	}
	return Fold(events), true, nil
}

// LastOnSlot returns the state of the last device a work order saw on a
// slot (the last step event on the slot that names a device), and false
// if there is none. It lets the pipeline resume a device whose identity
// cannot be read because it is locked.
func (j *Journal) LastOnSlot(ctx context.Context, workOrder, slot string) (st DeviceState, ok bool, err error) {
	err = j.readTx(ctx, func(tx *sql.Tx) error {
		var device string
		err := tx.QueryRowContext(ctx, `SELECT device FROM events
			WHERE work_order = ? AND slot = ? AND device <> '' AND kind = ?
			ORDER BY seq DESC LIMIT 1`, workOrder, slot, string(KindStep)).Scan(&device)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		st, ok, err = deviceState(ctx, tx, workOrder, device)
		return err
	})
	if err != nil {
		return DeviceState{}, false, fmt.Errorf("read last device on slot %s in work order %s: %w", slot, workOrder, err)
	}
	return st, ok, nil
}

// Devices returns the state of every device of a work order, in the
// order they first appeared.
func (j *Journal) Devices(ctx context.Context, workOrder string) ([]DeviceState, error) {
	out, err := devices(ctx, j.read, workOrder)
	if err != nil {
		return nil, fmt.Errorf("read devices of work order %s: %w", workOrder, err)
	}
	return out, nil
}

func devices(ctx context.Context, q queryer, workOrder string) ([]DeviceState, error) {
	// Ordered by device, then seq, so the index on (work_order, device)
	// yields each device's events together and in order.
	events, err := queryEvents(ctx, q, "SELECT "+eventColumns+
		" FROM events WHERE work_order = ? AND device <> '' AND kind = ? ORDER BY device, seq",
		workOrder, string(KindStep))
	if err != nil {
		return nil, err
	}
	var out []DeviceState
	for start := 0; start < len(events); {
		end := start + 1
		for end < len(events) && events[end].Device == events[start].Device {
			end++
		}
		out = append(out, Fold(events[start:end]))
		start = end
	}
	slices.SortFunc(out, func(a, b DeviceState) int { return cmp.Compare(a.FirstSeq, b.FirstSeq) })
	return out, nil
}

// WorkOrder returns the counts of a work order. A work order the journal
// has never seen has all counts zero.
func (j *Journal) WorkOrder(ctx context.Context, id string) (WorkOrderState, error) {
	var st WorkOrderState
	err := j.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		st, err = workOrder(ctx, tx, id)
		return err
	})
	if err != nil {
		return WorkOrderState{}, fmt.Errorf("read work order %s: %w", id, err)
	}
	return st, nil
}

func workOrder(ctx context.Context, q queryer, id string) (WorkOrderState, error) {
	st := WorkOrderState{ID: id}
	var first, last sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT count(*), min(time), max(time) FROM events WHERE work_order = ?", id).
		Scan(&st.Events, &first, &last); err != nil {
		return WorkOrderState{}, err
	}
	if st.Events == 0 {
		return st, nil
	}
	var err error
	if st.First, err = time.Parse(timeLayout, first.String); err != nil {
		return WorkOrderState{}, fmt.Errorf("first time: %w", err)
	}
	if st.Last, err = time.Parse(timeLayout, last.String); err != nil {
		return WorkOrderState{}, fmt.Errorf("last time: %w", err)
	}
	devs, err := devices(ctx, q, id)
	if err != nil {
		return WorkOrderState{}, err
	}
	st.Devices = len(devs)
	for _, d := range devs {
		switch d.Result {
		case ResultDone:
			st.Done++
		case ResultFailed:
			st.Failed++
		case ResultInterrupted:
			st.Interrupted++
		case ResultInProgress:
			st.InProgress++
		case ResultSkipped:
			st.Skipped++
		}
	}
	return st, nil
}

// WorkOrders returns the counts of every work order in the journal, in
// the order they first appeared.
func (j *Journal) WorkOrders(ctx context.Context) ([]WorkOrderState, error) {
	var out []WorkOrderState
	err := j.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT work_order FROM events WHERE work_order <> '' GROUP BY work_order ORDER BY min(seq)")
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			st, err := workOrder(ctx, tx, id)
			if err != nil {
				return fmt.Errorf("work order %s: %w", id, err)
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read work orders: %w", err)
	}
	return out, nil
}

// readTx runs f in one read transaction, so that its queries see one
// snapshot of the journal.
func (j *Journal) readTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := j.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	// A read transaction has nothing to undo; ending it releases the
	// snapshot.
	defer tx.Rollback()
	return f(tx)
}
