package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/station/journal"
)

// identify opens the slot's device, reads its identity and decides, from
// the journal, where the device resumes.
func (d *deviceRun) identify(ctx context.Context) (map[string]any, error) {
	r := d.r
	start := time.Now()
	opts := ConnectOptions{Baud: r.WorkOrder.Flasher.Baud, NoCompress: r.WorkOrder.Flasher.NoCompress, Logger: d.log}
	if d.trace != nil {
		opts.Trace = d.trace
	}
	b, err := r.Connector.Connect(ctx, d.spec.Name, opts)
	d.link.Add(int64(time.Since(start)))
	if err != nil {
		return nil, fmt.Errorf("open device: %w", err)
	}
	d.backend = timedBackend{Backend: b, link: &d.link}
	dev, err := d.backend.Identify(ctx)
	data := map[string]any{"chip": dev.Chip}
	if err != nil {
		if !errors.Is(err, flasher.ErrLocked) || dev.HardwareID != "" {
			return data, err
		}
		// The device's protection hides its identity. If the last device
		// this work order saw on this slot got locked by us and is not
		// done yet, it is that device: resume it.
		last, ok, jerr := r.Journal.LastOnSlot(ctx, r.WorkOrder.ID, d.spec.Name)
		if jerr != nil {
			return data, errors.Join(err, jerr)
		}
		if !ok || !slices.Contains(last.Passed, string(StepLock)) || last.Result == "done" {
			return data, fmt.Errorf("%w: its identity cannot be read and this slot has no device of this work order waiting to be finished", err)
		}
		dev.HardwareID = flasher.HardwareID(last.Device)
		data["adopted"] = "identity unreadable because the device is locked; resumed as the last device locked on this slot"
	}
	d.dev, d.hw = dev, dev.HardwareID
	d.res.Device = d.hw
	d.log = d.log.With("hardware_id", d.hw)
	data["hardware_id"] = string(d.hw)
	data["locked"] = dev.Locked
	if dev.FlashSize > 0 {
		data["flash_size"] = dev.FlashSize
	}
	if len(dev.LockState) > 0 {
		data["lock_state"] = dev.LockState
	}

	prior, ok, err := r.Journal.Device(ctx, r.WorkOrder.ID, string(d.hw))
	if err != nil {
		return data, fmt.Errorf("read device history: %w", err)
	}
	if ok {
		d.prior = prior
	}
	if ok && prior.Result == "done" {
		d.serial = prior.Serial
		d.res.Serial = prior.Serial
		d.stop = OutcomeAlreadyDone
		d.res.Message = "already done by this work order (serial " + prior.Serial + "); nothing written or claimed again"
		return data, nil
	}
	t, ok := r.quota.reserve(d.hw)
	if !ok {
		d.stop = OutcomeSkipped
		d.res.Message = fmt.Sprintf("work order %s has reached its quantity of %d; device not started", r.WorkOrder.ID, r.WorkOrder.Quantity)
		return data, nil
	}
	d.reserved, d.ticket = true, t
	d.claimed = d.prior.Attempts[string(StepActivate)] > 0
	d.planResume()
	if len(d.skip) > 0 {
		data["resumed"] = true
	}
	return data, nil
}

// ending says how the device's run ended, for the quota.
func (d *deviceRun) ending() ending {
	switch {
	case d.res.Outcome == OutcomePassed:
		return endPassed
	case d.doneAtDMS && d.res.Outcome == OutcomeAlreadyDone:
		return endDoneAtDMS
	case d.claimed:
		return endClaimed
	}
	return endOther
}

// recordDoneAtDMS journals the device done as the DMS holds it.
func (d *deviceRun) recordDoneAtDMS(ctx context.Context) error {
	ds := journal.DeviceState{Slot: d.spec.Name, Device: string(d.hw), Attempts: d.prior.Attempts}
	return d.r.recordDoneAtDMS(context.WithoutCancel(ctx), ds, d.serial, d.operator)
}

// planResume marks the steps an earlier run already passed, so that this
// run carries on after them. Identify and preflight always run again. A
// failed verify sends the device back to flash.
func (d *deviceRun) planResume() {
	passed := map[string]bool{}
	for _, s := range d.prior.Passed {
		passed[s] = true
	}
	if d.prior.LastStep == string(StepVerify) && d.prior.LastStatus == "failed" {
		delete(passed, string(StepFlash))
		delete(passed, string(StepVerify))
	}
	for _, s := range []Step{StepFlash, StepVerify, StepActivate, StepLock, StepLabel} {
		if !passed[string(s)] {
			// Everything after the first step still to do runs again:
			// steps are idempotent and a later pass may be stale.
			return
		}
		d.skip[s] = "passed in an earlier run"
		if s == StepActivate {
			d.serial = d.prior.Serial
			d.res.Serial = d.serial
		}
	}
}

// preflight asks the DMS about the device and checks that the work order
// can be done on it before anything is written.
func (d *deviceRun) preflight(ctx context.Context) (map[string]any, error) {
	r, wo := d.r, &d.r.WorkOrder
	var v Verdict
	err := d.callDMS("the preflight check", func(ctx context.Context) error {
		var err error
		v, err = r.Upstream.Preflight(ctx, PreflightRequest{WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: d.hw})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ask the DMS about the device: %w", err)
	}
	d.verdict = v
	data := map[string]any{"known": v.Known, "product": v.Product, "locked": v.Locked}
	if v.Serial != "" {
		data["serial"] = v.Serial
	}
	if v.Refusal != "" {
		return data, fmt.Errorf("%w: %s", ErrRefused, v.Refusal)
	}
	if v.Done {
		// The journal records it done next (a kill may have come
		// between the DMS's completion record and the journal's).
		d.serial, d.res.Serial = v.Serial, v.Serial
		d.stop, d.doneAtDMS = OutcomeAlreadyDone, true
		d.res.Message = "already done for this work order (serial " + v.Serial + "), per the DMS; nothing written or claimed again"
		return data, nil
	}
	ours := v.Product == wo.Product.Code
	if d.dev.Locked && !ours && !slices.Contains(d.prior.Passed, string(StepLock)) {
		return data, fmt.Errorf("%w: the device's own protection is already set (%s) but the DMS has not activated it to %s: it was provisioned elsewhere",
			ErrRefused, lockedNames(d.dev.LockState), wo.Product.Code)
	}
	opts := d.backend.LockOptions()
	for _, l := range wo.Lock.Device {
		if !slices.Contains(opts, l) {
			return data, fmt.Errorf("%w: the work order's lock %q is not one this device has (it has %s)", flasher.ErrUnsupported, l, strings.Join(opts, ", "))
		}
	}
	img, ok := r.Images[d.spec.Protocol]
	if !ok {
		return data, fmt.Errorf("%w: bundle %s has no artifact for %s slots", flasher.ErrUnsupported, wo.Bundle.Version, d.spec.Protocol)
	}
	if size := d.dev.FlashSize; size > 0 {
		base := d.dev.FlashBase
		for _, s := range img.Segments {
			if s.Addr < base || s.End() > base+uint64(size) {
				return data, fmt.Errorf("%w: %s (%#x to %#x) is outside the device's %d KiB flash at %#x", flasher.ErrUnsupported, s.Name, s.Addr, s.End(), size>>10, base)
			}
		}
	}
	return data, nil
}

func lockedNames(state map[string]bool) string {
	var names []string
	for n, on := range state {
		if on {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "device protection"
	}
	return strings.Join(names, ", ")
}

// flash writes the image.
func (d *deviceRun) flash(ctx context.Context) (map[string]any, error) {
	img := d.r.Images[d.spec.Protocol]
	total := img.Size()
	start := time.Now()
	err := d.backend.Flash(ctx, img, func(done, total int64) {
		d.r.Bus.Update(d.spec.Name, func(s *SlotState) { s.Done, s.Total = done, total })
	})
	secs := time.Since(start).Seconds()
	data := map[string]any{"bytes": total, "segments": len(img.Segments), "seconds": secs,
		"firmware_version": d.r.WorkOrder.Bundle.Version}
	// What was written, for QA's export: the sha256 of each artifact
	// this slot's protocol flashes.
	var sums []string
	for _, a := range d.r.WorkOrder.Bundle.Artifacts {
		if a.Target == d.spec.Protocol {
			sums = append(sums, a.SHA256)
		}
	}
	data["image_sha256"] = strings.Join(sums, "+")
	if secs > 0 {
		data["bytes_per_second"] = float64(total) / secs
	}
	return data, err
}

// verify checks that the device holds the image.
func (d *deviceRun) verify(ctx context.Context) (map[string]any, error) {
	img := d.r.Images[d.spec.Protocol]
	return map[string]any{"bytes": img.Size()}, d.backend.Verify(ctx, img)
}

// activate claims the device for the product.
func (d *deviceRun) activate(ctx context.Context) (map[string]any, error) {
	wo := &d.r.WorkOrder
	// The claim may spend a token: the journal holds its intent first.
	if err := d.durable(); err != nil {
		return nil, err
	}
	var a Activation
	err := d.callDMS("activation", func(ctx context.Context) error {
		var err error
		a, err = d.r.Upstream.Activate(ctx, ActivateRequest{
			WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: d.hw, FirmwareVersion: wo.Bundle.Version,
			Token: wo.Authorization.Token, PurchaseOrder: wo.Authorization.PurchaseOrder, Station: d.r.Station,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("activate with the DMS: %w", err)
	}
	d.serial, d.res.Serial = a.Serial, a.Serial
	d.r.Bus.Update(d.spec.Name, func(s *SlotState) { s.Serial = a.Serial })
	data := map[string]any{"serial": a.Serial, "repeat": a.Repeat, "locked": a.Locked, "claims_left": a.ClaimsLeft}
	// The claim is read back: the DMS must now hold the device as this
	// product's, under the serial it gave.
	v, err := d.readBack("the activation")
	if err != nil {
		return data, err
	}
	data["dms_read_back"] = dmsReading(v)
	if v.Product != wo.Product.Code || v.Serial != a.Serial {
		return data, fmt.Errorf("%w: the DMS answered the activation with serial %s, but reads the device back as product %q serial %q",
			ErrReadBack, a.Serial, v.Product, v.Serial)
	}
	return data, nil
}

// readBack asks the DMS what it now holds for the device.
func (d *deviceRun) readBack(what string) (Verdict, error) {
	wo := &d.r.WorkOrder
	var v Verdict
	err := d.callDMS("the read-back of "+what, func(ctx context.Context) error {
		var err error
		v, err = d.r.Upstream.Preflight(ctx, PreflightRequest{WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: d.hw})
		return err
	})
	if err != nil {
		return v, fmt.Errorf("read %s back from the DMS: %w", what, err)
	}
	return v, nil
}

// dmsReading is what the journal keeps of a DMS read-back.
func dmsReading(v Verdict) map[string]any {
	return map[string]any{"product": v.Product, "serial": v.Serial, "locked": v.Locked}
}

// lock protects the device itself and records the lock upstream. The
// journal keeps what the device read back (lock_state, read_back) where
// the backend reports it, next to what was asked (device).
func (d *deviceRun) lock(ctx context.Context) (map[string]any, error) {
	wo := &d.r.WorkOrder
	data := map[string]any{"device": wo.Lock.Device, "dms": wo.LocksDMS()}
	// The device's own label must render before it is locked: a device
	// locked and then failed at its label is lost to the line.
	if c, ok := d.r.Printer.(labelChecker); ok {
		if err := c.Check(d.r.labelFor(d.serial, d.hw, d.spec.Name)); err != nil {
			return data, fmt.Errorf("%w: its label cannot be printed, so it is not locked: %w", flasher.ErrUnsupported, err)
		}
	}
	// The locks cannot be taken back: the journal holds their intent
	// and the serial first.
	if err := d.durable(); err != nil {
		return data, err
	}
	if len(wo.Lock.Device) > 0 {
		err := d.backend.Lock(ctx, wo.Lock.Device)
		if rep, ok := flasher.ReportLock(d.backend); ok && rep.State != nil {
			data["lock_state"] = rep.State
			if len(rep.ReadBack) > 0 {
				data["read_back"] = rep.ReadBack
			}
		}
		if err != nil {
			return data, fmt.Errorf("lock the device: %w", err)
		}
	}
	if wo.LocksDMS() {
		if err := d.callDMS("the lock record", func(ctx context.Context) error {
			return d.r.Upstream.Lock(ctx, LockRequest{WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: d.hw})
		}); err != nil {
			return data, fmt.Errorf("record the lock with the DMS: %w", err)
		}
		v, err := d.readBack("the lock record")
		if err != nil {
			return data, err
		}
		data["dms_read_back"] = dmsReading(v)
		if !v.Locked || v.Product != wo.Product.Code {
			return data, fmt.Errorf("%w: the DMS acknowledged the lock, but reads the device back as product %q, locked %t", ErrReadBack, v.Product, v.Locked)
		}
	}
	return data, nil
}

// labelFor is the label of the device with serial and hw in slot.
func (r *Runner) labelFor(serial string, hw flasher.HardwareID, slot string) Label {
	wo := &r.WorkOrder
	l := Label{
		Template: wo.Label.Template, Copies: max(wo.Label.Copies, 1), WorkOrder: wo.ID,
		Product: wo.Product.Code, ProductName: wo.Product.Name, PartNumber: wo.Product.PartNumber,
		Serial: serial, HardwareID: hw, FirmwareVersion: wo.Bundle.Version,
		Date: time.Now().UTC(), Station: r.Station, Slot: slot,
	}
	if l.Template == "" {
		l.Template = "default"
	}
	return l
}

// label prints the device's label, one printer job at a time.
func (d *deviceRun) label(ctx context.Context) (map[string]any, error) {
	if d.serial == "" {
		return nil, errors.New("no serial number: the device was not activated")
	}
	if err := d.r.printer.Acquire(ctx, 1); err != nil {
		return nil, fmt.Errorf("wait for the printer: %w", err)
	}
	defer d.r.printer.Release(1)
	l := d.r.labelFor(d.serial, d.hw, d.spec.Name)
	// A printer out of paper, open or paused holds the label: the slot
	// says why and the label prints when the printer is back.
	if err := d.outlast("the label printer", ErrPrinterUnavailable, "the label", func(ctx context.Context) error {
		return d.r.Printer.Print(ctx, l)
	}); err != nil {
		return nil, fmt.Errorf("print label: %w", err)
	}
	return map[string]any{"serial": d.serial, "template": l.Template, "copies": l.Copies}, nil
}

// finish restarts the device into its application and checks that it
// boots the version just written.
func (d *deviceRun) finish(ctx context.Context) (map[string]any, error) {
	want := d.r.WorkOrder.Bundle.Version
	banner, err := d.backend.Reset(ctx)
	data := map[string]any{"serial": d.serial}
	if banner != "" {
		data["banner"] = banner
	}
	if err != nil {
		return data, fmt.Errorf("restart the device: %w", err)
	}
	if banner != "" && !strings.Contains(banner, want) {
		return data, fmt.Errorf("%w: the device booted firmware %q, not %s", flasher.ErrVerify, banner, want)
	}
	// The DMS keeps the completion: the journal holds the device's
	// label and this step's intent first. They were written while the
	// device restarted.
	if err := d.durable(); err != nil {
		return data, err
	}
	if err := d.callDMS("the completion record", func(ctx context.Context) error {
		return d.r.Upstream.Complete(ctx, CompleteRequest{WorkOrder: d.r.WorkOrder.ID, HardwareID: d.hw, Serial: d.serial})
	}); err != nil {
		return data, fmt.Errorf("record the device as done with the DMS: %w", err)
	}
	return data, nil
}
