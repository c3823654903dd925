package dms

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

func TestCreateToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, clock := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		tests := []struct {
			name    string
			product string
			claims  int
			expiry  time.Time
			want    error
		}{
			{"no expiry", "P", 10, time.Time{}, nil},
			{"with expiry", "P", 1, clock.Now().Add(24 * time.Hour), nil},
			{"no claims", "P", 0, time.Time{}, ErrInvalid},
			{"expiry past", "P", 5, clock.Now().Add(-time.Second), ErrInvalid},
			{"unknown product", "NOPE", 5, time.Time{}, jobs.ErrNotFound},
		}
		var made []string
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id, secret, err := s.CreateToken(ctx, tt.product, tt.claims, tt.expiry)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("CreateToken(%s, %d, %v) = %v, want %v", tt.product, tt.claims, tt.expiry, err, tt.want)
				}
				if err != nil {
					return
				}
				made = append(made, id)
				v := secret.Reveal()
				if !strings.HasPrefix(v, TokenPrefix) || len(v) != len(TokenPrefix)+52 {
					t.Errorf("CreateToken secret has %d characters, want %q and 52 base32 digits", len(v), TokenPrefix)
				}
				info, err := s.Token(ctx, id)
				if err != nil {
					t.Fatalf("Token(%s) = %v", id, err)
				}
				if info.MaxClaims != tt.claims || info.Left != tt.claims || info.Used != 0 || !info.Expires.Equal(tt.expiry) || info.Revoked {
					t.Errorf("Token(%s) = %+v, want %d claims left, expiry %v", id, info, tt.claims, tt.expiry)
				}
				b, _ := json.Marshal(info)
				if strings.Contains(string(b), strings.TrimPrefix(v, TokenPrefix)) {
					t.Errorf("Token(%s) as JSON = %s, holds the secret", id, b)
				}
			})
		}
		list, err := s.Tokens(ctx, "P")
		if err != nil || len(list) != len(made) {
			t.Fatalf("Tokens(P) = %d tokens, %v; want %d", len(list), err, len(made))
		}
		for i, info := range list {
			if info.ID != made[i] {
				t.Errorf("Tokens(P)[%d] = %s, want %s", i, info.ID, made[i])
			}
		}
		if err := s.RevokeToken(ctx, made[0]); err != nil {
			t.Fatalf("RevokeToken(%s) = %v", made[0], err)
		}
		if err := s.RevokeToken(ctx, made[0]); err != nil {
			t.Errorf("RevokeToken(%s) again = %v, want nil", made[0], err)
		}
		if info, _ := s.Token(ctx, made[0]); !info.Revoked || !info.RevokedAt.Equal(clock.Now()) {
			t.Errorf("Token(%s) = %+v, want revoked at %v", made[0], info, clock.Now())
		}
		if err := s.RevokeToken(ctx, "T-99"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("RevokeToken(T-99) = %v, want ErrNotFound", err)
		}
	})
}

// TestTokenKey: a token is only recognised under the key it was issued
// with.
func TestTokenKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		_, secret := addToken(t, s, "P", 5, time.Time{})
		other := &Service{Store: s.Store, TokenKey: []byte("another key")}
		if _, err := other.Claim(ctx, "P", secret, hwID(1), "1.0", "s"); !errors.Is(err, jobs.ErrTokenInvalid) {
			t.Errorf("Claim under another key = %v, want ErrTokenInvalid", err)
		}
		if _, err := s.Claim(ctx, "P", secret, hwID(1), "1.0", "s"); err != nil {
			t.Errorf("Claim under the token's key = %v, want success", err)
		}
	})
}

func TestHardwareIDs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageDevelopment)
		_, secret := addToken(t, s, "P", 10, time.Time{})
		tests := []struct {
			hw   flasher.HardwareID
			want error
		}{
			{"24:0a:c4:12:34:56", nil},
			{"0123456789ABCDEF01234567", nil},
			{"USB SERIAL 42", nil},
			{"", ErrInvalid},
			{" padded", ErrInvalid},
			{"tab\there", ErrInvalid},
			{flasher.HardwareID(strings.Repeat("f", 129)), ErrInvalid},
		}
		for _, tt := range tests {
			_, err := s.Claim(ctx, "P", secret, tt.hw, "", "s")
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Errorf("Claim(%q) = %v, want %v", tt.hw, err, tt.want)
			}
		}
	})
}

func TestProducts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "B", jobs.StageProduction)
		addProduct(t, s, "A", jobs.StageDevelopment)
		claimOne(t, s, "B", 1)
		claimOne(t, s, "B", 2)
		list, err := s.Products(ctx)
		if err != nil || len(list) != 2 || list[0].Code != "A" || list[1].Code != "B" || list[0].Devices != 0 || list[1].Devices != 2 {
			t.Errorf("Products() = %+v, %v; want A with 0 devices, B with 2", list, err)
		}
	})
}

// TestFirmwareHistory: each work order that writes a bundle to a device
// is recorded once.
func TestFirmwareHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		tok, secret := addToken(t, s, "P", 1, time.Time{})
		for _, wo := range []string{"WO-1", "WO-2", "WO-3"} {
			addWorkOrder(t, s, wo, "P", tok)
		}
		steps := []struct{ wo, fw string }{{"WO-1", "1.0"}, {"WO-1", "1.0"}, {"WO-2", "2.0"}, {"WO-2", "2.0"}, {"WO-3", "1.0"}}
		for _, st := range steps {
			if _, err := s.Activate(ctx, jobs.ActivateRequest{WorkOrder: st.wo, Product: "P", HardwareID: hwID(1), FirmwareVersion: st.fw, Token: secret}); err != nil {
				t.Fatalf("Activate(%s, %s) = %v", st.wo, st.fw, err)
			}
		}
		d, err := s.Device(ctx, hwID(1))
		if err != nil {
			t.Fatalf("Device = %v", err)
		}
		var flashed []string
		for _, e := range d.History {
			if e.Kind == EventFlashed {
				flashed = append(flashed, e.WorkOrder+"="+e.FirmwareVersion)
			}
		}
		if got, want := strings.Join(flashed, " "), "WO-1=1.0 WO-2=2.0 WO-3=1.0"; got != want {
			t.Errorf("flashed events = %s, want %s", got, want)
		}
		if d.FirmwareVersion != "1.0" {
			t.Errorf("Device firmware = %s, want 1.0 (the last written)", d.FirmwareVersion)
		}
	})
}

func TestMarkDone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		bundle, files := testBundle("1.0")
		res, err := s.Seed(ctx, SeedSpec{
			Product: jobs.Product{Code: "P", Name: "P", PartNumber: "P-1", Stage: jobs.StageDevelopment},
			Bundle:  bundle, Files: files, WorkOrder: WorkOrderSpec{ID: "WO-P", Quantity: 2},
		})
		if err != nil {
			t.Fatalf("Seed = %v", err)
		}
		addProduct(t, s, "Q", jobs.StageDevelopment)
		claimOne(t, s, "Q", 2)
		if _, err := s.Claim(ctx, "P", res.Token, hwID(1), "1.0", "s"); err != nil {
			t.Fatalf("Claim = %v", err)
		}
		tests := []struct {
			name string
			wo   string
			hw   flasher.HardwareID
			want error
		}{
			{"activated device", "WO-P", hwID(1), nil},
			{"twice", "WO-P", hwID(1), nil},
			{"unknown device", "WO-P", hwID(9), ErrNotActivated},
			{"device of another product than the work order's", "WO-P", hwID(2), ErrNotActivated},
			{"bad work order id", "", hwID(1), ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := s.MarkDone(ctx, tt.wo, tt.hw); tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Errorf("MarkDone(%q, %s) = %v, want %v", tt.wo, tt.hw, err, tt.want)
				}
			})
		}
		d, _ := s.Device(ctx, hwID(1))
		if n := strings.Count(strings.Join(toStrings(kinds(d)), ","), "done"); n != 1 {
			t.Errorf("history = %v, want one done event", kinds(d))
		}
		// The work order's count takes each device once.
		if n, err := s.WorkOrderDone(ctx, "WO-P"); n != 1 || err != nil {
			t.Errorf("WorkOrderDone(WO-P) = %d, %v; want 1", n, err)
		}
		if _, err := s.WorkOrderDone(ctx, "WO-NONE"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("WorkOrderDone(WO-NONE) = %v, want ErrNotFound", err)
		}
	})
}
