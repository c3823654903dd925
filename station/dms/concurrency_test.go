package dms

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// TestConcurrentClaims races 16 devices for a token with 10 claims left:
// exactly 10 are activated, the other 6 are told the token is spent, and
// the device count, the token's count and the serials agree. In the
// second case the claims come from two stores on the same file, as two
// DMS processes would: BEGIN IMMEDIATE, not the Go connection pool, keeps
// them apart.
func TestConcurrentClaims(t *testing.T) {
	tests := []struct {
		name   string
		stores int
	}{
		{"one store", 1},
		{"two stores on one file", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "dms.db")
			var svcs []*Service
			for range tt.stores {
				st, err := OpenSQLite(ctx, path)
				if err != nil {
					t.Fatalf("OpenSQLite = %v", err)
				}
				t.Cleanup(func() { st.Close() })
				svcs = append(svcs, &Service{Store: st, TokenKey: testKey})
			}
			addProduct(t, svcs[0], "PROD", jobs.StageProduction)
			id, secret := addToken(t, svcs[0], "PROD", 12, time.Time{})
			// Two claims already used: 10 left.
			for n := 100; n < 102; n++ {
				if _, err := svcs[0].Claim(ctx, "PROD", secret, hwID(n), "1.0", "s"); err != nil {
					t.Fatalf("Claim(%s) = %v", hwID(n), err)
				}
			}

			const devices = 16
			type result struct {
				hw  flasher.HardwareID
				a   jobs.Activation
				err error
			}
			results := make(chan result, devices)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range devices {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					svc := svcs[i%len(svcs)]
					a, err := svc.Claim(ctx, "PROD", secret, hwID(i), "1.0", fmt.Sprintf("station-%d", i%4))
					results <- result{hwID(i), a, err}
				}()
			}
			close(start)
			wg.Wait()
			close(results)

			ok, spent := 0, 0
			serials := map[string]flasher.HardwareID{}
			for r := range results {
				switch {
				case r.err == nil:
					ok++
					if other, dup := serials[r.a.Serial]; dup {
						t.Errorf("serial %s given to %s and %s", r.a.Serial, other, r.hw)
					}
					serials[r.a.Serial] = r.hw
				case errors.Is(r.err, jobs.ErrTokenSpent):
					spent++
				default:
					t.Errorf("Claim(%s) = %v, want success or ErrTokenSpent", r.hw, r.err)
				}
			}
			if ok != 10 || spent != 6 {
				t.Errorf("16 concurrent claims = %d activated, %d spent; want 10, 6", ok, spent)
			}
			devs, err := svcs[0].Devices(ctx, "PROD")
			if err != nil {
				t.Fatalf("Devices = %v", err)
			}
			if len(devs) != 12 {
				t.Errorf("Devices(PROD) = %d devices, want 12", len(devs))
			}
			info, err := svcs[0].Token(ctx, id)
			if err != nil {
				t.Fatalf("Token = %v", err)
			}
			if info.Used != 12 || info.Left != 0 {
				t.Errorf("Token = used %d left %d, want 12, 0", info.Used, info.Left)
			}
		})
	}
}
