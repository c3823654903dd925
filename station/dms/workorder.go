package dms

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/station-dev/station/jobs"
)

// WorkOrderSpec is a work order as the DMS stores it: the product and the
// bundle by reference, and the authorization by token id or purchase
// order. A token's secret is never part of it: whoever runs the work
// order holds the token (a contract manufacturer needs nothing else).
type WorkOrderSpec struct {
	ID       string `json:"id"`
	Product  string `json:"product"`
	Bundle   string `json:"bundle"`
	Quantity int    `json:"quantity"`
	// TokenID names the activation token that authorizes the work
	// order; exactly one of TokenID and PurchaseOrder is set.
	TokenID       string               `json:"token_id,omitempty"`
	PurchaseOrder string               `json:"purchase_order,omitempty"`
	Lock          jobs.LockPolicy      `json:"lock"`
	Label         jobs.LabelSpec       `json:"label"`
	Flasher       jobs.FlasherSettings `json:"flasher"`
	// Stations are the ids of the stations whose keys may act under the
	// work order. Empty at creation: the first station key that uses the
	// work order takes it (see StationWorkOrder).
	Stations []string `json:"stations,omitempty"`
}

// storedToken stands in for a token's secret while a work order that
// names its token by id is checked by jobs.WorkOrder.Validate. It never
// leaves this package.
const storedToken = "stk_stored-by-id"

// CreateWorkOrder stores a work order and returns it complete, with its
// product and bundle read from the store (and, when a token authorizes
// it, no token: see AuthorizeWorkOrder). The product, bundle, token or
// purchase order must exist and belong together; the whole is checked by
// jobs.WorkOrder.Validate. The work order is assigned to w.Stations.
func (s *Service) CreateWorkOrder(ctx context.Context, w WorkOrderSpec) (jobs.WorkOrder, error) {
	var wo jobs.WorkOrder
	err := s.Store.update(ctx, func(t *tx) error {
		var err error
		wo, err = s.createWorkOrder(ctx, t, w)
		return err
	})
	if err != nil {
		return jobs.WorkOrder{}, fmt.Errorf("create work order %s: %w", w.ID, err)
	}
	s.log().Info("work order created", "work_order", w.ID, "product", w.Product, "bundle", w.Bundle,
		"quantity", w.Quantity, "token", w.TokenID, "purchase_order", w.PurchaseOrder, "stations", w.Stations)
	return wo, nil
}

func (s *Service) createWorkOrder(ctx context.Context, t *tx, w WorkOrderSpec) (jobs.WorkOrder, error) {
	switch {
	case w.TokenID != "" && w.PurchaseOrder != "":
		return jobs.WorkOrder{}, fail(ErrInvalid, "work order %s names both token %s and purchase order %s: give exactly one", w.ID, w.TokenID, w.PurchaseOrder)
	case w.TokenID == "" && w.PurchaseOrder == "":
		return jobs.WorkOrder{}, fail(ErrInvalid, "work order %s has no authorization: give an activation token id or a purchase order", w.ID)
	}
	if _, err := productOrFail(ctx, t, w.Product); err != nil {
		return jobs.WorkOrder{}, err
	}
	if err := checkStations(w.Stations); err != nil {
		return jobs.WorkOrder{}, err
	}
	if w.TokenID != "" {
		tok, err := tokenOrFail(ctx, t, w.TokenID)
		if err != nil {
			return jobs.WorkOrder{}, err
		}
		switch {
		case tok.Product != w.Product:
			return jobs.WorkOrder{}, fail(jobs.ErrTokenInvalid, "activation token %s is for product %s, not %s: use a token issued for %s", tok.ID, tok.Product, w.Product, w.Product)
		case tok.Revoked:
			return jobs.WorkOrder{}, fail(jobs.ErrTokenRevoked, "activation token %s was revoked: issue a new token for the work order", tok.ID)
		}
	} else {
		po, err := t.purchaseOrder(ctx, w.PurchaseOrder)
		if isNoRows(err) {
			return jobs.WorkOrder{}, fail(ErrPurchaseOrderInvalid, "purchase order %s is not known to the DMS: enter it first", w.PurchaseOrder)
		} else if err != nil {
			return jobs.WorkOrder{}, err
		}
		if po.Product != w.Product {
			return jobs.WorkOrder{}, fail(ErrPurchaseOrderInvalid, "purchase order %s is for product %s, not %s", po.ID, po.Product, w.Product)
		}
	}
	wo, err := assemble(ctx, t, w)
	if err != nil {
		return wo, err
	}
	check := wo
	if w.TokenID != "" {
		check.Authorization.Token = jobs.NewSecret(storedToken)
	}
	if err := check.Validate(); err != nil {
		return wo, failWith(ErrInvalid, err)
	}
	if _, err := t.workOrder(ctx, w.ID); err == nil {
		return wo, fail(ErrExists, "work order %s already exists: give the new work order a new id", w.ID)
	} else if !isNoRows(err) {
		return wo, err
	}
	now := formatTime(s.now())
	if err := t.insertWorkOrder(ctx, w, now); err != nil {
		return wo, t.unique(err, "work order %s already exists: give the new work order a new id", w.ID)
	}
	for _, st := range w.Stations {
		if err := t.assignStation(ctx, w.ID, st, now, assignedByAdmin); err != nil {
			return wo, fmt.Errorf("assign station %s: %w", st, err)
		}
	}
	return wo, nil
}

// assemble builds the jobs.WorkOrder of a stored work order, with product
// and bundle read from the store and no token secret.
func assemble(ctx context.Context, t *tx, w WorkOrderSpec) (jobs.WorkOrder, error) {
	p, err := productOrFail(ctx, t, w.Product)
	if err != nil {
		return jobs.WorkOrder{}, err
	}
	b, err := bundleOrFail(ctx, t, w.Product, w.Bundle)
	if err != nil {
		return jobs.WorkOrder{}, err
	}
	return jobs.WorkOrder{
		ID: w.ID, Product: p.Product, Bundle: b, Quantity: w.Quantity,
		Authorization: jobs.Authorization{PurchaseOrder: w.PurchaseOrder},
		Lock:          w.Lock, Label: w.Label, Flasher: w.Flasher,
	}, nil
}

// WorkOrder returns the work order id, complete with its product and
// bundle as the store has them now. A work order authorized by a token
// comes back without it (Authorization empty): the DMS does not keep
// token secrets. Give it the secret with AuthorizeWorkOrder before it
// runs.
func (s *Service) WorkOrder(ctx context.Context, id string) (jobs.WorkOrder, error) {
	var wo jobs.WorkOrder
	err := s.Store.view(ctx, func(t *tx) error {
		w, err := workOrderOrFail(ctx, t, id)
		if err != nil {
			return err
		}
		wo, err = assemble(ctx, t, w)
		return err
	})
	if err != nil {
		return jobs.WorkOrder{}, fmt.Errorf("read work order %s: %w", id, err)
	}
	return wo, nil
}

// WorkOrderSpec returns the work order id as stored, with the id of its
// token and the stations it is assigned to.
func (s *Service) WorkOrderSpec(ctx context.Context, id string) (WorkOrderSpec, error) {
	var w WorkOrderSpec
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		if w, err = workOrderOrFail(ctx, t, id); err != nil {
			return err
		}
		w.Stations, _, err = t.workOrderStations(ctx, id)
		return err
	})
	if err != nil {
		return WorkOrderSpec{}, fmt.Errorf("read work order %s: %w", id, err)
	}
	return w, nil
}

func workOrderOrFail(ctx context.Context, t *tx, id string) (WorkOrderSpec, error) {
	w, err := t.workOrder(ctx, id)
	if isNoRows(err) {
		return w, fail(jobs.ErrNotFound, "work order %s is not known to the DMS: check its id", id)
	}
	return w, err
}

// AuthorizeWorkOrder gives the work order wo, read with WorkOrder, the
// token that runs it. The token must be the one the work order names
// (jobs.ErrTokenInvalid otherwise), so that a wrong token is caught
// before any device is flashed. A work order authorized by a purchase
// order takes no token.
func (s *Service) AuthorizeWorkOrder(ctx context.Context, wo *jobs.WorkOrder, token jobs.Secret) error {
	err := s.Store.view(ctx, func(t *tx) error {
		w, err := workOrderOrFail(ctx, t, wo.ID)
		if err != nil {
			return err
		}
		if w.TokenID == "" {
			if !token.IsZero() {
				return fail(ErrInvalid, "work order %s is authorized by purchase order %s and takes no token", w.ID, w.PurchaseOrder)
			}
			return nil
		}
		if token.IsZero() {
			return fail(jobs.ErrTokenInvalid, "work order %s needs activation token %s: give it to run the work order", w.ID, w.TokenID)
		}
		tok, err := tokenOrFail(ctx, t, w.TokenID)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(s.hash(token.Reveal())), []byte(tok.hash)) != 1 {
			return fail(jobs.ErrTokenInvalid, "the token given is not activation token %s, which work order %s names: check the token", w.TokenID, w.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("authorize work order %s: %w", wo.ID, err)
	}
	if !token.IsZero() {
		wo.Authorization.Token = token
	}
	return nil
}
