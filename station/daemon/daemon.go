package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
	"github.com/station-dev/station/station/localapi"
	"github.com/station-dev/station/station/upstream"
)

// Backend is what the daemon needs of the rest of the station: the DMS
// and the pipeline's parts. Package station provides it (OpenBackend), so
// that fetching work orders, artifacts and the runner are built the way
// station run builds them.
type Backend interface {
	// WorkOrder fetches work order id from the DMS (or the copy kept
	// from an earlier fetch while the DMS is away) and gives it its
	// activation token. say receives what the operator should know
	// while it waits.
	WorkOrder(ctx context.Context, id string, say func(string)) (jobs.WorkOrder, error)
	// Runner fetches the work order's artifacts and builds its runner.
	Runner(ctx context.Context, req RunnerRequest) (*jobs.Runner, error)
	// SyncClient is the DMS client the journal is pushed to; nil when
	// nothing needs pushing.
	SyncClient() *upstream.Client
	// Close releases the DMS connection.
	Close() error
}

// RunnerRequest is what a Backend builds a runner from.
type RunnerRequest struct {
	WorkOrder jobs.WorkOrder
	Fixture   *fixtures.Fixture
	Journal   *journal.Journal
	Bus       *jobs.Bus
	Printer   jobs.Printer
	Station   string
	Operator  string
	Logger    *slog.Logger
	// Progress receives the artifact downloads' progress, a line at a
	// time.
	Progress io.Writer
}

// Options are what New needs besides the configuration.
type Options struct {
	// Backend reaches the DMS and builds runners; required.
	Backend Backend
	// Logger receives the daemon's log; nil discards.
	Logger *slog.Logger
	// Version is reported in the state.
	Version string
	// Printer prints labels; nil writes ZPL files to the labels folder.
	Printer jobs.Printer
}

// Daemon is the station daemon: it watches the fixture's slots, runs the
// loaded work order's pipeline on every device plugged in while the run
// is on, pushes the journal to the DMS and serves the local API. It
// implements localapi.Controller.
type Daemon struct {
	cfg        Config
	log        *slog.Logger
	backend    Backend
	journal    *journal.Journal
	fixture    *fixtures.Fixture
	fixtureDir string
	bus        *jobs.Bus
	printer    *printerLink
	syncer     *upstream.Syncer
	version    string
	operators  []Operator
	changes    notifier
	statePath  string
	lns        []listener
	metrics    *daemonMetrics

	// countsMu is held from reading the counts in the journal to storing
	// them, so that two devices finishing at once cannot store the older
	// read over the newer one. Take it before mu.
	countsMu sync.Mutex
	mu       sync.Mutex
	base     context.Context // Run's context: devices stop with it
	run      localapi.RunState
	wo       *loaded
	loading  string // the work order being loaded
	progress string // what loading is doing, for an info alert
	operator *localapi.Operator
	slots    map[string]*slotState
	order    []string
	counts   woCounts // the journal's; the state completes them
	pins     pinGuard // wrong PINs and badges, per client and operator
	sem      chan struct{}
	closing  bool // Run is ending
}

// loaded is the work order in the station.
type loaded struct {
	wo     jobs.WorkOrder
	runner *jobs.Runner
	ctx    context.Context // the devices'; Stop cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ localapi.Controller = (*Daemon)(nil)

// New opens the journal and the fixture of cfg. Run starts the work.
func New(ctx context.Context, cfg Config, opts Options) (*Daemon, error) {
	if opts.Backend == nil {
		return nil, errors.New("new station daemon: no backend to reach the DMS")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Fixture == "" {
		return nil, errors.New("new station daemon: no fixture file (a simulation writes one: start it first)")
	}
	fxPath := cfg.Path(cfg.Fixture)
	fx, err := fixtures.Load(fxPath)
	if err != nil {
		return nil, err
	}
	fxDir, err := filepath.Abs(filepath.Dir(fxPath))
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(ctx, cfg.Path(cfg.Journal), cfg.Station, logger)
	if err != nil {
		return nil, err
	}
	printer := opts.Printer
	switch {
	case printer != nil:
	case cfg.Printer != "":
		if printer, err = label.OpenPrinter(cfg.Printer); err != nil {
			j.Close()
			return nil, fmt.Errorf("printer: %w", err)
		}
	default:
		printer = &label.DirSink{Dir: cfg.LabelsDir()}
	}
	d := &Daemon{
		cfg: cfg, log: logger, backend: opts.Backend, journal: j, fixture: fx, fixtureDir: fxDir,
		bus: &jobs.Bus{}, printer: &printerLink{p: printer, dir: cfg.LabelsDir()}, version: opts.Version,
		operators: cfg.Operators, statePath: cfg.StatePath(), metrics: newDaemonMetrics(opts.Version, fx),
		run: localapi.RunIdle, slots: map[string]*slotState{}, base: context.Background(),
	}
	n := cfg.Limits.Parallel
	if n <= 0 || n > len(fx.Slots) {
		n = len(fx.Slots)
	}
	d.sem = make(chan struct{}, n)
	for _, s := range fx.Slots {
		d.slots[s.Name] = &slotState{spec: s, changed: time.Now()}
		d.order = append(d.order, s.Name)
		d.bus.Publish(jobs.SlotState{Slot: s.Name, Status: jobs.SlotIdle, Updated: time.Now()})
	}
	if c := opts.Backend.SyncClient(); c != nil {
		d.syncer = upstream.NewSyncer(c, j, upstream.SyncConfig{Logger: logger})
	}
	return d, nil
}

// Journal returns the daemon's journal.
func (d *Daemon) Journal() *journal.Journal { return d.journal }

// Fixture returns the fixture the daemon watches.
func (d *Daemon) Fixture() *fixtures.Fixture { return d.fixture }

// Run serves the local API, watches the slots and syncs the journal until
// ctx ends; then it stops the devices at work (they resume after a
// restart), closes the journal and returns. A Daemon runs once.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.backend.Close()
	defer d.journal.Close()
	d.mu.Lock()
	d.base = ctx
	d.mu.Unlock()

	if d.lns == nil {
		if err := d.Listen(); err != nil {
			return err
		}
	}
	lns := d.lns
	d.note(ctx, journal.Event{Kind: journal.KindStation, Step: "started", Status: journal.StatusInfo,
		Data: mustJSON(map[string]any{"version": d.version, "slots": len(d.order)})})

	var wg sync.WaitGroup
	var servers []*http.Server
	for _, l := range lns {
		srv := &http.Server{
			Handler:           localapi.NewHandler(d, localapi.HandlerOptions{Key: l.key, Logger: d.log, Metrics: d.WriteMetrics}),
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return ctx },
			ConnContext:       localapi.ConnContext,
		}
		servers = append(servers, srv)
		wg.Go(func() {
			if err := srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("local API stopped", "err", err)
			}
		})
	}
	if d.syncer != nil {
		wg.Go(func() { d.syncer.Run(ctx) })
	}
	// Which slots hold a device is known before the run is restored, so
	// that a restored slot shows what it holds.
	d.pollPorts()
	wg.Go(func() { d.watchPorts(ctx) })
	wg.Go(func() { d.restore(ctx) })

	<-ctx.Done()
	d.mu.Lock()
	d.closing = true // no device starts from now on
	d.mu.Unlock()
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		cancel()
		srv.Close()
	}
	wg.Wait()
	// Devices at work stop with ctx; wait for their outcome to be
	// journaled.
	d.mu.Lock()
	wo := d.wo
	d.mu.Unlock()
	if wo != nil {
		wo.wg.Wait()
		wo.runner.Flush()
	}
	if err := d.printer.flush(); err != nil {
		d.log.Warn("label previews not drawn", "err", err)
	}
	final := context.WithoutCancel(ctx)
	d.note(final, journal.Event{Kind: journal.KindStation, Step: "stopped", Status: journal.StatusInfo})
	if d.syncer != nil {
		fctx, cancel := context.WithTimeout(final, 2*time.Second)
		if err := d.syncer.Flush(fctx); err != nil {
			d.log.Warn("journal not fully synced; the rest goes up after the restart", "err", err)
		}
		cancel()
	}
	return nil
}

type listener struct {
	ln  net.Listener
	key string
}

// Listen creates the local API's socket (and loopback listener), so that
// clients may connect once it returns; Run serves them. Run listens
// itself when Listen was not called.
func (d *Daemon) Listen() error {
	lns, err := d.listen()
	if err != nil {
		return err
	}
	d.lns = lns
	return nil
}

func (d *Daemon) listen() ([]listener, error) {
	ln, err := localapi.Listen(d.cfg.Path(d.cfg.API.Socket), d.cfg.API.Group)
	if err != nil {
		return nil, err
	}
	out := []listener{{ln: ln}}
	if d.cfg.API.Listen != "" {
		b, err := os.ReadFile(d.cfg.Path(d.cfg.API.KeyFile))
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("read the local API key (api.key_file): %w", err)
		}
		key := strings.TrimSpace(string(b))
		if key == "" {
			ln.Close()
			return nil, fmt.Errorf("the local API key file %s is empty", d.cfg.API.KeyFile)
		}
		lb, err := localapi.ListenLoopback(d.cfg.API.Listen)
		if err != nil {
			ln.Close()
			return nil, err
		}
		out = append(out, listener{ln: lb, key: key})
	}
	return out, nil
}

// SocketPath is where the local API listens.
func (d *Daemon) SocketPath() string { return d.cfg.Path(d.cfg.API.Socket) }

// note journals an event of the station (not of a device) and nudges the
// sync. A journal that cannot be written is logged: the event is lost.
func (d *Daemon) note(ctx context.Context, e journal.Event) {
	out, err := d.journal.Append(ctx, e)
	if err != nil {
		d.log.Error("write journal", "step", e.Step, "err", err)
		return
	}
	d.appended(out)
}

func (d *Daemon) nudgeSync() {
	if d.syncer != nil {
		d.syncer.Notify()
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// syncingJournal tells after of every append of the pipeline (metrics,
// and a nudge to the sync).
type syncingJournal struct {
	*journal.Journal
	after func([]journal.Event)
}

func (j syncingJournal) Append(ctx context.Context, events ...journal.Event) ([]journal.Event, error) {
	out, err := j.Journal.Append(ctx, events...)
	if err == nil {
		j.after(out)
	}
	return out, err
}

// printerLink prints labels and remembers the last failure, for the
// printer's link state.
type printerLink struct {
	p   jobs.Printer
	dir string

	mu      sync.Mutex
	lastErr string
}

func (p *printerLink) Print(ctx context.Context, l jobs.Label) error {
	err := p.p.Print(ctx, l)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err == nil:
		p.lastErr = ""
	case ctx.Err() == nil:
		p.lastErr = err.Error()
	}
	return err
}

// flush waits for the previews the printer draws behind its labels (a
// label folder's PNGs), if it draws any.
func (p *printerLink) flush() error {
	if f, ok := p.p.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// Check reports whether the printer can render l (jobs' load-time and
// before-lock checks).
func (p *printerLink) Check(l jobs.Label) error {
	if c, ok := p.p.(interface{ Check(jobs.Label) error }); ok {
		return c.Check(l)
	}
	return nil
}

// Reachable reports whether the printer answers, remembering a failure
// for the kiosk's printer light.
func (p *printerLink) Reachable(ctx context.Context) error {
	s, ok := p.p.(interface{ Reachable(context.Context) error })
	if !ok {
		return nil
	}
	err := s.Reachable(ctx)
	if err != nil && ctx.Err() == nil {
		p.mu.Lock()
		p.lastErr = err.Error()
		p.mu.Unlock()
	}
	return err
}

func (p *printerLink) state() localapi.Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastErr != "" {
		return localapi.Link{OK: false, Detail: p.lastErr}
	}
	if _, ok := p.p.(*label.DirSink); ok {
		return localapi.Link{OK: true, Detail: "labels go to " + p.dir}
	}
	return localapi.Link{OK: true}
}

// notifier wakes every watcher when the daemon's state changes.
type notifier struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

func (n *notifier) subscribe() chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = map[chan struct{}]struct{}{}
	}
	c := make(chan struct{}, 1)
	n.subs[c] = struct{}{}
	return c
}

func (n *notifier) unsubscribe(c chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.subs, c)
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// savedState is what survives a restart: the loaded work order and what
// the run was doing.
type savedState struct {
	WorkOrder string            `json:"work_order,omitempty"`
	Run       localapi.RunState `json:"run"`
	Updated   time.Time         `json:"updated"`
}

// save writes the state file atomically. Call with d.mu held.
func (d *Daemon) save() {
	st := savedState{Run: d.run, Updated: time.Now().UTC()}
	if d.wo != nil {
		st.WorkOrder = d.wo.wo.ID
	}
	if err := writeFileAtomic(d.statePath, mustJSON(st)); err != nil {
		d.log.Error("keep the run state", "err", err)
	}
}

func (d *Daemon) readSaved() (savedState, bool) {
	b, err := os.ReadFile(d.statePath)
	if err != nil {
		return savedState{}, false
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		d.log.Warn("state file unreadable; starting idle", "path", d.statePath, "err", err)
		return savedState{}, false
	}
	return st, true
}

// writeFileAtomic replaces path with data: a crash leaves the old file or
// the new one, never half of one.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// restore brings back the work order and run state of before a restart,
// or loads the configured work order.
func (d *Daemon) restore(ctx context.Context) {
	st, ok := d.readSaved()
	id := st.WorkOrder
	if !ok || id == "" {
		if d.cfg.WorkOrder == "" {
			return
		}
		var err error
		if id, err = ParseRef(d.cfg.WorkOrder); err != nil {
			d.log.Error("work_order in the config", "err", err)
			return
		}
		st.Run = localapi.RunReady
	}
	if st.Run == localapi.RunStopping {
		// Stopped while the station died: the stop goes on.
		d.mu.Lock()
		d.save()
		d.mu.Unlock()
		return
	}
	for {
		err := d.load(ctx, id, "")
		if err == nil {
			break
		}
		d.log.Error("load the work order of before the restart", "work_order", id, "err", err)
		if !errors.Is(err, localapi.ErrUnavailable) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
	d.restoreSlots(ctx, id)
	d.mu.Lock()
	switch st.Run {
	case localapi.RunRunning, localapi.RunPaused:
		d.run = st.Run
	}
	if d.run == localapi.RunReady || d.run == localapi.RunRunning || d.run == localapi.RunPaused {
		d.checkComplete() // journaled when it happened
	}
	d.save()
	d.mu.Unlock()
	d.note(ctx, journal.Event{Kind: journal.KindWorkOrder, WorkOrder: id, Step: "restored", Status: journal.StatusInfo,
		Data: mustJSON(map[string]any{"run": st.Run})})
	d.changes.notify()
	d.schedule()
}

// restoreSlots shows again, after a restart, what each slot showed
// before it, from the journal: the failed device still in its slot (red,
// and not run again until the operator retries it), the failed device a
// supervisor accepted (overridden), the board pulled out while it was
// worked on (removed) while its slot is empty; with the skips of the
// operators. The counts of the state follow from the same slots. Other
// devices in their slots run again as before: a done one is found done,
// an interrupted one resumes.
func (d *Daemon) restoreSlots(ctx context.Context, id string) {
	type found struct {
		ds     journal.DeviceState
		after  []journal.Event // the slot's operator events after the device's last step
		failed bool
	}
	got := map[string]found{}
	for _, name := range d.order {
		ds, ok, err := d.journal.LastOnSlot(ctx, id, name)
		if err != nil {
			d.log.Warn("restore the slot from the journal", "slot", name, "err", err)
			continue
		}
		if !ok || (ds.Result != journal.ResultFailed && ds.Result != journal.ResultInterrupted) {
			continue
		}
		failed := ds.Result == journal.ResultFailed
		if failed {
			// A device stopped by the station (a stop, a restart) did
			// not fail: it runs again.
			last, err := d.journal.Events(ctx, journal.Filter{WorkOrder: id, Device: ds.Device, Kind: journal.KindStep, AfterSeq: ds.LastSeq - 1, Limit: 1})
			if err != nil {
				d.log.Warn("restore the slot from the journal", "slot", name, "err", err)
				continue
			}
			if len(last) == 1 && stoppedStep(last[0]) {
				failed = false
			}
		}
		after, err := d.journal.Events(ctx, journal.Filter{WorkOrder: id, Slot: name, Kind: journal.KindOperator, AfterSeq: ds.LastSeq})
		if err != nil {
			d.log.Warn("restore the slot from the journal", "slot", name, "err", err)
			continue
		}
		got[name] = found{ds: ds, after: after, failed: failed}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, f := range got {
		s := d.slots[name]
		if s.busy {
			continue
		}
		removed, override, skipped := "", "", ""
		for _, e := range f.after {
			if e.Device != "" && e.Device != f.ds.Device {
				continue
			}
			switch e.Step {
			case "unplugged":
				removed, override, skipped = "", "", ""
				f.failed = false // taken out: set aside
			case "removed":
				var data struct {
					Step string `json:"step"`
				}
				_ = json.Unmarshal(e.Data, &data)
				removed = data.Step
				if removed == "" {
					removed = f.ds.LastStep
				}
			case "override":
				override = fmt.Sprintf("accepted by %s: %s", e.Operator, overrideReason(e))
			case "skip":
				skipped = "skipped by " + e.Operator + ": unplug the device"
			}
		}
		res := jobs.Result{Slot: name, Device: flasher.HardwareID(f.ds.Device), Serial: f.ds.Serial,
			Outcome: jobs.OutcomeFailed, Step: jobs.Step(f.ds.LastStep), Message: f.ds.LastError}
		switch {
		case removed != "" && !s.present:
			s.res, s.removed, s.removedStep, s.skipped = res, true, removed, skipped
		case f.failed && removed == "" && s.present:
			s.res, s.held, s.override, s.skipped = res, true, override, skipped
			s.runGen = s.gen // shown, not run again: the operator decides
		default:
			continue
		}
		s.changed = time.Now()
		d.log.Info("slot restored from the journal", "slot", name, "hardware_id", f.ds.Device, "removed", s.removed, "overridden", s.override != "")
	}
}

// stoppedStep reports whether a failed step event records a stop (the
// operator's, or the station's as it shut down) rather than a fault.
func stoppedStep(e journal.Event) bool {
	var data struct {
		Stopped bool `json:"stopped"`
	}
	return json.Unmarshal(e.Data, &data) == nil && data.Stopped
}
