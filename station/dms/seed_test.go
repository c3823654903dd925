package dms

import (
	"context"
	"errors"
	"testing"

	"github.com/station-dev/station/jobs"
)

func TestSeed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		bundle, files := testBundle("1.0")
		product := jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageProduction}
		tests := []struct {
			name   string
			spec   SeedSpec
			want   error
			claims int
		}{
			{
				name:   "claims default to the quantity",
				spec:   SeedSpec{Customer: Customer{ID: "ACME", Name: "Acme"}, Product: product, Bundle: bundle, Files: files, WorkOrder: WorkOrderSpec{ID: "WO-1", Quantity: 4}},
				claims: 4,
			},
			{
				name:   "claims given",
				spec:   SeedSpec{Product: product, Bundle: bundle, Files: files, Claims: 9, WorkOrder: WorkOrderSpec{ID: "WO-1", Quantity: 4}},
				claims: 9,
			},
			{
				name: "a bad work order leaves nothing behind",
				spec: SeedSpec{Customer: Customer{ID: "ACME", Name: "Acme"}, Product: product, Bundle: bundle, Files: files, Claims: 3,
					WorkOrder: WorkOrderSpec{ID: "WO-1", Quantity: 4, Label: jobs.LabelSpec{Copies: 99}}},
				want: ErrInvalid,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, _ := newTestService(t, b)
				res, err := s.Seed(ctx, tt.spec)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("Seed = %v, want %v", err, tt.want)
				}
				if err != nil {
					if _, perr := s.Product(ctx, "THERMO"); !errors.Is(perr, jobs.ErrNotFound) {
						t.Errorf("after a failed Seed, Product(THERMO) = %v, want ErrNotFound", perr)
					}
					if _, cerr := s.Customer(ctx, "ACME"); !errors.Is(cerr, jobs.ErrNotFound) {
						t.Errorf("after a failed Seed, Customer(ACME) = %v, want ErrNotFound", cerr)
					}
					return
				}
				if err := res.WorkOrder.Validate(); err != nil {
					t.Errorf("Seed().WorkOrder.Validate() = %v, want nil", err)
				}
				if res.WorkOrder.Authorization.Token.Reveal() != res.Token.Reveal() || res.Token.IsZero() {
					t.Errorf("Seed().WorkOrder has token %v, want the seeded token", res.WorkOrder.Authorization.Token)
				}
				info, err := s.Token(ctx, res.TokenID)
				if err != nil || info.MaxClaims != tt.claims || info.Product != "THERMO" {
					t.Errorf("Token(%s) = %+v, %v; want %d claims for THERMO", res.TokenID, info, err, tt.claims)
				}
				a, err := s.Claim(ctx, "THERMO", res.Token, hwID(1), "1.0", "s")
				if err != nil || a.Serial != "THERMO-000001" {
					t.Errorf("Claim with the seeded token = %+v, %v; want THERMO-000001", a, err)
				}
			})
		}
	})
}
