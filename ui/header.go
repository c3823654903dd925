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
	left := container.NewVBox(container.NewHBox(h.workOrder, h.product), h.detail)
	middle := container.NewVBox(container.NewHBox(layout.NewSpacer(), h.run, h.done), container.NewHBox(layout.NewSpacer(), h.yield))
	links := container.NewVBox(h.dms, h.printer)
	who := container.NewVBox(h.operator, container.NewHBox(layout.NewSpacer(), h.qa, h.signIn))
	bg := canvas.NewRectangle(color.NRGBA{0x1c, 0x20, 0x28, 0xff})
	h.box = container.NewStack(bg, container.NewPadded(
		container.NewHBox(left, layout.NewSpacer(), middle, spacer(32), links, spacer(32), who)))
	return h
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
		if t.Text != s || t.Color != c {
			t.Text, t.Color = s, c
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
	if st.Counts.Passed+st.Counts.Failed > 0 {
		set(h.yield, fmt.Sprintf("Yield %s %%  (%d passed, %d failed)", yieldText(st.Counts.Yield), st.Counts.Passed, st.Counts.Failed), colorTextLight)
	} else {
		set(h.yield, "", colorTextLight)
	}
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
