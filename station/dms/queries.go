package dms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// This file holds the store's SQL: one small function per statement, on a
// transaction. A missing row is sql.ErrNoRows, for the Service to turn
// into words. No rule is decided here.

// Customers.

func (t *tx) insertCustomer(ctx context.Context, c Customer, now string) error {
	_, err := t.exec(ctx, "INSERT INTO customers (id, name, created) VALUES ($1, $2, $3)", c.ID, c.Name, now)
	return err
}

func (t *tx) customer(ctx context.Context, id string) (Customer, error) {
	var c Customer
	err := t.queryRow(ctx, "SELECT id, name FROM customers WHERE id = $1", id).Scan(&c.ID, &c.Name)
	return c, err
}

// Products.

const productColumns = "code, name, part_number, stage, archived, coalesce(customer, ''), created"

func scanProduct(row interface{ Scan(...any) error }) (ProductInfo, error) {
	var p ProductInfo
	var archived int
	var created string
	if err := row.Scan(&p.Code, &p.Name, &p.PartNumber, &p.Stage, &archived, &p.Customer, &created); err != nil {
		return p, err
	}
	p.Archived = archived != 0
	var err error
	p.Created, err = parseTime(created)
	return p, err
}

func (t *tx) insertProduct(ctx context.Context, p jobs.Product, customer, now string) error {
	_, err := t.exec(ctx, `INSERT INTO products (code, name, part_number, stage, archived, customer, created)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		p.Code, p.Name, p.PartNumber, string(p.Stage), boolInt(p.Archived), sql.NullString{String: customer, Valid: customer != ""}, now)
	return err
}

// product reads a product with its device count.
func (t *tx) product(ctx context.Context, code string) (ProductInfo, error) {
	p, err := scanProduct(t.queryRow(ctx, "SELECT "+productColumns+" FROM products WHERE code = $1"+t.forUpdate(), code))
	if err != nil {
		return p, err
	}
	p.Devices, err = t.countDevices(ctx, code)
	return p, err
}

func (t *tx) products(ctx context.Context) ([]ProductInfo, error) {
	rows, err := t.query(ctx, "SELECT "+productColumns+" FROM products ORDER BY code")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ProductInfo
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Devices, err = t.countDevices(ctx, out[i].Code); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *tx) updateProduct(ctx context.Context, p jobs.Product) error {
	_, err := t.exec(ctx, "UPDATE products SET name = $1, part_number = $2, stage = $3, archived = $4 WHERE code = $5",
		p.Name, p.PartNumber, string(p.Stage), boolInt(p.Archived), p.Code)
	return err
}

// lockProductDevices locks every device of the product that is not
// locked yet, with a history entry each.
func (t *tx) lockProductDevices(ctx context.Context, code, now, detail string) error {
	if _, err := t.exec(ctx, `INSERT INTO device_events (hardware_id, time, kind, product, serial, detail)
		SELECT hardware_id, $1, 'locked', product, serial, $2 FROM devices WHERE product = $3 AND locked = 0`,
		now, detail, code); err != nil {
		return err
	}
	_, err := t.exec(ctx, "UPDATE devices SET locked = 1, updated = $1 WHERE product = $2 AND locked = 0", now, code)
	return err
}

func (t *tx) deleteProduct(ctx context.Context, code string) error {
	_, err := t.exec(ctx, "DELETE FROM products WHERE code = $1", code)
	return err
}

// nextSerial takes the product's next serial number counter.
func (t *tx) nextSerial(ctx context.Context, code string) (int64, error) {
	var n int64
	err := t.queryRow(ctx, "UPDATE products SET serials = serials + 1 WHERE code = $1 RETURNING serials", code).Scan(&n)
	return n, err
}

// Blobs.

func (t *tx) insertBlob(ctx context.Context, sum string, data []byte) error {
	_, err := t.exec(ctx, "INSERT INTO blobs (sha256, size, data) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING",
		sum, int64(len(data)), data)
	return err
}

func (t *tx) blob(ctx context.Context, sum string) ([]byte, error) {
	var data []byte
	err := t.queryRow(ctx, "SELECT data FROM blobs WHERE sha256 = $1", sum).Scan(&data)
	return data, err
}

// Bundles.

func (t *tx) insertBundle(ctx context.Context, product string, b jobs.Bundle, now string) error {
	if _, err := t.exec(ctx, "INSERT INTO bundles (product, version, tag, created) VALUES ($1, $2, $3, $4)",
		product, b.Version, string(b.Tag), now); err != nil {
		return err
	}
	for i, a := range b.Artifacts {
		addr := a.Address.Uint64()
		if addr > math.MaxInt64 {
			return fmt.Errorf("artifact %s: address %#x does not fit the database", a.Name, addr)
		}
		if _, err := t.exec(ctx, `INSERT INTO artifacts (product, version, position, name, target, address, size, sha256, format, url)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			product, b.Version, i, a.Name, a.Target, int64(addr), a.Size, a.SHA256, a.Format, a.URL); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) bundle(ctx context.Context, product, version string) (jobs.Bundle, error) {
	var b jobs.Bundle
	var tag string
	if err := t.queryRow(ctx, "SELECT version, tag FROM bundles WHERE product = $1 AND version = $2", product, version).Scan(&b.Version, &tag); err != nil {
		return b, err
	}
	b.Tag = jobs.Tag(tag)
	rows, err := t.query(ctx, `SELECT name, target, address, size, sha256, format, url FROM artifacts
		WHERE product = $1 AND version = $2 ORDER BY position`, product, version)
	if err != nil {
		return b, err
	}
	defer rows.Close()
	for rows.Next() {
		var a jobs.Artifact
		var addr int64
		if err := rows.Scan(&a.Name, &a.Target, &addr, &a.Size, &a.SHA256, &a.Format, &a.URL); err != nil {
			return b, err
		}
		a.Address = jobs.NewAddress(uint64(addr))
		b.Artifacts = append(b.Artifacts, a)
	}
	return b, rows.Err()
}

// bundleVersions lists a product's bundle versions, oldest first.
func (t *tx) bundleVersions(ctx context.Context, product string) ([]string, error) {
	return t.strings(ctx, "SELECT version FROM bundles WHERE product = $1 ORDER BY created, version", product)
}

func (t *tx) bundleExists(ctx context.Context, product, version string) (bool, error) {
	var n int
	err := t.queryRow(ctx, "SELECT count(*) FROM bundles WHERE product = $1 AND version = $2", product, version).Scan(&n)
	return n > 0, err
}

// Counters.

func (t *tx) nextCounter(ctx context.Context, name string) (int64, error) {
	var n int64
	err := t.queryRow(ctx, "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value", name).Scan(&n)
	return n, err
}

// Tokens.

// tokenRow is a token as stored: its hash, never its secret.
type tokenRow struct {
	TokenInfo
	hash string
}

const tokenColumns = "id, product, hash, max_claims, claims_used, expires, revoked, created"

func scanToken(row interface{ Scan(...any) error }) (tokenRow, error) {
	var r tokenRow
	var expires, revoked sql.NullString
	var created string
	if err := row.Scan(&r.ID, &r.Product, &r.hash, &r.MaxClaims, &r.Used, &expires, &revoked, &created); err != nil {
		return r, err
	}
	r.Left = r.MaxClaims - r.Used
	var err error
	if r.Expires, err = parseNullTime(expires); err != nil {
		return r, err
	}
	if r.RevokedAt, err = parseNullTime(revoked); err != nil {
		return r, err
	}
	r.Revoked = revoked.Valid
	r.Created, err = parseTime(created)
	return r, err
}

func (t *tx) insertToken(ctx context.Context, r tokenRow) error {
	_, err := t.exec(ctx, `INSERT INTO tokens (id, product, hash, max_claims, claims_used, expires, revoked, created)
		VALUES ($1, $2, $3, $4, 0, $5, NULL, $6)`,
		r.ID, r.Product, r.hash, r.MaxClaims, nullTime(r.Expires), formatTime(r.Created))
	return err
}

func (t *tx) tokenByHash(ctx context.Context, hash string) (tokenRow, error) {
	return scanToken(t.queryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE hash = $1"+t.forUpdate(), hash))
}

func (t *tx) tokenByID(ctx context.Context, id string) (tokenRow, error) {
	return scanToken(t.queryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE id = $1"+t.forUpdate(), id))
}

func (t *tx) tokens(ctx context.Context, product string) ([]TokenInfo, error) {
	rows, err := t.query(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE product = $1 ORDER BY created, id", product)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TokenInfo
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r.TokenInfo)
	}
	return out, rows.Err()
}

// useClaim takes one claim of the token, if it has one left. It reports
// whether it did: the condition is checked by the UPDATE itself, so even
// a database without BEGIN IMMEDIATE never oversells a token.
func (t *tx) useClaim(ctx context.Context, id string) (bool, error) {
	res, err := t.exec(ctx, "UPDATE tokens SET claims_used = claims_used + 1 WHERE id = $1 AND claims_used < max_claims", id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *tx) revokeToken(ctx context.Context, id, now string) error {
	_, err := t.exec(ctx, "UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL", now, id)
	return err
}

// Purchase orders.

func (t *tx) insertPurchaseOrder(ctx context.Context, po PurchaseOrder, now string) error {
	_, err := t.exec(ctx, `INSERT INTO purchase_orders (id, product, quantity, moq, registered, created)
		VALUES ($1, $2, $3, $4, 0, $5)`, po.ID, po.Product, po.Quantity, po.MinimumOrderQuantity, now)
	return err
}

func (t *tx) purchaseOrder(ctx context.Context, id string) (PurchaseOrder, error) {
	var po PurchaseOrder
	var created string
	err := t.queryRow(ctx, "SELECT id, product, quantity, moq, registered, created FROM purchase_orders WHERE id = $1"+t.forUpdate(), id).
		Scan(&po.ID, &po.Product, &po.Quantity, &po.MinimumOrderQuantity, &po.Registered, &created)
	if err != nil {
		return po, err
	}
	po.Created, err = parseTime(created)
	return po, err
}

// registerOnOrder counts one more device on the purchase order, if it
// has room, and reports whether it did.
func (t *tx) registerOnOrder(ctx context.Context, id string) (bool, error) {
	res, err := t.exec(ctx, "UPDATE purchase_orders SET registered = registered + 1 WHERE id = $1 AND registered < quantity", id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Work orders.

// workOrderRow is a work order as stored.
type workOrderRow struct {
	spec    WorkOrderSpec
	created string
}

func (t *tx) insertWorkOrder(ctx context.Context, w WorkOrderSpec, now string) error {
	lock, err := json.Marshal(w.Lock)
	if err != nil {
		return fmt.Errorf("encode lock policy: %w", err)
	}
	label, err := json.Marshal(w.Label)
	if err != nil {
		return fmt.Errorf("encode label: %w", err)
	}
	fl, err := json.Marshal(w.Flasher)
	if err != nil {
		return fmt.Errorf("encode flasher settings: %w", err)
	}
	_, err = t.exec(ctx, `INSERT INTO work_orders (id, product, bundle, quantity, token, purchase_order, lock_policy, label, flasher, created)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		w.ID, w.Product, w.Bundle, w.Quantity,
		sql.NullString{String: w.TokenID, Valid: w.TokenID != ""},
		sql.NullString{String: w.PurchaseOrder, Valid: w.PurchaseOrder != ""},
		string(lock), string(label), string(fl), now)
	return err
}

func (t *tx) workOrder(ctx context.Context, id string) (WorkOrderSpec, error) {
	var w WorkOrderSpec
	var lock, label, fl, created string
	var token, po sql.NullString
	err := t.queryRow(ctx, `SELECT id, product, bundle, quantity, token, purchase_order, lock_policy, label, flasher, created
		FROM work_orders WHERE id = $1`, id).
		Scan(&w.ID, &w.Product, &w.Bundle, &w.Quantity, &token, &po, &lock, &label, &fl, &created)
	if err != nil {
		return w, err
	}
	w.TokenID, w.PurchaseOrder = token.String, po.String
	if err := json.Unmarshal([]byte(lock), &w.Lock); err != nil {
		return w, fmt.Errorf("decode stored lock policy: %w", err)
	}
	if err := json.Unmarshal([]byte(label), &w.Label); err != nil {
		return w, fmt.Errorf("decode stored label: %w", err)
	}
	if err := json.Unmarshal([]byte(fl), &w.Flasher); err != nil {
		return w, fmt.Errorf("decode stored flasher settings: %w", err)
	}
	return w, nil
}

// Devices.

const deviceColumns = "hardware_id, product, serial, locked, firmware, activated, updated"

func scanDevice(row interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var locked int
	var activated, updated string
	if err := row.Scan(&d.HardwareID, &d.Product, &d.Serial, &locked, &d.FirmwareVersion, &activated, &updated); err != nil {
		return d, err
	}
	d.Locked = locked != 0
	var err error
	if d.Activated, err = parseTime(activated); err != nil {
		return d, err
	}
	d.Updated, err = parseTime(updated)
	return d, err
}

func (t *tx) device(ctx context.Context, hw flasher.HardwareID) (Device, error) {
	return scanDevice(t.queryRow(ctx, "SELECT "+deviceColumns+" FROM devices WHERE hardware_id = $1"+t.forUpdate(), string(hw)))
}

func (t *tx) devices(ctx context.Context, product string) ([]Device, error) {
	rows, err := t.query(ctx, "SELECT "+deviceColumns+" FROM devices WHERE product = $1 ORDER BY serial", product)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (t *tx) countDevices(ctx context.Context, product string) (int, error) {
	var n int
	err := t.queryRow(ctx, "SELECT count(*) FROM devices WHERE product = $1", product).Scan(&n)
	return n, err
}

func (t *tx) insertDevice(ctx context.Context, d Device) error {
	_, err := t.exec(ctx, `INSERT INTO devices (hardware_id, product, serial, locked, firmware, activated, updated)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		string(d.HardwareID), d.Product, d.Serial, boolInt(d.Locked), d.FirmwareVersion, formatTime(d.Activated), formatTime(d.Updated))
	return err
}

func (t *tx) updateDevice(ctx context.Context, d Device) error {
	_, err := t.exec(ctx, `UPDATE devices SET product = $1, serial = $2, locked = $3, firmware = $4, activated = $5, updated = $6
		WHERE hardware_id = $7`,
		d.Product, d.Serial, boolInt(d.Locked), d.FirmwareVersion, formatTime(d.Activated), formatTime(d.Updated), string(d.HardwareID))
	return err
}

// serialOf returns the serial the device got in the product before.
func (t *tx) serialOf(ctx context.Context, product string, hw flasher.HardwareID) (string, error) {
	var s string
	err := t.queryRow(ctx, "SELECT serial FROM serials WHERE product = $1 AND hardware_id = $2", product, string(hw)).Scan(&s)
	return s, err
}

func (t *tx) insertSerial(ctx context.Context, product string, hw flasher.HardwareID, serial string) error {
	_, err := t.exec(ctx, "INSERT INTO serials (product, hardware_id, serial) VALUES ($1, $2, $3)", product, string(hw), serial)
	return err
}

// Device history.

func (t *tx) insertEvent(ctx context.Context, hw flasher.HardwareID, e DeviceEvent) error {
	_, err := t.exec(ctx, `INSERT INTO device_events
		(hardware_id, time, kind, product, serial, work_order, token, purchase_order, firmware, station, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		string(hw), formatTime(e.Time), string(e.Kind), e.Product, e.Serial, e.WorkOrder, e.Token, e.PurchaseOrder,
		e.FirmwareVersion, e.Station, e.Detail)
	return err
}

func (t *tx) events(ctx context.Context, hw flasher.HardwareID) ([]DeviceEvent, error) {
	rows, err := t.query(ctx, `SELECT time, kind, product, serial, work_order, token, purchase_order, firmware, station, detail
		FROM device_events WHERE hardware_id = $1 ORDER BY id`, string(hw))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeviceEvent
	for rows.Next() {
		var e DeviceEvent
		var at, kind string
		if err := rows.Scan(&at, &kind, &e.Product, &e.Serial, &e.WorkOrder, &e.Token, &e.PurchaseOrder,
			&e.FirmwareVersion, &e.Station, &e.Detail); err != nil {
			return nil, err
		}
		e.Kind = EventKind(kind)
		if e.Time, err = parseTime(at); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// lastEvent returns the device's latest event of kind for the work order
// and product, or sql.ErrNoRows.
func (t *tx) lastEvent(ctx context.Context, hw flasher.HardwareID, kind EventKind, workOrder, product string) (DeviceEvent, error) {
	var e DeviceEvent
	var at string
	err := t.queryRow(ctx, `SELECT time, serial, firmware FROM device_events
		WHERE work_order = $1 AND hardware_id = $2 AND kind = $3 AND product = $4 ORDER BY id DESC LIMIT 1`,
		workOrder, string(hw), string(kind), product).Scan(&at, &e.Serial, &e.FirmwareVersion)
	if err != nil {
		return e, err
	}
	e.Kind, e.WorkOrder, e.Product = kind, workOrder, product
	e.Time, err = parseTime(at)
	return e, err
}

// unique turns a unique-constraint violation into a failure of kind
// ErrExists with the message given, and returns other errors as they are.
// The Service checks for a taken id before it inserts; this covers two
// transactions racing past that check on a database that lets them
// (PostgreSQL under READ COMMITTED).
func (t *tx) unique(err error, format string, args ...any) error {
	if err != nil && t.d.isUnique(err) {
		return fail(ErrExists, format, args...)
	}
	return err
}

// isNoRows reports whether err means the row is missing.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
