package dms

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// Device is what the DMS knows of one device.
type Device struct {
	// HardwareID is the identity read from the chip.
	HardwareID flasher.HardwareID `json:"hardware_id"`
	// Serial is the serial number the DMS assigned in Product.
	Serial string `json:"serial"`
	// Product is the code of the product the device is activated to.
	Product string `json:"product"`
	// Locked reports that the device is locked to Product for good.
	Locked bool `json:"locked"`
	// FirmwareVersion is the last bundle version recorded for it.
	FirmwareVersion string `json:"firmware_version,omitempty"`
	// Activated is when it was activated to Product.
	Activated time.Time `json:"activated"`
	// Updated is its last change.
	Updated time.Time `json:"updated"`
	// History is everything that happened to it, oldest first. Only
	// Device fills it.
	History []DeviceEvent `json:"history,omitempty"`
}

// EventKind says what happened to a device.
type EventKind string

// Kinds of device events.
const (
	// EventActivated: first activated, to Product, as Serial.
	EventActivated EventKind = "activated"
	// EventReactivated: moved from a development product to Product;
	// Detail names the product it left.
	EventReactivated EventKind = "reactivated"
	// EventClaimed: a claim of Token, or a place on PurchaseOrder, was
	// used for it.
	EventClaimed EventKind = "claimed"
	// EventFlashed: WorkOrder wrote FirmwareVersion to it.
	EventFlashed EventKind = "flashed"
	// EventLocked: locked to Product, by activation or by WorkOrder.
	EventLocked EventKind = "locked"
	// EventDone: WorkOrder completed it.
	EventDone EventKind = "done"
)

// DeviceEvent is one entry of a device's history. Token is a token's id,
// never its secret.
type DeviceEvent struct {
	Time            time.Time `json:"time"`
	Kind            EventKind `json:"kind"`
	Product         string    `json:"product"`
	Serial          string    `json:"serial,omitempty"`
	WorkOrder       string    `json:"work_order,omitempty"`
	Token           string    `json:"token,omitempty"`
	PurchaseOrder   string    `json:"purchase_order,omitempty"`
	FirmwareVersion string    `json:"firmware_version,omitempty"`
	Station         string    `json:"station,omitempty"`
	Detail          string    `json:"detail,omitempty"`
}

// Claim activates the device hw to product with an activation token, as
// Activate does, outside any work order.
func (s *Service) Claim(ctx context.Context, product string, token jobs.Secret, hw flasher.HardwareID, firmwareVersion, station string) (jobs.Activation, error) {
	return s.Activate(ctx, jobs.ActivateRequest{
		Product: product, HardwareID: hw, FirmwareVersion: firmwareVersion, Token: token, Station: station,
	})
}

// Activate claims the device req.HardwareID for req.Product, authorized
// by a token or a purchase order, and returns its serial number. In one
// transaction it applies the rules:
//
//   - under a work order (req.WorkOrder), the product must be the work
//     order's (ErrInvalid) and the authorization the work order's own: the
//     token it names (jobs.ErrTokenInvalid) or its purchase order
//     (ErrPurchaseOrderInvalid), checked before anything is written; a
//     request under no work order (an admin's, a device's claim) may
//     carry any token or purchase order of the product;
//   - the token must be known and for this product (jobs.ErrTokenInvalid),
//     not revoked (jobs.ErrTokenRevoked), not expired (jobs.ErrTokenExpired);
//     a purchase order must be known and for this product
//     (ErrPurchaseOrderInvalid);
//   - the firmware version, if given, must be a bundle of the product;
//   - a device already activated to the product is served again without
//     a second claim (Activation.Repeat), even if the product is archived
//     or the token spent: newer bundles of its product are what a locked
//     device may receive;
//   - a device locked to another product is refused
//     (jobs.ErrLockedElsewhere); one on a development product and not
//     locked is re-activated, with a claim of the new authorization;
//   - an archived product takes no new device (jobs.ErrArchived);
//   - the token must have a claim left (jobs.ErrTokenSpent), the purchase
//     order room for one more device (ErrPurchaseOrderFilled);
//   - activation to a production product, or under a purchase order,
//     locks the device.
//
// The serial number is "<product code>-<6-digit counter>", counted per
// product, and stays the device's in that product for good.
func (s *Service) Activate(ctx context.Context, req jobs.ActivateRequest) (jobs.Activation, error) {
	var act jobs.Activation
	var ev DeviceEvent
	err := s.Store.update(ctx, func(t *tx) error {
		var err error
		act, ev, err = s.activate(ctx, t, req)
		return err
	})
	if err != nil {
		return jobs.Activation{}, fmt.Errorf("activate device %s for %s: %w", req.HardwareID, req.Product, err)
	}
	s.log().Info("device activated", "hardware_id", req.HardwareID, "product", req.Product, "serial", act.Serial,
		"repeat", act.Repeat, "locked", act.Locked, "token", ev.Token, "purchase_order", ev.PurchaseOrder,
		"claims_left", act.ClaimsLeft, "work_order", req.WorkOrder, "station", req.Station)
	return act, nil
}

func (s *Service) activate(ctx context.Context, t *tx, req jobs.ActivateRequest) (jobs.Activation, DeviceEvent, error) {
	hw := req.HardwareID
	ev := DeviceEvent{Product: req.Product, WorkOrder: req.WorkOrder, FirmwareVersion: req.FirmwareVersion, Station: req.Station}
	if err := checkHardwareID(hw); err != nil {
		return jobs.Activation{}, ev, err
	}
	if err := checkName("firmware_version", req.FirmwareVersion, jobs.MaxNameLen); err != nil {
		return jobs.Activation{}, ev, err
	}
	hasToken, hasPO := !req.Token.IsZero(), req.PurchaseOrder != ""
	switch {
	case hasToken && hasPO:
		return jobs.Activation{}, ev, fail(ErrInvalid, "the request names both a token and a purchase order: give exactly one")
	case !hasToken && !hasPO:
		return jobs.Activation{}, ev, fail(jobs.ErrTokenInvalid, "the request has no activation token or purchase order: the work order must give one")
	}
	now := s.now()
	ev.Time = now
	p, err := productOrFail(ctx, t, req.Product)
	if err != nil {
		return jobs.Activation{}, ev, err
	}
	if req.WorkOrder != "" {
		if err := s.checkWorkOrderAuthorization(ctx, t, req, p.Code); err != nil {
			return jobs.Activation{}, ev, err
		}
	}

	// Who authorizes the claim.
	var tok tokenRow
	if hasToken {
		if tok, err = s.checkToken(ctx, t, p.Code, req.Token, now); err != nil {
			return jobs.Activation{}, ev, err
		}
		ev.Token = tok.ID
	} else {
		po, err := t.purchaseOrder(ctx, req.PurchaseOrder)
		if isNoRows(err) {
			return jobs.Activation{}, ev, fail(ErrPurchaseOrderInvalid, "purchase order %s is not known to the DMS: check the work order", req.PurchaseOrder)
		} else if err != nil {
			return jobs.Activation{}, ev, err
		}
		if po.Product != p.Code {
			return jobs.Activation{}, ev, fail(ErrPurchaseOrderInvalid, "purchase order %s is for product %s, not %s: check the work order", po.ID, po.Product, p.Code)
		}
		ev.PurchaseOrder = po.ID
	}
	claimsLeft := func() int {
		if hasToken {
			return tok.Left
		}
		return -1
	}

	// Only the product's own bundles may be activated.
	if req.FirmwareVersion != "" {
		ok, err := t.bundleExists(ctx, p.Code, req.FirmwareVersion)
		if err != nil {
			return jobs.Activation{}, ev, err
		}
		if !ok {
			return jobs.Activation{}, ev, fail(jobs.ErrNotFound, "product %s has no bundle %s: only firmware the DMS holds for the product may be activated", p.Code, req.FirmwareVersion)
		}
	}
	lock := p.Stage == jobs.StageProduction || hasPO

	dev, err := t.device(ctx, hw)
	known := err == nil
	if err != nil && !isNoRows(err) {
		return jobs.Activation{}, ev, err
	}

	// The same device for the same product: served again, no claim.
	if known && dev.Product == p.Code {
		ev.Serial = dev.Serial
		if err := s.serveAgain(ctx, t, &dev, ev, lock); err != nil {
			return jobs.Activation{}, ev, err
		}
		return jobs.Activation{Serial: dev.Serial, Locked: dev.Locked, Repeat: true, ClaimsLeft: claimsLeft()}, ev, nil
	}
	if known && dev.Locked {
		return jobs.Activation{}, ev, fail(jobs.ErrLockedElsewhere, "device %s is locked to product %s (serial %s) and can never be activated to %s: set this device aside",
			hw, dev.Product, dev.Serial, p.Code)
	}
	if p.Archived {
		return jobs.Activation{}, ev, fail(jobs.ErrArchived, "product %s is archived and takes no new devices: ask your administrator", p.Code)
	}

	// Use the claim.
	if hasToken {
		ok, err := t.useClaim(ctx, tok.ID)
		if err != nil {
			return jobs.Activation{}, ev, err
		}
		if !ok {
			return jobs.Activation{}, ev, fail(jobs.ErrTokenSpent, "activation token %s has no claims left (%d of %d used): ask your administrator for a new token",
				tok.ID, tok.Used, tok.MaxClaims)
		}
		tok.Used++
		tok.Left--
	} else {
		ok, err := t.registerOnOrder(ctx, req.PurchaseOrder)
		if err != nil {
			return jobs.Activation{}, ev, err
		}
		if !ok {
			po, err := t.purchaseOrder(ctx, req.PurchaseOrder)
			if err != nil {
				return jobs.Activation{}, ev, err
			}
			return jobs.Activation{}, ev, fail(ErrPurchaseOrderFilled, "purchase order %s is filled (%d of %d devices registered): ask your administrator to raise its quantity or enter a new order",
				po.ID, po.Registered, po.Quantity)
		}
	}

	// The serial: the one the device had in this product before, or the
	// product's next.
	serial, err := t.serialOf(ctx, p.Code, hw)
	newSerial := isNoRows(err)
	if newSerial {
		n, err := t.nextSerial(ctx, p.Code)
		if err != nil {
			return jobs.Activation{}, ev, fmt.Errorf("number device: %w", err)
		}
		serial = fmt.Sprintf("%s-%06d", p.Code, n)
	} else if err != nil {
		return jobs.Activation{}, ev, err
	}
	ev.Serial = serial

	from := dev
	dev = Device{HardwareID: hw, Serial: serial, Product: p.Code, Locked: lock, FirmwareVersion: req.FirmwareVersion, Activated: now, Updated: now}
	first := ev
	if known {
		err = t.updateDevice(ctx, dev)
		first.Kind = EventReactivated
		first.Detail = fmt.Sprintf("from development product %s (serial %s)", from.Product, from.Serial)
	} else {
		err = t.insertDevice(ctx, dev)
		first.Kind = EventActivated
	}
	if err != nil {
		return jobs.Activation{}, ev, fmt.Errorf("record device: %w", err)
	}
	if newSerial {
		if err := t.insertSerial(ctx, p.Code, hw, serial); err != nil {
			return jobs.Activation{}, ev, fmt.Errorf("record serial %s: %w", serial, err)
		}
	}
	claimed := ev
	claimed.Kind = EventClaimed
	if hasToken {
		claimed.Detail = fmt.Sprintf("claim %d of %d", tok.Used, tok.MaxClaims)
	}
	events := []DeviceEvent{first, claimed}
	if ev.WorkOrder != "" && ev.FirmwareVersion != "" {
		flashed := ev
		flashed.Kind = EventFlashed
		events = append(events, flashed)
	}
	if lock {
		locked := ev
		locked.Kind = EventLocked
		locked.Detail = lockReason(p.Stage, hasPO)
		events = append(events, locked)
	}
	for _, e := range events {
		if err := t.insertEvent(ctx, hw, e); err != nil {
			return jobs.Activation{}, ev, fmt.Errorf("record device history: %w", err)
		}
	}
	return jobs.Activation{Serial: serial, Locked: lock, ClaimsLeft: claimsLeft()}, ev, nil
}

// checkWorkOrderAuthorization checks that the activation req, made
// under its work order, makes the work order's product and carries the
// work order's own authorization: the activation token the work order
// names (jobs.ErrTokenInvalid otherwise) or its purchase order
// (ErrPurchaseOrderInvalid otherwise). A token is told from another by
// its hash, so that the refusal names the work order's token by id and
// says nothing of the token carried.
func (s *Service) checkWorkOrderAuthorization(ctx context.Context, t *tx, req jobs.ActivateRequest, product string) error {
	w, err := workOrderOrFail(ctx, t, req.WorkOrder)
	if err != nil {
		return err
	}
	if w.Product != product {
		return fail(ErrInvalid, "work order %s makes product %s, not %s: an activation under a work order names the work order's product", w.ID, w.Product, product)
	}
	if w.TokenID == "" {
		switch {
		case !req.Token.IsZero():
			return fail(ErrPurchaseOrderInvalid, "work order %s is authorized by purchase order %s; the request carried an activation token instead: activate its devices under purchase order %s",
				w.ID, w.PurchaseOrder, w.PurchaseOrder)
		case req.PurchaseOrder != w.PurchaseOrder:
			return fail(ErrPurchaseOrderInvalid, "work order %s is authorized by purchase order %s; the request carried purchase order %s: activate its devices under purchase order %s",
				w.ID, w.PurchaseOrder, req.PurchaseOrder, w.PurchaseOrder)
		}
		return nil
	}
	if req.Token.IsZero() {
		return fail(jobs.ErrTokenInvalid, "work order %s is authorized by activation token %s; the request carried purchase order %s instead: give the station the work order's token",
			w.ID, w.TokenID, req.PurchaseOrder)
	}
	tok, err := tokenOrFail(ctx, t, w.TokenID)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(s.hash(req.Token.Reveal())), []byte(tok.hash)) != 1 {
		return fail(jobs.ErrTokenInvalid, "work order %s is authorized by activation token %s; the request carried another token: give the station the work order's token (%s)",
			w.ID, w.TokenID, w.TokenID)
	}
	return nil
}

func lockReason(stage jobs.Stage, purchaseOrder bool) string {
	if stage == jobs.StageProduction {
		return "activated to a production product"
	}
	if purchaseOrder {
		return "registered under a purchase order"
	}
	return ""
}

// serveAgain records a repeat activation of a device already on its
// product: a new firmware version, a work order that flashed it, a lock
// now due. It uses no claim.
func (s *Service) serveAgain(ctx context.Context, t *tx, dev *Device, ev DeviceEvent, lock bool) error {
	changed := false
	var events []DeviceEvent
	if ev.FirmwareVersion != "" && ev.FirmwareVersion != dev.FirmwareVersion {
		dev.FirmwareVersion = ev.FirmwareVersion
		changed = true
	}
	if ev.WorkOrder != "" && ev.FirmwareVersion != "" {
		last, err := t.lastEvent(ctx, dev.HardwareID, EventFlashed, ev.WorkOrder, dev.Product)
		if err != nil && !isNoRows(err) {
			return err
		}
		if isNoRows(err) || last.FirmwareVersion != ev.FirmwareVersion {
			flashed := ev
			flashed.Kind = EventFlashed
			events = append(events, flashed)
		}
	}
	if lock && !dev.Locked {
		dev.Locked = true
		changed = true
		locked := ev
		locked.Kind = EventLocked
		locked.Detail = "activated again to a production product"
		events = append(events, locked)
	}
	if changed {
		dev.Updated = ev.Time
		if err := t.updateDevice(ctx, *dev); err != nil {
			return fmt.Errorf("record device: %w", err)
		}
	}
	for _, e := range events {
		if err := t.insertEvent(ctx, dev.HardwareID, e); err != nil {
			return fmt.Errorf("record device history: %w", err)
		}
	}
	return nil
}

// activatedTo returns the device hw, which must be activated to product:
// ErrNotActivated if it is not known or is on another product and not
// locked, jobs.ErrLockedElsewhere if it is locked to another product.
func activatedTo(ctx context.Context, t *tx, hw flasher.HardwareID, product string) (Device, error) {
	if err := checkHardwareID(hw); err != nil {
		return Device{}, err
	}
	dev, err := t.device(ctx, hw)
	switch {
	case isNoRows(err):
		return dev, fail(ErrNotActivated, "device %s has not been activated: activate it to %s first", hw, product)
	case err != nil:
		return dev, err
	case dev.Product != product && dev.Locked:
		return dev, fail(jobs.ErrLockedElsewhere, "device %s is locked to product %s (serial %s), not %s: set this device aside", hw, dev.Product, dev.Serial, product)
	case dev.Product != product:
		return dev, fail(ErrNotActivated, "device %s is activated to product %s, not %s: activate it to %s first", hw, dev.Product, product, product)
	}
	return dev, nil
}

// Lock records that the device is locked to its product, by the work
// order req.WorkOrder. The device must be activated to req.Product.
// Locking a locked device records the work order and changes nothing
// else.
func (s *Service) Lock(ctx context.Context, req jobs.LockRequest) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, req.Product); err != nil {
			return err
		}
		dev, err := activatedTo(ctx, t, req.HardwareID, req.Product)
		if err != nil {
			return err
		}
		now := s.now()
		ev := DeviceEvent{Time: now, Kind: EventLocked, Product: dev.Product, Serial: dev.Serial, WorkOrder: req.WorkOrder}
		if !dev.Locked {
			dev.Locked, dev.Updated = true, now
			if err := t.updateDevice(ctx, dev); err != nil {
				return fmt.Errorf("record device: %w", err)
			}
		} else {
			_, err := t.lastEvent(ctx, dev.HardwareID, EventLocked, req.WorkOrder, dev.Product)
			if err == nil {
				return nil
			}
			if !isNoRows(err) {
				return err
			}
			ev.Detail = "already locked"
		}
		return t.insertEvent(ctx, dev.HardwareID, ev)
	})
	if err != nil {
		return fmt.Errorf("lock device %s to %s: %w", req.HardwareID, req.Product, err)
	}
	s.log().Info("device locked", "hardware_id", req.HardwareID, "product", req.Product, "work_order", req.WorkOrder)
	return nil
}

// MarkDone records that the work order workOrder completed the device
// hw, so that a later Preflight for that work order answers Done. The
// device must be activated; marking it twice records it once.
func (s *Service) MarkDone(ctx context.Context, workOrder string, hw flasher.HardwareID) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if err := checkID("work order id", workOrder); err != nil {
			return err
		}
		if err := checkHardwareID(hw); err != nil {
			return err
		}
		dev, err := t.device(ctx, hw)
		if isNoRows(err) {
			return fail(ErrNotActivated, "device %s has not been activated: a device is done only once activated", hw)
		} else if err != nil {
			return err
		}
		if w, err := t.workOrder(ctx, workOrder); err == nil && w.Product != dev.Product {
			return fail(ErrNotActivated, "device %s is activated to product %s, but work order %s makes %s", hw, dev.Product, workOrder, w.Product)
		} else if err != nil && !isNoRows(err) {
			return err
		}
		if _, err := t.lastEvent(ctx, hw, EventDone, workOrder, dev.Product); err == nil {
			return nil
		} else if !isNoRows(err) {
			return err
		}
		return t.insertEvent(ctx, hw, DeviceEvent{
			Time: s.now(), Kind: EventDone, Product: dev.Product, Serial: dev.Serial,
			WorkOrder: workOrder, FirmwareVersion: dev.FirmwareVersion,
		})
	})
	if err != nil {
		return fmt.Errorf("mark device %s done for work order %s: %w", hw, workOrder, err)
	}
	s.log().Info("device done", "hardware_id", hw, "work_order", workOrder)
	return nil
}

// WorkOrderDone returns how many devices the DMS holds as completed by
// work order id (each device once, however often it was marked done),
// on every station.
func (s *Service) WorkOrderDone(ctx context.Context, id string) (int, error) {
	var n int
	err := s.Store.view(ctx, func(t *tx) error {
		w, err := workOrderOrFail(ctx, t, id)
		if err != nil {
			return err
		}
		return t.queryRow(ctx, `SELECT count(DISTINCT hardware_id) FROM device_events
			WHERE work_order = $1 AND kind = $2 AND product = $3`, id, string(EventDone), w.Product).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count the devices work order %s completed: %w", id, err)
	}
	return n, nil
}

// Preflight tells a station what the DMS knows of a device before the
// work order req.WorkOrder writes anything to it. An unknown device may
// go ahead; a device locked to another product, or a new device for an
// archived product, is refused in an operator's words; a device this
// work order already completed is Done, with its serial.
func (s *Service) Preflight(ctx context.Context, req jobs.PreflightRequest) (jobs.Verdict, error) {
	var v jobs.Verdict
	err := s.Store.view(ctx, func(t *tx) error {
		if err := checkHardwareID(req.HardwareID); err != nil {
			return err
		}
		p, err := productOrFail(ctx, t, req.Product)
		if err != nil {
			return err
		}
		if req.WorkOrder != "" {
			w, err := t.workOrder(ctx, req.WorkOrder)
			if err == nil && w.Product != p.Code {
				return fail(ErrInvalid, "work order %s makes product %s, not %s", w.ID, w.Product, p.Code)
			} else if err != nil && !isNoRows(err) {
				return err
			}
		}
		archived := fmt.Sprintf("product %s is archived and takes no new devices; set this device aside", p.Code)
		dev, err := t.device(ctx, req.HardwareID)
		if isNoRows(err) {
			if p.Archived {
				v.Refusal = archived
			}
			return nil
		} else if err != nil {
			return err
		}
		v = jobs.Verdict{Known: true, Product: dev.Product, Locked: dev.Locked, Serial: dev.Serial, FirmwareVersion: dev.FirmwareVersion}
		switch {
		case dev.Product == p.Code:
			if req.WorkOrder == "" {
				return nil
			}
			done, err := t.lastEvent(ctx, req.HardwareID, EventDone, req.WorkOrder, p.Code)
			if err == nil {
				v.Done, v.Serial = true, done.Serial
				return nil
			}
			if !isNoRows(err) {
				return err
			}
		case dev.Locked:
			v.Refusal = fmt.Sprintf("locked to product %s (serial %s); set this device aside", dev.Product, dev.Serial)
		case p.Archived:
			v.Refusal = archived
		}
		return nil
	})
	if err != nil {
		return jobs.Verdict{}, fmt.Errorf("preflight device %s for %s: %w", req.HardwareID, req.Product, err)
	}
	return v, nil
}

// Device returns the device hw with its history.
func (s *Service) Device(ctx context.Context, hw flasher.HardwareID) (Device, error) {
	var d Device
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		d, err = t.device(ctx, hw)
		if isNoRows(err) {
			return fail(jobs.ErrNotFound, "device %s is not known to the DMS", hw)
		} else if err != nil {
			return err
		}
		d.History, err = t.events(ctx, hw)
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("read device %s: %w", hw, err)
	}
	return d, nil
}

// Devices returns the devices activated to product, by serial, without
// their history.
func (s *Service) Devices(ctx context.Context, product string) ([]Device, error) {
	var out []Device
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, product); err != nil {
			return err
		}
		var err error
		out, err = t.devices(ctx, product)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list devices of %s: %w", product, err)
	}
	return out, nil
}
