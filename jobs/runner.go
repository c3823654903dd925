package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/station/journal"
)

// SlotSpec is what the runner needs to know of a fixture slot.
type SlotSpec struct {
	// Name is the slot's name.
	Name string
	// Protocol picks the image the slot flashes.
	Protocol string
	// Uses names the shared resources the slot holds while it works on
	// a device.
	Uses []string
}

// DefaultTimeouts bound each step unless the work order says otherwise.
var DefaultTimeouts = map[Step]time.Duration{
	StepIdentify:  30 * time.Second,
	StepPreflight: 30 * time.Second,
	StepFlash:     15 * time.Minute,
	StepVerify:    5 * time.Minute,
	StepActivate:  30 * time.Second,
	StepLock:      60 * time.Second,
	StepLabel:     60 * time.Second,
	StepDone:      30 * time.Second,
}

// Outcome is how a device's run ended.
type Outcome string

// Outcomes.
const (
	// OutcomePassed means every step passed.
	OutcomePassed Outcome = "passed"
	// OutcomeFailed means a step failed; Result.Step says which.
	OutcomeFailed Outcome = "failed"
	// OutcomeSkipped means the device was not worked on: the work
	// order's quantity was reached.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeAlreadyDone means the work order had completed the device
	// before; nothing was written or claimed again.
	OutcomeAlreadyDone Outcome = "already_done"
)

// Result is what happened to the device in one slot.
type Result struct {
	Slot    string             `json:"slot"`
	Device  flasher.HardwareID `json:"device,omitempty"`
	Serial  string             `json:"serial,omitempty"`
	Outcome Outcome            `json:"outcome"`
	// Step is the step that failed, for OutcomeFailed.
	Step Step `json:"step,omitempty"`
	// Message says what happened in an operator's words.
	Message string `json:"message,omitempty"`
	// Err is the failure, for programs.
	Err error `json:"-"`
	// Attempts is how many times the device was run in this call.
	Attempts int `json:"attempts"`
	// Duration is the wall time of the last attempt.
	Duration time.Duration `json:"-"`
	// Steps holds the wall time of each step of the last attempt that
	// ran (skipped steps are absent).
	Steps map[Step]time.Duration `json:"-"`
	// Link is the part of Duration spent talking to the device: opening
	// it and every backend call. The rest is the station's own time.
	Link time.Duration `json:"-"`
}

// MarshalJSON writes durations in seconds.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	steps := map[Step]float64{}
	for s, d := range r.Steps {
		steps[s] = d.Seconds()
	}
	return json.Marshal(struct {
		plain
		Seconds     float64          `json:"seconds"`
		LinkSeconds float64          `json:"link_seconds"`
		StepSeconds map[Step]float64 `json:"step_seconds,omitempty"`
	}{plain(r), r.Duration.Seconds(), r.Link.Seconds(), steps})
}

// Summary is the outcome of a run over several slots.
type Summary struct {
	WorkOrder   string        `json:"work_order"`
	Devices     int           `json:"devices"`
	Passed      int           `json:"passed"`
	Failed      int           `json:"failed"`
	Skipped     int           `json:"skipped"`
	AlreadyDone int           `json:"already_done"`
	Results     []Result      `json:"results"`
	Wall        time.Duration `json:"-"`
	// Events is how many journal events the run wrote.
	Events int64 `json:"events"`
	// Done is how many devices the work order has completed in all, of
	// Quantity.
	Done     int `json:"done"`
	Quantity int `json:"quantity"`
}

// Runner runs a work order's pipeline on the devices in a fixture's slots.
// Set the fields, then call Run or RunSlot; a Runner may run many times
// (a retry is another RunSlot) and is safe for concurrent use once running.
type Runner struct {
	WorkOrder WorkOrder
	// Images holds the image each protocol flashes, keyed by protocol.
	Images    map[string]flasher.Image
	Slots     []SlotSpec
	Resources map[string]int64
	Connector Connector
	Upstream  Upstream
	Printer   Printer
	Journal   Journal
	// Station is this station's id; Operator who is signed in.
	Station  string
	Operator string
	// SignedIn, when set, says who is signed in now: a device's step
	// events then carry who was signed in when its run started, in place
	// of Operator ("" when nobody was).
	SignedIn func() string
	Logger   *slog.Logger
	// Parallel is the most slots that work at once; 0 means all.
	Parallel int
	// Bus receives every slot's live state; nil means none.
	Bus *Bus
	// RetryDelay is the pause before a failed device is tried again by
	// itself; 0 means one second.
	RetryDelay time.Duration
	// TraceDir, when set, keeps each device's protocol transcript (one
	// line per bootloader command and answer, never bulk data) in
	// TraceDir/<work order>/<hardware id>.log, appended run after run,
	// for QA's export. The transcript is written once the device's run
	// has ended, off its path: Run returns once every transcript of its
	// devices is written, and Flush waits for those of RunSlot.
	TraceDir string

	initOnce sync.Once
	initErr  error
	sems     map[string]*semaphore.Weighted
	printer  *semaphore.Weighted
	quota    quota
	events   atomic.Int64
	traces   writeBehind[transcript]
}

func (r *Runner) init(ctx context.Context) error {
	r.initOnce.Do(func() {
		if r.Logger == nil {
			r.Logger = slog.New(slog.DiscardHandler)
		}
		if r.Bus == nil {
			r.Bus = &Bus{}
		}
		r.sems = map[string]*semaphore.Weighted{}
		for name, n := range r.Resources {
			r.sems[name] = semaphore.NewWeighted(n)
		}
		r.printer = semaphore.NewWeighted(1)
		r.traces.write = r.writeTranscripts
		if err := r.count(ctx); err != nil {
			r.initErr = err
			return
		}
		for _, s := range r.Slots {
			r.Bus.Update(s.Name, func(*SlotState) {})
		}
	})
	return r.initErr
}

func (r *Runner) slot(name string) (SlotSpec, bool) {
	i := slices.IndexFunc(r.Slots, func(s SlotSpec) bool { return s.Name == name })
	if i < 0 {
		return SlotSpec{}, false
	}
	return r.Slots[i], true
}

// Run works on the named slots in parallel (every slot when none are
// named) and returns when each has finished. A failed device never stops
// the others; cancelling ctx stops them all.
func (r *Runner) Run(ctx context.Context, slots ...string) (Summary, error) {
	start := time.Now()
	if err := r.init(ctx); err != nil {
		return Summary{}, err
	}
	if len(slots) == 0 {
		for _, s := range r.Slots {
			slots = append(slots, s.Name)
		}
	}
	for _, name := range slots {
		if _, ok := r.slot(name); !ok {
			return Summary{}, fmt.Errorf("slot %q is not in the fixture", name)
		}
	}
	before := r.events.Load()
	if err := r.note(ctx, "started", map[string]any{"slots": slots, "quantity": r.WorkOrder.Quantity}); err != nil {
		return Summary{}, err
	}
	results := make([]Result, len(slots))
	var g errgroup.Group
	limit := r.Parallel
	if limit <= 0 {
		limit = len(slots)
	}
	g.SetLimit(limit)
	for i, name := range slots {
		g.Go(func() error {
			results[i] = r.RunSlot(ctx, name)
			return nil
		})
	}
	_ = g.Wait()
	r.Flush()
	sum := Summary{WorkOrder: r.WorkOrder.ID, Devices: len(results), Results: results, Quantity: r.WorkOrder.Quantity}
	for _, res := range results {
		switch res.Outcome {
		case OutcomePassed:
			sum.Passed++
		case OutcomeFailed:
			sum.Failed++
		case OutcomeSkipped:
			sum.Skipped++
		case OutcomeAlreadyDone:
			sum.AlreadyDone++
		}
	}
	sum.Done = r.quota.doneCount()
	action := "stopped"
	switch {
	case sum.Done >= r.WorkOrder.Quantity:
		action = "completed"
	case ctx.Err() == nil:
		action = "paused"
	}
	if err := r.note(context.WithoutCancel(ctx), action, map[string]any{
		"passed": sum.Passed, "failed": sum.Failed, "skipped": sum.Skipped,
		"already_done": sum.AlreadyDone, "done": sum.Done,
	}); err != nil {
		return sum, err
	}
	sum.Events = r.events.Load() - before
	sum.Wall = time.Since(start)
	return sum, nil
}

// note journals a work-order event.
func (r *Runner) note(ctx context.Context, action string, data map[string]any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("journal work order %s: %w", action, err)
	}
	err = r.append(ctx, journal.Event{
		Kind: journal.KindWorkOrder, WorkOrder: r.WorkOrder.ID, Operator: r.Operator,
		Step: action, Status: journal.StatusInfo, Data: raw,
	})
	return err
}

func (r *Runner) append(ctx context.Context, events ...journal.Event) error {
	out, err := r.Journal.Append(ctx, events...)
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	r.events.Add(int64(len(out)))
	return nil
}

// Flush returns once the protocol transcript of every device whose run
// has ended is written to TraceDir. Run flushes before it returns; a
// caller of RunSlot flushes before it exits.
func (r *Runner) Flush() {
	// The transcripts' writer never fails: a file it cannot write is
	// logged and skipped.
	_ = r.traces.wait()
}

// RunSlot works on the device in one slot, trying it again by itself up to
// the work order's retries when the failure may pass. Running a failed
// slot again is a retry: the device resumes from its last passed step.
func (r *Runner) RunSlot(ctx context.Context, name string) Result {
	if err := r.init(ctx); err != nil {
		return Result{Slot: name, Outcome: OutcomeFailed, Err: err, Message: Explain(err)}
	}
	spec, ok := r.slot(name)
	if !ok {
		err := fmt.Errorf("slot %q is not in the fixture", name)
		return Result{Slot: name, Outcome: OutcomeFailed, Err: err, Message: err.Error()}
	}
	delay := r.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	operator := r.Operator
	if r.SignedIn != nil {
		operator = r.SignedIn()
	}
	var first Result
	for attempt := 1; ; attempt++ {
		res := r.runDevice(ctx, spec, operator)
		res.Attempts = attempt
		if attempt == 1 {
			first = res
		} else if res.Device == "" {
			// A retry that could not identify the device (it was
			// unplugged) is about the device of the first try.
			res.Device, res.Serial = first.Device, first.Serial
		}
		if res.Outcome != OutcomeFailed || attempt > r.WorkOrder.Flasher.Retries || !retryable(res.Err) || ctx.Err() != nil {
			return res
		}
		r.Logger.Info("retrying device", "slot", name, "hardware_id", res.Device, "step", res.Step, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return res
		case <-time.After(delay):
		}
	}
}

func (r *Runner) timeout(s Step) time.Duration {
	if d, ok := r.WorkOrder.Flasher.Timeouts[string(s)]; ok && d.Std() > 0 {
		return d.Std()
	}
	return DefaultTimeouts[s]
}

// acquire takes the slot's shared resources, in name order so that two
// slots never wait on each other.
func (r *Runner) acquire(ctx context.Context, spec SlotSpec) (release func(), err error) {
	uses := slices.Clone(spec.Uses)
	slices.Sort(uses)
	var held []*semaphore.Weighted
	release = func() {
		for _, s := range held {
			s.Release(1)
		}
	}
	for _, u := range uses {
		s, ok := r.sems[u]
		if !ok {
			release()
			return nil, fmt.Errorf("slot %s uses resource %q, which the fixture does not define", spec.Name, u)
		}
		if err := s.Acquire(ctx, 1); err != nil {
			release()
			return nil, fmt.Errorf("wait for resource %s: %w", u, err)
		}
		held = append(held, s)
	}
	return release, nil
}

// stepFunc runs one step and returns its measurements.
type stepFunc func(d *deviceRun, ctx context.Context) (map[string]any, error)

// pipeline is the device pipeline as data.
func pipeline() []struct {
	name Step
	run  stepFunc
} {
	return []struct {
		name Step
		run  stepFunc
	}{
		{StepIdentify, (*deviceRun).identify},
		{StepPreflight, (*deviceRun).preflight},
		{StepFlash, (*deviceRun).flash},
		{StepVerify, (*deviceRun).verify},
		{StepActivate, (*deviceRun).activate},
		{StepLock, (*deviceRun).lock},
		{StepLabel, (*deviceRun).label},
		{StepDone, (*deviceRun).finish},
	}
}

// runDevice runs the pipeline once on the device in a slot; operator is
// journaled on its every step.
func (r *Runner) runDevice(ctx context.Context, spec SlotSpec, operator string) (res Result) {
	d := &deviceRun{r: r, ctx: ctx, spec: spec, operator: operator, log: r.Logger.With("slot", spec.Name, "work_order", r.WorkOrder.ID),
		skip: map[Step]string{}, res: Result{Slot: spec.Name, Steps: map[Step]time.Duration{}}}
	// The device's events are written behind it, in order, and outlive
	// an operator's stop.
	jctx := context.WithoutCancel(ctx)
	d.events.write = func(events []journal.Event) error { return r.append(jctx, events...) }
	start := time.Now()
	r.Bus.Update(spec.Name, func(s *SlotState) {
		*s = SlotState{Slot: spec.Name, Status: SlotRunning, Started: start}
	})
	if r.TraceDir != "" {
		d.trace = &lockedBuffer{}
	}
	defer func() {
		if d.backend != nil {
			if err := d.backend.Close(); err != nil {
				d.log.Warn("close device", "err", err)
			}
		}
		// The outcome stands once every event of the run is durable.
		if err := d.events.wait(); err != nil {
			d.journalFailed(err)
		}
		d.keepTrace(start)
		if d.reserved {
			r.quota.release(d.ticket, d.ending())
		}
		d.res.Duration = time.Since(start)
		d.res.Link = time.Duration(d.link.Load())
		res = d.res
		status := map[Outcome]SlotStatus{OutcomePassed: SlotPassed, OutcomeFailed: SlotFailed,
			OutcomeSkipped: SlotSkipped, OutcomeAlreadyDone: SlotPassed}[d.res.Outcome]
		r.Bus.Update(spec.Name, func(s *SlotState) {
			s.Status, s.Message, s.Device, s.Serial = status, d.res.Message, d.res.Device, d.res.Serial
		})
	}()
	release, err := r.acquire(ctx, spec)
	if err != nil {
		d.fail(StepIdentify, err)
		return d.res
	}
	defer release()

	for _, st := range pipeline() {
		if d.doneAtDMS {
			// The DMS holds the device as done by this work order: the
			// journal records it done too, with the DMS as its source,
			// after the events before it.
			err := d.events.wait()
			if err == nil {
				err = d.recordDoneAtDMS(ctx)
			}
			if err != nil {
				d.fail(StepDone, err)
				return d.res
			}
			break
		}
		if d.stop != "" {
			// A step ended the run early: say so on the next step, so
			// that the journal shows why the device went no further.
			if err := d.record(st.name, journal.StatusSkipped, 0, d.res.Message, nil); err != nil {
				d.fail(st.name, err)
				return d.res
			}
			break
		}
		if reason, ok := d.skip[st.name]; ok {
			if err := d.record(st.name, journal.StatusSkipped, 0, reason, nil); err != nil {
				d.fail(st.name, err)
				return d.res
			}
			continue
		}
		if err := d.run(ctx, st.name, st.run); err != nil {
			d.fail(st.name, err)
			return d.res
		}
	}
	switch d.stop {
	case OutcomeAlreadyDone, OutcomeSkipped:
		d.res.Outcome = d.stop
	default:
		d.res.Outcome = OutcomePassed
		d.res.Message = "passed"
	}
	return d.res
}

// deviceRun is one pass of the pipeline over one device.
type deviceRun struct {
	r    *Runner
	ctx  context.Context // the device's, which a step's timeout does not bound
	spec SlotSpec
	log  *slog.Logger
	// operator was signed in when the device's run started.
	operator string

	backend  flasher.Backend
	link     atomic.Int64 // nanoseconds spent on the device link
	dev      flasher.Device
	hw       flasher.HardwareID
	prior    journal.DeviceState // what the journal knew before this run
	verdict  Verdict
	serial   string
	reserved bool
	ticket   ticket // the device's place in the quantity, when reserved
	// claimed reports that an activation of the device was begun, in
	// this run or an earlier one: its claim may be spent.
	claimed bool
	// doneAtDMS reports that preflight found the device completed by
	// this work order at the DMS.
	doneAtDMS bool
	skip      map[Step]string // steps to skip, with the reason journaled
	stop      Outcome         // set by a step that ends the run early
	res       Result
	trace     *lockedBuffer // the protocol transcript, when kept
	// events writes the device's journal events behind it; last is
	// the step of the latest.
	events writeBehind[journal.Event]
	last   Step
}

// lockedBuffer collects a backend's transcript.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// transcript is a device run's protocol transcript, to be appended to its
// file.
type transcript struct {
	dir, file string
	text      []byte
	log       *slog.Logger
}

// keepTrace hands the run's protocol transcript to the runner's writer,
// which appends it to the device's file off the device's path.
func (d *deviceRun) keepTrace(start time.Time) {
	if d.trace == nil {
		return
	}
	// The backend is closed: nothing writes to the buffer any more.
	d.trace.mu.Lock()
	text := d.trace.b.Bytes()
	d.trace.mu.Unlock()
	if len(text) == 0 {
		return
	}
	name := string(d.hw)
	if name == "" {
		name = "slot-" + d.spec.Name
	}
	head := fmt.Sprintf("# %s slot %s, run started %s\n", d.r.Station, d.spec.Name, start.UTC().Format(time.RFC3339Nano))
	_ = d.r.traces.add(transcript{dir: filepath.Join(d.r.TraceDir, d.r.WorkOrder.ID), file: TraceFileName(name),
		text: append([]byte(head), text...), log: d.log})
}

// writeTranscripts appends each transcript to its device's file, in the
// order the runs ended. A transcript that cannot be written is logged and
// skipped: it never fails a device.
func (r *Runner) writeTranscripts(ts []transcript) error {
	for _, t := range ts {
		if err := appendFile(t.dir, t.file, t.text); err != nil {
			t.log.Warn("keep protocol transcript", "err", err)
		}
	}
	return nil
}

// appendFile appends text to dir/name in one write, making dir if needed.
func appendFile(dir, name string, text []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(text)
	return errors.Join(err, f.Close())
}

// TraceFileName is the file a device's protocol transcript is kept in.
func TraceFileName(hardwareID string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r < 0x20 {
			return '_'
		}
		return r
	}, hardwareID) + ".log"
}

// run journals a step as started, runs it under its timeout and journals
// its outcome with its measurements. The events are written behind the
// step: a step makes them durable (d.durable) before an act that cannot
// be taken back.
func (d *deviceRun) run(ctx context.Context, step Step, f stepFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	d.r.Bus.Update(d.spec.Name, func(s *SlotState) {
		s.Step, s.Done, s.Total, s.Device = step, 0, 0, d.hw
		s.Attempt = d.prior.Attempts[string(step)] + 1
	})
	if err := d.record(step, journal.StatusStarted, 0, "", nil); err != nil {
		return err
	}
	if step == StepActivate {
		d.claimed = true
	}
	limit := d.r.timeout(step)
	sctx, cancel := context.WithTimeoutCause(ctx, limit, fmt.Errorf("%s took longer than %s: %w", step, limit, context.DeadlineExceeded))
	start := time.Now()
	data, err := f(d, sctx)
	if err != nil && sctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w (%w)", context.Cause(sctx), err)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ErrStopped, err)
	}
	cancel()
	dur := time.Since(start)
	d.res.Steps[step] = dur
	status, msg := journal.StatusPassed, ""
	if err != nil {
		status, msg = journal.StatusFailed, Explain(err)
		if data == nil {
			data = map[string]any{}
		}
		data["error"] = err.Error()
		if errors.Is(err, ErrStopped) {
			// Stopped, not faulty: a restarted station runs it again.
			data["stopped"] = true
		}
	}
	// The outcome is journaled even when the operator stopped the run.
	if jerr := d.record(step, status, dur, msg, data); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// record journals one event of this device: it hands the event to the
// device's writer and returns, with the error of an earlier write that
// failed. The event is durable once d.events.wait returns.
func (d *deviceRun) record(step Step, status journal.Status, dur time.Duration, msg string, data map[string]any) error {
	var raw json.RawMessage
	if len(data) > 0 {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("journal %s: %w", step, err)
		}
		raw = b
	}
	// Attempts count from what the journal held before this run, so they
	// keep counting across retries and restarts.
	attempt := d.prior.Attempts[string(step)] + 1
	d.last = step
	return d.events.add(journal.Event{
		Time: time.Now(), Kind: journal.KindStep, WorkOrder: d.r.WorkOrder.ID, Slot: d.spec.Name, Device: string(d.hw),
		Operator: d.operator, Step: string(step), Status: status, Attempt: attempt,
		Duration: dur, Error: msg, Data: raw,
	})
}

// durable returns once every event of the run journaled so far is
// durable. A step calls it right before an act that cannot be taken back
// or that the DMS keeps (a claim, a lock of the device or at the DMS, a
// completion), so that the journal holds its intent, and all that came
// before, should the station die during the act.
func (d *deviceRun) durable() error { return d.events.wait() }

// journalFailed fails the run when its events could not all be written:
// a device is never reported passed on a journal that does not say so.
func (d *deviceRun) journalFailed(err error) {
	if se := (*StepError)(nil); errors.As(d.res.Err, &se) {
		d.fail(se.Step, errors.Join(se.Err, err))
		return
	}
	d.fail(d.last, err)
}

// fail ends the run with a failed step.
func (d *deviceRun) fail(step Step, err error) {
	se := &StepError{Slot: d.spec.Name, Device: d.hw, Step: step, Err: err}
	d.res.Outcome, d.res.Step, d.res.Err, d.res.Device = OutcomeFailed, step, se, d.hw
	d.res.Message = Explain(se)
	d.log.Warn("device failed", "step", step, "err", err)
}
