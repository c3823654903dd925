package ui

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
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

// deviceView shows one device, by its hardware id, wherever it is: its
// state while it is in its slot, its log as it grows, and what the
// operator can do about it (retry, skip, reprint, override) when the
// daemon takes it. It stays on its device when the slot gets another
// one (a new board plugged in, --cycle): then it says the board left.
type deviceView struct {
	k *Kiosk
	// device is the hardware id the view follows; "" until the slot it
	// was opened on shows one, then fixed.
	device string
	// slot is where the device is, or was last seen.
	slot string
	// here reports that the slot shows the device now (or, device
	// unknown, that the view is on the slot).
	here bool
	cur  localapi.Slot // the slot as last seen with the device
	// logKey is what the log was last read for: it is read again when
	// the device's status, step or reason change.
	logKey   string
	logBusy  bool
	logAgain bool
	labelFor string // the device whose label preview shows
	// back is the page the view returns to.
	back func()

	title     *canvas.Text
	statusBg  *canvas.Rectangle
	status    *canvas.Text
	info      *widget.Label
	note      *widget.Label
	log       []localapi.LogLine
	list      *widget.List
	retry     *action
	skip      *action
	reprint   *action
	override  *action
	reason    *widget.Entry
	backBtn   *widget.Button
	reloadBtn *widget.Button
	// label previews the device's label as it was printed.
	label *canvas.Image
}

// openDevice opens the view of the device in a slot (a tile's tap).
func (k *Kiosk) openDevice(slot string) {
	s, _ := k.m.slot(slot)
	k.openDeviceView(s.Device, slot, k.showMain)
}

// openDeviceID opens the view of a device by its hardware id (a QA row's
// tap); back returns to the page it was opened from.
func (k *Kiosk) openDeviceID(device string, back func()) {
	slot := ""
	for _, s := range k.m.slots() {
		if s.Device == device {
			slot = s.Name
		}
	}
	k.openDeviceView(device, slot, back)
}

func (k *Kiosk) openDeviceView(device, slot string, back func()) {
	v := &deviceView{
		k:        k,
		device:   device,
		slot:     slot,
		back:     back,
		title:    text("", 40, true),
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
	v.backBtn = widget.NewButton("Back", func() {
		k.dev = nil
		v.back()
	})
	v.reloadBtn = widget.NewButton("Reload log", v.loadLog)
	const bw, bh = 220, 80
	v.retry = newAction("Retry", widget.HighImportance, bw, bh, func() {
		v.act("Could not retry slot "+v.slot, "Retrying from the last passed step.", func(ctx context.Context, slot string) (localapi.State, error) {
			return k.api.Retry(ctx, slot)
		})
	})
	v.skip = newAction("Skip", widget.MediumImportance, bw, bh, func() {
		v.act("Could not skip slot "+v.slot, "Skipped until the board is unplugged.", func(ctx context.Context, slot string) (localapi.State, error) {
			return k.api.Skip(ctx, slot)
		})
	})
	v.reprint = newAction("Reprint label", widget.MediumImportance, bw, bh, func() {
		v.act("Could not reprint the label", "The label was sent to the printer.", func(ctx context.Context, slot string) (localapi.State, error) {
			return k.api.Reprint(ctx, slot)
		})
	})
	v.reason.SetPlaceHolder("Why you accept this device (supervisor)")
	v.override = newAction("Override", widget.DangerImportance, bw, bh, v.askOverride)

	btn := func(b *widget.Button) fyne.CanvasObject { return sized(b, bw, bh) }
	top := container.NewVBox(
		container.NewBorder(nil, nil, nil, container.NewHBox(btn(v.reloadBtn), btn(v.backBtn)), v.title),
		container.NewStack(v.statusBg, container.NewPadded(v.status)),
		v.info,
	)
	actions := container.NewVBox(
		container.NewHBox(v.retry.box, v.skip.box, v.reprint.box),
		container.NewBorder(nil, nil, nil, v.override.box, container.NewVBox(sized(v.reason, 0, bh))),
		v.note,
	)
	k.dev = v
	if s, ok := k.m.slot(slot); ok {
		v.slotChanged(s)
	} else {
		v.show()
	}
	k.showPage(container.NewPadded(container.NewBorder(top, actions, nil, container.NewVBox(v.label), v.list)))
	v.setControls()
	v.loadLog()
}

// slotChanged follows a slot's change: the view's device in its slot, the
// slot the view waits on, or the device gone from its slot.
func (v *deviceView) slotChanged(s localapi.Slot) {
	switch {
	case v.device != "" && s.Device == v.device:
		// The device, where it is now.
		v.slot, v.here, v.cur = s.Name, true, s
	case s.Name != v.slot:
		return
	case v.device == "":
		// Opened on a slot with no device yet: the first device it
		// shows is the view's.
		v.device, v.here, v.cur = s.Device, true, s
	case s.Device == "" && s.Status == localapi.SlotReady && v.here && v.cur.Status == localapi.SlotReady:
		// Not started yet: still the slot as it was.
		v.cur = s
	default:
		if !v.here {
			return
		}
		// The slot shows another board, or none: the device left.
		v.here = false
	}
	v.show()
	v.setControls()
	key := fmt.Sprint(v.here, v.cur.Status, v.cur.Step, v.cur.Reason)
	if key != v.logKey {
		v.logKey = key
		v.loadLog()
	}
}

// show draws what the view knows of its device.
func (v *deviceView) show() {
	title := "Device " + v.device
	if v.device == "" {
		title = "Slot " + v.slot
	} else if v.slot != "" {
		title += "  ·  slot " + v.slot
	}
	if v.title.Text != title {
		v.title.Text = title
		v.title.Refresh()
	}
	s := v.cur
	words, bg, fg := statusWords(s), colorEmpty, colorTextLight
	if s.Status != "" {
		bg, fg = statusColors(s.Status)
	}
	if !v.here && v.device != "" {
		words = "NO LONGER IN ITS SLOT — last seen " + statusWords(s)
		bg, fg = colorEmpty, colorTextLight
	}
	if v.statusBg.FillColor != bg {
		v.statusBg.FillColor = bg
		v.statusBg.Refresh()
	}
	if v.status.Text != words || v.status.Color != fg {
		v.status.Text, v.status.Color = words, fg
		v.status.Refresh()
	}
	var parts []string
	if v.device == "" {
		parts = append(parts, "No device in this slot yet.")
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
	if !v.here && v.device != "" {
		if v.slot == "" {
			info = "This board is in no slot now. Its log is below." + "\n" + info
		} else {
			info = "This board is no longer in slot " + v.slot + ". Its log is below." + "\n" + info
		}
	}
	if v.info.Text != info {
		v.info.SetText(info)
	}
	if v.device != "" && v.here && v.labelFor != v.device && (s.Status == localapi.SlotPassed) {
		v.labelFor = v.device
		v.loadLabel()
	}
}

// setControls enables the slot's commands the daemon takes now, while the
// view's device is in its slot.
func (v *deviceView) setControls() {
	c := v.k.connected
	can := v.cur.Can
	if !v.here || v.slot == "" {
		no := localapi.Allowed{Why: "the board is no longer in its slot"}
		can = localapi.SlotCommands{Retry: no, Skip: no, Override: no, Reprint: no}
	}
	v.retry.set(can.Retry, c)
	v.skip.set(can.Skip, c)
	v.reprint.set(can.Reprint, c)
	v.override.set(can.Override, c)
	if c && v.reloadBtn.Disabled() {
		v.reloadBtn.Enable()
	} else if !c && !v.reloadBtn.Disabled() {
		v.reloadBtn.Disable()
	}
}

// askOverride asks the supervisor's PIN or badge to accept the device,
// with the reason typed.
func (v *deviceView) askOverride() {
	k, slot := v.k, v.slot
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
}

// act runs a slot command on the device's slot; the note says how it
// went.
func (v *deviceView) act(title, done string, f func(ctx context.Context, slot string) (localapi.State, error)) {
	v.note.SetText("…")
	k, slot := v.k, v.slot
	k.commandWith(title, errorWords, func(ctx context.Context) (localapi.State, error) { return f(ctx, slot) }, func() {
		if k.dev == v {
			v.note.SetText(done)
			v.loadLog()
		}
	})
}

// loadLabel fetches the preview of the device's label.
func (v *deviceView) loadLabel() {
	k, device, slot := v.k, v.device, v.slot
	k.spawn(func() {
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
	})
}

// loadLog fetches the device's log; one read at a time, and one more if
// the device changed meanwhile.
func (v *deviceView) loadLog() {
	k, device := v.k, v.device
	if device == "" {
		v.log = nil
		v.list.Refresh()
		return
	}
	if v.logBusy {
		v.logAgain = true
		return
	}
	v.logBusy = true
	k.spawn(func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		lines, err := k.api.DeviceLog(ctx, device)
		if err != nil {
			k.log.Warn("read a device's log", "hardware_id", device, "err", err)
		}
		k.do(func() {
			v.logBusy = false
			if k.dev != v || v.device != device {
				return
			}
			if v.logAgain {
				v.logAgain = false
				v.loadLog()
			}
			if err != nil {
				if !errors.Is(err, localapi.ErrNotFound) {
					v.note.SetText("Could not read the device's log: " + errorWords(err))
				}
				return
			}
			v.log = lines
			v.list.Refresh()
			if len(lines) > 0 {
				v.list.ScrollToBottom()
			}
		})
	})
}

// logLineWords says one event of a device's log.
func logLineWords(l localapi.LogLine) string {
	s := l.Time.Local().Format("15:04:05") + "  " + l.Step + "  " + strings.ToUpper(l.Status)
	if l.Status == "info" {
		s = l.Time.Local().Format("15:04:05") + "  " + strings.ReplaceAll(l.Step, "_", " ")
	}
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

// qaView searches the journal's devices, opens one on a tap, and writes
// the signed export of the devices it lists to a folder.
type qaView struct {
	k       *Kiosk
	page    fyne.CanvasObject
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

// qaColumns are the table's columns, their widest and their cells: the
// widths follow the values, so that ids and serials show whole.
var qaColumns = []struct {
	name string
	max  float32
	cell func(localapi.DeviceRow) string
}{
	{"Work order", 300, func(r localapi.DeviceRow) string { return r.WorkOrder }},
	{"Device", 420, func(r localapi.DeviceRow) string { return r.Device }},
	{"Serial", 520, func(r localapi.DeviceRow) string { return r.Serial }},
	{"Slot", 120, func(r localapi.DeviceRow) string { return r.Slot }},
	{"Result", 200, func(r localapi.DeviceRow) string {
		if r.Override != "" {
			return r.Result + ", overridden"
		}
		return r.Result
	}},
	{"Operator", 220, func(r localapi.DeviceRow) string { return r.Operator }},
	{"Runs", 90, func(r localapi.DeviceRow) string { return fmt.Sprint(r.Attempts) }},
	{"Last", 260, func(r localapi.DeviceRow) string { return r.Last.Local().Format("2006-01-02 15:04") }},
	{"Error or override", 600, func(r localapi.DeviceRow) string {
		if r.Override != "" {
			return "accepted by " + r.Override
		}
		return r.LastError
	}},
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
	v.msg.Wrapping = fyne.TextWrapWord
	v.wo.SetPlaceHolder("Work order")
	v.device.SetPlaceHolder("Device id or serial")
	v.result = widget.NewSelect(v.results, nil)
	v.result.SetSelected(anyResult)
	if k.workOrder != "" {
		v.wo.SetText(k.workOrder)
	}
	v.wo.OnSubmitted = func(string) { v.runSearch() }
	v.device.OnSubmitted = func(string) { v.runSearch() }
	v.search = widget.NewButton("Search", v.runSearch)
	v.search.Importance = widget.HighImportance
	v.back = widget.NewButton("Back", k.showMain)
	v.table = widget.NewTableWithHeaders(
		func() (int, int) { return len(v.rows), len(qaColumns) },
		func() fyne.CanvasObject { return widget.NewLabel("") },
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
	v.table.OnSelected = func(id widget.TableCellID) {
		v.table.UnselectAll()
		if id.Row >= 0 && id.Row < len(v.rows) {
			k.openDeviceID(v.rows[id.Row].Device, v.show)
		}
	}
	v.fitColumns()
	dir := k.opts.ExportDir
	if dir == "" {
		if h, err := os.UserHomeDir(); err == nil {
			dir = h
		}
	}
	v.path.SetText(dir)
	v.export = widget.NewButton("Export (signed)", v.runExport)
	v.export.Importance = widget.HighImportance
	v.choose = widget.NewButton("Choose folder…", v.chooseFolder)

	btn := func(b *widget.Button) fyne.CanvasObject { return sized(b, 220, 70) }
	filters := container.NewBorder(nil, nil, nil, container.NewHBox(sized(v.result, 240, 70), btn(v.search), btn(v.back)),
		container.NewGridWithColumns(2, sized(v.wo, 0, 70), sized(v.device, 0, 70)))
	exports := container.NewBorder(nil, nil, text("Export into", 24, true), container.NewHBox(btn(v.choose), btn(v.export)), sized(v.path, 0, 70))
	top := container.NewVBox(text("Devices", 40, true), filters, v.count)
	bottom := container.NewVBox(exports, v.msg)
	v.page = container.NewPadded(container.NewBorder(top, bottom, nil, nil, v.table))
	v.show()
	v.runSearch()
}

// show shows the QA view again (back from a device).
func (v *qaView) show() {
	k := v.k
	k.dev, k.qa = nil, v
	k.showPage(v.page)
}

// fitColumns sizes the columns to their widest value, up to their most.
func (v *qaView) fitColumns() {
	st := fyne.TextStyle{}
	size := fyne.CurrentApp().Settings().Theme().Size("text")
	pad := 2 * fyne.CurrentApp().Settings().Theme().Size("innerPadding")
	for i, c := range qaColumns {
		w := fyne.MeasureText(c.name, size, fyne.TextStyle{Bold: true}).Width
		for _, r := range v.rows {
			w = max(w, fyne.MeasureText(c.cell(r), size, st).Width)
		}
		v.table.SetColumnWidth(i, min(w+pad+4, c.max))
	}
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
	k.spawn(func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		rows, err := k.api.Devices(ctx, q)
		if err != nil {
			k.log.Warn("QA search", "err", err)
		}
		k.do(func() {
			if k.qa != v {
				return
			}
			if err != nil {
				v.count.SetText("Could not search: " + errorWords(err))
				return
			}
			v.rows = rows
			v.fitColumns()
			v.table.Refresh()
			v.count.SetText(fmt.Sprintf("%d devices: tap one to open it", len(rows)))
		})
	})
}

// chooseFolder picks the folder the export goes into.
func (v *qaView) chooseFolder() {
	d := dialog.NewFolderOpen(func(u fyne.ListableURI, err error) {
		if err != nil || u == nil {
			return
		}
		v.path.SetText(u.Path())
	}, v.k.win)
	d.Resize(fyne.NewSize(1100, 700))
	d.Show()
}

// runExport writes the signed export of the listed devices (station
// export's, made by the daemon) into a new folder inside the folder
// chosen.
func (v *qaView) runExport() {
	k, q, dir := v.k, v.query(), expandHome(strings.TrimSpace(v.path.Text))
	if dir == "" {
		v.msg.SetText("Choose the folder to export into.")
		return
	}
	name := "station-export"
	if q.WorkOrder != "" {
		name += "-" + safeName(q.WorkOrder)
	}
	out := filepath.Join(dir, name+"-"+time.Now().Format("20060102-150405"))
	v.msg.SetText("Exporting…")
	v.export.Disable()
	k.spawn(func() {
		n, err := exportSigned(k.runCtx(), k.api, q, out)
		if err != nil {
			k.log.Warn("export failed", "folder", out, "err", err)
		} else {
			k.log.Info("exported", "folder", out, "files", n)
		}
		k.do(func() {
			v.export.Enable()
			if err != nil {
				v.msg.SetText("Export failed: " + exportErrorWords(err))
				return
			}
			v.msg.SetText(fmt.Sprintf("Signed export written to %s (%d files). QA checks it with: station export verify %s", out, n, out))
		})
	})
}

// exportErrorWords says why an export failed: the daemon's, or the
// folder's.
func exportErrorWords(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return "the folder cannot be written (" + pe.Op + " " + pe.Path + "): choose another one, or plug the USB stick in again."
	}
	return errorWords(err)
}

// exportSigned unpacks the daemon's signed export into the new folder
// out, and returns how many files it holds; a failed export leaves no
// folder behind.
func exportSigned(ctx context.Context, api API, q localapi.DeviceQuery, out string) (n int, err error) {
	if err := os.Mkdir(out, 0o755); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(out)
		}
	}()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := api.ExportSigned(ctx, q, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	n, err = untar(pr, out)
	pr.CloseWithError(errors.New("export unpacked"))
	if derr := <-done; derr != nil {
		return n, derr
	}
	return n, err
}

// untar writes the regular files and folders of a tar stream under dir;
// a path that would leave dir is refused.
func untar(r io.Reader, dir string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read the export: %w", err)
		}
		name := path.Clean(h.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return n, fmt.Errorf("the export holds a path outside its folder: %q", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return n, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return n, err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return n, err
			}
			_, err = io.Copy(f, tr)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return n, err
			}
			n++
		}
	}
}

// safeName keeps a work order id fit for a folder's name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
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
