package dms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
)

// ProductInfo is a product with what the DMS keeps around it.
type ProductInfo struct {
	jobs.Product
	// Customer is the id of the customer the product is made for, if
	// any.
	Customer string `json:"customer,omitempty"`
	// Devices counts the devices activated to the product now.
	Devices int `json:"devices"`
	// Created is when the product was created.
	Created time.Time `json:"created"`
}

// CreateCustomer adds a customer.
func (s *Service) CreateCustomer(ctx context.Context, c Customer) error {
	if err := s.Store.update(ctx, func(t *tx) error { return s.createCustomer(ctx, t, c) }); err != nil {
		return fmt.Errorf("create customer %s: %w", c.ID, err)
	}
	return nil
}

func (s *Service) createCustomer(ctx context.Context, t *tx, c Customer) error {
	if err := checkID("customer id", c.ID); err != nil {
		return err
	}
	if err := checkName("name", c.Name, jobs.MaxNameLen); err != nil {
		return err
	}
	if strings.TrimSpace(c.Name) == "" {
		return fail(ErrInvalid, "customer %s has no name", c.ID)
	}
	if _, err := t.customer(ctx, c.ID); err == nil {
		return fail(ErrExists, "customer %s already exists", c.ID)
	} else if !isNoRows(err) {
		return err
	}
	return t.unique(t.insertCustomer(ctx, c, formatTime(s.now())), "customer %s already exists", c.ID)
}

// Customer returns the customer id.
func (s *Service) Customer(ctx context.Context, id string) (Customer, error) {
	var c Customer
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		c, err = t.customer(ctx, id)
		if isNoRows(err) {
			return fail(jobs.ErrNotFound, "customer %s is not known to the DMS", id)
		}
		return err
	})
	if err != nil {
		return Customer{}, fmt.Errorf("read customer %s: %w", id, err)
	}
	return c, nil
}

// CreateProduct adds a product, made for the customer customerID (empty
// for none). Its code must be new.
func (s *Service) CreateProduct(ctx context.Context, customerID string, p jobs.Product) error {
	if err := s.Store.update(ctx, func(t *tx) error { return s.createProduct(ctx, t, customerID, p) }); err != nil {
		return fmt.Errorf("create product %s: %w", p.Code, err)
	}
	s.log().Info("product created", "product", p.Code, "stage", p.Stage)
	return nil
}

func (s *Service) createProduct(ctx context.Context, t *tx, customerID string, p jobs.Product) error {
	if probs := jobsProblems(jobs.WorkOrder{Product: p}, "product."); len(probs) > 0 {
		return fail(ErrInvalid, "product is invalid: %s", strings.Join(probs, "; "))
	}
	if customerID != "" {
		if _, err := t.customer(ctx, customerID); isNoRows(err) {
			return fail(jobs.ErrNotFound, "customer %s is not known to the DMS: create the customer first", customerID)
		} else if err != nil {
			return err
		}
	}
	if _, err := t.product(ctx, p.Code); err == nil {
		return fail(ErrExists, "product %s already exists: product codes are unique", p.Code)
	} else if !isNoRows(err) {
		return err
	}
	return t.unique(t.insertProduct(ctx, p, customerID, formatTime(s.now())), "product %s already exists: product codes are unique", p.Code)
}

// Product returns the product with code code.
func (s *Service) Product(ctx context.Context, code string) (ProductInfo, error) {
	var p ProductInfo
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		p, err = productOrFail(ctx, t, code)
		return err
	})
	if err != nil {
		return ProductInfo{}, fmt.Errorf("read product %s: %w", code, err)
	}
	return p, nil
}

func productOrFail(ctx context.Context, t *tx, code string) (ProductInfo, error) {
	p, err := t.product(ctx, code)
	if isNoRows(err) {
		return p, fail(jobs.ErrNotFound, "product %s is not known to the DMS: check the product code", code)
	}
	return p, err
}

// Products returns every product, by code.
func (s *Service) Products(ctx context.Context) ([]ProductInfo, error) {
	var out []ProductInfo
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		out, err = t.products(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return out, nil
}

// UpdateProduct changes the name, part number, stage and archived flag
// of the product p.Code. A product promoted to production locks the
// devices it has; a production product never goes back to development
// (ErrStageChange): devices locked to it stay locked.
// Archiving stops new devices; the devices already activated keep being
// served.
func (s *Service) UpdateProduct(ctx context.Context, p jobs.Product) error {
	err := s.Store.update(ctx, func(t *tx) error {
		if probs := jobsProblems(jobs.WorkOrder{Product: p}, "product."); len(probs) > 0 {
			return fail(ErrInvalid, "product is invalid: %s", strings.Join(probs, "; "))
		}
		old, err := productOrFail(ctx, t, p.Code)
		if err != nil {
			return err
		}
		if old.Stage == jobs.StageProduction && p.Stage != jobs.StageProduction {
			return fail(ErrStageChange, "product %s is in production and cannot go back to %s: its devices are locked to it for good; create a development product instead", p.Code, p.Stage)
		}
		if err := t.updateProduct(ctx, p); err != nil {
			return err
		}
		if old.Stage != jobs.StageProduction && p.Stage == jobs.StageProduction {
			return t.lockProductDevices(ctx, p.Code, formatTime(s.now()), "product promoted to production")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update product %s: %w", p.Code, err)
	}
	s.log().Info("product updated", "product", p.Code, "stage", p.Stage, "archived", p.Archived)
	return nil
}

// DeleteProduct removes a product with its bundles, tokens, purchase
// orders and work orders. A product that has devices cannot be deleted
// (ErrInUse): archive it instead.
func (s *Service) DeleteProduct(ctx context.Context, code string) error {
	err := s.Store.update(ctx, func(t *tx) error {
		p, err := productOrFail(ctx, t, code)
		if err != nil {
			return err
		}
		if p.Devices > 0 {
			return fail(ErrInUse, "product %s has %d devices and cannot be deleted: archive it instead", code, p.Devices)
		}
		return t.deleteProduct(ctx, code)
	})
	if err != nil {
		return fmt.Errorf("delete product %s: %w", code, err)
	}
	s.log().Info("product deleted", "product", code)
	return nil
}

// CreateBundle adds a bundle to a product. files holds the bytes of
// artifacts by artifact name; an artifact with bytes gets its size and
// sha256 from them (a size or sha256 given must match), and its bytes are
// kept, served back by Blob. An artifact without bytes must name its
// size, sha256 and URL. The version must be new for the product. It
// returns the bundle as stored.
func (s *Service) CreateBundle(ctx context.Context, product string, b jobs.Bundle, files map[string][]byte) (jobs.Bundle, error) {
	var out jobs.Bundle
	err := s.Store.update(ctx, func(t *tx) error {
		var err error
		out, err = s.createBundle(ctx, t, product, b, files)
		return err
	})
	if err != nil {
		return jobs.Bundle{}, fmt.Errorf("create bundle %s of %s: %w", b.Version, product, err)
	}
	s.log().Info("bundle created", "product", product, "version", b.Version, "tag", b.Tag, "artifacts", len(out.Artifacts))
	return out, nil
}

func (s *Service) createBundle(ctx context.Context, t *tx, product string, b jobs.Bundle, files map[string][]byte) (jobs.Bundle, error) {
	if _, err := productOrFail(ctx, t, product); err != nil {
		return b, err
	}
	b.Artifacts = slices.Clone(b.Artifacts)
	var probs []string
	used := map[string]bool{}
	for i := range b.Artifacts {
		a := &b.Artifacts[i]
		data, ok := files[a.Name]
		if !ok {
			continue
		}
		used[a.Name] = true
		sum := sha256.Sum256(data)
		hexSum := hex.EncodeToString(sum[:])
		switch {
		case a.SHA256 == "":
			a.SHA256 = hexSum
		case a.SHA256 != hexSum:
			probs = append(probs, fmt.Sprintf("bundle.artifacts[%d].sha256: the file's bytes hash to %s, not %s", i, hexSum, a.SHA256))
		}
		switch {
		case a.Size == 0:
			a.Size = int64(len(data))
		case a.Size != int64(len(data)):
			probs = append(probs, fmt.Sprintf("bundle.artifacts[%d].size: the file has %d bytes, not %d", i, len(data), a.Size))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !used[name] {
			probs = append(probs, fmt.Sprintf("files: %q is not the name of an artifact of the bundle", name))
		}
	}
	probs = append(probs, jobsProblems(jobs.WorkOrder{Bundle: b}, "bundle.")...)
	if len(probs) > 0 {
		return b, fail(ErrInvalid, "bundle %s of %s is invalid: %s", b.Version, product, strings.Join(probs, "; "))
	}
	if ok, err := t.bundleExists(ctx, product, b.Version); err != nil {
		return b, err
	} else if ok {
		return b, fail(ErrExists, "product %s already has bundle %s: give the new bundle a new version", product, b.Version)
	}
	for _, a := range b.Artifacts {
		if data, ok := files[a.Name]; ok {
			if err := t.insertBlob(ctx, a.SHA256, data); err != nil {
				return b, fmt.Errorf("store artifact %s: %w", a.Name, err)
			}
		}
	}
	if err := t.insertBundle(ctx, product, b, formatTime(s.now())); err != nil {
		return b, t.unique(err, "product %s already has bundle %s: give the new bundle a new version", product, b.Version)
	}
	return b, nil
}

// Bundle returns the bundle version of product.
func (s *Service) Bundle(ctx context.Context, product, version string) (jobs.Bundle, error) {
	var b jobs.Bundle
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		b, err = bundleOrFail(ctx, t, product, version)
		return err
	})
	if err != nil {
		return jobs.Bundle{}, fmt.Errorf("read bundle %s of %s: %w", version, product, err)
	}
	return b, nil
}

func bundleOrFail(ctx context.Context, t *tx, product, version string) (jobs.Bundle, error) {
	b, err := t.bundle(ctx, product, version)
	if isNoRows(err) {
		return b, fail(jobs.ErrNotFound, "product %s has no bundle %s: check the version", product, version)
	}
	return b, err
}

// Bundles returns the product's bundles, oldest first.
func (s *Service) Bundles(ctx context.Context, product string) ([]jobs.Bundle, error) {
	var out []jobs.Bundle
	err := s.Store.view(ctx, func(t *tx) error {
		if _, err := productOrFail(ctx, t, product); err != nil {
			return err
		}
		versions, err := t.bundleVersions(ctx, product)
		if err != nil {
			return err
		}
		for _, v := range versions {
			b, err := t.bundle(ctx, product, v)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list bundles of %s: %w", product, err)
	}
	return out, nil
}

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Blob returns the artifact bytes whose SHA-256 is sum (64 lowercase
// hexadecimal digits). The bytes are checked against sum before they are
// returned.
func (s *Service) Blob(ctx context.Context, sum string) ([]byte, error) {
	if !sha256Pattern.MatchString(sum) {
		return nil, fmt.Errorf("read artifact %q: %w", sum, fail(ErrInvalid, "an artifact is named by its sha256: 64 lowercase hexadecimal digits"))
	}
	var data []byte
	err := s.Store.view(ctx, func(t *tx) error {
		var err error
		data, err = t.blob(ctx, sum)
		if isNoRows(err) {
			return fail(jobs.ErrNotFound, "the DMS holds no artifact with sha256 %s", sum)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read artifact %s: %w", sum, err)
	}
	got := sha256.Sum256(data)
	if want, _ := hex.DecodeString(sum); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("read artifact %s: stored bytes hash to %x: the database is damaged", sum, got)
	}
	return data, nil
}
