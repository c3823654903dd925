package ui

import (
	"context"
	"image/color"
	"log/slog"
	"slices"
	"strings"
	"sync"
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
	// CommandTimeout bounds each command to the daemon; 0 means 30 s.
	CommandTimeout time.Duration
	// ExportDir is where exports go by default; "" means the home
	// directory.
	ExportDir string
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
// model; a drawer draws what changed, in one fyne.Do call per draw and at
// most one draw per tick, so that many slots changing many times a second
// cost one redraw of each changed tile per tick.
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
	// running counts the goroutines Run started (see Wait).
	running sync.WaitGroup

	// uiMu is held by every function run through do: on a real driver
	// they all run on the main goroutine anyway; the test driver runs
	// fyne.Do at once on the caller's goroutine, and tests hold uiMu
	// while they tap.
	uiMu sync.Mutex

	// Widgets, touched only through do or Fyne's callbacks.
	header     *header
	top        *fyne.Container // header, banner and alerts
	banner     *fyne.Container
	bannerText *canvas.Text
	greyOut    *canvas.Rectangle
	alertsBox  *fyne.Container
	alerts     []localapi.Alert
	grid       *fyne.Container
	tiles      map[string]*tile
	order      []string
	scanner    *scannerEntry
	start      *widget.Button
	pause      *widget.Button
	stop       *widget.Button
	body       *fyne.Container
	mainPage   *fyne.Container
	dev        *deviceView // the open device view, or nil
	qa         *qaView     // the open QA view, or nil
	pinPad     *pinPad     // the open PIN dialog (sign-in or a supervisor's), or nil
	connected  bool
	run        localapi.RunState
	operator   *localapi.Operator
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
}

// Wait waits, once Run's context is done, for the goroutines Run started
// to end: after it the kiosk draws nothing more. Fyne's widgets share
// caches, so a kiosk that stops must be done drawing before another one
// (the next test's) starts.
func (k *Kiosk) Wait() { k.running.Wait() }

func (k *Kiosk) runCtx() context.Context {
	k.ctxMu.Lock()
	defer k.ctxMu.Unlock()
	return k.ctx
}

// do runs f on the UI goroutine.
func (k *Kiosk) do(f func()) {
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
// time: the first change at once, then at most one draw per Tick however
// many events come, so that a burst costs one redraw of each changed
// tile per tick. Elapsed times are redrawn once a second.
func (k *Kiosk) draw(ctx context.Context) {
	sec := time.NewTicker(time.Second)
	defer sec.Stop()
	var last time.Time
	for {
		second := false
		select {
		case <-ctx.Done():
			return
		case <-k.m.wake:
		case <-sec.C:
			second = true
		}
		if wait := time.Until(last.Add(k.opts.Tick)); wait > 0 && !second {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		c := k.m.take()
		if c.empty() && !second {
			continue
		}
		last = time.Now()
		k.do(func() { k.apply(c, time.Now(), second) })
	}
}

// apply draws a change; second says the elapsed times are due.
func (k *Kiosk) apply(c change, now time.Time, second bool) {
	var seq map[string]int64
	updated := 0
	if c.conn {
		k.setConnected(c.connected)
	}
	if c.full {
		seq = k.setSlots(c.state.Slots, now)
		updated = len(seq)
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
		k.hookMu.Lock()
		k.latency.add(lat)
		k.hookMu.Unlock()
	}
	if c.header {
		k.header.update(c.state)
		k.run = c.state.Run
		k.operator = c.state.Operator
	}
	if c.alertsSet {
		k.setAlerts(c.alerts)
	}
	if c.conn || c.header {
		k.setControls()
	}
	if second {
		for _, t := range k.tiles {
			if t.ticking() {
				t.setElapsed(now)
			}
		}
		k.focusScanner()
	}
	if k.dev != nil {
		if _, ok := seq[k.dev.slot]; ok {
			if sl, ok := k.m.slot(k.dev.slot); ok {
				k.dev.setSlot(sl)
			}
		}
		k.dev.setControls(k.connected)
	}
	if c.empty() {
		return
	}
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
// commands.
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
	}
	k.relayout()
}

// relayout lays the main page out again after the banner or the alerts
// changed height. It is rare: tiles are never laid out for a slot change.
func (k *Kiosk) relayout() {
	k.top.Refresh()
	k.mainPage.Refresh()
}

// setControls enables the commands that make sense now.
func (k *Kiosk) setControls() {
	enable := func(b interface {
		Enable()
		Disable()
		Disabled() bool
	}, on bool) {
		if on && b.Disabled() {
			b.Enable()
		} else if !on && !b.Disabled() {
			b.Disable()
		}
	}
	c := k.connected
	enable(k.start, c && k.run != localapi.RunRunning && k.run != localapi.RunStopping)
	enable(k.pause, c && k.run == localapi.RunRunning)
	enable(k.stop, c && k.run != localapi.RunIdle && k.run != localapi.RunStopping)
	enable(k.scanner, c)
	enable(k.header.signIn, c)
	enable(k.header.qa, c)
}

// setAlerts shows the alerts banner, most urgent first.
func (k *Kiosk) setAlerts(alerts []localapi.Alert) {
	if slices.Equal(alerts, k.alerts) {
		return
	}
	k.alerts = alerts
	rows := make([]fyne.CanvasObject, 0, len(alerts))
	for _, a := range alerts {
		rows = append(rows, alertRow(a))
	}
	k.alertsBox.Objects = rows
	k.relayout()
}

// alertRow is one alert: its level in colour, its message in words.
func alertRow(a localapi.Alert) fyne.CanvasObject {
	bg, fg := alertColors(a.Level)
	word := strings.ToUpper(string(a.Level))
	if word == "" {
		word = "NOTE"
	}
	lt := text(word, 24, true)
	lt.Color = fg
	badge := container.NewStack(canvas.NewRectangle(bg), container.NewPadded(lt))
	msg := widget.NewLabel(alertWords(a))
	msg.Wrapping = fyne.TextWrapWord
	msg.TextStyle.Bold = true
	row := canvas.NewRectangle(color.NRGBA{0x2a, 0x2d, 0x34, 0xff})
	row.StrokeColor = bg
	row.StrokeWidth = 3
	return container.NewStack(row, container.NewBorder(nil, nil, badge, nil, msg))
}

// build makes the window's widgets.
func (k *Kiosk) build() {
	k.header = newHeader(k.showSignIn, k.signOut, k.openQA)

	k.bannerText = text("Connecting to the station service…", 34, true)
	k.bannerText.Color = colorTextDark
	k.bannerText.Alignment = fyne.TextAlignCenter
	k.banner = container.NewStack(canvas.NewRectangle(colorBannerDown), container.NewPadded(k.bannerText))

	k.alertsBox = container.NewVBox()

	k.grid = container.NewGridWithColumns(1)
	k.greyOut = canvas.NewRectangle(colorOverlayGrey)

	k.scanner = newScannerEntry()
	k.scanner.SetPlaceHolder("Scan or type a work order, then Enter")
	k.scanner.OnSubmitted = k.scanned

	k.start = widget.NewButton("Start", func() { k.command("Could not start", k.api.Start) })
	k.start.Importance = widget.SuccessImportance
	k.pause = widget.NewButton("Pause", func() { k.command("Could not pause", k.api.Pause) })
	k.pause.Importance = widget.WarningImportance
	k.stop = widget.NewButton("Stop", k.confirmStop)
	k.stop.Importance = widget.DangerImportance

	scanLabel := text("Scan:", 28, true)
	scan := container.NewBorder(nil, nil, container.NewCenter(scanLabel), nil, sized(k.scanner, 0, 70))
	buttons := container.NewHBox(sized(k.start, 220, 90), sized(k.pause, 220, 90), sized(k.stop, 220, 90))
	controls := container.NewPadded(container.NewBorder(nil, nil, nil, buttons, scan))

	k.top = container.NewVBox(k.header.box, k.banner, k.alertsBox)
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

// scanned loads what the scanner typed.
func (k *Kiosk) scanned(s string) {
	ref := strings.TrimSpace(s)
	k.scanner.SetText("")
	if ref == "" {
		return
	}
	k.command("Could not load "+ref, func(ctx context.Context) (localapi.State, error) {
		return k.api.Load(ctx, ref)
	})
}

// confirmStop asks a supervisor's PIN or badge before stopping: the
// daemon wants it with the request.
func (k *Kiosk) confirmStop() {
	k.askSupervisor("Stop the work order?", "Devices at work are stopped where they are.", k.api.Stop)
}

// command runs f against the daemon off the UI goroutine; the state it
// answers is drawn at the next tick, its error shown in a dialog.
func (k *Kiosk) command(title string, f func(ctx context.Context) (localapi.State, error)) {
	go func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		st, err := f(ctx)
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				err = errTimeout
			}
			k.log.Warn("command failed", "command", title, "err", err)
			k.do(func() { k.showError(title, err) })
			return
		}
		k.m.mergeState(st)
	}()
}

// showError shows err in the operator's words in a dialog.
func (k *Kiosk) showError(title string, err error) {
	msg := widget.NewLabel(errorWords(err))
	msg.Wrapping = fyne.TextWrapWord
	msg.TextStyle.Bold = true
	d := dialog.NewCustom(title, "OK", sized(msg, 600, 0), k.win)
	d.SetOnClosed(k.refocusLater)
	d.Show()
}

// refocusLater gives the focus back to the scanner once a dialog is
// gone (the dialog is still the top overlay while its callback runs).
func (k *Kiosk) refocusLater() {
	go k.do(k.focusScanner)
}

// focusScanner gives the scanner the focus when nothing else needs it.
func (k *Kiosk) focusScanner() {
	c := k.win.Canvas()
	if k.dev != nil || k.qa != nil || c.Overlays().Top() != nil || k.scanner.Disabled() {
		return
	}
	if c.Focused() == nil {
		c.Focus(k.scanner)
	}
}

// showPage replaces the main page with a view; showMain goes back.
func (k *Kiosk) showPage(o fyne.CanvasObject) {
	k.win.Canvas().Unfocus()
	k.body.Objects = []fyne.CanvasObject{o}
	k.body.Refresh()
}

func (k *Kiosk) showMain() {
	k.dev, k.qa = nil, nil
	k.body.Objects = []fyne.CanvasObject{k.mainPage}
	k.body.Refresh()
	k.focusScanner()
}

// scannerEntry is the entry a barcode scanner types into: it submits on
// Enter, and on a typed newline or carriage return as some scanners send.
type scannerEntry struct {
	widget.Entry
}

func newScannerEntry() *scannerEntry {
	e := &scannerEntry{}
	e.ExtendBaseWidget(e)
	return e
}

// TypedRune submits on '\n' and '\r', and types anything else.
func (e *scannerEntry) TypedRune(r rune) {
	if r == '\n' || r == '\r' {
		e.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
		return
	}
	e.Entry.TypedRune(r)
}
