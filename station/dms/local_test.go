package dms

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

func TestLocalPreflight(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		tests := []struct {
			name string
			// setup prepares device 1 and returns the work order's product.
			setup   func(t *testing.T, s *Service, l *Local) string
			want    jobs.Verdict
			refusal string
		}{
			{
				name:  "unknown device may go ahead",
				setup: func(t *testing.T, s *Service, l *Local) string { return "PROD" },
				want:  jobs.Verdict{},
			},
			{
				name: "device locked to another production product is refused",
				setup: func(t *testing.T, s *Service, l *Local) string {
					claimOne(t, s, "PROD", 1)
					return "PROD2"
				},
				want:    jobs.Verdict{Known: true, Product: "PROD", Locked: true, Serial: "PROD-000001", FirmwareVersion: "1.0"},
				refusal: "locked to product PROD (serial PROD-000001); set this device aside",
			},
			{
				name: "device on a development product may be re-activated",
				setup: func(t *testing.T, s *Service, l *Local) string {
					claimOne(t, s, "DEV", 1)
					return "PROD"
				},
				want: jobs.Verdict{Known: true, Product: "DEV", Serial: "DEV-000001", FirmwareVersion: "1.0"},
			},
			{
				name: "device of this product, not done, may get a newer bundle",
				setup: func(t *testing.T, s *Service, l *Local) string {
					claimOne(t, s, "PROD", 1)
					return "PROD"
				},
				want: jobs.Verdict{Known: true, Product: "PROD", Locked: true, Serial: "PROD-000001", FirmwareVersion: "1.0"},
			},
			{
				name: "device this work order completed is done",
				setup: func(t *testing.T, s *Service, l *Local) string {
					claimOne(t, s, "PROD", 1)
					if err := l.Complete(ctx, jobs.CompleteRequest{WorkOrder: "WO-1", HardwareID: hwID(1)}); err != nil {
						t.Fatalf("Complete = %v", err)
					}
					return "PROD"
				},
				want: jobs.Verdict{Known: true, Product: "PROD", Locked: true, Serial: "PROD-000001", FirmwareVersion: "1.0", Done: true},
			},
			{
				name: "device another work order completed is not done for this one",
				setup: func(t *testing.T, s *Service, l *Local) string {
					claimOne(t, s, "PROD", 1)
					if err := l.Complete(ctx, jobs.CompleteRequest{WorkOrder: "WO-0", HardwareID: hwID(1)}); err != nil {
						t.Fatalf("Complete = %v", err)
					}
					return "PROD"
				},
				want: jobs.Verdict{Known: true, Product: "PROD", Locked: true, Serial: "PROD-000001", FirmwareVersion: "1.0"},
			},
			{
				name: "new device for an archived product is refused",
				setup: func(t *testing.T, s *Service, l *Local) string {
					archive(t, s, "PROD", true)
					return "PROD"
				},
				refusal: "product PROD is archived and takes no new devices; set this device aside",
			},
			{
				name: "device of an archived product is still served",
				setup: func(t *testing.T, s *Service, l *Local) string {
					claimOne(t, s, "PROD", 1)
					archive(t, s, "PROD", true)
					return "PROD"
				},
				want: jobs.Verdict{Known: true, Product: "PROD", Locked: true, Serial: "PROD-000001", FirmwareVersion: "1.0"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, _ := newTestService(t, b)
				l := &Local{Service: s}
				for _, p := range []string{"PROD", "PROD2"} {
					addProduct(t, s, p, jobs.StageProduction)
				}
				addProduct(t, s, "DEV", jobs.StageDevelopment)
				product := tt.setup(t, s, l)
				req := jobs.PreflightRequest{WorkOrder: "WO-1", Product: product, HardwareID: hwID(1)}
				v, err := l.Preflight(ctx, req)
				if err != nil {
					t.Fatalf("Preflight(%+v) = %v", req, err)
				}
				want := tt.want
				want.Refusal = tt.refusal
				if v != want {
					t.Errorf("Preflight(%+v) = %+v, want %+v", req, v, want)
				}
			})
		}
	})
}

// TestLocalPipeline runs a device the way the pipeline does: preflight,
// activate, lock, done; then the same device again, as after a crash.
func TestLocalPipeline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		l := &Local{Service: s}
		bundle, files := testBundle("1.0")
		res, err := s.Seed(ctx, SeedSpec{
			Product:   jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageProduction},
			Bundle:    bundle,
			Files:     files,
			WorkOrder: WorkOrderSpec{ID: "WO-1", Quantity: 3, Lock: jobs.LockPolicy{DMS: true}},
		})
		if err != nil {
			t.Fatalf("Seed = %v", err)
		}
		wo := res.WorkOrder
		hw := hwID(7)
		run := func() (jobs.Verdict, jobs.Activation) {
			t.Helper()
			v, err := l.Preflight(ctx, jobs.PreflightRequest{WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: hw})
			if err != nil || v.Refusal != "" {
				t.Fatalf("Preflight = %+v, %v; want no refusal", v, err)
			}
			a, err := l.Activate(ctx, jobs.ActivateRequest{
				WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: hw, FirmwareVersion: wo.Bundle.Version,
				Token: wo.Authorization.Token, Station: "line-1",
			})
			if err != nil {
				t.Fatalf("Activate = %v", err)
			}
			if err := l.Lock(ctx, jobs.LockRequest{WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: hw}); err != nil {
				t.Fatalf("Lock = %v", err)
			}
			if err := l.Complete(ctx, jobs.CompleteRequest{WorkOrder: wo.ID, HardwareID: hw}); err != nil {
				t.Fatalf("Complete = %v", err)
			}
			return v, a
		}
		v1, a1 := run()
		v2, a2 := run()
		if v1.Known || v1.Done {
			t.Errorf("first Preflight = %+v, want an unknown device", v1)
		}
		if !v2.Done || v2.Serial != a1.Serial {
			t.Errorf("second Preflight = %+v, want done with serial %s", v2, a1.Serial)
		}
		if a1.Repeat || !a2.Repeat || a1.Serial != "THERMO-000001" || a2.Serial != a1.Serial || a2.ClaimsLeft != 2 {
			t.Errorf("Activate twice = %+v then %+v, want THERMO-000001, one claim used", a1, a2)
		}
		d, err := s.Device(ctx, hw)
		if err != nil {
			t.Fatalf("Device = %v", err)
		}
		want := []EventKind{EventActivated, EventClaimed, EventFlashed, EventLocked, EventDone}
		if got := kinds(d); !slices.Equal(got, want) {
			t.Errorf("history = %v, want %v", got, want)
		}
		for _, e := range d.History {
			if e.Kind == EventClaimed && (e.Token != res.TokenID || e.WorkOrder != "WO-1" || e.Station != "line-1") {
				t.Errorf("claimed event = %+v, want token %s, work order WO-1, station line-1", e, res.TokenID)
			}
			if e.Kind == EventFlashed && e.FirmwareVersion != "1.0" {
				t.Errorf("flashed event = %+v, want firmware 1.0", e)
			}
		}
	})
}

func TestLocalLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		tests := []struct {
			name  string
			setup func(t *testing.T, s *Service)
			want  error
		}{
			{"unknown device", func(t *testing.T, s *Service) {}, ErrNotActivated},
			{"device on another development product", func(t *testing.T, s *Service) { claimOne(t, s, "DEV2", 1) }, ErrNotActivated},
			{"device locked to another product", func(t *testing.T, s *Service) { claimOne(t, s, "PROD", 1) }, jobs.ErrLockedElsewhere},
			{"device of the product", func(t *testing.T, s *Service) { claimOne(t, s, "DEV", 1) }, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, _ := newTestService(t, b)
				addProduct(t, s, "DEV", jobs.StageDevelopment)
				addProduct(t, s, "DEV2", jobs.StageDevelopment)
				addProduct(t, s, "PROD", jobs.StageProduction)
				tt.setup(t, s)
				l := &Local{Service: s}
				req := jobs.LockRequest{WorkOrder: "WO-1", Product: "DEV", HardwareID: hwID(1)}
				err := l.Lock(ctx, req)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("Lock(%+v) = %v, want %v", req, err, tt.want)
				}
				if err != nil {
					return
				}
				if d, _ := s.Device(ctx, hwID(1)); !d.Locked {
					t.Errorf("Device after Lock = %+v, want locked", d)
				}
				if err := l.Lock(ctx, req); err != nil {
					t.Errorf("Lock again = %v, want nil", err)
				}
				d, _ := s.Device(ctx, hwID(1))
				if got := kinds(d); slices.Index(got, EventLocked) != len(got)-1 || strings.Count(strings.Join(toStrings(got), ","), "locked") != 1 {
					t.Errorf("history after two locks = %v, want one locked event, last", got)
				}
			})
		}
	})
}

func toStrings(ks []EventKind) []string {
	var out []string
	for _, k := range ks {
		out = append(out, string(k))
	}
	return out
}

// TestLocalUnavailable: a database that fails is, to the pipeline, a DMS
// it cannot reach; a rule's refusal is not.
func TestLocalUnavailable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "PROD", jobs.StageProduction)
		_, secret := addToken(t, s, "PROD", 1, time.Time{})
		l := &Local{Service: s}
		req := jobs.ActivateRequest{Product: "PROD", HardwareID: hwID(1), Token: jobs.NewSecret(TokenPrefix + "x")}
		if _, err := l.Activate(ctx, req); !errors.Is(err, jobs.ErrTokenInvalid) || errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("Activate(unknown token) = %v, want ErrTokenInvalid only", err)
		}
		s.Store.Close()
		req.Token = secret
		if _, err := l.Activate(ctx, req); !errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("Activate(closed database) = %v, want ErrUnavailable", err)
		}
		if _, err := l.Preflight(ctx, jobs.PreflightRequest{Product: "PROD", HardwareID: hwID(1)}); !errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("Preflight(closed database) = %v, want ErrUnavailable", err)
		}
	})
}
