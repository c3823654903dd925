package dms

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/station-dev/station/jobs"
)

func TestKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		if has, err := s.HasAdminKey(ctx); err != nil || has {
			t.Fatalf("HasAdminKey(new DMS) = %v, %v; want false", has, err)
		}
		tests := []struct {
			key     Key
			wantErr error
		}{
			{Key{Role: RoleAdmin, Name: "ops"}, nil},
			{Key{Role: RoleSupport, Product: "P"}, nil},
			{Key{Role: RoleStation, Station: "line-1"}, nil},
			{Key{Role: RoleSupport}, ErrInvalid},
			{Key{Role: RoleSupport, Product: "NOPE"}, jobs.ErrNotFound},
			{Key{Role: RoleStation}, ErrInvalid},
			{Key{Role: RoleAdmin, Station: "x"}, ErrInvalid},
			{Key{Role: "root"}, ErrInvalid},
		}
		secrets := map[string]Key{}
		for _, tc := range tests {
			k, secret, err := s.CreateKey(ctx, tc.key)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("CreateKey(%+v) = %v, want %v", tc.key, err, tc.wantErr)
				continue
			}
			if err != nil {
				continue
			}
			if !strings.HasPrefix(secret.Reveal(), KeyPrefix) || k.ID == "" {
				t.Errorf("CreateKey(%+v) = %+v with a secret lacking %q", tc.key, k, KeyPrefix)
			}
			secrets[secret.Reveal()] = k
		}
		for secret, k := range secrets {
			p, err := s.Authenticate(ctx, secret)
			if err != nil || p.KeyID != k.ID || p.Role != k.Role || p.Product != k.Product || p.Station != k.Station {
				t.Errorf("Authenticate(key %s) = %+v, %v; want %+v", k.ID, p, err, k)
			}
		}
		for _, bad := range []string{"", "dmk_nope", "stk_tokenisnokey"} {
			if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
			}
		}
		for secret, k := range secrets {
			if k.Role != RoleStation {
				continue
			}
			if err := s.RevokeKey(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Authenticate(revoked key) = %v, want ErrUnauthenticated", err)
			}
		}
		if has, err := s.HasAdminKey(ctx); err != nil || !has {
			t.Errorf("HasAdminKey() = %v, %v; want true", has, err)
		}
		keys, err := s.Keys(ctx)
		if err != nil || len(keys) != 3 {
			t.Fatalf("Keys() = %d keys, %v; want 3", len(keys), err)
		}
		// Only a keyed hash is stored: no secret is in the database.
		for where, raw := range storedBytes(t, s.Store) {
			for secret := range secrets {
				if bytes.Contains(raw, []byte(strings.TrimPrefix(secret, KeyPrefix))) {
					t.Errorf("%s holds an API key secret", where)
				}
			}
		}
	})
}
