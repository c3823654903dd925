package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"time"

	"fyne.io/fyne/v2"
)

// Screen is what the kiosk shows, as its widgets hold it: for end-to-end
// tests that run the real kiosk in an X server (Options.ScreenFile) and
// check what an operator sees. Positions and sizes are in the window's
// coordinates.
type Screen struct {
	Width     float32 `json:"width"`
	Height    float32 `json:"height"`
	Connected bool    `json:"connected"`
	// Page is "main", "device" or "qa".
	Page   string       `json:"page"`
	Header ScreenHeader `json:"header"`
	// AlertLine is the one line of alerts; AlertBox where it lies.
	AlertLine string    `json:"alert_line"`
	AlertBox  ScreenBox `json:"alert_box"`
	// GridBox is where the slots lie.
	GridBox ScreenBox    `json:"grid_box"`
	Tiles   []ScreenTile `json:"tiles"`
	// Controls are the commands of the page: enabled, or why not.
	Controls map[string]ScreenControl `json:"controls"`
	Scan     string                   `json:"scan"`
	ScanNote string                   `json:"scan_note"`
	Stats    Stats                    `json:"stats"`
}

// ScreenBox is a rectangle of the window.
type ScreenBox struct {
	X float32 `json:"x"`
	Y float32 `json:"y"`
	W float32 `json:"w"`
	H float32 `json:"h"`
}

// Inside reports whether b lies within a window of w by h, with some
// height.
func (b ScreenBox) Inside(w, h float32) bool {
	return b.H > 0 && b.W > 0 && b.X >= 0 && b.Y >= 0 && b.X+b.W <= w+0.5 && b.Y+b.H <= h+0.5
}

// ScreenHeader is the header's texts and where it lies.
type ScreenHeader struct {
	Box       ScreenBox `json:"box"`
	WorkOrder string    `json:"work_order"`
	Done      string    `json:"done"`
	Counts    string    `json:"counts"`
	Run       string    `json:"run"`
	Operator  string    `json:"operator"`
	DMS       string    `json:"dms"`
	DMSColor  string    `json:"dms_color"`
	Printer   string    `json:"printer"`
}

// ScreenTile is one slot's tile.
type ScreenTile struct {
	Name   string    `json:"name"`
	Status string    `json:"status"`
	Words  string    `json:"words"`
	Reason string    `json:"reason"`
	Device string    `json:"device"`
	Color  string    `json:"color"` // the background, #rrggbb
	Box    ScreenBox `json:"box"`
}

// ScreenControl is a command's button.
type ScreenControl struct {
	Enabled bool   `json:"enabled"`
	Why     string `json:"why,omitempty"`
}

// Screen returns what the kiosk shows now. Call it on the UI goroutine
// (tests: under the harness's lock).
func (k *Kiosk) Screen() Screen {
	size := k.win.Canvas().Size()
	s := Screen{Width: size.Width, Height: size.Height, Connected: k.connected, Page: "main",
		Controls: map[string]ScreenControl{}, Scan: k.scanText.Text, ScanNote: k.scanNote.Text, Stats: k.Stats()}
	switch {
	case k.dev != nil:
		s.Page = "device"
	case k.qa != nil:
		s.Page = "qa"
	}
	h := k.header
	s.Header = ScreenHeader{Box: boxOf(h.box), WorkOrder: h.workOrder.Text, Done: h.done.Text, Counts: h.yield.Text,
		Run: h.run.Text, Operator: h.operator.Text, DMS: h.dms.Text, DMSColor: hexColor(h.dms.Color), Printer: h.printer.Text}
	s.AlertLine, s.AlertBox = k.alertBar.text.Text, boxOf(k.alertBar)
	s.GridBox = boxOf(k.grid)
	for _, name := range k.order {
		t := k.tiles[name]
		s.Tiles = append(s.Tiles, ScreenTile{Name: name, Status: string(t.slot.Status), Words: t.status.Text,
			Reason: t.reason[0].Text + " " + t.reason[1].Text, Device: t.slot.Device, Color: hexColor(t.bg.FillColor), Box: boxOf(t)})
	}
	for name, a := range map[string]*action{"start": k.start, "pause": k.pause, "stop": k.stop} {
		s.Controls[name] = ScreenControl{Enabled: !a.Disabled(), Why: a.why.Text}
	}
	if v := k.dev; v != nil {
		for name, a := range map[string]*action{"retry": v.retry, "skip": v.skip, "override": v.override, "reprint": v.reprint} {
			s.Controls[name] = ScreenControl{Enabled: !a.Disabled(), Why: a.why.Text}
		}
	}
	return s
}

// boxOf is where o lies in the window; a hidden object has no box.
func boxOf(o fyne.CanvasObject) ScreenBox {
	if !o.Visible() {
		return ScreenBox{}
	}
	d := fyne.CurrentApp().Driver()
	if d.CanvasForObject(o) == nil {
		return ScreenBox{}
	}
	p, sz := d.AbsolutePositionForObject(o), o.Size()
	return ScreenBox{X: p.X, Y: p.Y, W: sz.Width, H: sz.Height}
}

func hexColor(c color.Color) string {
	if c == nil {
		return ""
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return fmt.Sprintf("#%02x%02x%02x", n.R, n.G, n.B)
}

// writeScreens writes the screen to Options.ScreenFile after the draws
// that changed it, at most twice a second, until ctx ends.
func (k *Kiosk) writeScreens(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !k.screenDirty.Swap(false) {
			continue
		}
		done := make(chan Screen, 1)
		k.do(func() { done <- k.Screen() })
		var s Screen
		select {
		case s = <-done:
		case <-ctx.Done():
			return
		}
		b, err := json.MarshalIndent(s, "", "  ")
		if err == nil {
			err = writeAtomic(k.opts.ScreenFile, b)
		}
		if err != nil {
			k.log.Warn("write the screen file", "err", err)
		}
	}
}

// writeAtomic replaces path with data.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".screen-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
