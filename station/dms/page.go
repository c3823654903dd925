package dms

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// Page sizes of the DMS's lists (docs/api.md, "Lists and pages"). A list
// answers one page at a time, so no call reads a whole table into memory.
const (
	// DefaultPageSize is the page of a list when none is asked for.
	DefaultPageSize = 100
	// MaxPageSize is the largest page of a list: more is answered with
	// this many.
	MaxPageSize = 1000
	// DefaultEventPage and MaxEventPage are the same for events, which
	// are small: a page of events holds at most a batch's worth.
	DefaultEventPage = 1000
	MaxEventPage     = MaxIngestBatch
)

// Cursor marks a place in a list: the sort key of the last item of a
// page. The next page starts after it. The HTTP API passes it on as an
// opaque string.
type Cursor []string

// Page asks for one page of a list, in the list's order.
type Page struct {
	// Limit is the most items wanted: 0 means the list's default, more
	// than its maximum means the maximum.
	Limit int
	// After is the cursor the previous page ended with; nil starts at
	// the beginning.
	After Cursor
}

// size returns the page's size between 1 and max, def when none is
// asked for.
func (p Page) size(def, max int) int {
	switch {
	case p.Limit <= 0:
		return def
	case p.Limit > max:
		return max
	}
	return p.Limit
}

// keyset builds the WHERE conditions of a page: the row's sort key
// (cols, in ORDER BY order) after the cursor. It appends its arguments to
// args, numbered after those already there.
func keyset(cols []string, after Cursor, args *[]any, convert ...func(string) (any, error)) (string, error) {
	if after == nil {
		return "", nil
	}
	if len(after) != len(cols) {
		return "", fail(ErrInvalid, "the cursor is not one of this list's: start again without it")
	}
	var ph []string
	for i, v := range after {
		var arg any = v
		if i < len(convert) && convert[i] != nil {
			var err error
			if arg, err = convert[i](v); err != nil {
				return "", fail(ErrInvalid, "the cursor is not one of this list's: start again without it")
			}
		}
		*args = append(*args, arg)
		ph = append(ph, fmt.Sprintf("$%d", len(*args)))
	}
	return "(" + strings.Join(cols, ", ") + ") > (" + strings.Join(ph, ", ") + ")", nil
}

func parseSeq(s string) (any, error) { return strconv.ParseInt(s, 10, 64) }

// cut trims a page read with one row more than its size: next is the
// cursor of its last item when more follow, else nil.
func cut[T any](items []T, size int, key func(T) Cursor) ([]T, Cursor) {
	if len(items) <= size {
		return items, nil
	}
	items = items[:size]
	return items, key(items[size-1])
}

// EventPage returns one page of the ingested events f selects, in
// (station, seq) order, and the cursor of the next page (nil at the
// end). f.Limit, when set, caps the page like p.Limit.
func (s *Service) EventPage(ctx context.Context, f EventFilter, p Page) ([]journal.Event, Cursor, error) {
	if p.Limit <= 0 {
		p.Limit = f.Limit
	}
	size := p.size(DefaultEventPage, MaxEventPage)
	f.Limit, f.after = size+1, p.After
	events, err := s.Events(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	out, next := cut(events, size, func(e journal.Event) Cursor {
		return Cursor{e.Station, strconv.FormatInt(e.Seq, 10)}
	})
	return out, next, nil
}

// FlashLogPage returns one page of the flash logs f selects, by work
// order and device, and the cursor of the next page (nil at the end).
// Devices are read a page at a time, with their events, and filtered by
// result as they are: the memory a call takes is bounded by its page.
func (s *Service) FlashLogPage(ctx context.Context, f FlashLogFilter, p Page) ([]FlashLog, Cursor, error) {
	size := p.size(DefaultPageSize, MaxPageSize)
	ef := f.EventFilter
	ef.AfterSeq, ef.Limit = 0, 0
	var out []FlashLog
	after := p.After
	for len(out) <= size {
		keys, err := s.flashLogKeys(ctx, ef, after, size+1)
		if err != nil {
			return nil, nil, err
		}
		if len(keys) == 0 {
			break
		}
		logs, err := s.flashLogs(ctx, ef, keys[0], keys[len(keys)-1])
		if err != nil {
			return nil, nil, err
		}
		for _, l := range logs {
			if f.Result == "" || l.Result == f.Result {
				out = append(out, l)
			}
		}
		if len(keys) < size+1 {
			break
		}
		after = keys[len(keys)-1]
	}
	out, next := cut(out, size, func(l FlashLog) Cursor { return Cursor{l.WorkOrder, l.Device} })
	return out, next, nil
}

// flashLogKeys returns up to n (work order, device) keys of step events f
// selects, after the cursor, in order.
func (s *Service) flashLogKeys(ctx context.Context, f EventFilter, after Cursor, n int) ([]Cursor, error) {
	var keys []Cursor
	err := s.Store.view(ctx, func(t *tx) error {
		where, args := f.where()
		cond, err := keyset([]string{"work_order", "device"}, after, &args)
		if err != nil {
			return err
		}
		where = append(where, "kind = 'step'", "device <> ''")
		if cond != "" {
			where = append(where, cond)
		}
		args = append(args, n)
		rows, err := t.query(ctx, "SELECT DISTINCT work_order, device FROM station_events WHERE "+strings.Join(where, " AND ")+
			fmt.Sprintf(" ORDER BY work_order, device LIMIT $%d", len(args)), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var wo, dev string
			if err := rows.Scan(&wo, &dev); err != nil {
				return err
			}
			keys = append(keys, Cursor{wo, dev})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read flash logs: %w", err)
	}
	return keys, nil
}

// flashLogs folds the step events f selects of the devices from first to
// last (keys, inclusive) into their flash logs.
func (s *Service) flashLogs(ctx context.Context, f EventFilter, first, last Cursor) ([]FlashLog, error) {
	f.from, f.to = first, last
	events, err := s.Events(ctx, f)
	if err != nil {
		return nil, err
	}
	return foldFlashLogs(events), nil
}

// KeyPage returns one page of the API keys, without their secrets, by
// creation, and the cursor of the next page.
func (s *Service) KeyPage(ctx context.Context, p Page) ([]Key, Cursor, error) {
	size := p.size(DefaultPageSize, MaxPageSize)
	var keys []Key
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		keys, err = selectPage(ctx, t, "SELECT id, role, product, station, name, created, revoked FROM api_keys", nil, nil,
			[]string{"created", "id"}, p.After, size, func(rows *sql.Rows) (Key, error) {
				var k Key
				var role, created string
				var product, station, revoked sql.NullString
				if err := rows.Scan(&k.ID, &role, &product, &station, &k.Name, &created, &revoked); err != nil {
					return k, err
				}
				k.Role, k.Product, k.Station, k.Revoked = Role(role), product.String, station.String, revoked.Valid
				k.Created, err = parseTime(created)
				return k, err
			})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list keys: %w", err)
	}
	out, next := cut(keys, size, func(k Key) Cursor { return Cursor{formatTime(k.Created), k.ID} })
	return out, next, nil
}

// ProductPage returns one page of the products, by code, and the cursor
// of the next page. only, when not empty, limits the list to that one
// product (a support key's).
func (s *Service) ProductPage(ctx context.Context, only string, p Page) ([]ProductInfo, Cursor, error) {
	size := p.size(DefaultPageSize, MaxPageSize)
	var out []ProductInfo
	err := s.Store.view(ctx, func(t *tx) error {
		var where []string
		var args []any
		if only != "" {
			where, args = []string{"code = $1"}, []any{only}
		}
		var err error
		out, err = selectPage(ctx, t, "SELECT "+productColumns+" FROM products", where, args,
			[]string{"code"}, p.After, size, func(rows *sql.Rows) (ProductInfo, error) { return scanProduct(rows) })
		if err != nil {
			return err
		}
		for i := range out {
			if out[i].Devices, err = t.countDevices(ctx, out[i].Code); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list products: %w", err)
	}
	out, next := cut(out, size, func(p ProductInfo) Cursor { return Cursor{p.Code} })
	return out, next, nil
}

// BundlePage returns one page of the product's bundles, oldest first,
// and the cursor of the next page.
func (s *Service) BundlePage(ctx context.Context, product string, p Page) ([]jobs.Bundle, Cursor, error) {
	size := p.size(DefaultPageSize, MaxPageSize)
	var out []jobs.Bundle
	var keys []Cursor
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, product); err != nil {
			return err
		}
		var err error
		keys, err = selectPage(ctx, t, "SELECT version, created FROM bundles", []string{"product = $1"}, []any{product},
			[]string{"created", "version"}, p.After, size, func(rows *sql.Rows) (Cursor, error) {
				var version, created string
				err := rows.Scan(&version, &created)
				return Cursor{created, version}, err
			})
		if err != nil {
			return err
		}
		for _, k := range keys {
			b, err := t.bundle(ctx, product, k[1])
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list bundles of %s: %w", product, err)
	}
	if len(keys) <= size {
		return out, nil, nil
	}
	return out[:size], keys[size-1], nil
}

// TokenPage returns one page of the product's activation tokens, oldest
// first, counts only, and the cursor of the next page.
func (s *Service) TokenPage(ctx context.Context, product string, p Page) ([]TokenInfo, Cursor, error) {
	size := p.size(DefaultPageSize, MaxPageSize)
	var out []TokenInfo
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, product); err != nil {
			return err
		}
		var err error
		out, err = selectPage(ctx, t, "SELECT "+tokenColumns+" FROM tokens", []string{"product = $1"}, []any{product},
			[]string{"created", "id"}, p.After, size, func(rows *sql.Rows) (TokenInfo, error) {
				r, err := scanToken(rows)
				return r.TokenInfo, err
			})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list activation tokens of %s: %w", product, err)
	}
	out, next := cut(out, size, func(ti TokenInfo) Cursor { return Cursor{formatTime(ti.Created), ti.ID} })
	return out, next, nil
}

// DevicePage returns one page of the devices activated to product, by
// serial, without their history, and the cursor of the next page.
func (s *Service) DevicePage(ctx context.Context, product string, p Page) ([]Device, Cursor, error) {
	size := p.size(DefaultPageSize, MaxPageSize)
	var out []Device
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, product); err != nil {
			return err
		}
		var err error
		out, err = selectPage(ctx, t, "SELECT "+deviceColumns+" FROM devices", []string{"product = $1"}, []any{product},
			[]string{"serial", "hardware_id"}, p.After, size, func(rows *sql.Rows) (Device, error) { return scanDevice(rows) })
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list devices of %s: %w", product, err)
	}
	out, next := cut(out, size, func(d Device) Cursor { return Cursor{d.Serial, string(d.HardwareID)} })
	return out, next, nil
}

// selectPage runs q (a SELECT without WHERE) with the conditions where
// (placeholders numbered from $1, args their values) and the keyset
// condition after the cursor on order, ordered by order, and scans at
// most size+1 rows: one past the page tells that another follows. The
// rows are closed when it returns, so the transaction can query again.
func selectPage[T any](ctx context.Context, t *tx, q string, where []string, args []any, order []string, after Cursor, size int, scan func(*sql.Rows) (T, error)) ([]T, error) {
	cond, err := keyset(order, after, &args)
	if err != nil {
		return nil, err
	}
	if cond != "" {
		where = append(where, cond)
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, size+1)
	rows, err := t.query(ctx, q+fmt.Sprintf(" ORDER BY %s LIMIT $%d", strings.Join(order, ", "), len(args)), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
