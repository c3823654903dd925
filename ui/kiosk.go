package ui

import (
	"context"
	"image/color"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// Options configure the kiosk.
type Options struct {
	// FullScreen shows the window full screen, as on the station's
	// touch screen.
	FullScreen bool
	// Title is the window's title; "" means "Station".
	Title string
	// Logger receives the kiosk's logs; nil means slog.Default().
	Logger *slog.Logger
	// Tick is the shortest time between two draws: changes that come
	// faster are coalesced. 0 means 100 ms (10 Hz).
	Tick time.Duration
	// MaxTick is the longest time between two draws while slots change:
	// the more slot events come in a second, the longer the drawer waits
	// between draws, up to MaxTick, so that a busy station costs about
	// one redraw a second (each redraw paints the whole window: in
	// software rendering, tens of milliseconds of CPU). 0 means 1 s.
	MaxTick time.Duration
	// CommandTimeout bounds each command to the daemon; 0 means 30 s.
	CommandTimeout time.Duration
	// ExportDir is where exports go by default; "" means the home
	// directory.
	ExportDir string
	// ScreenFile, when set, receives what the screen shows (Screen, as
	// JSON) after the draws that change it, at most twice a second: for
	// end-to-end tests under a real X server.
	ScreenFile string
}

// latencies keeps the last changes' latencies.
type latencies struct {
	ring []time.Duration
	next int
}

// latencyWindow bounds the latencies kept.
const latencyWindow = 100_000

func (l *latencies) add(ds []time.Duration) {
	for _, d := range ds {
		if len(l.ring) < latencyWindow {
			l.ring = append(l.ring, d)
			continue
		}
		l.ring[l.next] = d
		l.next = (l.next + 1) % latencyWindow
	}
}

func (l *latencies) median() (time.Duration, int) {
	if len(l.ring) == 0 {
		return 0, 0
	}
	s := slices.Clone(l.ring)
	slices.Sort(s)
	return s[len(s)/2], len(s)
}

// Stats count the kiosk's work, for tests and benchmarks.
type Stats struct {
	// Events is the number of stream events applied to the model.
	Events int64
	// Draws is the number of UI updates (one fyne.Do each) that drew a
	// change.
	Draws int64
	// SlotUpdates is the number of tiles redrawn.
	SlotUpdates int64
	// FullRedraws is the number of times everything was redrawn from a
	// whole state.
	FullRedraws int64
	// LastApplied is when the last slot change reached the widgets.
	LastApplied time.Time
}

// Kiosk is the operator's screen: one window that shows the station's
// state and sends the operator's commands to the daemon through API.
//
// A model goroutine applies the daemon's event stream to an in-memory
// model; a drawer draws what changed, in one fyne.Do call per draw, at a
// rate that follows the rate of slot events (Options.Tick to MaxTick), so
// that many slots changing many times a second cost a few redraws a
// second of the tiles that changed. Nothing is drawn while nothing
// changes: no text cursor blinks, and the elapsed times tick only while a
// slot runs.
//
// The barcode scanner types into the window: a key handler collects what
// it types, with no text field holding the focus; a scan that comes while
// a dialog is open, before anyone signed in or while the daemon is away
// is kept and sent once it can be.
type Kiosk struct {
	app  fyne.App
	win  fyne.Window
	api  API
	log  *slog.Logger
	opts Options
	m    *model
	// latency is guarded by hookMu.
	latency latencies

	ctxMu sync.Mutex
	ctx   context.Context // Run's; commands run under it
	// running counts the goroutines Run started, tasks those the
	// commands and views start (see Wait).
	running sync.WaitGroup
	tasks   tasks

	// uiMu is held by every function run through do: on a real driver
	// they all run on the main goroutine anyway; the test driver runs
	// fyne.Do at once on the caller's goroutine, and tests hold uiMu
	// while they tap.
	uiMu sync.Mutex

	// ticking reports that a tile's elapsed time runs: the drawer wakes
	// once a second only then.
	ticking atomic.Bool
	// screenDirty asks for the screen file to be written again.
	screenDirty atomic.Bool

	// Widgets, touched only through do or Fyne's callbacks.
	header     *header
	top        *fyne.Container // header, banner and the alert line
	banner     *fyne.Container
	bannerText *canvas.Text
	greyOut    *canvas.Rectangle
	alertBar   *alertBar
	alerts     []localapi.Alert
	grid       *fyne.Container
	tiles      map[string]*tile
	order      []string
	scanText   *canvas.Text // what the scanner typed, or what became of it
	scanNote   *canvas.Text
	scanBuf    []rune
	queued     string // a scan kept until it can be sent
	start      *action
	pause      *action
	stop       *action
	body       *fyne.Container
	mainPage   *fyne.Container
	dev        *deviceView // the open device view, or nil
	qa         *qaView     // the open QA view, or nil
	pinPad     *pinPad     // the open PIN dialog (sign-in or a supervisor's), or nil
	dialogs    []dialog.Dialog
	connected  bool
	run        localapi.RunState
	operator   *localapi.Operator
	workOrder  string // the loaded work order's id
	can        localapi.Commands
	lastSecond time.Time

	hookMu    sync.Mutex
	onApplied func(seq map[string]int64)
	stats     Stats

	// drawn, when set (by tests, before Run), is called after every
	// function run through do.
	drawn func()
}

// New builds the kiosk's window on app; Run starts it.
func New(app fyne.App, api API, opts Options) *Kiosk {
	if opts.Title == "" {
		opts.Title = "Station"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tick <= 0 {
		opts.Tick = 100 * time.Millisecond
	}
	if opts.MaxTick <= 0 {
		opts.MaxTick = time.Second
	}
	opts.MaxTick = max(opts.MaxTick, opts.Tick)
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 30 * time.Second
	}
	k := &Kiosk{
		app:   app,
		api:   api,
		log:   opts.Logger,
		opts:  opts,
		m:     newModel(),
		ctx:   context.Background(),
		tiles: map[string]*tile{},
	}
	app.Settings().SetTheme(newTheme())
	k.win = app.NewWindow(opts.Title)
	k.win.SetMaster()
	k.build()
	k.win.SetContent(k.body)
	k.win.Canvas().SetOnTypedRune(k.typedRune)
	k.win.Canvas().SetOnTypedKey(k.typedKey)
	if opts.FullScreen {
		k.win.SetFullScreen(true)
	} else {
		k.win.Resize(fyne.NewSize(1280, 800))
	}
	return k
}

// Window returns the kiosk's window.
func (k *Kiosk) Window() fyne.Window { return k.win }

// OnApplied sets f to be called on the UI goroutine each time slot
// changes reach the widgets, with the Seq of each slot drawn: an
// end-to-end test measures the latency from a slot's change to its
// drawing with it. f must return quickly; nil removes it.
func (k *Kiosk) OnApplied(f func(seq map[string]int64)) {
	k.hookMu.Lock()
	defer k.hookMu.Unlock()
	k.onApplied = f
}

// Latency returns the median time from a slot's change in the daemon
// (Slot.Changed) to its drawing, over the last changes drawn, and how many
// changes that median covers. Both clocks are the machine's own: the
// kiosk and the daemon run on one station.
func (k *Kiosk) Latency() (median time.Duration, n int) {
	k.hookMu.Lock()
	defer k.hookMu.Unlock()
	return k.latency.median()
}

// Stats returns the kiosk's counters.
func (k *Kiosk) Stats() Stats {
	k.hookMu.Lock()
	defer k.hookMu.Unlock()
	s := k.stats
	s.Events = k.m.eventCount()
	return s
}

// Run shows the window and starts the model loop and the drawing ticker;
// they stop when ctx ends. Call it on the main goroutine before the app
// runs.
func (k *Kiosk) Run(ctx context.Context) {
	k.ctxMu.Lock()
	k.ctx = ctx
	k.ctxMu.Unlock()
	k.win.Show()
	k.running.Add(2)
	go func() { defer k.running.Done(); k.watch(ctx) }()
	go func() { defer k.running.Done(); k.draw(ctx) }()
	if k.opts.ScreenFile != "" {
		k.running.Add(1)
		go func() { defer k.running.Done(); k.writeScreens(ctx) }()
	}
}

// Wait waits, once Run's context is done, for the goroutines Run started
// to end: after it the kiosk draws nothing more. Fyne's widgets share
// caches, so a kiosk that stops must be done drawing before another one
// (the next test's) starts.
func (k *Kiosk) Wait() {
	k.running.Wait()
	k.tasks.stop()
}

// spawn runs f in a goroutine that Wait waits for; once Wait was called,
// it runs nothing.
func (k *Kiosk) spawn(f func()) { k.tasks.spawn(f) }

// tasks are the goroutines of commands and views (a command, a log's
// read, an export): a kiosk that stops waits for them.
type tasks struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

func (t *tasks) spawn(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}

// stop lets no task start and waits for those running.
func (t *tasks) stop() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.wg.Wait()
}

func (k *Kiosk) runCtx() context.Context {
	k.ctxMu.Lock()
	defer k.ctxMu.Unlock()
	return k.ctx
}

// do runs f on the UI goroutine; once Run's context is done, nothing.
func (k *Kiosk) do(f func()) {
	if k.runCtx().Err() != nil {
		return
	}
	fyne.Do(func() {
		k.uiMu.Lock()
		f()
		k.uiMu.Unlock()
		if k.drawn != nil {
			k.drawn()
		}
	})
}

// watch applies the daemon's event stream to the model until ctx ends.
func (k *Kiosk) watch(ctx context.Context) {
	for ctx.Err() == nil {
		connected := false
		for ev := range k.api.Watch(ctx) {
			switch {
			case ev.Type == localapi.EventDisconnected:
				k.log.Warn("station service disconnected; reconnecting")
				connected = false
			case ev.State != nil && !connected:
				k.log.Info("connected to the station service", "station", ev.State.Station, "slots", len(ev.State.Slots))
				connected = true
			}
			k.m.apply(ev)
		}
		if ctx.Err() != nil {
			return
		}
		// The stream ended by itself: say so, and watch again.
		k.m.setDisconnected()
		k.log.Warn("event stream ended; watching again")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// draw takes the model's changes and draws them, in one fyne.Do each
// time: the first change after a quiet time at once, then at most one
// draw per tick however many events come. The tick follows the rate of
// slot events: Options.Tick while few slots change, up to MaxTick while
// many do, so that a busy station costs a few redraws a second, each of
// the tiles that changed. Elapsed times are redrawn once a second while a
// slot runs; nothing wakes the drawer otherwise.
func (k *Kiosk) draw(ctx context.Context) {
	sec := time.NewTicker(time.Second)
	defer sec.Stop()
	var last time.Time
	var rate float64 // slot events a second, smoothed
	lastEvents, lastAt := k.m.slotEventCount(), time.Now()
	for {
		second := false
		select {
		case <-ctx.Done():
			return
		case <-k.m.wake:
		case <-sec.C:
			// Elapsed times are redrawn with the draws of changes;
			// a draw of its own only when none came for a second.
			if !k.ticking.Load() || time.Since(last) < time.Second {
				continue
			}
			second = true
		}
		if wait := time.Until(last.Add(k.tick(rate))); wait > 0 && !second {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		now := time.Now()
		if n, dt := k.m.slotEventCount(), now.Sub(lastAt); dt > 0 {
			r := float64(n-lastEvents) / dt.Seconds()
			// Rising at once, falling over a few draws.
			if r > rate {
				rate = r
			} else {
				rate = 0.7*rate + 0.3*r
			}
			lastEvents, lastAt = n, now
		}
		c := k.m.take()
		if c.empty() && !second {
			continue
		}
		last = now
		k.do(func() { k.apply(c, time.Now(), second) })
	}
}

// tick is the time between two draws for a rate of slot events a
// second: 4 ms an event, from Options.Tick to MaxTick. One slot flashing
// (about 10 events a second) is drawn at 10 Hz, 8 slots at 3 Hz, 32 slots
// (the daemon sends at most 10 rounds a second) once a second.
func (k *Kiosk) tick(rate float64) time.Duration {
	d := time.Duration(rate * float64(4*time.Millisecond))
	return min(max(d, k.opts.Tick), k.opts.MaxTick)
}

// apply draws a change; second says the elapsed times are due.
func (k *Kiosk) apply(c change, now time.Time, second bool) {
	var seq map[string]int64
	updated := 0
	if c.conn {
		k.setConnected(c.connected)
	}
	var changedSlots []localapi.Slot
	if c.full {
		seq = k.setSlots(c.state.Slots, now)
		updated = len(seq)
		changedSlots = c.state.Slots
	} else if len(c.slots) > 0 {
		seq = make(map[string]int64, len(c.slots))
		var lat []time.Duration
		for _, s := range c.slots {
			if t := k.tiles[s.Name]; t != nil && t.set(s, now) {
				updated++
			}
			seq[s.Name] = s.Seq
			if !s.Changed.IsZero() {
				lat = append(lat, now.Sub(s.Changed))
			}
		}
		changedSlots = c.slots
		k.hookMu.Lock()
		k.latency.add(lat)
		k.hookMu.Unlock()
	}
	if c.header {
		if k.connected {
			k.header.update(c.state)
		}
		k.run = c.state.Run
		k.operator = c.state.Operator
		k.can = c.state.Can
		k.workOrder = ""
		if c.state.WorkOrder != nil {
			k.workOrder = c.state.WorkOrder.ID
		}
	}
	if c.alertsSet {
		k.setAlerts(c.alerts)
	}
	if c.conn || c.header {
		k.setControls()
	}
	ticking := false
	if now.Truncate(time.Second) != k.lastSecond.Truncate(time.Second) {
		k.lastSecond = now
		second = true
	}
	for _, t := range k.tiles {
		if t.ticking() {
			ticking = true
			if second {
				t.setElapsed(now)
			}
		}
	}
	k.ticking.Store(ticking)
	if k.dev != nil {
		for _, s := range changedSlots {
			k.dev.slotChanged(s)
		}
		if c.conn || c.header {
			k.dev.setControls()
		}
	}
	if k.queued != "" && (c.header || c.conn) {
		k.replay()
	}
	if c.empty() && !second {
		return
	}
	k.screenDirty.Store(true)
	k.hookMu.Lock()
	k.stats.Draws++
	k.stats.SlotUpdates += int64(updated)
	if c.full {
		k.stats.FullRedraws++
		wo := ""
		if c.state.WorkOrder != nil {
			wo = c.state.WorkOrder.ID
		}
		k.log.Info("showing the station's state", "slots", len(c.state.Slots), "work_order", wo)
	}
	if seq != nil {
		k.stats.LastApplied = time.Now()
	}
	hook := k.onApplied
	k.hookMu.Unlock()
	if hook != nil && seq != nil {
		hook(seq)
	}
}

// setSlots shows a whole new set of slots: tiles are updated in place
// when the slots are the same, rebuilt when they differ.
func (k *Kiosk) setSlots(slots []localapi.Slot, now time.Time) map[string]int64 {
	seq := make(map[string]int64, len(slots))
	names := make([]string, len(slots))
	for i, s := range slots {
		names[i] = s.Name
		seq[s.Name] = s.Seq
	}
	if slices.Equal(names, k.order) {
		for _, s := range slots {
			k.tiles[s.Name].set(s, now)
		}
		return seq
	}
	k.order = names
	clear(k.tiles)
	objs := make([]fyne.CanvasObject, len(slots))
	for i, s := range slots {
		t := newTile(s, k.openDevice)
		k.tiles[s.Name] = t
		objs[i] = t
	}
	k.grid.Objects = objs
	k.grid.Layout = layout.NewGridLayoutWithColumns(gridColumns(len(slots)))
	k.grid.Refresh()
	return seq
}

// setConnected shows or hides the reconnecting banner and greys the
// commands; while the daemon is away the links show as unknown.
func (k *Kiosk) setConnected(ok bool) {
	k.connected = ok
	if ok {
		k.banner.Hide()
		k.greyOut.Hide()
	} else {
		k.bannerText.Text = "Station service restarting — reconnecting…"
		k.bannerText.Refresh()
		k.banner.Show()
		k.greyOut.Show()
		k.header.setAway()
	}
	k.top.Refresh()
	k.mainPage.Refresh()
}

// away is why every command is off while the daemon cannot be reached.
const away = "the station service is away: wait for it"

// setControls enables the commands the daemon takes now from the one
// signed in (State.Can), and says why the others are off.
func (k *Kiosk) setControls() {
	c := k.connected
	k.start.set(k.can.Start, c)
	k.pause.set(k.can.Pause, c)
	k.stop.set(k.can.Stop, c)
	for _, b := range []*widget.Button{k.header.signIn, k.header.qa} {
		if c && b.Disabled() {
			b.Enable()
		} else if !c && !b.Disabled() {
			b.Disable()
		}
	}
	k.showScan()
}

// setAlerts shows the alerts in the one alert line: it keeps its height,
// so nothing moves whatever their number.
func (k *Kiosk) setAlerts(alerts []localapi.Alert) {
	if slices.Equal(alerts, k.alerts) {
		return
	}
	k.alerts = alerts
	k.alertBar.set(alerts)
}

// showAlerts lists every alert in a dialog (the alert line's tap).
func (k *Kiosk) showAlerts() {
	rows := make([]fyne.CanvasObject, 0, len(k.alerts))
	for _, a := range k.alerts {
		l := widget.NewLabel(strings.ToUpper(string(a.Level)) + ": " + alertWords(a))
		l.Wrapping = fyne.TextWrapWord
		rows = append(rows, l)
	}
	scroll := container.NewVScroll(container.NewVBox(rows...))
	k.showDialog(dialog.NewCustom("Alerts", "Close", sized(scroll, 900, 500), k.win))
}

// build makes the window's widgets.
func (k *Kiosk) build() {
	k.header = newHeader(k.showSignIn, k.signOut, k.openQA)

	k.bannerText = text("Connecting to the station service…", 34, true)
	k.bannerText.Color = colorTextDark
	k.bannerText.Alignment = fyne.TextAlignCenter
	k.banner = container.NewStack(canvas.NewRectangle(colorBannerDown), container.NewPadded(k.bannerText))

	k.alertBar = newAlertBar(func() { k.showAlerts() })

	k.grid = container.NewGridWithColumns(1)
	k.greyOut = canvas.NewRectangle(colorOverlayGrey)

	k.scanText = text("", 30, true)
	k.scanNote = text("", 20, false)
	k.start = newAction("Start", widget.SuccessImportance, 220, 80, func() { k.command("Could not start", k.api.Start) })
	k.pause = newAction("Pause", widget.WarningImportance, 220, 80, func() { k.command("Could not pause", k.api.Pause) })
	k.stop = newAction("Stop", widget.DangerImportance, 220, 80, k.confirmStop)

	scanBg := canvas.NewRectangle(color.NRGBA{0x22, 0x25, 0x2c, 0xff})
	scanBg.CornerRadius = 6
	scan := container.NewStack(scanBg, container.NewPadded(container.NewVBox(k.scanText, k.scanNote)))
	buttons := container.NewHBox(k.start.box, k.pause.box, k.stop.box)
	controls := container.NewPadded(container.NewBorder(nil, nil, nil, buttons, scan))

	k.top = container.NewVBox(k.header.box, k.banner, k.alertBar)
	center := container.NewStack(container.NewPadded(k.grid), k.greyOut)
	k.mainPage = container.NewBorder(k.top, controls, nil, nil, center)
	k.body = container.NewStack(k.mainPage)
	k.setControls()
}

// sized gives o a minimum size.
func sized(o fyne.CanvasObject, w, h float32) fyne.CanvasObject {
	r := canvas.NewRectangle(color.Transparent)
	r.SetMinSize(fyne.NewSize(w, h))
	return container.NewStack(r, o)
}

// action is a command's button with, under it, why it is off when it is.
type action struct {
	btn *widget.Button
	why *canvas.Text
	box fyne.CanvasObject
}

func newAction(label string, imp widget.Importance, w, h float32, tap func()) *action {
	a := &action{btn: widget.NewButton(label, tap), why: text("", 17, false)}
	a.btn.Importance = imp
	a.why.Color = colorUnknown
	a.why.Alignment = fyne.TextAlignCenter
	a.box = container.NewVBox(sized(a.btn, w, h), sized(a.why, w, 0))
	return a
}

// set enables the button when the daemon takes the command and the
// daemon is there; otherwise it says why not, cut to the button's width.
func (a *action) set(al localapi.Allowed, connected bool) {
	on := connected && al.OK
	why := al.Why
	if !connected {
		why = away
	}
	if on {
		why = ""
	}
	if on && a.btn.Disabled() {
		a.btn.Enable()
	} else if !on && !a.btn.Disabled() {
		a.btn.Disable()
	}
	if w := a.btn.MinSize().Width; why != "" {
		why = fitEnd(why, max(w, a.box.MinSize().Width), a.why.TextSize, a.why.TextStyle)
	}
	if a.why.Text != why {
		a.why.Text = why
		a.why.Refresh()
	}
}

// Disabled reports whether the button is off.
func (a *action) Disabled() bool { return a.btn.Disabled() }

// typedRune receives what the barcode scanner (or a keyboard) types while
// no text field has the focus; a newline or carriage return ends a scan.
func (k *Kiosk) typedRune(r rune) {
	if r == '\n' || r == '\r' {
		k.enter()
		return
	}
	if r < ' ' || r == 0x7f || len(k.scanBuf) >= 256 {
		return
	}
	k.scanBuf = append(k.scanBuf, r)
	k.showScan()
}

// typedKey ends a scan on Enter, erases on Backspace and closes the top
// dialog (or forgets what was typed) on Escape.
func (k *Kiosk) typedKey(ev *fyne.KeyEvent) {
	switch ev.Name {
	case fyne.KeyReturn, fyne.KeyEnter:
		k.enter()
	case fyne.KeyBackspace:
		if n := len(k.scanBuf); n > 0 {
			k.scanBuf = k.scanBuf[:n-1]
			k.showScan()
		}
	case fyne.KeyEscape:
		if len(k.scanBuf) > 0 {
			k.scanBuf = nil
			k.showScan()
			return
		}
		k.closeTop(false)
	}
}

// enter ends what was typed: a badge in the PIN dialog; Enter alone
// answers the PIN dialog (OK) or closes another dialog; a scan while a
// dialog is open, before anyone signed in or while the daemon is away is
// kept, and sent once it can be; otherwise it is a work order to load.
func (k *Kiosk) enter() {
	line := strings.TrimSpace(string(k.scanBuf))
	k.scanBuf = nil
	switch {
	case k.pinPad != nil:
		if line == "" {
			k.pinPad.submitPIN()
		} else {
			k.pinPad.submit(localapi.Credential{Badge: line})
		}
		k.showScan()
		return
	case k.win.Canvas().Overlays().Top() != nil:
		if line == "" {
			k.closeTop(true)
		} else {
			k.keep(line, "kept: it is sent once the dialog is closed")
		}
		return
	case line == "":
		k.showScan()
		return
	case !k.connected:
		k.keep(line, "kept: it is sent once the station service is back")
		return
	case k.operator == nil:
		k.keep(line, "kept: sign in, and it is sent")
		return
	}
	k.scanned(line)
}

// keep keeps a scan until it can be sent; a later scan replaces it.
func (k *Kiosk) keep(line, why string) {
	if k.queued != "" && k.queued != line {
		k.log.Info("a kept scan is replaced by a newer one", "kept", k.queued, "scan", line)
	}
	k.queued = line
	k.log.Info("scan kept", "scan", line, "why", why)
	k.setScanNote(line+": "+why, colorWaiting)
}

// replay sends the kept scan once nothing stands in its way.
func (k *Kiosk) replay() {
	if k.queued == "" || !k.connected || k.operator == nil || k.pinPad != nil || k.win.Canvas().Overlays().Top() != nil {
		return
	}
	line := k.queued
	k.queued = ""
	k.log.Info("sending a kept scan", "scan", line)
	k.scanned(line)
}

// scanned loads the work order a scan names; a scan of the loaded work
// order says so and changes nothing.
func (k *Kiosk) scanned(line string) {
	id, err := localapi.ParseRef(line)
	if err != nil {
		k.setScanNote(line+": not a work order's barcode; scan the work order sheet again", colorBad)
		return
	}
	if id == k.workOrder {
		k.setScanNote("Work order "+id+" is already loaded", colorWaiting)
		return
	}
	k.setScanNote("Loading work order "+id+"…", colorTextLight)
	k.commandWith("Could not load work order "+id, func(err error) string { return loadErrorWords(id, err) },
		func(ctx context.Context) (localapi.State, error) { return k.api.Load(ctx, line) },
		func() {
			if k.scanNote.Text == "Loading work order "+id+"…" {
				k.setScanNote("Work order "+id+" loaded", colorOK)
			}
		})
}

// showScan shows what is being typed, or what the scanner is for.
func (k *Kiosk) showScan() {
	s, c := string(k.scanBuf), color.Color(colorTextLight)
	if s == "" {
		s, c = "Scan a work order", colorUnknown
		if k.pinPad != nil {
			s = "Scan your badge, or type your PIN on the pad"
		}
	}
	if k.scanText.Text != s || k.scanText.Color != c {
		k.scanText.Text, k.scanText.Color = s, c
		k.scanText.Refresh()
	}
}

func (k *Kiosk) setScanNote(s string, c color.Color) {
	if k.scanNote.Text != s || k.scanNote.Color != c {
		k.scanNote.Text, k.scanNote.Color = s, c
		k.scanNote.Refresh()
	}
	k.showScan()
}

// confirmStop asks a supervisor's PIN or badge before stopping: the
// daemon wants it with the request.
func (k *Kiosk) confirmStop() {
	k.askSupervisor("Stop the work order?", "Devices at work are stopped where they are.", k.api.Stop)
}

// command runs f against the daemon off the UI goroutine; the state it
// answers is drawn at the next tick, its error shown in a dialog in the
// operator's words (the technical chain goes to the log).
func (k *Kiosk) command(title string, f func(ctx context.Context) (localapi.State, error)) {
	k.commandWith(title, errorWords, f, nil)
}

// commandWith is command with the words of its errors, and a function run
// on the UI goroutine when it succeeds.
func (k *Kiosk) commandWith(title string, words func(error) string, f func(ctx context.Context) (localapi.State, error), ok func()) {
	k.spawn(func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		st, err := f(ctx)
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				err = errTimeout
			}
			k.log.Warn("command failed", "command", title, "err", err)
			msg := words(err)
			k.do(func() {
				if k.scanNote.Text != "" && strings.HasPrefix(title, "Could not load") {
					k.setScanNote("", colorTextLight)
				}
				k.showError(title, msg)
			})
			return
		}
		k.m.mergeState(st)
		if ok != nil {
			k.do(ok)
		}
	})
}

// showError shows a message in the operator's words in a dialog; OK or
// Enter closes it.
func (k *Kiosk) showError(title, msg string) {
	l := widget.NewLabel(msg)
	l.Wrapping = fyne.TextWrapWord
	l.TextStyle.Bold = true
	k.showDialog(dialog.NewCustom(title, "OK", sized(l, 600, 0), k.win))
}

// showDialog shows d; Enter or Escape closes it, and a scan kept while
// it was open is sent once it is closed.
func (k *Kiosk) showDialog(d dialog.Dialog) {
	k.win.Canvas().Unfocus()
	k.dialogs = append(k.dialogs, d)
	d.SetOnClosed(func() {
		if i := slices.Index(k.dialogs, d); i >= 0 {
			k.dialogs = slices.Delete(k.dialogs, i, i+1)
		}
		k.replayLater()
	})
	d.Show()
}

// closeTop closes the top dialog: Enter (ok) answers the PIN dialog as
// its OK button would, Escape cancels it.
func (k *Kiosk) closeTop(ok bool) {
	switch {
	case k.pinPad != nil && k.win.Canvas().Overlays().Top() != nil:
		if ok {
			k.pinPad.submitPIN()
		} else {
			k.pinPad.d.Hide()
		}
	case len(k.dialogs) > 0:
		k.dialogs[len(k.dialogs)-1].Hide()
	}
}

// replayLater sends a kept scan once the dialog that closed is gone (it
// is still the top overlay while its callback runs).
func (k *Kiosk) replayLater() {
	k.spawn(func() { k.do(k.replay) })
}

// showPage replaces the main page with a view; showMain goes back.
func (k *Kiosk) showPage(o fyne.CanvasObject) {
	k.win.Canvas().Unfocus()
	k.body.Objects = []fyne.CanvasObject{o}
	k.body.Refresh()
}

func (k *Kiosk) showMain() {
	k.dev, k.qa = nil, nil
	k.win.Canvas().Unfocus()
	k.body.Objects = []fyne.CanvasObject{k.mainPage}
	k.body.Refresh()
}
