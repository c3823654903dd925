package ui

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// deviceView shows one slot's device: its state, its step log, and what
// the operator can do about it (retry, skip, reprint, override).
type deviceView struct {
	k      *Kiosk
	slot   string
	device string

	title    *canvas.Text
	statusBg *canvas.Rectangle
	status   *canvas.Text
	info     *widget.Label
	note     *widget.Label
	log      []localapi.LogLine
	list     *widget.List
	retry    *widget.Button
	skip     *widget.Button
	reprint  *widget.Button
	override *widget.Button
	reason   *widget.Entry
	back     *widget.Button
	reload   *widget.Button
	// label previews the device's label as it was printed.
	label *canvas.Image
}

// openDevice opens the device view of a slot (a tile's tap).
func (k *Kiosk) openDevice(slot string) {
	s, _ := k.m.slot(slot)
	v := &deviceView{
		k:        k,
		slot:     slot,
		title:    text("Slot "+slot, 40, true),
		statusBg: canvas.NewRectangle(colorEmpty),
		status:   text("", 32, true),
		info:     widget.NewLabel(""),
		note:     widget.NewLabel(""),
		reason:   widget.NewEntry(),
		label:    canvas.NewImageFromResource(nil),
	}
	v.label.FillMode = canvas.ImageFillContain
	v.label.SetMinSize(fyne.NewSize(406, 203))
	v.label.Hide()
	v.info.Wrapping = fyne.TextWrapWord
	v.note.Wrapping = fyne.TextWrapWord
	v.note.TextStyle.Bold = true
	v.list = widget.NewList(
		func() int { return len(v.log) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i < len(v.log) {
				o.(*widget.Label).SetText(logLineWords(v.log[i]))
			}
		})
	v.back = widget.NewButton("Back", k.showMain)
	v.reload = widget.NewButton("Reload log", v.loadLog)
	v.retry = widget.NewButton("Retry", func() {
		v.act("Could not retry slot "+slot, "Retrying from the last passed step.", func(ctx context.Context) (localapi.State, error) {
			return k.api.Retry(ctx, slot)
		})
	})
	v.retry.Importance = widget.HighImportance
	v.skip = widget.NewButton("Skip", func() {
		v.act("Could not skip slot "+slot, "Skipped until the device is unplugged.", func(ctx context.Context) (localapi.State, error) {
			return k.api.Skip(ctx, slot)
		})
	})
	v.reprint = widget.NewButton("Reprint label", func() {
		v.act("Could not reprint the label", "The label was sent to the printer.", func(ctx context.Context) (localapi.State, error) {
			return k.api.Reprint(ctx, slot)
		})
	})
	v.reason.SetPlaceHolder("Why you accept this device (supervisor)")
	v.override = widget.NewButton("Override (supervisor)", func() {
		reason := strings.TrimSpace(v.reason.Text)
		if reason == "" {
			v.note.SetText("Type why you accept this device first.")
			return
		}
		k.askSupervisor("Accept the failed device in "+slot+"?", "Reason: "+reason, func(ctx context.Context, cred localapi.Credential) (localapi.State, error) {
			st, err := k.api.Override(ctx, slot, reason, cred)
			if err == nil {
				k.do(func() {
					if k.dev == v {
						v.note.SetText("Accepted by a supervisor.")
						v.loadLog()
					}
				})
			}
			return st, err
		})
	})
	v.override.Importance = widget.DangerImportance
	v.setSlot(s)

	btn := func(b *widget.Button) fyne.CanvasObject { return sized(b, 220, 80) }
	top := container.NewVBox(
		container.NewBorder(nil, nil, nil, container.NewHBox(btn(v.reload), btn(v.back)), v.title),
		container.NewStack(v.statusBg, container.NewPadded(v.status)),
		v.info,
	)
	actions := container.NewVBox(
		container.NewHBox(btn(v.retry), btn(v.skip), btn(v.reprint)),
		container.NewBorder(nil, nil, nil, btn(v.override), sized(v.reason, 0, 80)),
		v.note,
	)
	k.dev = v
	k.showPage(container.NewPadded(container.NewBorder(top, actions, nil, container.NewVBox(v.label), v.list)))
	v.setControls(k.connected)
	v.loadLog()
}

// setSlot shows the slot's state; a new device reloads the log.
func (v *deviceView) setSlot(s localapi.Slot) {
	bg, fg := statusColors(s.Status)
	v.statusBg.FillColor = bg
	v.statusBg.Refresh()
	v.status.Text, v.status.Color = statusWords(s), fg
	v.status.Refresh()
	var parts []string
	if s.Device != "" {
		parts = append(parts, "Device "+s.Device)
	} else {
		parts = append(parts, "No device in this slot.")
	}
	if s.Serial != "" {
		parts = append(parts, "Serial "+s.Serial)
	}
	if s.Step != "" {
		parts = append(parts, "Step "+s.Step)
	}
	if e := elapsedText(s, time.Now()); e != "" {
		parts = append(parts, "Time "+e)
	}
	info := strings.Join(parts, "   ·   ")
	if s.Reason != "" {
		info += "\n" + s.Reason
	}
	if v.info.Text != info {
		v.info.SetText(info)
	}
	if s.Device != v.device {
		v.device = s.Device
		if v.list != nil {
			v.loadLog()
		}
	}
}

// setControls greys the actions while the daemon is away.
func (v *deviceView) setControls(connected bool) {
	for _, b := range []*widget.Button{v.retry, v.skip, v.reprint, v.override, v.reload} {
		if connected && b.Disabled() {
			b.Enable()
		} else if !connected && !b.Disabled() {
			b.Disable()
		}
	}
}

// act runs a slot command; the note says how it went.
func (v *deviceView) act(title, done string, f func(ctx context.Context) (localapi.State, error)) {
	v.note.SetText("…")
	k := v.k
	k.commandThen(title, f, func() {
		if k.dev == v {
			v.note.SetText(done)
			v.loadLog()
		}
	})
}

// loadLabel fetches the preview of the device's label; a device without
// one (not labelled yet) shows none.
func (v *deviceView) loadLabel() {
	k, device, slot := v.k, v.device, v.slot
	go func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		png, err := k.api.LabelPNG(ctx, slot)
		k.do(func() {
			if k.dev != v || v.device != device {
				return
			}
			if err != nil || len(png) == 0 {
				v.label.Hide()
				return
			}
			v.label.Resource = fyne.NewStaticResource("label-"+slot+".png", png)
			v.label.Show()
			v.label.Refresh()
		})
	}()
}

// loadLog fetches the device's step log, and its label's preview.
func (v *deviceView) loadLog() {
	k, device := v.k, v.device
	if device != "" {
		v.loadLabel()
	}
	if device == "" {
		v.log = nil
		v.list.Refresh()
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		lines, err := k.api.DeviceLog(ctx, device)
		k.do(func() {
			if k.dev != v || v.device != device {
				return
			}
			if err != nil {
				v.note.SetText("Could not read the device's log: " + errorWords(err))
				return
			}
			v.log = lines
			v.list.Refresh()
			if len(lines) > 0 {
				v.list.ScrollToBottom()
			}
		})
	}()
}

// logLineWords says one step event.
func logLineWords(l localapi.LogLine) string {
	s := l.Time.Local().Format("15:04:05") + "  " + l.Step + "  " + strings.ToUpper(l.Status)
	if l.Attempt > 1 {
		s += fmt.Sprintf("  (attempt %d)", l.Attempt)
	}
	if l.Duration > 0 {
		s += "  " + l.Duration.Round(100*time.Millisecond).String()
	}
	if l.Operator != "" {
		s += "  by " + l.Operator
	}
	if l.Message != "" {
		s += "  " + l.Message
	}
	return s
}

// commandThen is command with a function run on the UI goroutine when
// it succeeds.
func (k *Kiosk) commandThen(title string, f func(ctx context.Context) (localapi.State, error), ok func()) {
	k.command(title, func(ctx context.Context) (localapi.State, error) {
		st, err := f(ctx)
		if err == nil && ok != nil {
			k.do(ok)
		}
		return st, err
	})
}

// qaView searches the journal's devices and exports them.
type qaView struct {
	k       *Kiosk
	wo      *widget.Entry
	device  *widget.Entry
	result  *widget.Select
	search  *widget.Button
	rows    []localapi.DeviceRow
	table   *widget.Table
	count   *widget.Label
	path    *widget.Entry
	choose  *widget.Button
	export  *widget.Button
	msg     *widget.Label
	back    *widget.Button
	results []string
}

// qaColumns are the table's columns and their widths.
var qaColumns = []struct {
	name  string
	width float32
	cell  func(localapi.DeviceRow) string
}{
	{"Work order", 230, func(r localapi.DeviceRow) string { return r.WorkOrder }},
	{"Device", 300, func(r localapi.DeviceRow) string { return r.Device }},
	{"Serial", 200, func(r localapi.DeviceRow) string { return r.Serial }},
	{"Slot", 90, func(r localapi.DeviceRow) string { return r.Slot }},
	{"Result", 150, func(r localapi.DeviceRow) string { return r.Result }},
	{"Last step", 150, func(r localapi.DeviceRow) string { return r.LastStep }},
	{"Error", 360, func(r localapi.DeviceRow) string { return r.LastError }},
	{"Tries", 80, func(r localapi.DeviceRow) string { return fmt.Sprint(r.Attempts) }},
	{"Last", 230, func(r localapi.DeviceRow) string { return r.Last.Local().Format("2006-01-02 15:04") }},
}

const anyResult = "any result"

// openQA opens the QA view, searching the loaded work order's devices.
func (k *Kiosk) openQA() {
	v := &qaView{
		k:       k,
		wo:      widget.NewEntry(),
		device:  widget.NewEntry(),
		count:   widget.NewLabel(""),
		path:    widget.NewEntry(),
		msg:     widget.NewLabel(""),
		results: []string{anyResult, "done", "failed", "interrupted", "in_progress"},
	}
	v.wo.SetPlaceHolder("Work order")
	v.device.SetPlaceHolder("Device id or serial")
	v.result = widget.NewSelect(v.results, nil)
	v.result.SetSelected(anyResult)
	if wo := k.header.workOrder.Text; k.header.done.Text != "" {
		v.wo.SetText(wo)
	}
	v.wo.OnSubmitted = func(string) { v.runSearch() }
	v.device.OnSubmitted = func(string) { v.runSearch() }
	v.search = widget.NewButton("Search", v.runSearch)
	v.search.Importance = widget.HighImportance
	v.back = widget.NewButton("Back", k.showMain)
	v.table = widget.NewTableWithHeaders(
		func() (int, int) { return len(v.rows), len(qaColumns) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) {
			if id.Row < len(v.rows) && id.Col < len(qaColumns) {
				o.(*widget.Label).SetText(qaColumns[id.Col].cell(v.rows[id.Row]))
			}
		})
	v.table.ShowHeaderColumn = false
	v.table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		l := o.(*widget.Label)
		if id.Row < 0 && id.Col >= 0 && id.Col < len(qaColumns) {
			l.SetText(qaColumns[id.Col].name)
			l.TextStyle.Bold = true
			l.Refresh()
		}
	}
	v.table.CreateHeader = func() fyne.CanvasObject { return widget.NewLabel("") }
	for i, c := range qaColumns {
		v.table.SetColumnWidth(i, c.width)
	}
	dir := k.opts.ExportDir
	if dir == "" {
		if h, err := os.UserHomeDir(); err == nil {
			dir = h
		}
	}
	v.path.SetText(filepath.Join(dir, "station-export-"+time.Now().Format("20060102-150405")+".jsonl"))
	v.export = widget.NewButton("Export", v.runExport)
	v.choose = widget.NewButton("Choose…", v.chooseFile)

	btn := func(b *widget.Button) fyne.CanvasObject { return sized(b, 180, 70) }
	filters := container.NewBorder(nil, nil, nil, container.NewHBox(sized(v.result, 240, 70), btn(v.search), btn(v.back)),
		container.NewGridWithColumns(2, sized(v.wo, 0, 70), sized(v.device, 0, 70)))
	exports := container.NewBorder(nil, nil, text("Export to", 24, true), container.NewHBox(btn(v.choose), btn(v.export)), sized(v.path, 0, 70))
	top := container.NewVBox(text("Devices", 40, true), filters, v.count)
	bottom := container.NewVBox(exports, v.msg)
	k.qa = v
	k.showPage(container.NewPadded(container.NewBorder(top, bottom, nil, nil, v.table)))
	v.runSearch()
}

// query is the search the filters say.
func (v *qaView) query() localapi.DeviceQuery {
	q := localapi.DeviceQuery{WorkOrder: strings.TrimSpace(v.wo.Text), Device: strings.TrimSpace(v.device.Text), Limit: 1000}
	if r := v.result.Selected; r != anyResult {
		q.Result = r
	}
	return q
}

// runSearch lists the devices the filters select.
func (v *qaView) runSearch() {
	k, q := v.k, v.query()
	v.count.SetText("Searching…")
	go func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		rows, err := k.api.Devices(ctx, q)
		k.do(func() {
			if k.qa != v {
				return
			}
			if err != nil {
				v.count.SetText("Could not search: " + errorWords(err))
				return
			}
			v.rows = rows
			v.table.Refresh()
			v.count.SetText(fmt.Sprintf("%d devices", len(rows)))
		})
	}()
}

// chooseFile picks the export's file with the save dialog.
func (v *qaView) chooseFile() {
	d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
		if err != nil || w == nil {
			return
		}
		v.path.SetText(w.URI().Path())
		_ = w.Close()
	}, v.k.win)
	d.SetFileName(filepath.Base(v.path.Text))
	d.Show()
}

// runExport writes the selected devices' events to the file as JSON
// lines.
func (v *qaView) runExport() {
	k, q, path := v.k, v.query(), expandHome(strings.TrimSpace(v.path.Text))
	if path == "" {
		v.msg.SetText("Type the file to export to.")
		return
	}
	v.msg.SetText("Exporting…")
	v.export.Disable()
	go func() {
		n, err := exportTo(k.runCtx(), k.api, q, path)
		if err != nil {
			k.log.Warn("export failed", "path", path, "err", err)
		} else {
			k.log.Info("exported", "path", path, "bytes", n)
		}
		k.do(func() {
			v.export.Enable()
			if err != nil {
				v.msg.SetText("Export failed: " + errorWords(err))
				return
			}
			v.msg.SetText(fmt.Sprintf("Exported %d bytes to %s", n, path))
		})
	}()
}

// exportTo writes the export to path, removing the file if it fails.
func exportTo(ctx context.Context, api API, q localapi.DeviceQuery, path string) (n int64, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create export file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	bw := bufio.NewWriter(f)
	cw := &countWriter{w: bw}
	err = api.Export(ctx, q, cw)
	if err == nil {
		err = bw.Flush()
	}
	err = errors.Join(err, f.Close())
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// expandHome expands a leading "~/".
func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, rest)
		}
	}
	return p
}
