package server

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// What a key may reach (docs/api.md, "Who may do what"). The role
// decides which calls a key may make (the route table); scope decides
// which records those calls may touch:
//
//   - an admin key reaches everything;
//   - a support key reaches its own product's records;
//   - a station key reaches the work orders assigned to its station
//     (dms.Service.StationWorkOrder), the bundles and artifacts of their
//     products, and the devices those work orders activated.
//
// A record outside a key's scope is answered as one that does not exist:
// 404, in the same words, so that a key learns nothing of what it may not
// read. A 403 says only what the key itself is and may do.

// scoped reports whether p reaches less than everything.
func scoped(p dms.Principal) bool {
	return p.Role == dms.RoleSupport || p.Role == dms.RoleStation
}

// unknown is the answer to a scoped key about the record what id that
// does not exist or is outside its scope: the same answer for both.
func unknown(p dms.Principal, what, id string) error {
	if p.Role == dms.RoleStation {
		return apiError(http.StatusNotFound, dmsapi.CodeNotFound,
			"%s %s is not known to the DMS, or is not for station %s: a station key reads what the work orders assigned to its station need",
			what, id, p.Station)
	}
	return apiError(http.StatusNotFound, dmsapi.CodeNotFound,
		"%s %s is not known to the DMS, or is not product %s's: a support key reads its own product's records only",
		what, id, p.Product)
}

// readErr is err, from reading the record what id for p; for a scoped
// key a record that does not exist is answered as unknown.
func readErr(p dms.Principal, err error, what, id string) error {
	if scoped(p) && errors.Is(err, jobs.ErrNotFound) {
		return unknown(p, what, id)
	}
	return err
}

// mayReadProduct checks that p reaches the records of product: a
// support key its own, a station key those of the work orders assigned
// to its station.
func (s *server) mayReadProduct(ctx context.Context, p dms.Principal, product string) error {
	switch p.Role {
	case dms.RoleSupport:
		if p.Product != product {
			return unknown(p, "product", product)
		}
	case dms.RoleStation:
		products, err := s.svc.StationProducts(ctx, p.Station)
		if err != nil {
			return err
		}
		if !slices.Contains(products, product) {
			return unknown(p, "product", product)
		}
	}
	return nil
}

// mayReadOf checks that p reaches the record what id, which belongs to
// product.
func (s *server) mayReadOf(ctx context.Context, p dms.Principal, product, what, id string) error {
	if err := s.mayReadProduct(ctx, p, product); err != nil {
		if errors.As(err, new(*httpError)) {
			return unknown(p, what, id)
		}
		return err
	}
	return nil
}

// mayReadArtifact checks that p reaches the artifact sum: an admin key
// every artifact, uploads waiting for their bundle too; a scoped key
// those named by a bundle of a product it reaches.
func (s *server) mayReadArtifact(ctx context.Context, p dms.Principal, sum string) error {
	if !scoped(p) {
		return nil
	}
	products, err := s.svc.ArtifactProducts(ctx, sum)
	if err != nil {
		return err
	}
	for _, product := range products {
		err := s.mayReadProduct(ctx, p, product)
		if err == nil {
			return nil
		}
		if !errors.As(err, new(*httpError)) {
			return err
		}
	}
	return unknown(p, "artifact", sum)
}

// callWorkOrder checks the work order id that a call on a device names
// (preflight, activate, lock, complete) for p, and that it makes product
// (when product is given), and returns it. A station key must name a
// work order assigned to its station; a work order that does not exist
// or is another station's is answered alike (404). An admin key may name
// none; one it names must exist.
func (s *server) callWorkOrder(ctx context.Context, p dms.Principal, id, product string) (dms.WorkOrderSpec, error) {
	if id == "" {
		if p.Role == dms.RoleStation {
			return dms.WorkOrderSpec{}, apiError(http.StatusUnprocessableEntity, dmsapi.CodeInvalid,
				"work_order is missing: a station key acts on devices only under a work order assigned to its station (%s)", p.Station)
		}
		return dms.WorkOrderSpec{}, nil
	}
	var w dms.WorkOrderSpec
	var err error
	if p.Role == dms.RoleStation {
		w, err = s.svc.StationWorkOrder(ctx, p.Station, id)
	} else {
		w, err = s.svc.WorkOrderSpec(ctx, id)
	}
	if err != nil {
		return w, err
	}
	if product != "" && w.Product != product {
		return w, apiError(http.StatusUnprocessableEntity, dmsapi.CodeInvalid,
			"work order %s makes product %s, not %s: a call under a work order names the work order's product", id, w.Product, product)
	}
	return w, nil
}

// workedOn checks, for a station key, that work order w activated the
// device hw: a station locks and completes only the devices of its own
// work orders.
func (s *server) workedOn(ctx context.Context, p dms.Principal, w dms.WorkOrderSpec, hw flasher.HardwareID) error {
	if p.Role != dms.RoleStation {
		return nil
	}
	ok, err := s.svc.WorkedOn(ctx, w.ID, hw)
	if err != nil {
		return err
	}
	if !ok {
		return apiError(http.StatusConflict, dmsapi.CodeNotActivated,
			"device %s was not activated under work order %s: a station key locks and completes only the devices its work orders activated; activate it under %s first",
			hw, w.ID, w.ID)
	}
	return nil
}
