package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/station/journal"
)

// quota counts a work order's devices against its quantity. A device
// counts once it is done (in the journal, or at the DMS) and while it
// holds a place: started in this run and not yet ended, or owed. An owed
// device is one an earlier run began to activate (its claim may be spent
// at the DMS) and did not finish: it keeps its place until it is done,
// since a new device in its place would need one claim more than the
// quantity. A place is taken in identify and given back when the
// device's run ends.
type quota struct {
	mu       sync.Mutex
	quantity int
	done     int
	inflight int
	owed     map[flasher.HardwareID]bool
	// dmsCounted reports that done includes the DMS's own count of the
	// work order's completed devices, taken at start.
	dmsCounted bool
}

// ticket is one device's place in the quota.
type ticket struct {
	hw   flasher.HardwareID
	owed bool // the place was kept for it by an earlier run
}

// ending is how a device's run ends, for the quota.
type ending int

const (
	// endOther gives the place back: the device was not finished and no
	// claim was made for it.
	endOther ending = iota
	// endPassed: the device was finished in this run.
	endPassed
	// endDoneAtDMS: the DMS answered that the work order had already
	// completed the device; the journal now records it done.
	endDoneAtDMS
	// endClaimed: the device was not finished, but its activation was
	// begun, so its claim may be spent: it keeps its place.
	endClaimed
)

// reserve takes a place for the device hw, and false when the quantity
// is reached. An owed device takes the place kept for it.
func (q *quota) reserve(hw flasher.HardwareID) (ticket, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.owed[hw] {
		delete(q.owed, hw)
		q.inflight++
		return ticket{hw: hw, owed: true}, true
	}
	if q.done+q.inflight+len(q.owed) >= q.quantity {
		return ticket{}, false
	}
	q.inflight++
	return ticket{hw: hw}, true
}

// release ends the place t holds.
func (q *quota) release(t ticket, how ending) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight--
	switch how {
	case endPassed:
		q.done++
	case endDoneAtDMS:
		// Counted at start only if the DMS's count was taken and the
		// device was not owed (owed devices are the journal's, which
		// the DMS's count did not cover once reconciled).
		if t.owed || !q.dmsCounted {
			q.done++
		}
	case endClaimed:
		if q.owed == nil {
			q.owed = map[flasher.HardwareID]bool{}
		}
		q.owed[t.hw] = true
	}
}

// doneCount returns how many devices the work order has completed.
func (q *quota) doneCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.done
}

// DoneCounter is an Upstream that can say how many devices a work order
// has completed, on every station. The runner asks it once at start, so
// that the quantity counts the devices done at the DMS as well as those
// done in the journal.
type DoneCounter interface {
	// WorkOrderDone returns how many devices the DMS holds as
	// completed by the work order.
	WorkOrderDone(ctx context.Context, workOrder string) (int, error)
}

// count sets the quota from the journal and the DMS, before any device
// is started. A device that an earlier run began to activate and did not
// finish is asked about at the DMS: if the DMS holds it as done (the
// station was stopped after the DMS recorded the completion and before
// its own journal did), the journal records it done now, from the DMS;
// if the DMS holds it as the product's (its claim is spent), it is owed
// its place, as is any device the DMS could not be asked about. When
// every such device could be asked, the DMS's own count of the work
// order's done devices, if it can give one, is counted too, so that
// devices done on other stations, or forgotten by this journal, count. A
// DMS that cannot be reached leaves the journal's count, which never
// counts a device twice.
func (r *Runner) count(ctx context.Context) error {
	id := r.WorkOrder.ID
	st, err := r.Journal.WorkOrder(ctx, id)
	if err != nil {
		return fmt.Errorf("read work order %s from the journal: %w", id, err)
	}
	devs, err := r.Journal.Devices(ctx, id)
	if err != nil {
		return fmt.Errorf("read the devices of work order %s from the journal: %w", id, err)
	}
	q := &r.quota
	q.quantity, q.done, q.owed = r.WorkOrder.Quantity, st.Done, map[flasher.HardwareID]bool{}
	asked := true
	for _, ds := range devs {
		if ds.Result == journal.ResultDone || ds.Attempts[string(StepActivate)] == 0 {
			continue
		}
		hw := flasher.HardwareID(ds.Device)
		if !asked {
			// The DMS did not answer for an earlier device: the
			// station does not wait for it here.
			q.owed[hw] = true
			continue
		}
		v, err := r.Upstream.Preflight(ctx, PreflightRequest{WorkOrder: id, Product: r.WorkOrder.Product.Code, HardwareID: hw})
		if err != nil {
			r.Logger.Warn("cannot ask the DMS whether the devices an earlier run left unfinished are done; they keep their places", "hardware_id", hw, "err", err)
			asked = false
			q.owed[hw] = true
			continue
		}
		if !v.Done {
			// Only a device the DMS holds as the product's has spent a
			// claim; any other can be set aside at no cost.
			if v.Product == r.WorkOrder.Product.Code {
				q.owed[hw] = true
			}
			continue
		}
		if err := r.recordDoneAtDMS(ctx, ds, v.Serial, r.Operator); err != nil {
			return err
		}
		q.done++
	}
	c, ok := r.Upstream.(DoneCounter)
	if !ok || !asked {
		return nil
	}
	n, err := c.WorkOrderDone(ctx, id)
	if err != nil {
		r.Logger.Warn("cannot ask the DMS how many devices the work order has done; counting the journal's", "err", err)
		return nil
	}
	q.done, q.dmsCounted = max(q.done, n), true
	return nil
}

// recordDoneAtDMS journals the device of ds done, as the DMS holds it:
// the step done passed, its data naming the DMS as the source, by
// operator.
func (r *Runner) recordDoneAtDMS(ctx context.Context, ds journal.DeviceState, serial, operator string) error {
	raw, err := json.Marshal(map[string]any{"source": "dms", "serial": serial})
	if err != nil {
		return fmt.Errorf("journal device %s done: %w", ds.Device, err)
	}
	if err := r.append(ctx, journal.Event{
		Kind: journal.KindStep, WorkOrder: r.WorkOrder.ID, Slot: ds.Slot, Device: ds.Device,
		Operator: operator, Step: string(StepDone), Status: journal.StatusPassed,
		Attempt: ds.Attempts[string(StepDone)] + 1, Data: raw,
	}); err != nil {
		return fmt.Errorf("journal device %s done, as the DMS holds it: %w", ds.Device, err)
	}
	return nil
}
