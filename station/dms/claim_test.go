package dms

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/internal/testkit"
)

// claimEnv is one case's DMS: products PROD and PROD2 (production), DEV
// and DEV2 (development), OLD (production, archived by the cases that
// need it), each with bundles 1.0 and 2.0 and a 10-claim token.
type claimEnv struct {
	svc     *Service
	clock   *testkit.Clock
	ids     map[string]string
	secrets map[string]jobs.Secret
}

func newClaimEnv(t *testing.T, b backend) *claimEnv {
	svc, clock := newTestService(t, b)
	e := &claimEnv{svc: svc, clock: clock, ids: map[string]string{}, secrets: map[string]jobs.Secret{}}
	for _, p := range []struct {
		code  string
		stage jobs.Stage
	}{{"PROD", jobs.StageProduction}, {"PROD2", jobs.StageProduction}, {"DEV", jobs.StageDevelopment}, {"DEV2", jobs.StageDevelopment}, {"OLD", jobs.StageProduction}} {
		addProduct(t, svc, p.code, p.stage)
		e.ids[p.code], e.secrets[p.code] = addToken(t, svc, p.code, 10, time.Time{})
	}
	return e
}

// claim claims device n for product with the product's own token.
func (e *claimEnv) claim(product string, n int, firmware string) (jobs.Activation, error) {
	return e.svc.Claim(context.Background(), product, e.secrets[product], hwID(n), firmware, "station-1")
}

func (e *claimEnv) mustClaim(t *testing.T, product string, n int, firmware string) jobs.Activation {
	t.Helper()
	a, err := e.claim(product, n, firmware)
	if err != nil {
		t.Fatalf("Claim(%s, %s) = %v, want success", product, hwID(n), err)
	}
	return a
}

func (e *claimEnv) used(t *testing.T, product string) int {
	t.Helper()
	info, err := e.svc.Token(context.Background(), e.ids[product])
	if err != nil {
		t.Fatalf("Token(%s) = %v", e.ids[product], err)
	}
	return info.Used
}

func (e *claimEnv) device(t *testing.T, n int) Device {
	t.Helper()
	d, err := e.svc.Device(context.Background(), hwID(n))
	if err != nil {
		t.Fatalf("Device(%s) = %v", hwID(n), err)
	}
	return d
}

func kinds(d Device) []EventKind {
	var out []EventKind
	for _, e := range d.History {
		out = append(out, e.Kind)
	}
	return out
}

// TestClaimRules has one case per domain rule of DESIGN.md: the last
// claim of each case is the one under test.
func TestClaimRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		tests := []struct {
			name string
			// run sets the case up and makes the claim under test.
			run func(t *testing.T, e *claimEnv) (jobs.Activation, error)
			// want is the sentinel the claim must fail with; nil for success.
			want error
			// words must appear in the error's message.
			words []string
			// check looks at the DMS after the claim.
			check func(t *testing.T, e *claimEnv, a jobs.Activation)
		}{
			{
				name: "production lock: a device of one production product is refused by another",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "PROD", 1, "1.0")
					return e.claim("PROD2", 1, "1.0")
				},
				want:  jobs.ErrLockedElsewhere,
				words: []string{"locked to product PROD ", "PROD-000001", "set this device aside"},
				check: func(t *testing.T, e *claimEnv, _ jobs.Activation) {
					if d := e.device(t, 1); d.Product != "PROD" || !d.Locked {
						t.Errorf("Device = product %s locked %v, want PROD locked", d.Product, d.Locked)
					}
					if n := e.used(t, "PROD2"); n != 0 {
						t.Errorf("PROD2 token used %d claims, want 0", n)
					}
				},
			},
			{
				name: "production lock: a locked device takes a newer bundle of its product",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "PROD", 1, "1.0")
					return e.claim("PROD", 1, "2.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if !a.Repeat || !a.Locked || a.Serial != "PROD-000001" {
						t.Errorf("Claim = %+v, want repeat, locked, PROD-000001", a)
					}
					if d := e.device(t, 1); d.FirmwareVersion != "2.0" {
						t.Errorf("Device firmware = %q, want 2.0", d.FirmwareVersion)
					}
					if n := e.used(t, "PROD"); n != 1 {
						t.Errorf("PROD token used %d claims, want 1", n)
					}
				},
			},
			{
				name: "production lock: activation to a production product locks",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					return e.claim("PROD", 1, "1.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if !a.Locked || a.Repeat || a.ClaimsLeft != 9 {
						t.Errorf("Claim = %+v, want locked, not repeat, 9 claims left", a)
					}
					if got, want := kinds(e.device(t, 1)), []EventKind{EventActivated, EventClaimed, EventLocked}; !slices.Equal(got, want) {
						t.Errorf("history = %v, want %v", got, want)
					}
				},
			},
			{
				name: "development product: a device is re-activated to a production product",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					if a := e.mustClaim(t, "DEV", 1, "1.0"); a.Locked {
						t.Errorf("Claim(DEV) = %+v, want not locked", a)
					}
					return e.claim("PROD", 1, "1.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if a.Repeat || !a.Locked || a.Serial != "PROD-000001" {
						t.Errorf("Claim = %+v, want new, locked, PROD-000001", a)
					}
					if d, u1, u2 := e.device(t, 1), e.used(t, "DEV"), e.used(t, "PROD"); d.Product != "PROD" || u1 != 1 || u2 != 1 {
						t.Errorf("device on %s, claims used DEV %d PROD %d; want PROD, 1, 1", d.Product, u1, u2)
					}
					if got := kinds(e.device(t, 1)); !slices.Contains(got, EventReactivated) {
						t.Errorf("history = %v, want a reactivated event", got)
					}
				},
			},
			{
				name: "development product: a device moves to another development product",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "DEV", 1, "1.0")
					return e.claim("DEV2", 1, "1.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if a.Locked || a.Serial != "DEV2-000001" {
						t.Errorf("Claim = %+v, want not locked, DEV2-000001", a)
					}
				},
			},
			{
				name: "development product: a device locked by a work order stays locked",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "DEV", 1, "1.0")
					if err := e.svc.Lock(ctx, jobs.LockRequest{WorkOrder: "WO-1", Product: "DEV", HardwareID: hwID(1)}); err != nil {
						t.Fatalf("Lock = %v", err)
					}
					return e.claim("PROD", 1, "1.0")
				},
				want:  jobs.ErrLockedElsewhere,
				words: []string{"locked to product DEV"},
			},
			{
				name: "archived product: no new device",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					archive(t, e.svc, "OLD", true)
					return e.claim("OLD", 1, "1.0")
				},
				want:  jobs.ErrArchived,
				words: []string{"product OLD is archived"},
				check: func(t *testing.T, e *claimEnv, _ jobs.Activation) {
					if n := e.used(t, "OLD"); n != 0 {
						t.Errorf("OLD token used %d claims, want 0", n)
					}
				},
			},
			{
				name: "archived product: no device re-activated from development",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "DEV", 1, "1.0")
					archive(t, e.svc, "OLD", true)
					return e.claim("OLD", 1, "1.0")
				},
				want: jobs.ErrArchived,
			},
			{
				name: "archived product: a device already activated is still served",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "OLD", 1, "1.0")
					archive(t, e.svc, "OLD", true)
					return e.claim("OLD", 1, "2.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if !a.Repeat || a.Serial != "OLD-000001" {
						t.Errorf("Claim = %+v, want repeat, OLD-000001", a)
					}
					if d := e.device(t, 1); d.FirmwareVersion != "2.0" {
						t.Errorf("Device firmware = %q, want 2.0", d.FirmwareVersion)
					}
				},
			},
			{
				name: "token: spent",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.ids["PROD"], e.secrets["PROD"] = addToken(t, e.svc, "PROD", 2, time.Time{})
					e.mustClaim(t, "PROD", 1, "1.0")
					e.mustClaim(t, "PROD", 2, "1.0")
					return e.claim("PROD", 3, "1.0")
				},
				want:  jobs.ErrTokenSpent,
				words: []string{"T-6 has no claims left (2 of 2 used)", "ask your administrator for a new token"},
				check: func(t *testing.T, e *claimEnv, _ jobs.Activation) {
					if _, err := e.svc.Device(ctx, hwID(3)); !errors.Is(err, jobs.ErrNotFound) {
						t.Errorf("Device(refused) = %v, want ErrNotFound", err)
					}
				},
			},
			{
				name: "token: spent, yet a device it claimed is served again",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.ids["PROD"], e.secrets["PROD"] = addToken(t, e.svc, "PROD", 1, time.Time{})
					e.mustClaim(t, "PROD", 1, "1.0")
					return e.claim("PROD", 1, "1.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if !a.Repeat || a.ClaimsLeft != 0 {
						t.Errorf("Claim = %+v, want repeat with 0 claims left", a)
					}
				},
			},
			{
				name: "token: expired",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.ids["PROD"], e.secrets["PROD"] = addToken(t, e.svc, "PROD", 5, e.clock.Now().Add(time.Hour))
					e.mustClaim(t, "PROD", 1, "1.0")
					e.clock.Advance(time.Hour)
					return e.claim("PROD", 2, "1.0")
				},
				want:  jobs.ErrTokenExpired,
				words: []string{"T-6 expired on 2026-03-01T09:00:00Z"},
			},
			{
				name: "token: revoked",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "PROD", 1, "1.0")
					if err := e.svc.RevokeToken(ctx, e.ids["PROD"]); err != nil {
						t.Fatalf("RevokeToken = %v", err)
					}
					return e.claim("PROD", 2, "1.0")
				},
				want:  jobs.ErrTokenRevoked,
				words: []string{"T-1 was revoked"},
			},
			{
				name: "token: unknown",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.secrets["PROD"] = jobs.NewSecret(TokenPrefix + strings.Repeat("a", 52))
					return e.claim("PROD", 1, "1.0")
				},
				want:  jobs.ErrTokenInvalid,
				words: []string{"not known to the DMS"},
			},
			{
				name: "token: not one the DMS issues",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.secrets["PROD"] = jobs.NewSecret("hunter2")
					return e.claim("PROD", 1, "1.0")
				},
				want:  jobs.ErrTokenInvalid,
				words: []string{`start with "stk_"`},
			},
			{
				name: "token: of another product",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.secrets["PROD"] = e.secrets["PROD2"]
					return e.claim("PROD", 1, "1.0")
				},
				want:  jobs.ErrTokenInvalid,
				words: []string{"T-2 is for product PROD2, not PROD"},
			},
			{
				name: "idempotent: the same device claimed twice uses one claim",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "PROD", 1, "1.0")
					return e.claim("PROD", 1, "1.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if !a.Repeat || a.Serial != "PROD-000001" || a.ClaimsLeft != 9 {
						t.Errorf("Claim = %+v, want repeat, PROD-000001, 9 claims left", a)
					}
					if n := e.used(t, "PROD"); n != 1 {
						t.Errorf("token used %d claims, want 1", n)
					}
					if got, want := kinds(e.device(t, 1)), []EventKind{EventActivated, EventClaimed, EventLocked}; !slices.Equal(got, want) {
						t.Errorf("history = %v, want %v", got, want)
					}
				},
			},
			{
				name: "production lock: a product promoted to production locks its devices",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					e.mustClaim(t, "DEV", 1, "1.0")
					p, _ := e.svc.Product(ctx, "DEV")
					p.Stage = jobs.StageProduction
					if err := e.svc.UpdateProduct(ctx, p.Product); err != nil {
						t.Fatalf("UpdateProduct = %v", err)
					}
					if d := e.device(t, 1); !d.Locked {
						t.Errorf("Device after promotion = %+v, want locked", d)
					}
					return e.claim("DEV", 1, "1.0")
				},
				check: func(t *testing.T, e *claimEnv, a jobs.Activation) {
					if !a.Repeat || !a.Locked {
						t.Errorf("Claim = %+v, want repeat and locked", a)
					}
					if got := kinds(e.device(t, 1)); !slices.Equal(got, []EventKind{EventActivated, EventClaimed, EventLocked}) {
						t.Errorf("history = %v, want activated, claimed, locked", got)
					}
					if _, err := e.claim("DEV2", 1, "1.0"); !errors.Is(err, jobs.ErrLockedElsewhere) {
						t.Errorf("Claim(DEV2) = %v, want ErrLockedElsewhere", err)
					}
				},
			},
			{
				name: "firmware: a bundle of another product is refused",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					return e.claim("PROD", 1, "9.9")
				},
				want:  jobs.ErrNotFound,
				words: []string{"product PROD has no bundle 9.9"},
			},
			{
				name: "product: unknown",
				run: func(t *testing.T, e *claimEnv) (jobs.Activation, error) {
					return e.svc.Claim(ctx, "NOPE", e.secrets["PROD"], hwID(1), "", "station-1")
				},
				want:  jobs.ErrNotFound,
				words: []string{"product NOPE is not known"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newClaimEnv(t, b)
				a, err := tt.run(t, e)
				switch {
				case tt.want == nil && err != nil:
					t.Fatalf("Claim = %v, want success", err)
				case tt.want != nil && !errors.Is(err, tt.want):
					t.Fatalf("Claim = %+v, %v; want %v", a, err, tt.want)
				}
				if err != nil {
					for _, w := range tt.words {
						if !strings.Contains(err.Error(), w) {
							t.Errorf("Claim error = %q, want it to say %q", err, w)
						}
					}
					for p, s := range e.secrets {
						if strings.Contains(err.Error(), s.Reveal()) {
							t.Errorf("Claim error = %q, holds the secret of %s's token", err, p)
						}
					}
				}
				if tt.check != nil {
					tt.check(t, e, a)
				}
			})
		}
	})
}
