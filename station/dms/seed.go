package dms

import (
	"context"
	"fmt"
	"time"

	"github.com/station-dev/station/jobs"
)

// SeedSpec is everything a demo or a test needs in the DMS to run one
// work order: a customer, a product, a bundle, a token and the work
// order.
type SeedSpec struct {
	// Customer is created if its ID is set, and the product made for it.
	Customer Customer
	// Product is created.
	Product jobs.Product
	// Bundle is created for the product, with Files as its artifacts'
	// bytes by artifact name (see CreateBundle).
	Bundle jobs.Bundle
	Files  map[string][]byte
	// Claims is the token's claim count; 0 means the work order's
	// quantity.
	Claims int
	// Expiry is the token's expiry; zero means none.
	Expiry time.Time
	// WorkOrder is the work order to create. Its Product, Bundle and
	// TokenID are filled in by Seed; give its ID, Quantity, Lock, Label
	// and Flasher.
	WorkOrder WorkOrderSpec
}

// SeedResult is what Seed made.
type SeedResult struct {
	// WorkOrder is ready to run: product and bundle from the store, and
	// the token's secret as its authorization.
	WorkOrder jobs.WorkOrder
	// TokenID names the token.
	TokenID string
	// Token is the token's secret, the only copy there is.
	Token jobs.Secret
}

// Seed creates the customer, product, bundle, activation token and work
// order of spec in one transaction: all of them or none.
func (s *Service) Seed(ctx context.Context, spec SeedSpec) (SeedResult, error) {
	var res SeedResult
	err := s.Store.update(ctx, func(t *tx) error {
		if spec.Customer.ID != "" {
			if err := s.createCustomer(ctx, t, spec.Customer); err != nil {
				return err
			}
		}
		if err := s.createProduct(ctx, t, spec.Customer.ID, spec.Product); err != nil {
			return err
		}
		b, err := s.createBundle(ctx, t, spec.Product.Code, spec.Bundle, spec.Files)
		if err != nil {
			return err
		}
		claims := spec.Claims
		if claims == 0 {
			claims = spec.WorkOrder.Quantity
		}
		info, secret, err := s.createToken(ctx, t, spec.Product.Code, claims, spec.Expiry)
		if err != nil {
			return err
		}
		w := spec.WorkOrder
		w.Product, w.Bundle, w.TokenID, w.PurchaseOrder = spec.Product.Code, b.Version, info.ID, ""
		wo, err := s.createWorkOrder(ctx, t, w)
		if err != nil {
			return err
		}
		wo.Authorization.Token = secret
		res = SeedResult{WorkOrder: wo, TokenID: info.ID, Token: secret}
		return nil
	})
	if err != nil {
		return SeedResult{}, fmt.Errorf("seed work order %s: %w", spec.WorkOrder.ID, err)
	}
	s.log().Info("seeded", "work_order", res.WorkOrder.ID, "product", spec.Product.Code, "token", res.TokenID)
	return res, nil
}
