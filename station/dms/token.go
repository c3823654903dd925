package dms

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
)

// TokenPrefix starts every activation token secret, so that one found in
// a file or a paste is recognised for what it is.
const TokenPrefix = "stk_"

// tokenBytes is the secret's randomness: 256 bits.
const tokenBytes = 32

// tokenEncoding writes the secret's bytes: lowercase base32, no padding,
// 52 characters that survive a copy from a terminal.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TokenInfo is what the DMS tells about an activation token. It never
// holds the secret: the DMS does not have it.
type TokenInfo struct {
	// ID names the token in messages, logs and history ("T-7").
	ID string `json:"id"`
	// Product is the code of the product the token activates devices to.
	Product string `json:"product"`
	// MaxClaims is how many devices the token may claim.
	MaxClaims int `json:"max_claims"`
	// Used is how many claims it has made.
	Used int `json:"used"`
	// Left is MaxClaims - Used.
	Left int `json:"left"`
	// Expires is when it stops working; zero means never.
	Expires time.Time `json:"expires,omitzero"`
	// Revoked reports that an administrator revoked it, at RevokedAt.
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Created is when it was issued.
	Created time.Time `json:"created"`
}

// hash returns the stored form of a token secret: HMAC-SHA256 under
// TokenKey, in hexadecimal.
func (s *Service) hash(secret string) string {
	m := hmac.New(sha256.New, s.TokenKey)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// CreateToken issues an activation token for product, good for maxClaims
// devices until expiry (zero: no expiry). It returns the token's id and
// its secret. The secret is shown this once: the DMS keeps only a keyed
// hash of it, so it can check a token but never give it back.
func (s *Service) CreateToken(ctx context.Context, product string, maxClaims int, expiry time.Time) (string, jobs.Secret, error) {
	var info TokenInfo
	var secret jobs.Secret
	err := s.Store.update(ctx, func(t *tx) error {
		var err error
		info, secret, err = s.createToken(ctx, t, product, maxClaims, expiry)
		return err
	})
	if err != nil {
		return "", jobs.Secret{}, fmt.Errorf("create activation token for %s: %w", product, err)
	}
	s.log().Info("activation token created", "token", info.ID, "product", product, "max_claims", maxClaims, "expires", info.Expires)
	return info.ID, secret, nil
}

func (s *Service) createToken(ctx context.Context, t *tx, product string, maxClaims int, expiry time.Time) (TokenInfo, jobs.Secret, error) {
	if maxClaims <= 0 {
		return TokenInfo{}, jobs.Secret{}, fail(ErrInvalid, "a token needs at least one claim (got %d)", maxClaims)
	}
	now := s.now()
	if !expiry.IsZero() && !expiry.After(now) {
		return TokenInfo{}, jobs.Secret{}, fail(ErrInvalid, "expiry %s is already past", expiry.UTC().Format(time.RFC3339))
	}
	if _, err := productOrFail(ctx, t, product); err != nil {
		return TokenInfo{}, jobs.Secret{}, err
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return TokenInfo{}, jobs.Secret{}, fmt.Errorf("draw token secret: %w", err)
	}
	secret := TokenPrefix + tokenEncoding.EncodeToString(raw)
	n, err := t.nextCounter(ctx, "token")
	if err != nil {
		return TokenInfo{}, jobs.Secret{}, fmt.Errorf("number token: %w", err)
	}
	r := tokenRow{TokenInfo: TokenInfo{
		ID: "T-" + strconv.FormatInt(n, 10), Product: product, MaxClaims: maxClaims, Left: maxClaims,
		Created: now,
	}, hash: s.hash(secret)}
	if !expiry.IsZero() {
		r.Expires = expiry.UTC()
	}
	if err := t.insertToken(ctx, r); err != nil {
		return TokenInfo{}, jobs.Secret{}, err
	}
	return r.TokenInfo, jobs.NewSecret(secret), nil
}

// RevokeToken stops the token id from claiming anything more. Devices it
// claimed stay activated. Revoking a revoked token changes nothing.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if _, err := tokenOrFail(ctx, t, id); err != nil {
			return err
		}
		return t.revokeToken(ctx, id, formatTime(s.now()))
	})
	if err != nil {
		return fmt.Errorf("revoke activation token %s: %w", id, err)
	}
	s.log().Info("activation token revoked", "token", id)
	return nil
}

func tokenOrFail(ctx context.Context, t *tx, id string) (tokenRow, error) {
	r, err := t.tokenByID(ctx, id)
	if isNoRows(err) {
		return r, fail(jobs.ErrNotFound, "activation token %s is not known to the DMS", id)
	}
	return r, err
}

// Token returns what the DMS knows of token id: its claims, expiry and
// revocation. Never the secret.
func (s *Service) Token(ctx context.Context, id string) (TokenInfo, error) {
	var r tokenRow
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		r, err = tokenOrFail(ctx, t, id)
		return err
	})
	if err != nil {
		return TokenInfo{}, fmt.Errorf("read activation token %s: %w", id, err)
	}
	return r.TokenInfo, nil
}

// Tokens returns the product's tokens, oldest first.
func (s *Service) Tokens(ctx context.Context, product string) ([]TokenInfo, error) {
	var out []TokenInfo
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, product); err != nil {
			return err
		}
		var err error
		out, err = t.tokens(ctx, product)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list activation tokens of %s: %w", product, err)
	}
	return out, nil
}

// checkToken finds the token whose secret is given and checks that it may
// claim devices of product now: known and for this product
// (jobs.ErrTokenInvalid), not revoked (jobs.ErrTokenRevoked), not expired
// (jobs.ErrTokenExpired). Whether it has claims left is the caller's to
// check, since a repeat claim uses none.
func (s *Service) checkToken(ctx context.Context, t *tx, product string, token jobs.Secret, now time.Time) (tokenRow, error) {
	secret := token.Reveal()
	if !strings.HasPrefix(secret, TokenPrefix) {
		return tokenRow{}, fail(jobs.ErrTokenInvalid, "the activation token given is not one the DMS issues (its tokens start with %q): check the work order's token", TokenPrefix)
	}
	r, err := t.tokenByHash(ctx, s.hash(secret))
	if isNoRows(err) {
		return r, fail(jobs.ErrTokenInvalid, "the activation token given is not known to the DMS: check the work order's token for product %s", product)
	}
	if err != nil {
		return r, err
	}
	switch {
	case r.Product != product:
		return r, fail(jobs.ErrTokenInvalid, "activation token %s is for product %s, not %s: use a token issued for %s", r.ID, r.Product, product, product)
	case r.Revoked:
		return r, fail(jobs.ErrTokenRevoked, "activation token %s was revoked on %s: ask your administrator for a new token", r.ID, r.RevokedAt.Format(time.RFC3339))
	case !r.Expires.IsZero() && !now.Before(r.Expires):
		return r, fail(jobs.ErrTokenExpired, "activation token %s expired on %s: ask your administrator for a new token", r.ID, r.Expires.Format(time.RFC3339))
	}
	return r, nil
}

// PurchaseOrder is a customer's order for devices of a product. Devices
// activated under it are registered to the product and locked to it.
type PurchaseOrder struct {
	// ID names the order, as the customer's paperwork does.
	ID string `json:"id"`
	// Product is the code of the product ordered.
	Product string `json:"product"`
	// Quantity is how many devices the order covers.
	Quantity int `json:"quantity"`
	// MinimumOrderQuantity is the least the product may be ordered in;
	// Quantity must be at least this.
	MinimumOrderQuantity int `json:"minimum_order_quantity"`
	// Registered counts the devices activated under the order.
	Registered int `json:"registered"`
	// Created is when the order was entered.
	Created time.Time `json:"created"`
}

// CreatePurchaseOrder enters a purchase order. Its id must be new and its
// quantity at least its minimum order quantity.
func (s *Service) CreatePurchaseOrder(ctx context.Context, po PurchaseOrder) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if err := checkID("purchase order id", po.ID); err != nil {
			return err
		}
		if po.MinimumOrderQuantity < 0 {
			return fail(ErrInvalid, "purchase order %s: the minimum order quantity cannot be negative", po.ID)
		}
		if po.Quantity <= 0 || po.Quantity < po.MinimumOrderQuantity {
			return fail(ErrInvalid, "purchase order %s: a quantity of %d is under the minimum order quantity of %d (and at least 1)", po.ID, po.Quantity, po.MinimumOrderQuantity)
		}
		if _, err := productOrFail(ctx, t, po.Product); err != nil {
			return err
		}
		if _, err := t.purchaseOrder(ctx, po.ID); err == nil {
			return fail(ErrExists, "purchase order %s already exists", po.ID)
		} else if !isNoRows(err) {
			return err
		}
		return t.unique(t.insertPurchaseOrder(ctx, po, formatTime(s.now())), "purchase order %s already exists", po.ID)
	})
	if err != nil {
		return fmt.Errorf("create purchase order %s: %w", po.ID, err)
	}
	s.log().Info("purchase order created", "purchase_order", po.ID, "product", po.Product, "quantity", po.Quantity)
	return nil
}

// PurchaseOrder returns the purchase order id.
func (s *Service) PurchaseOrder(ctx context.Context, id string) (PurchaseOrder, error) {
	var po PurchaseOrder
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		po, err = t.purchaseOrder(ctx, id)
		if isNoRows(err) {
			return fail(jobs.ErrNotFound, "purchase order %s is not known to the DMS", id)
		}
		return err
	})
	if err != nil {
		return PurchaseOrder{}, fmt.Errorf("read purchase order %s: %w", id, err)
	}
	return po, nil
}
