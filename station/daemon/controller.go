package daemon

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/export"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
	"github.com/station-dev/station/station/localapi"
)

// opError is an error for the operator: its message says what happened
// and what to do; it matches its localapi sentinel (and its cause).
type opError struct {
	kind  error
	cause error
	msg   string
}

func (e *opError) Error() string { return e.msg }

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func opErr(kind error, format string, args ...any) error {
	return &opError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// State returns the whole state now.
func (d *Daemon) State(ctx context.Context) localapi.State {
	snap := d.bus.Snapshot()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stateLocked(snap)
}

func (d *Daemon) stateLocked(snap []jobs.SlotState) localapi.State {
	st := localapi.State{
		Station: d.cfg.Station, Version: d.version, Run: d.run,
		Slots: d.slotsLocked(snap), DMS: d.dmsLink(), Printer: d.printer.state(),
		Alerts: d.alertsLocked(), Time: time.Now().UTC(),
	}
	st.Counts = d.countsLocked(st.Slots)
	st.Can = d.canLocked()
	if d.wo != nil {
		w := d.wo.wo
		st.WorkOrder = &localapi.WorkOrder{
			ID: w.ID, Product: w.Product.Code, ProductName: w.Product.Name, PartNumber: w.Product.PartNumber,
			BundleVersion: w.Bundle.Version, BundleTag: string(w.Bundle.Tag), Quantity: w.Quantity,
		}
	}
	if d.operator != nil {
		op := *d.operator
		st.Operator = &op
	}
	return st
}

// countsLocked completes the journal's counts with the slots as the
// tiles show them: a failed count is a red tile (a device failed or
// removed), and a failed device of the journal that no slot shows has
// been set aside. Call with d.mu held.
func (d *Daemon) countsLocked(slots []localapi.Slot) localapi.Counts {
	c := localapi.Counts{Done: d.counts.done, Passed: d.counts.done, Overridden: d.counts.overridden}
	shown := make(map[string]bool, len(slots))
	for _, s := range slots {
		if s.Device != "" {
			shown[s.Device] = true
		}
		if s.Status == localapi.SlotFailed || s.Status == localapi.SlotRemoved {
			c.Failed++
		}
	}
	for dev := range d.counts.failed {
		if !shown[dev] {
			c.SetAside++
		}
	}
	if n := c.Passed + c.Overridden + c.Failed + c.SetAside; n > 0 {
		c.Yield = float64(c.Passed) / float64(n)
	}
	return c
}

// slotsLocked maps the bus's slots and what hot-plug knows to the
// operator's view. Call with d.mu held.
func (d *Daemon) slotsLocked(snap []jobs.SlotState) []localapi.Slot {
	bus := make(map[string]jobs.SlotState, len(snap))
	for _, s := range snap {
		bus[s.Slot] = s
	}
	out := make([]localapi.Slot, 0, len(d.order))
	for _, name := range d.order {
		s := d.slots[name]
		v := d.slotView(s, bus[name])
		v.Can = d.slotCanLocked(s, v)
		out = append(out, v)
	}
	return out
}

func (d *Daemon) slotView(s *slotState, b jobs.SlotState) localapi.Slot {
	v := localapi.Slot{Name: s.spec.Name}
	changed := s.changed
	if b.Updated.After(changed) {
		changed = b.Updated
	}
	v.Seq = changed.UnixNano()
	switch {
	case s.busy && s.started:
		v.Status = localapi.SlotRunning
		v.Reason = b.Message
		if b.Waiting != "" {
			v.Status, v.Reason = localapi.SlotWaiting, b.Waiting
		}
		v.Step, v.Device, v.Serial, v.Started = string(b.Step), string(b.Device), b.Serial, b.Started
		if b.Total > 0 {
			v.Progress = float64(b.Done) / float64(b.Total)
		}
	case s.busy:
		v.Status = localapi.SlotReady
		v.Reason = fmt.Sprintf("waiting for a free place: at most %d devices are worked on at once", cap(d.sem))
		v.Seq = s.changed.UnixNano()
	case s.removed:
		v.Status, v.Step = localapi.SlotRemoved, s.removedStep
		v.Device, v.Serial, v.Elapsed = string(s.res.Device), s.res.Serial, s.res.Duration
		v.Reason = removedReason(s.removedStep)
		v.Seq = s.changed.UnixNano()
	case s.held:
		v.Device, v.Serial, v.Started, v.Elapsed = string(s.res.Device), s.res.Serial, b.Started, s.res.Duration
		v.Reason = s.res.Message
		switch s.res.Outcome {
		case jobs.OutcomePassed:
			v.Status, v.Reason = localapi.SlotPassed, ""
		case jobs.OutcomeAlreadyDone:
			v.Status = localapi.SlotPassed
		case jobs.OutcomeSkipped:
			v.Status = localapi.SlotSkipped
		default:
			v.Status, v.Step = localapi.SlotFailed, string(s.res.Step)
		}
		if s.override != "" {
			v.Status, v.Reason = localapi.SlotOverridden, s.override
		}
		if s.skipped != "" && s.override == "" {
			// Skipped after its result: the result stays shown, and
			// no longer asks for the operator.
			if v.Reason != "" {
				v.Reason += " "
			}
			v.Reason += "(" + s.skipped + ")"
		}
	case s.skipped != "":
		v.Status, v.Reason = localapi.SlotSkipped, s.skipped
		v.Device, v.Serial = string(s.res.Device), s.res.Serial
		v.Seq = s.changed.UnixNano()
	case s.present:
		v.Status = localapi.SlotReady
		switch {
		case d.wo == nil:
			v.Reason = "load a work order"
		case d.run == localapi.RunComplete:
			v.Reason = "the work order is complete"
		case d.run == localapi.RunReady:
			v.Reason = "press Start"
		case d.run == localapi.RunPaused:
			v.Reason = "paused"
		}
		v.Seq = s.changed.UnixNano()
	default:
		v.Status = localapi.SlotEmpty
		v.Seq = s.changed.UnixNano()
	}
	v.Changed = time.Unix(0, v.Seq)
	return v
}

// removedReason says what to do with a device pulled out during step.
func removedReason(step string) string {
	during := "while it was worked on"
	if step != "" {
		during = "during " + step
	}
	return "The board was pulled out " + during + ": plug it back in to carry on from its last passed step, or put it aside for rework and plug in the next one"
}

// canLocked says which station commands the one signed in may give now.
// Call with d.mu held.
func (d *Daemon) canLocked() localapi.Commands {
	var c localapi.Commands
	no := func(why string) localapi.Allowed { return localapi.Allowed{Why: why} }
	yes := localapi.Allowed{OK: true}
	op := d.operator
	switch {
	case op == nil:
		c.Load = no("sign in first")
	case d.loading != "":
		c.Load = no("work order " + d.loading + " is being loaded")
	case d.run == localapi.RunRunning || d.run == localapi.RunPaused || d.run == localapi.RunStopping:
		c.Load = no("work order " + d.wo.wo.ID + " is " + string(d.run) + ": a supervisor stops it first")
	case d.anyBusy():
		c.Load = no("devices are still at work")
	default:
		c.Load = yes
	}
	switch {
	case op == nil:
		c.Start = no("sign in first")
	case d.wo == nil:
		c.Start = no("scan a work order first")
	case d.run == localapi.RunRunning:
		c.Start = no("already running")
	case d.run == localapi.RunComplete:
		c.Start = no("the work order is complete: scan the next one")
	case d.run == localapi.RunStopping:
		c.Start = no("the work order is stopping")
	default:
		c.Start = yes
	}
	switch {
	case op == nil:
		c.Pause = no("sign in first")
	case d.run != localapi.RunRunning:
		c.Pause = no("not running")
	default:
		c.Pause = yes
	}
	switch {
	case op == nil || !op.Supervisor:
		c.Stop = no("needs a supervisor")
	case d.wo == nil:
		c.Stop = no("no work order is loaded")
	case d.run == localapi.RunStopping:
		c.Stop = no("already stopping")
	default:
		c.Stop = yes
	}
	return c
}

// slotCanLocked says which of a slot's commands the one signed in may
// give now, as Retry, Skip, Override and Reprint decide them. Call with
// d.mu held.
func (d *Daemon) slotCanLocked(s *slotState, v localapi.Slot) localapi.SlotCommands {
	var c localapi.SlotCommands
	no := func(why string) localapi.Allowed { return localapi.Allowed{Why: why} }
	yes := localapi.Allowed{OK: true}
	op := d.operator
	failed := s.held && s.res.Outcome == jobs.OutcomeFailed && s.override == ""
	switch {
	case op == nil:
		c.Retry = no("sign in first")
	case d.wo == nil:
		c.Retry = no("no work order is loaded")
	case d.run == localapi.RunStopping || d.closing:
		c.Retry = no("the work order is stopping")
	case s.busy:
		c.Retry = no("at work")
	case s.removed:
		c.Retry = no("plug the board back in first")
	case !failed:
		c.Retry = no("only a failed device is retried")
	default:
		c.Retry = yes
	}
	switch {
	case op == nil:
		c.Skip = no("sign in first")
	case s.busy:
		c.Skip = no("at work: wait for it to end")
	case !s.present:
		c.Skip = no("no board in the slot")
	case s.skipped != "":
		c.Skip = no("skipped already")
	default:
		c.Skip = yes
	}
	switch {
	case op == nil || !op.Supervisor:
		c.Override = no("needs a supervisor")
	case d.wo == nil:
		c.Override = no("no work order is loaded")
	case s.override != "":
		c.Override = no("accepted already")
	case s.busy || !failed:
		c.Override = no("only a failed device in its slot is accepted")
	default:
		c.Override = yes
	}
	switch {
	case op == nil:
		c.Reprint = no("sign in first")
	case d.wo == nil:
		c.Reprint = no("no work order is loaded")
	case !s.held || (s.res.Outcome != jobs.OutcomePassed && s.res.Outcome != jobs.OutcomeAlreadyDone):
		c.Reprint = no("no label was printed for this board")
	default:
		c.Reprint = yes
	}
	return c
}

func (d *Daemon) dmsLink() localapi.Link {
	if d.syncer == nil {
		return localapi.Link{OK: true}
	}
	st := d.syncer.State()
	l := localapi.Link{OK: st.Online}
	switch {
	case !st.Online && st.LastError != "":
		l.Detail = st.LastError
		if st.Lag > 0 {
			l.Detail += fmt.Sprintf(" (%d events waiting to sync)", st.Lag)
		}
	case !st.Online:
		l.Detail = "connecting"
	case st.Lag > 0:
		l.Detail = fmt.Sprintf("%d events waiting to sync", st.Lag)
	}
	if st.Refused > 0 {
		refused := fmt.Sprintf("%d events refused by the DMS, kept in the journal for QA (last: %s)", st.Refused, st.LastRefused)
		if l.Detail != "" {
			refused = l.Detail + "; " + refused
		}
		l.Detail = refused
	}
	return l
}

// alertsLocked says what the operator must know now, most urgent first.
func (d *Daemon) alertsLocked() []localapi.Alert {
	var errs, warns, infos []localapi.Alert
	tokenSpent := false
	for _, name := range d.order {
		s := d.slots[name]
		if s.removed && s.skipped == "" {
			warns = append(warns, localapi.Alert{Level: localapi.AlertWarning, Code: "device_removed", Slot: name,
				Message: fmt.Sprintf("Slot %s: %s", name, removedReason(s.removedStep))})
			continue
		}
		if !s.held || s.override != "" || s.skipped != "" || s.res.Outcome != jobs.OutcomeFailed {
			continue
		}
		if errors.Is(s.res.Err, jobs.ErrTokenSpent) {
			tokenSpent = true
		}
		warns = append(warns, localapi.Alert{Level: localapi.AlertWarning, Code: "device_failed", Slot: name,
			Message: fmt.Sprintf("Slot %s failed: %s", name, s.res.Message)})
	}
	if tokenSpent {
		errs = append(errs, localapi.Alert{Level: localapi.AlertError, Code: "token_spent",
			Message: "The activation token has no claims left: ask the product owner for a new token, then retry"})
	}
	if d.syncer != nil {
		st := d.syncer.State()
		if !st.Online && st.LastError != "" {
			errs = append(errs, localapi.Alert{Level: localapi.AlertError, Code: "dms_offline",
				Message: fmt.Sprintf("The DMS cannot be reached (%s). Devices keep flashing; the steps that need the DMS wait for it, and %d events wait in the journal.", st.LastError, st.Lag)})
		}
	}
	if p := d.printer.state(); !p.OK {
		errs = append(errs, localapi.Alert{Level: localapi.AlertError, Code: "printer",
			Message: "The label printer failed (" + p.Detail + "): check its paper and ribbon, then reprint the slot's label"})
	}
	if d.progress != "" {
		infos = append(infos, localapi.Alert{Level: localapi.AlertInfo, Code: "loading", Message: d.progress})
	}
	if d.run == localapi.RunComplete && d.wo != nil {
		infos = append(infos, localapi.Alert{Level: localapi.AlertInfo, Code: "complete",
			Message: fmt.Sprintf("Work order %s is complete: %d of %d devices done", d.wo.wo.ID, d.counts.done, d.wo.wo.Quantity)})
	}
	return slices.Concat(errs, warns, infos)
}

// Watch returns the stream of events: a "state" event first, then "slot"
// events as slots change and "alert" events when the header changes, and
// a whole "state" again when what only a state carries changes: the
// operator signed in or out, or the work order loaded (by any client, or
// restored after a restart while the watcher was already connected). The
// channel closes when ctx ends. A slow reader loses intermediate states,
// never the latest: the runner never waits for it.
func (d *Daemon) Watch(ctx context.Context) <-chan localapi.Event {
	out := make(chan localapi.Event, 16)
	sub := d.bus.Subscribe()
	wake := d.changes.subscribe()
	go func() {
		defer close(out)
		defer sub.Close()
		defer d.changes.unsubscribe(wake)
		send := func(e localapi.Event) bool {
			select {
			case out <- e:
				return true
			case <-ctx.Done():
				return false
			}
		}
		first := d.State(ctx)
		// A slot is sent again when it changed, or when what may be
		// done with it did (someone signed in, the run paused).
		type sentSlot struct {
			seq int64
			can localapi.SlotCommands
		}
		sent := map[string]sentSlot{}
		for _, s := range first.Slots {
			sent[s.Name] = sentSlot{s.Seq, s.Can}
		}
		header := headerKey(first.Counts, first.Run, first.Alerts, first.Can)
		whole := wholeKey(first)
		if !send(localapi.Event{Type: "state", State: &first, Time: first.Time}) {
			return
		}
		poll := time.NewTicker(time.Second) // the DMS link changes without telling
		defer poll.Stop()
		var last time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.C():
				sub.Changes()
			case <-wake:
			case <-poll.C:
			}
			// Changes that come faster than watchPace are sent
			// together: each slot once, in its latest state.
			if wait := time.Until(last.Add(watchPace)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				sub.Changes()
			}
			last = time.Now()
			st := d.State(ctx)
			if w := wholeKey(st); w != whole {
				// Someone signed in or out, or a work order was loaded,
				// here or on another client: the whole state, which
				// alone carries the operator and the work order.
				whole = w
				all := st
				if !send(localapi.Event{Type: "state", State: &all, Time: st.Time}) {
					return
				}
				for _, s := range st.Slots {
					sent[s.Name] = sentSlot{s.Seq, s.Can}
				}
				header = headerKey(st.Counts, st.Run, st.Alerts, st.Can)
				continue
			}
			counts := st.Counts
			for _, s := range st.Slots {
				if k := (sentSlot{s.Seq, s.Can}); sent[s.Name] == k {
					continue
				}
				sent[s.Name] = sentSlot{s.Seq, s.Can}
				slot := s
				// The alerts and the commands, which every slot event
				// would otherwise repeat, come in an "alert" event
				// when they change.
				if !send(localapi.Event{Type: "slot", Slot: &slot, Counts: &counts, Run: st.Run, Time: st.Time}) {
					return
				}
			}
			if h := headerKey(st.Counts, st.Run, st.Alerts, st.Can); h != header {
				header = h
				can := st.Can
				if !send(localapi.Event{Type: "alert", Counts: &counts, Run: st.Run, Alerts: st.Alerts, Can: &can, Time: st.Time}) {
					return
				}
			}
		}
	}()
	return out
}

// wholeKey tells apart the states whose change only a whole "state"
// event carries: who is signed in (and since when), and which work order
// is loaded.
func wholeKey(st localapi.State) string {
	b, _ := json.Marshal(struct {
		O *localapi.Operator
		W *localapi.WorkOrder
	}{st.Operator, st.WorkOrder})
	return string(b)
}

// watchPace is the shortest time between two rounds of slot events of a
// watcher: a station flashing 32 devices changes slots hundreds of times a
// second, and no screen needs more than a few redraws a second. The first
// change after a quiet time goes at once.
const watchPace = 100 * time.Millisecond

func headerKey(c localapi.Counts, run localapi.RunState, alerts []localapi.Alert, can localapi.Commands) string {
	b, _ := json.Marshal(struct {
		C localapi.Counts
		R localapi.RunState
		A []localapi.Alert
		K localapi.Commands
	}{c, run, alerts, can})
	return string(b)
}

// Load loads a work order by id or scanned barcode.
func (d *Daemon) Load(ctx context.Context, ref string) error {
	op, err := d.requireOperator()
	if err != nil {
		return err
	}
	id, err := ParseRef(ref)
	if err != nil {
		return &opError{kind: localapi.ErrInvalid, msg: err.Error()}
	}
	return d.load(ctx, id, op.Name)
}

// load fetches work order id, its artifacts, and makes it the station's.
// operator is empty when the daemon restores it after a restart.
func (d *Daemon) load(ctx context.Context, id, operator string) error {
	d.mu.Lock()
	if loading := d.loading; loading != "" {
		d.mu.Unlock()
		return opErr(localapi.ErrState, "work order %s is being loaded: wait for it", loading)
	}
	if old := d.wo; old != nil {
		switch {
		case d.run == localapi.RunRunning || d.run == localapi.RunPaused || d.run == localapi.RunStopping:
			e := opErr(localapi.ErrAlreadyRuns, "work order %s is %s: a supervisor stops it before another is loaded", old.wo.ID, d.run) // read under the lock
			d.mu.Unlock()
			return e
		case d.anyBusy():
			d.mu.Unlock()
			return opErr(localapi.ErrAlreadyRuns, "devices of work order %s are still at work: wait for them", old.wo.ID)
		}
	}
	d.loading, d.progress = id, "Loading work order "+id
	base := d.base
	d.mu.Unlock()
	d.changes.notify()
	defer func() {
		d.mu.Lock()
		d.loading, d.progress = "", ""
		d.mu.Unlock()
		d.changes.notify()
	}()

	say := func(s string) {
		d.log.Info(s, "work_order", id)
		d.setProgress(s)
	}
	// While the DMS cannot be reached and the station has no copy of the
	// work order, the operator hears so after a while rather than never.
	fctx, fcancel := context.WithTimeout(ctx, loadWait)
	wo, err := d.backend.WorkOrder(fctx, id, say)
	fcancel()
	if err != nil {
		return loadError(id, err)
	}
	lctx, cancel := context.WithCancel(base)
	runner, err := d.backend.Runner(ctx, RunnerRequest{
		WorkOrder: wo, Fixture: d.fixture, Journal: d.journal, Bus: d.bus, Printer: d.printer,
		Station: d.cfg.Station, Operator: operator, Logger: d.log, Progress: lineWriter(d.setProgress),
	})
	if err != nil {
		cancel()
		return loadError(id, err)
	}
	runner.Journal = syncingJournal{Journal: d.journal, after: d.appended}
	// A device's steps carry who is signed in when it starts, not who
	// loaded the work order.
	runner.SignedIn = d.signedIn
	counts, err := d.readCounts(ctx, id)
	if err != nil {
		cancel()
		return err
	}

	d.mu.Lock()
	if d.wo != nil {
		d.wo.cancel()
	}
	d.wo = &loaded{wo: wo, runner: runner, ctx: lctx, cancel: cancel}
	d.run, d.counts = localapi.RunReady, counts
	for _, s := range d.slots {
		// The devices in the slots are new to this work order.
		s.runGen = 0
		s.clearHeld()
		s.res = jobs.Result{}
		s.changed = time.Now()
	}
	d.checkComplete() // complete before: nothing new to journal
	d.save()
	d.mu.Unlock()
	for _, name := range d.order {
		d.bus.Publish(jobs.SlotState{Slot: name, Status: jobs.SlotIdle, Updated: time.Now()})
	}
	if operator != "" {
		d.note(ctx, operatorEvent(operator, "load_work_order", id, "", nil))
	}
	d.note(ctx, journalWorkOrder(id, "loaded", operator, map[string]any{
		"product": wo.Product.Code, "bundle": wo.Bundle.Version, "quantity": wo.Quantity, "done": counts.done,
	}))
	d.log.Info("work order loaded", "work_order", id, "product", wo.Product.Code, "bundle", wo.Bundle.Version, "quantity", wo.Quantity)
	d.changes.notify()
	return nil
}

func (d *Daemon) setProgress(s string) {
	d.mu.Lock()
	d.progress = s
	d.mu.Unlock()
	d.changes.notify()
}

// loadWait bounds the wait for the DMS when loading a work order.
const loadWait = 30 * time.Second

// lineWriter calls f with every line written to it.
type lineWriter func(string)

func (f lineWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			f(line)
		}
	}
	return len(p), nil
}

// loadError sorts a failure to load a work order for the API.
func loadError(id string, err error) error {
	kind := localapi.ErrWorkOrder
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, jobs.ErrNotFound):
		kind = localapi.ErrNotFound
	case errors.Is(err, jobs.ErrUnavailable), errors.Is(err, jobs.ErrPrinterUnavailable), errors.Is(err, context.DeadlineExceeded):
		kind = localapi.ErrUnavailable
	}
	return &opError{kind: kind, cause: err, msg: fmt.Sprintf("work order %s cannot be loaded: %v", id, err)}
}

func (d *Daemon) anyBusy() bool {
	for _, s := range d.slots {
		if s.busy {
			return true
		}
	}
	return false
}

// woCounts is what the journal says of a work order's devices; the
// state completes it with the slots (countsLocked).
type woCounts struct {
	done       int
	overridden int
	// failed holds the devices whose last run failed and that no
	// supervisor accepted since.
	failed map[string]bool
}

// readCounts derives the work order's counts from the journal: devices
// done, failed, and the failed ones a supervisor accepted after their
// last failure.
func (d *Daemon) readCounts(ctx context.Context, id string) (woCounts, error) {
	devs, err := d.journal.Devices(ctx, id)
	if err != nil {
		return woCounts{}, err
	}
	accepted, err := d.overrides(ctx, id)
	if err != nil {
		return woCounts{}, err
	}
	c := woCounts{failed: map[string]bool{}}
	for _, ds := range devs {
		switch {
		case ds.Result == journal.ResultDone:
			c.done++
		case ds.Result != journal.ResultFailed:
		case accepted[ds.Device].Seq > ds.LastSeq:
			c.overridden++
		default:
			c.failed[ds.Device] = true
		}
	}
	return c, nil
}

// overrides returns each device's last override in a work order.
func (d *Daemon) overrides(ctx context.Context, id string) (map[string]journal.Event, error) {
	events, err := d.journal.Events(ctx, journal.Filter{WorkOrder: id, Kind: journal.KindOperator, Step: "override"})
	if err != nil {
		return nil, err
	}
	out := map[string]journal.Event{}
	for _, e := range events {
		if e.Device != "" {
			out[e.Device] = e
		}
	}
	return out, nil
}

// Start works on every plugged device, and every device plugged in from
// now on.
func (d *Daemon) Start(ctx context.Context) error {
	op, err := d.begin()
	if err != nil {
		return err
	}
	action := "started"
	switch d.run {
	case localapi.RunReady:
	case localapi.RunPaused:
		action = "resumed"
	case localapi.RunRunning:
		e := opErr(localapi.ErrState, "work order %s is already running", d.wo.wo.ID) // read under the lock
		d.mu.Unlock()
		return e
	case localapi.RunComplete:
		e := opErr(localapi.ErrState, "work order %s is complete: load the next one", d.wo.wo.ID) // read under the lock
		d.mu.Unlock()
		return e
	default:
		e := opErr(localapi.ErrState, "work order %s is %s", d.wo.wo.ID, d.run) // read under the lock
		d.mu.Unlock()
		return e
	}
	d.run = localapi.RunRunning
	d.save()
	id := d.wo.wo.ID
	d.mu.Unlock()
	d.note(ctx, journalWorkOrder(id, action, op.Name, nil))
	d.changes.notify()
	d.schedule()
	return nil
}

// begin starts a command on the loaded work order: it checks that an
// operator is signed in and that a work order is loaded, and returns with
// d.mu held.
func (d *Daemon) begin() (localapi.Operator, error) {
	op, err := d.requireOperator()
	if err != nil {
		return op, err
	}
	return op, d.lockWorkOrder()
}

// lockWorkOrder takes d.mu and keeps it when a work order is loaded;
// otherwise it releases it and returns ErrNoWorkOrder.
func (d *Daemon) lockWorkOrder() error {
	d.mu.Lock()
	if err := d.needWorkOrder(); err != nil {
		d.mu.Unlock()
		return err
	}
	return nil
}

// Pause lets the devices at work finish and starts no new one.
func (d *Daemon) Pause(ctx context.Context) error {
	op, err := d.begin()
	if err != nil {
		return err
	}
	if d.run != localapi.RunRunning {
		e := opErr(localapi.ErrState, "work order %s is not running (it is %s)", d.wo.wo.ID, d.run) // read under the lock
		d.mu.Unlock()
		return e
	}
	d.run = localapi.RunPaused
	d.save()
	id := d.wo.wo.ID
	d.mu.Unlock()
	d.note(ctx, journalWorkOrder(id, "paused", op.Name, nil))
	d.changes.notify()
	return nil
}

// Stop stops the devices at work (they are journaled as stopped and
// resume from their last passed step when run again) and unloads the
// work order. It needs a supervisor's own PIN or badge, sup.
func (d *Daemon) Stop(ctx context.Context, sup localapi.Credential) error {
	op, err := d.requireSupervisor(ctx, sup, "stop")
	if err != nil {
		return err
	}
	if err := d.lockWorkOrder(); err != nil {
		return err
	}
	if d.run == localapi.RunStopping {
		e := opErr(localapi.ErrState, "work order %s is already stopping", d.wo.wo.ID) // read under the lock
		d.mu.Unlock()
		return e
	}
	wo := d.wo
	d.run = localapi.RunStopping
	d.save()
	d.mu.Unlock()
	d.changes.notify()
	d.note(ctx, operatorEvent(op.Name, "stop", wo.wo.ID, "", nil))
	wo.cancel()
	wo.wg.Wait()
	wo.runner.Flush()
	d.mu.Lock()
	if d.wo == wo {
		d.wo = nil
		d.run = localapi.RunIdle
		d.counts = woCounts{}
	}
	d.save()
	d.mu.Unlock()
	d.note(context.WithoutCancel(ctx), journalWorkOrder(wo.wo.ID, "stopped", op.Name, nil))
	d.changes.notify()
	return nil
}

// needWorkOrder returns ErrNoWorkOrder when none is loaded. Call with d.mu
// held.
func (d *Daemon) needWorkOrder() error {
	if d.wo == nil {
		if d.loading != "" {
			return opErr(localapi.ErrNoWorkOrder, "work order %s is still loading: wait for it", d.loading)
		}
		return opErr(localapi.ErrNoWorkOrder, "no work order is loaded: scan one first")
	}
	return nil
}

// slotLocked returns the named slot. Call with d.mu held.
func (d *Daemon) slotLocked(name string) (*slotState, error) {
	s, ok := d.slots[name]
	if !ok {
		return nil, opErr(localapi.ErrNotFound, "there is no slot %q in fixture %s", name, d.fixture.Name)
	}
	return s, nil
}

// workSlotLocked returns the named slot of the loaded work order. Call
// with d.mu held.
func (d *Daemon) workSlotLocked(name string) (*slotState, error) {
	s, err := d.slotLocked(name)
	if err == nil {
		err = d.needWorkOrder()
	}
	return s, err
}

// slotLabel rebuilds the label of the slot's last device from the
// journal, with the loaded work order it belongs to.
func (d *Daemon) slotLabel(ctx context.Context, slot string) (jobs.WorkOrder, jobs.Label, error) {
	d.mu.Lock()
	_, err := d.workSlotLocked(slot)
	var wo jobs.WorkOrder
	if err == nil {
		wo = d.wo.wo
	}
	d.mu.Unlock()
	if err != nil {
		return wo, jobs.Label{}, err
	}
	l, err := d.labelFromJournal(ctx, wo, slot)
	return wo, l, err
}

// Retry runs a failed slot's device again, from its last passed step.
func (d *Daemon) Retry(ctx context.Context, slot string) error {
	op, err := d.requireOperator()
	if err != nil {
		return err
	}
	d.mu.Lock()
	s, err := d.workSlotLocked(slot)
	switch {
	case err != nil:
	case d.run == localapi.RunStopping || d.closing:
		err = opErr(localapi.ErrState, "the work order is stopping")
	case s.busy:
		err = opErr(localapi.ErrNothingToDo, "slot %s is at work", slot)
	case s.removed:
		err = opErr(localapi.ErrState, "the board of slot %s was pulled out: plug it back in", slot)
	case !s.held || s.res.Outcome != jobs.OutcomeFailed || s.override != "":
		err = opErr(localapi.ErrNothingToDo, "slot %s has not failed: only a failed device is retried", slot)
	case !s.present:
		err = opErr(localapi.ErrState, "slot %s has no device: plug it back in", slot)
	}
	if err != nil {
		d.mu.Unlock()
		return err
	}
	e := d.slotEvent("retry", slot, s.res.Device, map[string]any{"device": s.res.Device})
	e.Operator = op.Name
	d.startSlot(slot)
	d.mu.Unlock()
	d.note(ctx, e)
	return nil
}

// Skip leaves a slot's device alone until it is unplugged. A device
// that ended keeps its result on the slot, and no longer calls for the
// operator.
func (d *Daemon) Skip(ctx context.Context, slot string) error {
	op, err := d.requireOperator()
	if err != nil {
		return err
	}
	d.mu.Lock()
	s, err := d.slotLocked(slot)
	switch {
	case err != nil:
	case s.busy:
		err = opErr(localapi.ErrState, "slot %s is at work: wait for it to end", slot)
	case !s.present:
		err = opErr(localapi.ErrNothingToDo, "slot %s has no device", slot)
	case s.skipped != "":
		err = opErr(localapi.ErrNothingToDo, "slot %s is skipped already", slot)
	}
	if err != nil {
		d.mu.Unlock()
		return err
	}
	s.skipped = "skipped by " + op.Name + ": unplug the device"
	s.runGen = s.gen // never started for this plugging
	s.changed = time.Now()
	id := ""
	if d.wo != nil {
		id = d.wo.wo.ID
	}
	e := operatorEvent(op.Name, "skip", id, slot, map[string]any{"device": s.res.Device})
	if s.held {
		e.Device = string(s.res.Device)
	}
	d.mu.Unlock()
	d.note(ctx, e)
	d.changes.notify()
	return nil
}

// Override accepts a failed device, with the supervisor's reason
// journaled. It needs a supervisor's own PIN or badge, sup. The device is
// counted overridden, never passed: it did not finish the pipeline.
func (d *Daemon) Override(ctx context.Context, slot, reason string, sup localapi.Credential) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return opErr(localapi.ErrInvalid, "give the reason the failed device is accepted: it goes in the journal")
	}
	op, err := d.requireSupervisor(ctx, sup, "override")
	if err != nil {
		return err
	}
	d.mu.Lock()
	s, err := d.workSlotLocked(slot)
	switch {
	case err != nil:
	case s.busy || !s.held || s.res.Outcome != jobs.OutcomeFailed:
		err = opErr(localapi.ErrNothingToDo, "slot %s has no failed device to accept", slot)
	case s.override != "":
		err = opErr(localapi.ErrNothingToDo, "slot %s was accepted already", slot)
	}
	if err != nil {
		d.mu.Unlock()
		return err
	}
	s.override = fmt.Sprintf("accepted by %s: %s", op.Name, reason)
	s.changed = time.Now()
	id := d.wo.wo.ID
	e := d.slotEvent("override", slot, s.res.Device, map[string]any{"reason": reason, "failed_step": s.res.Step})
	e.Operator = op.Name
	d.mu.Unlock()
	d.note(ctx, e)
	d.metrics.overridden()
	d.countsMu.Lock()
	if counts, err := d.readCounts(ctx, id); err == nil {
		d.mu.Lock()
		if d.wo != nil && d.wo.wo.ID == id {
			d.counts = counts
		}
		d.mu.Unlock()
	}
	d.countsMu.Unlock()
	d.changes.notify()
	return nil
}

// LabelPNG renders the label of the slot's last device, rebuilt from the
// journal as Reprint does, for the kiosk's preview.
func (d *Daemon) LabelPNG(ctx context.Context, slot string) ([]byte, error) {
	_, l, err := d.slotLabel(ctx, slot)
	if err != nil {
		return nil, err
	}
	png, err := label.PNG(l)
	if err != nil {
		return nil, fmt.Errorf("render the label of %s: %w", l.Serial, err)
	}
	return png, nil
}

// Reprint prints the label of the slot's last device again, rebuilt from
// the journal: the label step's serial, template, copies and date, and
// the loaded work order's product and bundle.
func (d *Daemon) Reprint(ctx context.Context, slot string) error {
	op, err := d.requireOperator()
	if err != nil {
		return err
	}
	wo, l, err := d.slotLabel(ctx, slot)
	if err != nil {
		return err
	}
	if err := d.printer.Print(ctx, l); err != nil {
		d.changes.notify()
		return fmt.Errorf("reprint the label of %s: %w", l.Serial, err)
	}
	e := operatorEvent(op.Name, "reprint", wo.ID, slot, map[string]any{"serial": l.Serial})
	e.Device = string(l.HardwareID)
	d.note(ctx, e)
	d.changes.notify()
	return nil
}

// labelFromJournal rebuilds the last label printed on slot.
func (d *Daemon) labelFromJournal(ctx context.Context, wo jobs.WorkOrder, slot string) (jobs.Label, error) {
	last, ok, err := d.journal.LastOnSlot(ctx, wo.ID, slot)
	if err != nil {
		return jobs.Label{}, err
	}
	if !ok || !slices.Contains(last.Passed, string(jobs.StepLabel)) {
		return jobs.Label{}, opErr(localapi.ErrNothingToDo, "no label was printed for the last device of work order %s on slot %s", wo.ID, slot)
	}
	events, err := d.journal.Events(ctx, journal.Filter{WorkOrder: wo.ID, Device: last.Device, Kind: journal.KindStep,
		Step: string(jobs.StepLabel), Status: journal.StatusPassed})
	if err != nil {
		return jobs.Label{}, err
	}
	if len(events) == 0 {
		return jobs.Label{}, opErr(localapi.ErrNothingToDo, "no label was printed for device %s", last.Device)
	}
	e := events[len(events)-1]
	var data struct {
		Serial   string `json:"serial"`
		Template string `json:"template"`
		Copies   int    `json:"copies"`
	}
	if err := json.Unmarshal(e.Data, &data); err != nil || data.Serial == "" {
		return jobs.Label{}, fmt.Errorf("the journal's label record of device %s cannot be read: %v", last.Device, err)
	}
	return jobs.Label{
		Template: data.Template, Copies: max(data.Copies, 1), WorkOrder: wo.ID,
		Product: wo.Product.Code, ProductName: wo.Product.Name, PartNumber: wo.Product.PartNumber,
		Serial: data.Serial, HardwareID: flasher.HardwareID(last.Device), FirmwareVersion: wo.Bundle.Version,
		Date: e.Time, Station: e.Station, Slot: e.Slot,
	}, nil
}

// Devices lists devices for the QA view.
func (d *Daemon) Devices(ctx context.Context, q localapi.DeviceQuery) ([]localapi.DeviceRow, error) {
	ids := []string{q.WorkOrder}
	if q.WorkOrder == "" {
		wos, err := d.journal.WorkOrders(ctx)
		if err != nil {
			return nil, err
		}
		ids = ids[:0]
		for _, w := range wos {
			ids = append(ids, w.ID)
		}
	}
	var rows []localapi.DeviceRow
	for _, id := range ids {
		devs, err := d.journal.Devices(ctx, id)
		if err != nil {
			return nil, err
		}
		var operators map[string]string
		var accepted map[string]journal.Event
		for _, ds := range devs {
			if !matches(ds, q) {
				continue
			}
			if operators == nil {
				if operators, err = d.startingOperators(ctx, id); err != nil {
					return nil, err
				}
				if accepted, err = d.overrides(ctx, id); err != nil {
					return nil, err
				}
			}
			row := localapi.DeviceRow{
				WorkOrder: ds.WorkOrder, Device: ds.Device, Serial: ds.Serial, Slot: ds.Slot, Result: string(ds.Result),
				LastStep: ds.LastStep, LastError: ds.LastError, Attempts: ds.Runs, Operator: operators[ds.Device],
				First: ds.First, Last: ds.Last,
			}
			if o, ok := accepted[ds.Device]; ok && ds.Result == journal.ResultFailed && o.Seq > ds.LastSeq {
				row.Override = o.Operator + ": " + overrideReason(o)
			}
			rows = append(rows, row)
		}
	}
	slices.SortStableFunc(rows, func(a, b localapi.DeviceRow) int { return b.Last.Compare(a.Last) })
	if q.Limit > 0 && len(rows) > q.Limit {
		rows = rows[:q.Limit]
	}
	return rows, nil
}

// startingOperators returns, for each device of a work order, who was
// signed in when its last run started, of the runs until it was done:
// the operator of its last identify event before its done event.
func (d *Daemon) startingOperators(ctx context.Context, id string) (map[string]string, error) {
	events, err := d.journal.Events(ctx, journal.Filter{WorkOrder: id, Kind: journal.KindStep})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	done := map[string]bool{}
	for _, e := range events {
		switch {
		case e.Device == "" || done[e.Device]:
		case e.Step == string(jobs.StepDone) && e.Status == journal.StatusPassed:
			done[e.Device] = true
		case e.Step == string(jobs.StepIdentify):
			// (identify's started event names no device yet.)
			out[e.Device] = e.Operator
		}
	}
	return out, nil
}

// overrideReason is the reason an override event records.
func overrideReason(e journal.Event) string {
	var data struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(e.Data, &data)
	return data.Reason
}

func matches(ds journal.DeviceState, q localapi.DeviceQuery) bool {
	if q.Device != "" {
		needle := strings.ToLower(q.Device)
		if !strings.Contains(strings.ToLower(ds.Device), needle) && !strings.Contains(strings.ToLower(ds.Serial), needle) {
			return false
		}
	}
	switch {
	case q.Result != "" && string(ds.Result) != q.Result:
		return false
	case !q.Since.IsZero() && ds.Last.Before(q.Since):
		return false
	case !q.Until.IsZero() && !ds.First.Before(q.Until):
		return false
	}
	return true
}

// DeviceLog returns the events of a device (hardware id or serial): its
// steps, and what operators did with it (skip, retry, override, unplug).
func (d *Daemon) DeviceLog(ctx context.Context, device string) ([]localapi.LogLine, error) {
	events, err := d.deviceEvents(ctx, device)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 {
		rows, err := d.Devices(ctx, localapi.DeviceQuery{Device: device})
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if strings.EqualFold(r.Serial, device) {
				if events, err = d.deviceEvents(ctx, r.Device); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	if len(events) == 0 {
		return nil, opErr(localapi.ErrNotFound, "the journal holds no device %q: check its hardware id or serial", device)
	}
	out := make([]localapi.LogLine, 0, len(events))
	for _, e := range events {
		msg := e.Error
		if e.Kind == journal.KindOperator && e.Step == "override" {
			msg = overrideReason(e)
		}
		out = append(out, localapi.LogLine{Seq: e.Seq, Time: e.Time, WorkOrder: e.WorkOrder, Slot: e.Slot, Step: e.Step,
			Status: string(e.Status), Attempt: e.Attempt, Duration: e.Duration, Operator: e.Operator, Message: msg})
	}
	return out, nil
}

// deviceEvents returns a device's step and operator events.
func (d *Daemon) deviceEvents(ctx context.Context, device string) ([]journal.Event, error) {
	events, err := d.journal.Events(ctx, journal.Filter{Device: device})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(events, func(e journal.Event) bool {
		return e.Kind != journal.KindStep && e.Kind != journal.KindOperator
	}), nil
}

// Export writes the selected devices' events as JSON lines. The journal
// redacts secrets when it writes them.
func (d *Daemon) Export(ctx context.Context, q localapi.DeviceQuery, w io.Writer) error {
	rows, err := d.Devices(ctx, q)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	for _, r := range rows {
		events, err := d.journal.Events(ctx, journal.Filter{WorkOrder: r.WorkOrder, Device: r.Device})
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("export: %w", err)
			}
		}
	}
	return nil
}

// ExportSigned writes the signed QA export of the selected devices, as
// "station export" writes it (same code, same key: station-export.key
// next to the journal), as a tar archive of its folder. A device query
// must name one device: its whole hardware id or serial.
func (d *Daemon) ExportSigned(ctx context.Context, q localapi.DeviceQuery, w io.Writer) error {
	f := export.Filter{WorkOrder: q.WorkOrder, Since: q.Since, Until: q.Until, Result: journal.Result(q.Result),
		Traces: filepath.Join(filepath.Dir(d.journal.Path()), "traces")}
	if q.Device != "" {
		rows, err := d.Devices(ctx, localapi.DeviceQuery{WorkOrder: q.WorkOrder, Device: q.Device})
		if err != nil {
			return err
		}
		for _, r := range rows {
			if strings.EqualFold(r.Device, q.Device) || strings.EqualFold(r.Serial, q.Device) {
				f.Device = r.Device
			}
		}
		if f.Device == "" {
			return opErr(localapi.ErrNotFound, "no device %q to export: give its whole hardware id or serial", q.Device)
		}
	}
	key, err := export.LoadOrCreateKey(filepath.Join(filepath.Dir(d.journal.Path()), export.DefaultKeyName))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "station-export-")
	if err != nil {
		return fmt.Errorf("signed export: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "export")
	if _, err := export.Write(ctx, d.journal, f, dir, key); err != nil {
		return err
	}
	return tarDir(w, dir)
}

// tarDir writes the files of dir (regular files and folders) to w as a
// tar archive, with paths relative to dir.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !de.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return fmt.Errorf("signed export: %w", err)
	}
	return nil
}

// journalWorkOrder is a work order event.
func journalWorkOrder(id, action, operator string, data map[string]any) journal.Event {
	e := journal.Event{Kind: journal.KindWorkOrder, WorkOrder: id, Operator: operator, Step: action, Status: journal.StatusInfo}
	if data != nil {
		e.Data = mustJSON(data)
	}
	return e
}

// operatorEvent is an operator's action.
func operatorEvent(operator, action, workOrder, slot string, data map[string]any) journal.Event {
	e := journal.Event{Kind: journal.KindOperator, Operator: operator, Step: action, Status: journal.StatusInfo,
		WorkOrder: workOrder, Slot: slot}
	if data != nil {
		e.Data = mustJSON(data)
	}
	return e
}
