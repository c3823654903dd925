package dms

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
)

// Role is what an API key may do.
type Role string

// Roles. An activation token is no API key: a contract manufacturer who
// holds only a token can claim devices with it and do nothing else.
const (
	// RoleAdmin may do everything: create customers, products, bundles,
	// work orders, tokens and keys.
	RoleAdmin Role = "admin"
	// RoleSupport may read one product's records, and change nothing.
	RoleSupport Role = "support"
	// RoleStation may do what a station does, under the work orders
	// assigned to its station (see StationWorkOrder): read them and
	// their products' bundles, download their artifacts, run preflight,
	// activate, lock and complete their devices; and push its own
	// journal.
	RoleStation Role = "station"
)

// KeyPrefix starts every API key secret.
const KeyPrefix = "dmk_"

// Key is what the DMS tells about an API key. It never holds the secret.
type Key struct {
	ID      string    `json:"id"`
	Role    Role      `json:"role"`
	Product string    `json:"product,omitempty"`
	Station string    `json:"station,omitempty"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	Revoked bool      `json:"revoked"`
}

// Principal is who an API key authenticates.
type Principal struct {
	KeyID   string
	Role    Role
	Product string // support keys
	Station string // station keys
}

// ErrUnauthenticated means a key is missing, unknown or revoked.
var ErrUnauthenticated = errors.New("unknown or revoked key")

// CreateKey issues an API key and returns it with its secret, shown this
// once: the DMS keeps only a keyed hash. A support key names its product,
// a station key its station id.
func (s *Service) CreateKey(ctx context.Context, k Key) (Key, jobs.Secret, error) {
	if err := checkName("name", k.Name, jobs.MaxNameLen); err != nil {
		return Key{}, jobs.Secret{}, err
	}
	switch k.Role {
	case RoleAdmin:
		if k.Product != "" || k.Station != "" {
			return Key{}, jobs.Secret{}, fail(ErrInvalid, "an admin key names no product and no station")
		}
	case RoleSupport:
		if k.Product == "" || k.Station != "" {
			return Key{}, jobs.Secret{}, fail(ErrInvalid, "a support key names its product, and no station")
		}
	case RoleStation:
		if err := checkID("station", k.Station); err != nil {
			return Key{}, jobs.Secret{}, err
		}
		if k.Product != "" {
			return Key{}, jobs.Secret{}, fail(ErrInvalid, "a station key names its station, and no product")
		}
	default:
		return Key{}, jobs.Secret{}, fail(ErrInvalid, "role %q is not admin, support or station", k.Role)
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, jobs.Secret{}, fmt.Errorf("create key: %w", err)
	}
	secret := KeyPrefix + tokenEncoding.EncodeToString(raw)
	k.Created, k.Revoked = s.now(), false
	err := s.Store.update(ctx, func(t *tx) error {
		if k.Role == RoleSupport {
			if _, err := productOrFail(ctx, t, k.Product); err != nil {
				return err
			}
		}
		n, err := t.nextCounter(ctx, "key")
		if err != nil {
			return err
		}
		k.ID = "K-" + strconv.FormatInt(n, 10)
		_, err = t.exec(ctx, `INSERT INTO api_keys (id, role, product, station, name, hash, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			k.ID, string(k.Role), nullString(k.Product), nullString(k.Station), k.Name, s.hash(secret), formatTime(k.Created))
		return err
	})
	if err != nil {
		return Key{}, jobs.Secret{}, fmt.Errorf("create %s key: %w", k.Role, err)
	}
	s.log().Info("api key created", "key", k.ID, "role", k.Role, "product", k.Product, "station", k.Station)
	return k, jobs.NewSecret(secret), nil
}

// Authenticate returns who secret belongs to, or ErrUnauthenticated.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, KeyPrefix) {
		return Principal{}, ErrUnauthenticated
	}
	var p Principal
	var role string
	var product, station, revoked sql.NullString
	err := s.Store.view(ctx, func(t *tx) error {
		return t.queryRow(ctx, "SELECT id, role, product, station, revoked FROM api_keys WHERE hash = $1", s.hash(secret)).
			Scan(&p.KeyID, &role, &product, &station, &revoked)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Principal{}, ErrUnauthenticated
	case err != nil:
		return Principal{}, fmt.Errorf("check key: %w", err)
	case revoked.Valid:
		return Principal{}, ErrUnauthenticated
	}
	p.Role, p.Product, p.Station = Role(role), product.String, station.String
	return p, nil
}

// RevokeKey revokes an API key for good.
func (s *Service) RevokeKey(ctx context.Context, id string) error {
	err := s.Store.update(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL", formatTime(s.now()), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fail(jobs.ErrNotFound, "no active key %s", id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	s.log().Info("api key revoked", "key", id)
	return nil
}

// Keys lists the API keys, without their secrets.
func (s *Service) Keys(ctx context.Context) ([]Key, error) {
	var keys []Key
	err := s.Store.view(ctx, func(t *tx) error {
		rows, err := t.query(ctx, "SELECT id, role, product, station, name, created, revoked FROM api_keys ORDER BY created, id")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k Key
			var role, created string
			var product, station, revoked sql.NullString
			if err := rows.Scan(&k.ID, &role, &product, &station, &k.Name, &created, &revoked); err != nil {
				return err
			}
			k.Role, k.Product, k.Station, k.Revoked = Role(role), product.String, station.String, revoked.Valid
			if k.Created, err = parseTime(created); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

// HasAdminKey reports whether an active admin key exists, so that a new
// DMS can create its first one.
func (s *Service) HasAdminKey(ctx context.Context) (bool, error) {
	var n int
	err := s.Store.view(ctx, func(t *tx) error {
		return t.queryRow(ctx, "SELECT count(*) FROM api_keys WHERE role = 'admin' AND revoked IS NULL").Scan(&n)
	})
	if err != nil {
		return false, fmt.Errorf("look for an admin key: %w", err)
	}
	return n > 0, nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
