package ui

import (
	"image/color"
	"math"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// Natural sizes of a tile's text, scaled with the tile.
const (
	tileNameSize   = 28
	tileStatusSize = 28
	tileSmallSize  = 18
	tileTimeSize   = 20
	tileBarHeight  = 12
	tilePad        = 8
	tileNatW       = 240 // the width and height the natural sizes are for
	tileNatH       = 210
)

// tile shows one slot: its name, its state in colour and in words, a
// progress bar, the device and serial, the elapsed time and the reason it
// failed. It is one large touch target that opens the device view.
//
// set updates the canvas objects in place and refreshes only those that
// changed: no layout happens unless the reason or device text must be
// refitted.
type tile struct {
	widget.BaseWidget

	onTap func(name string)

	slot    localapi.Slot
	elapsed string
	size    fyne.Size
	scale   float32

	bg       *canvas.Rectangle
	name     *canvas.Text
	status   *canvas.Text
	timeT    *canvas.Text
	device   *canvas.Text
	serial   *canvas.Text
	reason   [2]*canvas.Text
	track    *canvas.Rectangle
	bar      *canvas.Rectangle
	barFrame fyne.Size // the track's size, for the bar's width
}

var _ fyne.Tappable = (*tile)(nil)

func newTile(s localapi.Slot, onTap func(string)) *tile {
	t := &tile{
		onTap:  onTap,
		scale:  1,
		bg:     canvas.NewRectangle(colorEmpty),
		name:   canvas.NewText("", colorTextLight),
		status: canvas.NewText("", colorTextLight),
		timeT:  canvas.NewText("", colorTextLight),
		device: canvas.NewText("", colorTextLight),
		serial: canvas.NewText("", colorTextLight),
		track:  canvas.NewRectangle(colorTrackLight),
		bar:    canvas.NewRectangle(colorBarLight),
	}
	t.bg.CornerRadius = 10
	t.name.TextStyle.Bold = true
	t.status.TextStyle.Bold = true
	t.timeT.Alignment = fyne.TextAlignTrailing
	t.timeT.TextStyle.Monospace = true
	t.device.TextStyle.Monospace = true
	for i := range t.reason {
		t.reason[i] = canvas.NewText("", colorTextLight)
		t.reason[i].TextStyle.Bold = true
	}
	t.ExtendBaseWidget(t)
	t.slot.Name = "\x00" // differs from any slot: set draws everything
	t.set(s, time.Now())
	return t
}

// Tapped opens the device view.
func (t *tile) Tapped(*fyne.PointEvent) {
	if t.onTap != nil {
		t.onTap(t.slot.Name)
	}
}

// set shows s; it reports whether anything changed. Call it on the UI
// goroutine.
func (t *tile) set(s localapi.Slot, now time.Time) bool {
	old := t.slot
	if s == old {
		return false
	}
	t.slot = s
	if s.Name != old.Name {
		t.setText(t.name, s.Name)
	}
	if s.Status != old.Status {
		bg, fg := statusColors(s.Status)
		t.bg.FillColor = bg
		t.bg.Refresh()
		for _, o := range t.texts() {
			o.Color = fg
			o.Refresh()
		}
		bar, track := color.Color(colorBarLight), color.Color(colorTrackLight)
		if fg == colorTextDark {
			bar = colorBarDark
		}
		t.bar.FillColor, t.track.FillColor = bar, track
		t.track.Refresh()
	}
	t.setStatus(statusWords(s))
	t.setElapsed(now)
	if s.Device != old.Device || s.Serial != old.Serial || s.Reason != old.Reason {
		t.fitTexts()
	}
	if progressOf(s) != progressOf(old) || s.Status != old.Status {
		t.layoutBar()
	}
	return true
}

// setElapsed refreshes the elapsed time; it reports whether it changed.
func (t *tile) setElapsed(now time.Time) bool {
	e := elapsedText(t.slot, now)
	if e == t.elapsed {
		return false
	}
	t.elapsed = e
	t.setText(t.timeT, e)
	return true
}

// setStatus shows the status words, smaller when they do not fit the
// tile's width at its size ("PASSED — REMOVE BOARD" on a narrow tile).
func (t *tile) setStatus(s string) {
	size := float32(tileStatusSize) * t.scale
	if w := t.size.Width - 2*tilePad*t.scale; w > 0 && s != "" {
		if m := fyne.MeasureText(s, size, t.status.TextStyle).Width; m > w {
			size = max(size*w/m, size*0.55)
		}
	}
	if t.status.Text != s || t.status.TextSize != size {
		t.status.Text, t.status.TextSize = s, size
		t.status.Refresh()
	}
}

// ticking reports whether the tile's elapsed time runs.
func (t *tile) ticking() bool {
	return t.slot.Elapsed == 0 && !t.slot.Started.IsZero() &&
		(t.slot.Status == localapi.SlotRunning || t.slot.Status == localapi.SlotWaiting)
}

func (t *tile) setText(o *canvas.Text, s string) {
	if o.Text != s {
		o.Text = s
		o.Refresh()
	}
}

func (t *tile) texts() []*canvas.Text {
	return []*canvas.Text{t.name, t.status, t.timeT, t.device, t.serial, t.reason[0], t.reason[1]}
}

// progressOf is the bar's fill, 0 to 1.
func progressOf(s localapi.Slot) float64 {
	switch s.Status {
	case localapi.SlotPassed:
		return 1
	case localapi.SlotRunning, localapi.SlotWaiting, localapi.SlotFailed:
		return math.Max(0, math.Min(s.Progress, 1))
	}
	return 0
}

// layoutBar sizes the bar in its track; it is redrawn only when its
// width changes by a whole pixel.
func (t *tile) layoutBar() {
	w := float32(math.Round(float64(t.barFrame.Width) * progressOf(t.slot)))
	if sz := t.bar.Size(); sz.Width == w && sz.Height == t.barFrame.Height {
		return
	}
	t.bar.Resize(fyne.NewSize(w, t.barFrame.Height))
	t.bar.Refresh()
}

// fitTexts fits the device, serial and reason into the tile's width.
func (t *tile) fitTexts() {
	w := t.size.Width - 2*tilePad*t.scale
	if w <= 0 {
		w = tileNatW
	}
	t.setText(t.device, fitText(t.slot.Device, w, t.device.TextSize, t.device.TextStyle))
	serial := ""
	if t.slot.Serial != "" {
		serial = "SN " + t.slot.Serial
	}
	t.setText(t.serial, fitText(serial, w, t.serial.TextSize, t.serial.TextStyle))
	lines := wrapText(operatorPart(t.slot.Reason), w, t.reason[0].TextSize, t.reason[0].TextStyle, len(t.reason))
	for i, o := range t.reason {
		l := ""
		if i < len(lines) {
			l = lines[i]
		}
		t.setText(o, l)
	}
}

// CreateRenderer lays the tile out.
func (t *tile) CreateRenderer() fyne.WidgetRenderer {
	return &tileRenderer{t: t}
}

type tileRenderer struct{ t *tile }

func (r *tileRenderer) Destroy() {}

func (r *tileRenderer) MinSize() fyne.Size { return fyne.NewSize(150, 130) }

func (r *tileRenderer) Objects() []fyne.CanvasObject {
	t := r.t
	return []fyne.CanvasObject{t.bg, t.name, t.timeT, t.status, t.track, t.bar, t.device, t.serial, t.reason[0], t.reason[1]}
}

func (r *tileRenderer) Refresh() {
	for _, o := range r.Objects() {
		o.Refresh()
	}
}

// Layout places the texts from the top; their sizes follow the tile's.
func (r *tileRenderer) Layout(size fyne.Size) {
	t := r.t
	t.size = size
	s := min(size.Width/tileNatW, size.Height/tileNatH)
	s = max(0.7, min(s, 1.8))
	t.scale = s
	t.name.TextSize = tileNameSize * s
	t.status.TextSize = tileStatusSize * s
	t.setStatus(statusWords(t.slot))
	t.timeT.TextSize = tileTimeSize * s
	for _, o := range []*canvas.Text{t.device, t.serial, t.reason[0], t.reason[1]} {
		o.TextSize = tileSmallSize * s
	}
	pad := tilePad * s
	t.bg.Resize(size)
	t.bg.Move(fyne.NewPos(0, 0))
	w := size.Width - 2*pad
	y := pad
	line := func(o *canvas.Text) {
		h := o.TextSize * 1.3
		o.Move(fyne.NewPos(pad, y))
		o.Resize(fyne.NewSize(w, h))
		y += h
	}
	line(t.name)
	t.timeT.Move(t.name.Position())
	t.timeT.Resize(t.name.Size())
	line(t.status)
	y += pad / 2
	t.barFrame = fyne.NewSize(w, tileBarHeight*s)
	t.track.Move(fyne.NewPos(pad, y))
	t.track.Resize(t.barFrame)
	t.bar.Move(fyne.NewPos(pad, y))
	y += t.barFrame.Height + pad/2
	line(t.device)
	line(t.serial)
	line(t.reason[0])
	line(t.reason[1])
	t.fitTexts()
	t.bar.Resize(fyne.Size{}) // laid out again whatever its width
	t.layoutBar()
	for _, o := range t.texts() {
		o.Refresh()
	}
}

// fitText shortens s with an ellipsis in the middle until it fits width
// (the ends of ids and serials are the parts people compare).
func fitText(s string, width, size float32, style fyne.TextStyle) string {
	if s == "" || fyne.MeasureText(s, size, style).Width <= width {
		return s
	}
	r := []rune(s)
	for n := len(r) - 1; n > 1; n-- {
		head := (n + 1) / 2
		c := string(r[:head]) + "…" + string(r[len(r)-(n-head):])
		if fyne.MeasureText(c, size, style).Width <= width {
			return c
		}
	}
	return "…"
}

// wrapText breaks s into at most n lines that fit width, the last one
// ending with an ellipsis when s is longer.
func wrapText(s string, width, size float32, style fyne.TextStyle, n int) []string {
	words := strings.Fields(s)
	var lines []string
	cur := ""
	for i, w := range words {
		try := w
		if cur != "" {
			try = cur + " " + w
		}
		if fyne.MeasureText(try, size, style).Width <= width || cur == "" {
			cur = try
			continue
		}
		lines = append(lines, cur)
		cur = w
		if len(lines) == n-1 {
			cur = strings.Join(words[i:], " ")
			break
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	for i, l := range lines {
		if fyne.MeasureText(l, size, style).Width > width {
			lines[i] = fitEnd(l, width, size, style)
		}
	}
	return lines
}

// fitEnd shortens s at its end with an ellipsis until it fits width,
// cutting between words; a single word longer than the width is cut
// within it.
func fitEnd(s string, width, size float32, style fyne.TextStyle) string {
	if fyne.MeasureText(s, size, style).Width <= width {
		return s
	}
	words := strings.Fields(s)
	for n := len(words) - 1; n > 0; n-- {
		c := strings.TrimRight(strings.Join(words[:n], " "), ",;:.—-") + "…"
		if fyne.MeasureText(c, size, style).Width <= width {
			return c
		}
	}
	r := []rune(s)
	for n := len(r) - 1; n > 0; n-- {
		c := strings.TrimSpace(string(r[:n])) + "…"
		if fyne.MeasureText(c, size, style).Width <= width {
			return c
		}
	}
	return "…"
}

// gridColumns picks the grid's columns for n slots: square up to 16
// (4×4), wider beyond (8×4 for 32), for a landscape screen.
func gridColumns(n int) int {
	if n <= 1 {
		return 1
	}
	if n <= 16 {
		return int(math.Ceil(math.Sqrt(float64(n))))
	}
	return int(math.Ceil(math.Sqrt(float64(2 * n))))
}

// operatorPart keeps the end of a failure's explanation for the tile: the
// daemon's reasons run from where (slot, device, step) through the
// protocol's details to what happened and what to do, and a tile has room
// for two lines. The device view shows it whole. A note the daemon adds
// in brackets (who skipped the device) comes first: it says what to do
// now.
func operatorPart(reason string) string {
	note := ""
	if i := strings.LastIndex(reason, " (skipped by "); i >= 0 && strings.HasSuffix(reason, ")") {
		n := reason[i+2 : len(reason)-1]
		note = strings.ToUpper(n[:1]) + n[1:] + ". "
		reason = reason[:i]
	}
	i := strings.LastIndex(reason, ": ")
	if len(reason) > 100 && i >= 0 && len(reason)-i >= 24 {
		reason = reason[i+2:]
	}
	if reason != "" {
		reason = strings.ToUpper(reason[:1]) + reason[1:]
	}
	return note + reason
}
