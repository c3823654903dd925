package ui

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// header shows the work order, its progress, the links the station needs
// and who is signed in.
type header struct {
	box *fyne.Container

	workOrder *canvas.Text // WO-1234
	product   *canvas.Text // product name
	detail    *canvas.Text // part number, bundle version and tag
	run       *canvas.Text // RUNNING, PAUSED ...
	done      *canvas.Text // 12 / 100
	yield     *canvas.Text // yield 97.5 %
	dms       *canvas.Text
	printer   *canvas.Text
	operator  *canvas.Text
	signIn    *widget.Button // "Sign in" or "Sign out"
	qa        *widget.Button
	signedIn  bool

	// full holds each text's whole words; the layout shows as much of
	// them as its column has room for, so that the header never grows
	// wider than the screen.
	full  map[*canvas.Text]string
	width map[*canvas.Text]float32
}

func newHeader(onSignIn, onSignOut, onQA func()) *header {
	h := &header{
		workOrder: text("No work order", 40, true),
		product:   text("Scan a work order to start", 26, false),
		detail:    text("", 22, false),
		run:       text("", 26, true),
		done:      text("", 44, true),
		yield:     text("", 26, false),
		dms:       text("", 22, true),
		printer:   text("", 22, true),
		operator:  text("Nobody signed in", 24, false),
	}
	h.done.Alignment = fyne.TextAlignTrailing
	h.yield.Alignment = fyne.TextAlignTrailing
	h.run.Alignment = fyne.TextAlignTrailing
	h.signIn = widget.NewButton("Sign in", func() {
		if h.signedIn {
			onSignOut()
		} else {
			onSignIn()
		}
	})
	h.signIn.Importance = widget.HighImportance
	h.qa = widget.NewButton("QA", onQA)
	h.full, h.width = map[*canvas.Text]string{}, map[*canvas.Text]float32{}
	for _, t := range []*canvas.Text{h.workOrder, h.product, h.detail, h.run, h.done, h.yield, h.dms, h.printer, h.operator} {
		h.full[t] = t.Text
	}
	left := container.NewVBox(container.NewHBox(h.workOrder, h.product), h.detail)
	middle := container.NewVBox(container.NewHBox(layout.NewSpacer(), h.run, h.done), container.NewHBox(layout.NewSpacer(), h.yield))
	links := container.NewVBox(h.dms, h.printer)
	who := container.NewVBox(h.operator, container.NewHBox(layout.NewSpacer(), h.qa, h.signIn))
	bg := canvas.NewRectangle(color.NRGBA{0x1c, 0x20, 0x28, 0xff})
	h.box = container.NewStack(bg, container.NewPadded(
		container.New(&headerLayout{h: h}, left, middle, links, who)))
	return h
}

// headerLayout lays the header's four columns out in the width there is:
// each column gets the width of its whole texts when they fit; when they
// do not, the links' details give way first, then the work order's
// product and details, the counts, and the work order's id and the done
// count last; each text shows what fits its column, cut at a word.
// Its minimum width is small, so that the header never makes the window
// wider than the screen.
type headerLayout struct{ h *header }

const headerGap = 24

func (l *headerLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var h float32
	for _, o := range objs {
		h = max(h, o.MinSize().Height)
	}
	return fyne.NewSize(640, h)
}

func (l *headerLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	left, middle, links, who := objs[0], objs[1], objs[2], objs[3]
	h := l.h
	w := func(t *canvas.Text) float32 { return fyne.MeasureText(h.full[t], t.TextSize, t.TextStyle).Width }
	pad := theme.Padding()
	leftW := max(w(h.workOrder)+pad+w(h.product), w(h.detail))
	middleW := max(w(h.run)+pad+w(h.done), w(h.yield))
	linksW := max(w(h.dms), w(h.printer))
	buttons := h.qa.MinSize().Width + h.signIn.MinSize().Width + pad
	whoW := max(w(h.operator), buttons)
	over := leftW + middleW + linksW + whoW + 3*headerGap - size.Width
	shrink := func(x *float32, floor float32) {
		if over <= 0 {
			return
		}
		d := min(over, max(0, *x-floor))
		*x -= d
		over -= d
	}
	shrink(&linksW, 300)
	shrink(&leftW, max(300, w(h.workOrder)))
	shrink(&middleW, 400)
	shrink(&whoW, buttons)
	// Then the links (the alert line says what is wrong with them), the
	// counts but the done count, and only then the work order's id.
	shrink(&linksW, 0)
	shrink(&middleW, w(h.run)+pad+w(h.done))
	shrink(&leftW, 0)
	shrink(&middleW, 0)
	h.width[h.workOrder] = leftW
	h.width[h.product] = leftW - fyne.MeasureText(h.workOrder.Text, h.workOrder.TextSize, h.workOrder.TextStyle).Width - pad
	h.width[h.detail] = leftW
	h.width[h.yield] = middleW
	h.width[h.run] = middleW - fyne.MeasureText(h.full[h.done], h.done.TextSize, h.done.TextStyle).Width - pad
	h.width[h.done] = middleW
	h.width[h.dms], h.width[h.printer] = linksW, linksW
	h.width[h.operator] = whoW
	for t := range h.full {
		h.fit(t)
	}
	// The work order at the left, the rest at the right.
	left.Move(fyne.NewPos(0, 0))
	left.Resize(fyne.NewSize(leftW, size.Height))
	x := size.Width
	for _, c := range []struct {
		o fyne.CanvasObject
		w float32
	}{{who, whoW}, {links, linksW}, {middle, middleW}} {
		x -= c.w
		c.o.Move(fyne.NewPos(x, 0))
		c.o.Resize(fyne.NewSize(c.w, size.Height))
		x -= headerGap
	}
}

// fit shows as much of t's whole text as its column has room for.
func (h *header) fit(t *canvas.Text) {
	s := h.full[t]
	if w, ok := h.width[t]; ok && w > 0 {
		s = fitEnd(s, w, t.TextSize, t.TextStyle)
	}
	if t.Text != s {
		t.Text = s
		t.Refresh()
	}
}

// text makes a canvas.Text in the theme's foreground colour.
func text(s string, size float32, bold bool) *canvas.Text {
	t := canvas.NewText(s, colorTextLight)
	t.TextSize = size
	t.TextStyle.Bold = bold
	return t
}

// spacer is a fixed horizontal gap.
func spacer(w float32) fyne.CanvasObject {
	r := canvas.NewRectangle(color.Transparent)
	r.SetMinSize(fyne.NewSize(w, 1))
	return r
}

// update shows st (all but its slots and alerts); call it on the UI
// goroutine.
func (h *header) update(st localapi.State) {
	changed := false
	set := func(t *canvas.Text, s string, c color.Color) {
		if h.full[t] != s || t.Color != c {
			h.full[t], t.Color = s, c
			h.fit(t)
			t.Refresh()
			changed = true
		}
	}
	if wo := st.WorkOrder; wo != nil {
		set(h.workOrder, wo.ID, colorTextLight)
		name := wo.ProductName
		if name == "" {
			name = wo.Product
		}
		set(h.product, name, colorTextLight)
		var parts []string
		if wo.PartNumber != "" {
			parts = append(parts, "PN "+wo.PartNumber)
		}
		if wo.BundleVersion != "" {
			b := "Bundle " + wo.BundleVersion
			if wo.BundleTag != "" {
				b += " (" + wo.BundleTag + ")"
			}
			parts = append(parts, b)
		}
		set(h.detail, strings.Join(parts, "  ·  "), colorTextLight)
		set(h.done, fmt.Sprintf("%d / %d", st.Counts.Done, wo.Quantity), colorTextLight)
	} else {
		set(h.workOrder, "No work order", colorTextLight)
		set(h.product, "Scan a work order to start", colorTextLight)
		set(h.detail, "", colorTextLight)
		set(h.done, "", colorTextLight)
	}
	set(h.yield, countsWords(st.Counts), colorTextLight)
	set(h.run, runWords(st.Run), runColor(st.Run))
	set(h.dms, linkWords("DMS", st.DMS), linkColor(st.DMS))
	set(h.printer, linkWords("Printer", st.Printer), linkColor(st.Printer))
	if op := st.Operator; op != nil {
		who := op.Name
		if op.Supervisor {
			who += " (supervisor)"
		}
		set(h.operator, who, colorTextLight)
		h.signedIn = true
		h.setButton("Sign out", widget.MediumImportance)
	} else {
		set(h.operator, "Nobody signed in", colorWaiting)
		h.signedIn = false
		h.setButton("Sign in", widget.HighImportance)
	}
	if changed {
		h.box.Refresh()
	}
}

// setAway shows the links as unknown while the station service is away:
// nothing is known of the DMS or the printer then.
func (h *header) setAway() {
	for _, t := range []struct {
		o    *canvas.Text
		name string
	}{{h.dms, "DMS"}, {h.printer, "Printer"}} {
		if s := t.name + " ?  (station service away)"; h.full[t.o] != s || t.o.Color != colorUnknown {
			h.full[t.o], t.o.Color = s, colorUnknown
			h.fit(t.o)
			t.o.Refresh()
		}
	}
}

// countsWords says the counts: the yield and how many devices passed,
// were overridden, failed (red slots) and were set aside.
func countsWords(c localapi.Counts) string {
	if c.Passed+c.Overridden+c.Failed+c.SetAside == 0 {
		return ""
	}
	s := fmt.Sprintf("Yield %s %%  (%d passed", yieldText(c.Yield), c.Passed)
	if c.Overridden > 0 {
		s += fmt.Sprintf(", %d overridden", c.Overridden)
	}
	s += fmt.Sprintf(", %d failed", c.Failed)
	if c.SetAside > 0 {
		s += fmt.Sprintf(", %d set aside", c.SetAside)
	}
	return s + ")"
}

func (h *header) setButton(label string, imp widget.Importance) {
	if h.signIn.Text != label || h.signIn.Importance != imp {
		h.signIn.Text, h.signIn.Importance = label, imp
		h.signIn.Refresh()
	}
}

// yieldText says a 0-to-1 yield as a percentage with one decimal.
func yieldText(y float64) string {
	return fmt.Sprintf("%.1f", math.Round(y*1000)/10)
}

func runWords(r localapi.RunState) string {
	switch r {
	case localapi.RunReady:
		return "READY  "
	case localapi.RunRunning:
		return "RUNNING  "
	case localapi.RunPaused:
		return "PAUSED  "
	case localapi.RunStopping:
		return "STOPPING  "
	case localapi.RunComplete:
		return "COMPLETE  "
	}
	return ""
}

func runColor(r localapi.RunState) color.Color {
	switch r {
	case localapi.RunRunning:
		return color.NRGBA{0x5c, 0x9c, 0xff, 0xff}
	case localapi.RunPaused, localapi.RunStopping:
		return colorWaiting
	case localapi.RunComplete:
		return colorOK
	}
	return colorTextLight
}

func linkWords(name string, l localapi.Link) string {
	s := name + " OK"
	if !l.OK {
		s = name + " OFFLINE"
	}
	if l.Detail != "" {
		s += ": " + l.Detail
	}
	return s
}

func linkColor(l localapi.Link) color.Color {
	if l.OK {
		return colorOK
	}
	return colorBad
}
