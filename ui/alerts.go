package ui

import (
	"image/color"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// alertBarHeight is the alert line's fixed height: alerts never grow the
// header, however many there are.
const alertBarHeight = 52

// alertBadgeWidth is the width of the level's badge at the bar's left.
const alertBadgeWidth = 130

// alertBar is the one line under the header that sums the alerts up: the
// most urgent one of the station, then the slots that need the operator
// ("3 slots need you: S02, S05, S11"). It keeps its height whatever it
// says, so that the slots never move; tapped, it lists every alert.
type alertBar struct {
	widget.BaseWidget

	onTap func()

	alerts []localapi.Alert
	line   string // the summary, before it is fitted
	level  localapi.AlertLevel
	width  float32

	bg    *canvas.Rectangle
	badge *canvas.Rectangle
	word  *canvas.Text
	text  *canvas.Text
}

var _ fyne.Tappable = (*alertBar)(nil)

func newAlertBar(onTap func()) *alertBar {
	b := &alertBar{
		onTap: onTap,
		bg:    canvas.NewRectangle(color.NRGBA{0x2a, 0x2d, 0x34, 0xff}),
		badge: canvas.NewRectangle(color.Transparent),
		word:  text("", 22, true),
		text:  text("", 24, true),
	}
	b.ExtendBaseWidget(b)
	b.set(nil)
	return b
}

// Tapped lists every alert.
func (b *alertBar) Tapped(*fyne.PointEvent) {
	if b.onTap != nil && len(b.alerts) > 0 {
		b.onTap()
	}
}

// set shows alerts; it reports whether what shows changed. It never
// changes the bar's size.
func (b *alertBar) set(alerts []localapi.Alert) bool {
	level, line := alertSummary(alerts)
	b.alerts = alerts
	if line == b.line && level == b.level && b.word.Text != "" {
		return false
	}
	b.line, b.level = line, level
	if line == "" {
		b.badge.FillColor = color.Transparent
		b.word.Text = "OK"
		b.word.Color = colorUnknown
		b.text.Color = colorUnknown
		b.line = ""
	} else {
		bg, fg := alertColors(level)
		b.badge.FillColor = bg
		b.word.Text = strings.ToUpper(string(level))
		b.word.Color = fg
		b.text.Color = colorTextLight
	}
	b.placeWord()
	b.fit()
	b.badge.Refresh()
	b.word.Refresh()
	return true
}

// placeWord centres the level's word in its badge.
func (b *alertBar) placeWord() {
	ws := fyne.MeasureText(b.word.Text, b.word.TextSize, b.word.TextStyle)
	h := b.badge.Size().Height
	b.word.Move(fyne.NewPos((alertBadgeWidth-ws.Width)/2, (h-ws.Height)/2))
	b.word.Resize(ws)
}

// fit fits the summary into the bar's width, cut at a word.
func (b *alertBar) fit() {
	s := b.line
	if s == "" {
		s = "No alerts"
	}
	w := b.width - b.text.Position().X - 12
	if w > 0 {
		s = fitEnd(s, w, b.text.TextSize, b.text.TextStyle)
	}
	if b.text.Text != s {
		b.text.Text = s
		b.text.Refresh()
	}
}

// CreateRenderer lays the bar out.
func (b *alertBar) CreateRenderer() fyne.WidgetRenderer { return &alertBarRenderer{b: b} }

type alertBarRenderer struct{ b *alertBar }

func (r *alertBarRenderer) Destroy() {}

func (r *alertBarRenderer) MinSize() fyne.Size { return fyne.NewSize(200, alertBarHeight) }

func (r *alertBarRenderer) Objects() []fyne.CanvasObject {
	return []fyne.CanvasObject{r.b.bg, r.b.badge, r.b.word, r.b.text}
}

func (r *alertBarRenderer) Refresh() {
	for _, o := range r.Objects() {
		o.Refresh()
	}
}

func (r *alertBarRenderer) Layout(size fyne.Size) {
	b := r.b
	b.width = size.Width
	b.bg.Resize(size)
	b.badge.Move(fyne.NewPos(0, 0))
	b.badge.Resize(fyne.NewSize(alertBadgeWidth, size.Height))
	b.placeWord()
	th := fyne.MeasureText("Ag", b.text.TextSize, b.text.TextStyle).Height
	b.text.Move(fyne.NewPos(alertBadgeWidth+16, (size.Height-th)/2))
	b.text.Resize(fyne.NewSize(size.Width-alertBadgeWidth-28, th))
	b.fit()
}
