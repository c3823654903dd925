package dms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// MaxIngestBatch bounds the events one ingest call takes.
const MaxIngestBatch = 5000

// IngestResult says what an ingest did.
type IngestResult struct {
	// Stored counts the events new to the DMS; Duplicates those it had
	// already (a batch sent again after a timeout or a crash).
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
	// LastSeq is the highest sequence number the DMS holds for the
	// station.
	LastSeq int64 `json:"last_seq"`
}

// IngestEvents stores a batch of one station's journal events, each
// (station, seq) once, in one transaction: all of the batch or none. An
// event with no sequence number refuses the batch; one that breaks a rule
// (checkEvent: another station's, no kind, status or time, text the DMS
// does not take) refuses it with a *FieldError naming its seq, so that
// the station can set that event aside and send the rest. The work orders
// the events name are taken as they are: IngestEvents is for callers that
// reach every work order (an admin key); a station's own key sends its
// events through IngestStationEvents.
func (s *Service) IngestEvents(ctx context.Context, station string, events []journal.Event) (IngestResult, error) {
	return s.ingest(ctx, station, events, false)
}

// IngestStationEvents is IngestEvents for a batch that station's own key
// sends: besides IngestEvents' rules, an event new to the DMS that names
// a work order must name one assigned to station (StationWorkOrder; a
// work order that has never listed a station is taken by it, as any
// other use of the station's key takes it). Any other work order, one
// that does not exist too, refuses the batch with a *FieldError naming
// the event's seq and its field "work_order", in the same words for
// both, so that the station sets that one event aside and learns nothing
// of the work orders of other stations. An event that names no work
// order (an operator's sign-in) needs none; an event the DMS holds
// already is a duplicate, whatever its work order is now.
func (s *Service) IngestStationEvents(ctx context.Context, station string, events []journal.Event) (IngestResult, error) {
	return s.ingest(ctx, station, events, true)
}

func (s *Service) ingest(ctx context.Context, station string, events []journal.Event, own bool) (IngestResult, error) {
	if err := checkID("station", station); err != nil {
		return IngestResult{}, err
	}
	if len(events) > MaxIngestBatch {
		return IngestResult{}, fail(ErrInvalid, "a batch holds at most %d events, not %d: send it in parts", MaxIngestBatch, len(events))
	}
	for i, e := range events {
		if e.Seq <= 0 {
			return IngestResult{}, fail(ErrInvalid, "event %d of the batch has no sequence number", i+1)
		}
		if err := checkEvent(station, e); err != nil {
			return IngestResult{}, err
		}
	}
	var res IngestResult
	var taken []string
	now := formatTime(s.now())
	err := s.Store.update(ctx, func(t *tx) error {
		res, taken = IngestResult{}, nil // counted afresh if the transaction runs again
		reach := map[string]bool{}       // work order → assigned to station, for this batch
		for _, e := range events {
			var data sql.NullString
			if len(e.Data) > 0 {
				data = sql.NullString{String: string(e.Data), Valid: true}
			}
			r, err := t.exec(ctx, `INSERT INTO station_events (station, seq, time, kind, work_order, slot, device,
				operator, step, status, attempt, duration_ns, error, data, received)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
				ON CONFLICT (station, seq) DO NOTHING`,
				station, e.Seq, formatTime(e.Time), string(e.Kind), e.WorkOrder, e.Slot, e.Device, e.Operator,
				e.Step, string(e.Status), e.Attempt, int64(e.Duration), e.Error, data, now)
			if err != nil {
				return fmt.Errorf("store event %d: %w", e.Seq, err)
			}
			n, err := r.RowsAffected()
			if err != nil {
				return fmt.Errorf("store event %d: %w", e.Seq, err)
			}
			if n == 0 {
				res.Duplicates++
				continue
			}
			res.Stored++
			if !own || e.WorkOrder == "" {
				continue
			}
			// The event is stored already; a refusal rolls the whole
			// batch back.
			ok, seen := reach[e.WorkOrder]
			if !seen {
				var took bool
				ok, took, err = reportsTo(ctx, t, station, e.WorkOrder, e.Seq, now)
				if err != nil {
					return fmt.Errorf("check event %d's work order: %w", e.Seq, err)
				}
				reach[e.WorkOrder] = ok
				if took {
					taken = append(taken, e.WorkOrder)
				}
			}
			if !ok {
				return &FieldError{Field: "work_order", Seq: e.Seq, Problem: fmt.Sprintf(
					"names a work order that is not known to the DMS or is not assigned to station %s: a station sends the events of its own work orders only; check the work order, or ask your administrator to assign it to %s",
					station, station)}
			}
		}
		return t.queryRow(ctx, "SELECT coalesce(max(seq), 0) FROM station_events WHERE station = $1", station).Scan(&res.LastSeq)
	})
	var fe *FieldError
	if errors.As(err, &fe) {
		return IngestResult{}, fe // as checkEvent's refusals read
	}
	if err != nil {
		return IngestResult{}, fmt.Errorf("ingest %d events of station %s: %w", len(events), station, err)
	}
	for _, id := range taken {
		s.log().Info("work order taken by its first station", "work_order", id, "station", station)
	}
	return res, nil
}

// reportsTo reports whether station may send events of work order id, in
// the write transaction t: the work order lists station, or has never
// listed one and now lists station (took), or station worked under it
// before an administrator took it off (the DMS holds station's events of
// it, other than event seq being stored now, or devices it activated
// under it), so that the backlog a station recorded while assigned is
// never refused. A work order that does not exist, or was only ever
// another station's, is not ok.
func reportsTo(ctx context.Context, t *tx, station, id string, seq int64, now string) (ok, took bool, err error) {
	// Most batches find the station listed: a read, with no row lock.
	_, take, err := stationWorkOrder(ctx, t, station, id, "")
	if err == nil && take {
		_, took, err = stationWorkOrder(ctx, t, station, id, now)
	}
	switch {
	case isFailure(err) && errors.Is(err, jobs.ErrNotFound):
		var before bool
		err = t.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM station_events WHERE work_order = $1 AND station = $2 AND seq <> $3)
			OR EXISTS (SELECT 1 FROM device_events WHERE work_order = $1 AND station = $2)`, id, station, seq).Scan(&before)
		if err != nil {
			return false, false, fmt.Errorf("work order %s's history at station %s: %w", id, station, err)
		}
		return before, false, nil
	case err != nil:
		return false, false, err
	}
	return true, took, nil
}

// MaxEventData bounds an event's data, in bytes of JSON.
const MaxEventData = 64 << 10

// checkEvent checks one event of station's batch and returns a
// *FieldError naming the event's seq and the field at fault. Names are
// one line of at most jobs.MaxNameLen bytes; the error is free text of at
// most jobs.MaxTextLen; data is a JSON object of at most MaxEventData
// bytes whose strings hold no NUL.
func checkEvent(station string, e journal.Event) error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Seq: e.Seq, Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case e.Station != station:
		return bad("station", "is another station's, not %s's: a station sends its own events", station)
	case e.Kind == "":
		return bad("kind", "is missing")
	case e.Status == "":
		return bad("status", "is missing")
	case e.Time.IsZero():
		return bad("time", "is missing")
	}
	for _, f := range []struct{ name, value string }{
		{"kind", string(e.Kind)}, {"status", string(e.Status)}, {"work_order", e.WorkOrder}, {"slot", e.Slot},
		{"device", e.Device}, {"operator", e.Operator}, {"step", e.Step},
	} {
		if err := jobs.CheckName(f.value, jobs.MaxNameLen); err != nil {
			return bad(f.name, "%v", err)
		}
	}
	if err := jobs.CheckText(e.Error, jobs.MaxTextLen); err != nil {
		return bad("error", "%v", err)
	}
	if len(e.Data) == 0 {
		return nil
	}
	if len(e.Data) > MaxEventData {
		return bad("data", "is %d bytes long; at most %d are allowed", len(e.Data), MaxEventData)
	}
	if !json.Valid(e.Data) {
		return bad("data", "is not JSON")
	}
	var fe *FieldError
	if errors.As(CheckJSONText(e.Data), &fe) {
		return bad(strings.TrimSuffix("data."+fe.Field, "."), "%s", fe.Problem)
	}
	return nil
}

// EventFilter selects ingested events. Empty fields match everything;
// Since is inclusive, Until exclusive.
type EventFilter struct {
	Station   string
	WorkOrder string
	Device    string
	Since     time.Time
	Until     time.Time
	// Products limits the events to work orders of these products; nil
	// means any (a support key sets its one product).
	Products []string
	// AfterSeq selects events with a greater sequence number; Limit caps
	// their number (0: no cap; the HTTP API always pages, see EventPage).
	AfterSeq int64
	Limit    int

	// after is a page's cursor, (station, seq); from and to bound the
	// (work order, device) of step events, inclusive, for flash logs.
	after    Cursor
	from, to Cursor
}

// where returns the filter's conditions and their arguments, numbered
// from $1.
func (f EventFilter) where() ([]string, []any) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Station != "" {
		add("station = ?", f.Station)
	}
	if f.WorkOrder != "" {
		add("work_order = ?", f.WorkOrder)
	}
	if f.Device != "" {
		add("device = ?", f.Device)
	}
	if !f.Since.IsZero() {
		add("time >= ?", formatTime(f.Since))
	}
	if !f.Until.IsZero() {
		add("time < ?", formatTime(f.Until))
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if f.Products != nil {
		var ph []string
		for _, p := range f.Products {
			args = append(args, p)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		if len(ph) == 0 {
			ph = []string{"NULL"}
		}
		where = append(where, "work_order IN (SELECT id FROM work_orders WHERE product IN ("+strings.Join(ph, ", ")+"))")
	}
	return where, args
}

// Events returns ingested events in (station, seq) order: every event f
// selects, up to f.Limit. The HTTP API reads them a page at a time
// (EventPage).
func (s *Service) Events(ctx context.Context, f EventFilter) ([]journal.Event, error) {
	var out []journal.Event
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		out, err = t.stationEvents(ctx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

func (t *tx) stationEvents(ctx context.Context, f EventFilter) ([]journal.Event, error) {
	where, args := f.where()
	cond, err := keyset([]string{"station", "seq"}, f.after, &args, nil, parseSeq)
	if err != nil {
		return nil, err
	}
	if cond != "" {
		where = append(where, cond)
	}
	order := " ORDER BY station, seq"
	if f.from != nil {
		args = append(args, f.from[0], f.from[1], f.to[0], f.to[1])
		n := len(args)
		where = append(where, "kind = 'step'", "device <> ''",
			fmt.Sprintf("(work_order, device) >= ($%d, $%d)", n-3, n-2),
			fmt.Sprintf("(work_order, device) <= ($%d, $%d)", n-1, n))
		order = " ORDER BY work_order, device, station, seq"
	}
	q := `SELECT station, seq, time, kind, work_order, slot, device, operator, step, status, attempt,
		duration_ns, error, data FROM station_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += order
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []journal.Event
	for rows.Next() {
		var e journal.Event
		var tm, kind, status string
		var dur int64
		var data sql.NullString
		if err := rows.Scan(&e.Station, &e.Seq, &tm, &kind, &e.WorkOrder, &e.Slot, &e.Device, &e.Operator,
			&e.Step, &status, &e.Attempt, &dur, &e.Error, &data); err != nil {
			return nil, err
		}
		if e.Time, err = parseTime(tm); err != nil {
			return nil, err
		}
		e.Kind, e.Status, e.Duration = journal.Kind(kind), journal.Status(status), time.Duration(dur)
		if data.Valid {
			e.Data = json.RawMessage(data.String)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// FlashLog is one device's record in one work order, across every
// station that worked on it, derived from the ingested events.
type FlashLog struct {
	journal.DeviceState
	// Stations lists the stations that worked on the device, in the
	// order they first did.
	Stations []string `json:"stations"`
}

// FlashLogFilter selects flash logs: EventFilter's fields, and Result
// ("done", "failed", ...) when set.
type FlashLogFilter struct {
	EventFilter
	Result journal.Result
}

// FlashLogs returns the flash log of every device the filter selects, by
// work order and device. The HTTP API reads them a page at a time
// (FlashLogPage).
func (s *Service) FlashLogs(ctx context.Context, f FlashLogFilter) ([]FlashLog, error) {
	ef := f.EventFilter
	ef.AfterSeq, ef.Limit = 0, 0
	events, err := s.Events(ctx, ef)
	if err != nil {
		return nil, err
	}
	var out []FlashLog
	for _, l := range foldFlashLogs(events) {
		if f.Result == "" || l.Result == f.Result {
			out = append(out, l)
		}
	}
	return out, nil
}

// foldFlashLogs groups step events by work order and device and folds
// each group into its flash log, by work order and device.
func foldFlashLogs(events []journal.Event) []FlashLog {
	type key struct{ wo, dev string }
	groups := map[key][]journal.Event{}
	var order []key
	for _, e := range events {
		if e.Kind != journal.KindStep || e.Device == "" {
			continue
		}
		k := key{e.WorkOrder, e.Device}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	var out []FlashLog
	for _, k := range order {
		evs := groups[k]
		// Stations' clocks differ; their events interleave by time.
		slices.SortStableFunc(evs, func(a, b journal.Event) int { return a.Time.Compare(b.Time) })
		var stations []string
		for _, e := range evs {
			if !slices.Contains(stations, e.Station) {
				stations = append(stations, e.Station)
			}
		}
		out = append(out, FlashLog{DeviceState: journal.Fold(evs), Stations: stations})
	}
	slices.SortFunc(out, func(a, b FlashLog) int {
		if c := strings.Compare(a.WorkOrder, b.WorkOrder); c != 0 {
			return c
		}
		return strings.Compare(a.Device, b.Device)
	})
	return out
}
