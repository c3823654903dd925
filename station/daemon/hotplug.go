package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.bug.st/serial/enumerator"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// slotState is what the daemon knows of a slot beyond the runner's bus:
// whether a device is plugged in, and what became of it.
type slotState struct {
	spec fixtures.Slot

	present bool
	ident   portIdent
	gen     int  // counts the devices plugged in
	runGen  int  // the device last started
	busy    bool // a goroutine works on the slot
	started bool // the runner has the device (past the parallel limit)
	held    bool // the result stays shown until the device is unplugged
	res     jobs.Result
	// skipped and override say why the operator skipped the device, or
	// accepted it although it failed.
	skipped  string
	override string
	// removed reports that the device was unplugged while it was worked
	// on, during step removedStep; res holds its result. The slot shows
	// it until a device is plugged in.
	removed     bool
	removedStep string
	ended       time.Time // when the last run ended
	changed     time.Time // the last change the bus does not show
}

// clearHeld forgets the device the slot showed.
func (s *slotState) clearHeld() {
	s.held, s.skipped, s.override, s.removed, s.removedStep = false, "", "", false, ""
}

// portIdent tells one plugging of a port from the next: the node's
// identity and change time, and those of its target when it is a link
// (a simulated device's PTY, /dev/serial/by-id/...).
type portIdent struct {
	linkIno, linkCtime int64
	ino, rdev          uint64
	resolved           string
}

// watchPorts looks at every slot's port every pollInterval until ctx ends.
func (d *Daemon) watchPorts(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		d.pollPorts()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollPorts records plugs and unplugs and starts the devices that may.
func (d *Daemon) pollPorts() {
	// One listing of the USB serial ports serves every slot of a poll.
	var ports []*enumerator.PortDetails
	var listErr error
	listed := false
	res := fixtures.Resolver{List: func() ([]*enumerator.PortDetails, error) {
		if !listed {
			ports, listErr = enumerator.GetDetailedPortsList()
			listed = true
		}
		return ports, listErr
	}}
	seen := make(map[string]portIdent, len(d.order))
	present := make(map[string]bool, len(d.order))
	for _, name := range d.order {
		id, ok := d.probe(res, d.slots[name].spec)
		seen[name], present[name] = id, ok
	}
	changed := false
	var notes []journal.Event
	var snap []jobs.SlotState
	d.mu.Lock()
	for _, name := range d.order {
		s := d.slots[name]
		now, id := present[name], seen[name]
		switch {
		case now && (!s.present || id != s.ident):
			// A device plugged in, or another one in its place.
			s.present, s.ident = true, id
			s.gen++
			s.clearHeld()
			s.changed = time.Now()
			changed = true
			d.log.Info("device plugged in", "slot", name)
		case !now && s.present:
			s.present, s.ident = false, portIdent{}
			switch {
			case s.busy:
				// Pulled out while it is worked on: finished says so
				// once the pipeline gives up on it.
				if snap == nil {
					snap = d.bus.Snapshot()
				}
				for _, b := range snap {
					if b.Slot == name {
						s.removedStep = string(b.Step)
					}
				}
			case s.held && s.res.Outcome == jobs.OutcomeFailed && s.override == "" && linkLost(s.res.Err) && time.Since(s.ended) < removedWindow:
				// The link broke and the port went a moment later: the
				// board was pulled out while it was worked on.
				s.held, s.removed, s.removedStep = false, true, string(s.res.Step)
				if s.res.Device != "" && d.wo != nil {
					notes = append(notes, d.slotEvent("removed", name, s.res.Device, map[string]any{"step": s.removedStep}))
				}
			case s.held && s.res.Outcome == jobs.OutcomeFailed && s.res.Device != "" && d.wo != nil:
				// A failed device taken out of its slot is set aside:
				// journaled, so that a restart does not show it again.
				notes = append(notes, d.slotEvent("unplugged", name, s.res.Device, nil))
				s.clearHeld()
			default:
				s.clearHeld()
			}
			s.changed = time.Now()
			changed = true
			d.log.Info("device unplugged", "slot", name)
		}
	}
	d.mu.Unlock()
	for _, e := range notes {
		d.note(context.Background(), e)
	}
	if changed {
		d.changes.notify()
	}
	d.schedule()
}

// slotEvent is a journal event about a slot's device, by whoever is
// signed in. Call with d.mu held and a work order loaded.
func (d *Daemon) slotEvent(action, slot string, device flasher.HardwareID, data map[string]any) journal.Event {
	op := ""
	if d.operator != nil {
		op = d.operator.Name
	}
	e := operatorEvent(op, action, d.wo.wo.ID, slot, data)
	e.Device = string(device)
	return e
}

// removedWindow is how soon after a device's link broke its port may go
// for the device to count as pulled out while it was worked on, rather
// than taken out after it failed: unplugging a board breaks its link a
// moment before its port disappears.
const removedWindow = 3 * time.Second

// linkLost reports whether a failure is the device's link breaking.
func linkLost(err error) bool {
	return errors.Is(err, flasher.ErrLinkLost) || errors.Is(err, flasher.ErrNoResponse)
}

// probe reports whether the slot's device is plugged in, and its port's
// identity.
func (d *Daemon) probe(res fixtures.Resolver, s fixtures.Slot) (portIdent, bool) {
	if s.Port == "" && s.USB == nil {
		// Nothing to watch (a probe over the network, a block device
		// found otherwise): the slot counts as holding a device.
		return portIdent{}, true
	}
	if s.Port != "" && !filepath.IsAbs(s.Port) {
		s.Port = filepath.Join(d.fixtureDir, s.Port)
	}
	path, err := res.Resolve(s)
	if err != nil {
		return portIdent{}, false
	}
	var id portIdent
	id.resolved = path
	if li, err := os.Lstat(path); err == nil {
		if st, ok := li.Sys().(*syscall.Stat_t); ok {
			id.linkIno, id.linkCtime = int64(st.Ino), st.Ctim.Nano()
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return portIdent{}, false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino, id.rdev = st.Ino, st.Rdev
	}
	return id, true
}

// schedule starts every slot whose new device may start: the run is on,
// the device is plugged in and was not started before.
func (d *Daemon) schedule() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != localapi.RunRunning || d.wo == nil || d.closing {
		return
	}
	for _, name := range d.order {
		s := d.slots[name]
		if s.present && !s.busy && !s.held && s.skipped == "" && s.runGen != s.gen {
			d.startSlot(name)
		}
	}
}

// startSlot runs the slot's device in its own goroutine. Call with d.mu
// held, the slot idle and a work order loaded.
func (d *Daemon) startSlot(name string) {
	s, wo := d.slots[name], d.wo
	s.busy, s.started = true, false
	s.clearHeld()
	s.runGen = s.gen
	s.changed = time.Now()
	wo.wg.Add(1)
	go func() {
		defer wo.wg.Done()
		select {
		case d.sem <- struct{}{}:
		case <-wo.ctx.Done():
			d.mu.Lock()
			s.busy = false
			s.changed = time.Now()
			d.mu.Unlock()
			d.changes.notify()
			return
		}
		d.mu.Lock()
		s.started = true
		d.mu.Unlock()
		// The bus shows the new device at once, not the last one's
		// result, until the runner says more.
		now := time.Now()
		d.bus.Publish(jobs.SlotState{Slot: name, Status: jobs.SlotRunning, Started: now, Updated: now})
		res := wo.runner.RunSlot(wo.ctx, name)
		<-d.sem
		d.finished(wo, name, res)
	}()
	d.changes.notify()
}

// finished records a device's result, refreshes the counts and ends the
// run when the work order's quantity is done.
func (d *Daemon) finished(wo *loaded, name string, res jobs.Result) {
	d.log.Info("device finished", "slot", name, "hardware_id", res.Device, "outcome", res.Outcome, "message", res.Message)
	d.metrics.deviceEnded(res)
	stopped := errors.Is(res.Err, jobs.ErrStopped) || errors.Is(res.Err, context.Canceled)
	d.mu.Lock()
	s := d.slots[name]
	// A device unplugged while it was worked on, and that did not pass,
	// shows as removed until a device is plugged in; it is journaled
	// before the counts are read, and after the device's last step, so
	// that a restart shows the slot as it is now.
	var removed *journal.Event
	if !s.present && res.Outcome == jobs.OutcomeFailed && !stopped && res.Device != "" && d.wo == wo {
		step := s.removedStep
		if step == "" {
			step = string(res.Step)
		}
		e := d.slotEvent("removed", name, res.Device, map[string]any{"step": step})
		removed = &e
	}
	d.mu.Unlock()
	if removed != nil {
		d.note(context.WithoutCancel(wo.ctx), *removed)
	}
	d.countsMu.Lock()
	counts, err := d.readCounts(context.WithoutCancel(wo.ctx), wo.wo.ID)
	d.mu.Lock()
	s.busy, s.started = false, false
	s.res, s.ended = res, time.Now()
	// The result stays shown until the device is unplugged.
	s.held = s.present
	if !s.present && res.Outcome == jobs.OutcomeFailed && !stopped {
		s.removed = true
		if s.removedStep == "" {
			s.removedStep = string(res.Step)
		}
	}
	s.changed = time.Now()
	completed := false
	if err == nil && d.wo == wo {
		d.counts = counts
		completed = d.checkComplete()
	}
	d.mu.Unlock()
	d.countsMu.Unlock()
	if completed {
		d.note(context.WithoutCancel(wo.ctx), journalWorkOrder(wo.wo.ID, "completed", "", map[string]any{"done": counts.done}))
	}
	if err != nil {
		d.log.Error("count the work order's devices", "err", err)
	}
	d.changes.notify()
	d.schedule()
}

// checkComplete ends the run once the quantity is done, and reports
// whether it did so now: the caller journals it. Call with d.mu held.
func (d *Daemon) checkComplete() bool {
	if d.wo == nil || d.run == localapi.RunComplete || d.run == localapi.RunStopping {
		return false
	}
	if d.counts.done < d.wo.wo.Quantity {
		return false
	}
	d.run = localapi.RunComplete
	d.save()
	return true
}
