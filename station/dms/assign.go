package dms

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// Assignment: which stations a work order is for. A station key acts only
// under the work orders whose list names its station (StationWorkOrder);
// the HTTP API checks it before every call of a station key that names a
// work order. The list is set by an administrator (WorkOrderSpec.Stations,
// AssignStations, UnassignStation); a work order that has never listed a
// station is taken by the first station key that uses it, so that a work
// order made for one station needs no second step.

// How a station came onto a work order's list (work_order_stations.how).
const (
	assignedByAdmin    = "admin"
	assignedByFirstUse = "first use"
)

// checkStations checks the station ids of a work order's list.
func checkStations(stations []string) error {
	for _, st := range stations {
		if err := checkID("station", st); err != nil {
			return err
		}
	}
	return nil
}

// notForStation is the failure of a station's call that names work order
// id when the work order does not exist or is not assigned to station:
// the same words for both, so that a station learns nothing of the work
// orders of other stations.
func notForStation(id, station string) error {
	return fail(jobs.ErrNotFound, "work order %s is not known to the DMS, or is not assigned to station %s: check its id, or ask your administrator to assign it to %s",
		id, station, station)
}

// StationWorkOrder returns work order id for a call of station: a work
// order that lists station. A work order that has never listed a station
// lists station from now on (the first station to use a work order takes
// it). Any other work order, or one that does not exist, is
// jobs.ErrNotFound, in the same words.
func (s *Service) StationWorkOrder(ctx context.Context, station, id string) (WorkOrderSpec, error) {
	var w WorkOrderSpec
	var taken bool
	// Most calls find the station listed: a read.
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		w, taken, err = stationWorkOrder(ctx, t, station, id, "")
		return err
	})
	if err == nil && taken {
		// A work order that never listed a station: taken in a write
		// that locks the work order's row, so that of two stations
		// asking at once one takes it and the other is refused.
		err = s.Store.update(ctx, func(t *tx) error {
			var err error
			w, taken, err = stationWorkOrder(ctx, t, station, id, formatTime(s.now()))
			return err
		})
		if err == nil && taken {
			s.log().Info("work order taken by its first station", "work_order", id, "station", station)
		}
	}
	if err != nil {
		return WorkOrderSpec{}, fmt.Errorf("read work order %s for station %s: %w", id, station, err)
	}
	return w, nil
}

// stationWorkOrder reads work order id for station. A work order that
// has never listed a station is taken: with now set (a write
// transaction) station is added to its list; without, it only reports
// taken.
func stationWorkOrder(ctx context.Context, t *tx, station, id, now string) (w WorkOrderSpec, taken bool, err error) {
	if checkID("station", station) != nil || checkID("work order id", id) != nil {
		return w, false, notForStation(id, station)
	}
	if now != "" {
		// Lock the row; on SQLite the write transaction holds the lock.
		var got string
		err := t.queryRow(ctx, "SELECT id FROM work_orders WHERE id = $1"+t.forUpdate(), id).Scan(&got)
		if isNoRows(err) {
			return w, false, notForStation(id, station)
		} else if err != nil {
			return w, false, err
		}
	}
	w, err = t.workOrder(ctx, id)
	if isNoRows(err) {
		return w, false, notForStation(id, station)
	} else if err != nil {
		return w, false, err
	}
	listed, ever, err := t.workOrderStations(ctx, id)
	if err != nil {
		return w, false, err
	}
	switch {
	case slices.Contains(listed, station):
		w.Stations = listed
		return w, false, nil
	case ever > 0:
		return w, false, notForStation(id, station)
	case now == "":
		return w, true, nil
	}
	if err := t.assignStation(ctx, id, station, now, assignedByFirstUse); err != nil {
		return w, false, fmt.Errorf("assign station: %w", err)
	}
	w.Stations = []string{station}
	return w, true, nil
}

// Stations returns the stations work order id is assigned to, sorted.
func (s *Service) Stations(ctx context.Context, id string) ([]string, error) {
	var out []string
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := workOrderOrFail(ctx, t, id); err != nil {
			return err
		}
		var err error
		out, _, err = t.workOrderStations(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the stations of work order %s: %w", id, err)
	}
	return out, nil
}

// AssignStations adds stations to work order id's list; a station listed
// already stays listed, one removed before is listed again.
func (s *Service) AssignStations(ctx context.Context, id string, stations []string) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if len(stations) == 0 {
			return fail(ErrInvalid, "no station named: give the ids of the stations that run the work order")
		}
		if err := checkStations(stations); err != nil {
			return err
		}
		if _, err := workOrderOrFail(ctx, t, id); err != nil {
			return err
		}
		now := formatTime(s.now())
		for _, st := range stations {
			if err := t.assignStation(ctx, id, st, now, assignedByAdmin); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("assign work order %s to stations %v: %w", id, stations, err)
	}
	s.log().Info("work order assigned", "work_order", id, "stations", stations)
	return nil
}

// UnassignStation takes station off work order id's list: its key may no
// longer act under the work order. A work order whose stations are all
// removed is not taken by the next station that uses it; an
// administrator assigns it again.
func (s *Service) UnassignStation(ctx context.Context, id, station string) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if _, err := workOrderOrFail(ctx, t, id); err != nil {
			return err
		}
		res, err := t.exec(ctx, "UPDATE work_order_stations SET removed = $1 WHERE work_order = $2 AND station = $3 AND removed IS NULL",
			formatTime(s.now()), id, station)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fail(jobs.ErrNotFound, "work order %s is not assigned to station %s", id, station)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("take station %s off work order %s: %w", station, id, err)
	}
	s.log().Info("work order unassigned", "work_order", id, "station", station)
	return nil
}

// StationProducts returns the products of the work orders assigned to
// station, sorted: the products whose bundles and artifacts its key
// reads.
func (s *Service) StationProducts(ctx context.Context, station string) ([]string, error) {
	var out []string
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		out, err = t.strings(ctx, `SELECT DISTINCT w.product FROM work_orders w
			JOIN work_order_stations s ON s.work_order = w.id
			WHERE s.station = $1 AND s.removed IS NULL ORDER BY w.product`, station)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the products of station %s: %w", station, err)
	}
	return out, nil
}

// ArtifactProducts returns the products whose bundles name the artifact
// with hash sum, sorted; none for an artifact that no bundle names (an
// upload waiting for its bundle).
func (s *Service) ArtifactProducts(ctx context.Context, sum string) ([]string, error) {
	var out []string
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		out, err = t.strings(ctx, "SELECT DISTINCT product FROM artifacts WHERE sha256 = $1 ORDER BY product", sum)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the products of artifact %s: %w", sum, err)
	}
	return out, nil
}

// WorkedOn reports whether the device hw's history holds an event of
// work order workOrder: the work order activated, flashed, locked or
// completed it. A malformed hardware id is ErrInvalid.
func (s *Service) WorkedOn(ctx context.Context, workOrder string, hw flasher.HardwareID) (bool, error) {
	if err := checkHardwareID(hw); err != nil {
		return false, err
	}
	var n int
	err := s.Store.view(ctx, func(t *tx) error {
		return t.queryRow(ctx, "SELECT count(*) FROM device_events WHERE work_order = $1 AND hardware_id = $2",
			workOrder, string(hw)).Scan(&n)
	})
	if err != nil {
		return false, fmt.Errorf("read the history of device %s: %w", hw, err)
	}
	return n > 0, nil
}

// workOrderStations returns the stations listed on work order id, sorted,
// and how many stations it has ever listed.
func (t *tx) workOrderStations(ctx context.Context, id string) (listed []string, ever int, err error) {
	rows, err := t.query(ctx, "SELECT station, removed FROM work_order_stations WHERE work_order = $1 ORDER BY station", id)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var removed sql.NullString
		if err := rows.Scan(&st, &removed); err != nil {
			return nil, 0, err
		}
		ever++
		if !removed.Valid {
			listed = append(listed, st)
		}
	}
	return listed, ever, rows.Err()
}

// assignStation lists station on work order id, or lists it again.
func (t *tx) assignStation(ctx context.Context, id, station, now, how string) error {
	_, err := t.exec(ctx, `INSERT INTO work_order_stations (work_order, station, assigned, how) VALUES ($1, $2, $3, $4)
		ON CONFLICT (work_order, station) DO UPDATE SET removed = NULL, assigned = $3, how = $4
		WHERE work_order_stations.removed IS NOT NULL`, id, station, now, how)
	return err
}

// strings runs q, a query of one text column, and returns its rows.
func (t *tx) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
