package dms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// TestConcurrentClaims races devices for a token with fewer claims left
// than devices: exactly as many as there are claims are activated, the
// others are told the token is spent, and the device count, the token's
// count and the serials agree. With two stores on one database the
// claims come from two DMS processes: on SQLite BEGIN IMMEDIATE, on
// PostgreSQL row locks, not the Go connection pool, keep them apart.
func TestConcurrentClaims(t *testing.T) {
	tests := []struct {
		name string
		// stores on the same database, used in turn by the claimers.
		stores int
		// claimers claim devices (distinct hardware ids) at once.
		claimers, devices int
		// maxClaims of the token, of which used are taken beforehand.
		maxClaims, used int
	}{
		{"16 devices for 10 claims left", 1, 16, 16, 12, 2},
		{"16 devices for 10 claims left, two stores on one database", 2, 16, 16, 12, 2},
		{"32 claimers, 200 devices for 100 claims", 1, 32, 200, 100, 0},
		{"32 claimers, 200 devices for 100 claims, two stores", 2, 32, 200, 100, 0},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				dsn := b.dsn(t)
				var svcs []*Service
				for range tt.stores {
					svcs = append(svcs, &Service{Store: openStore(t, dsn), TokenKey: testKey})
				}
				addProduct(t, svcs[0], "PROD", jobs.StageProduction)
				id, secret := addToken(t, svcs[0], "PROD", tt.maxClaims, time.Time{})
				for n := range tt.used {
					if _, err := svcs[0].Claim(ctx, "PROD", secret, hwID(1000+n), "1.0", "s"); err != nil {
						t.Fatalf("Claim(%s) = %v", hwID(1000+n), err)
					}
				}

				type result struct {
					hw  flasher.HardwareID
					a   jobs.Activation
					err error
				}
				results := make(chan result, tt.devices)
				next := make(chan int, tt.devices)
				for i := range tt.devices {
					next <- i
				}
				close(next)
				var wg sync.WaitGroup
				for c := range tt.claimers {
					svc := svcs[c%len(svcs)]
					wg.Go(func() {
						for i := range next {
							a, err := svc.Claim(ctx, "PROD", secret, hwID(i), "1.0", fmt.Sprintf("station-%d", c%4))
							results <- result{hwID(i), a, err}
						}
					})
				}
				wg.Wait()
				close(results)

				left := tt.maxClaims - tt.used
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
				if ok != left || spent != tt.devices-left {
					t.Errorf("%d concurrent claims = %d activated, %d spent; want %d, %d", tt.devices, ok, spent, left, tt.devices-left)
				}
				devs, err := svcs[0].Devices(ctx, "PROD")
				if err != nil {
					t.Fatalf("Devices = %v", err)
				}
				if len(devs) != tt.maxClaims {
					t.Errorf("Devices(PROD) = %d devices, want %d", len(devs), tt.maxClaims)
				}
				info, err := svcs[0].Token(ctx, id)
				if err != nil {
					t.Fatalf("Token = %v", err)
				}
				if info.Used != tt.maxClaims || info.Left != 0 {
					t.Errorf("Token = used %d left %d, want %d, 0", info.Used, info.Left, tt.maxClaims)
				}
			})
		}
	})
}

// TestConcurrentSameDevice claims one new hardware id several times at
// once. For one product: one claim is used, every claimer gets the same
// serial, one as a first activation and the rest as repeats. For two
// production products: one wins, the others are refused as locked
// elsewhere, and only the winner's token loses a claim. (On PostgreSQL
// both transactions find no device and insert it; the loser's unique
// violation makes the store run its transaction again, which then sees
// the device.)
func TestConcurrentSameDevice(t *testing.T) {
	tests := []struct {
		name     string
		products []string // claimed in turn by the claimers
	}{
		{"one product", []string{"PROD"}},
		{"two production products", []string{"PROD", "PROD2"}},
	}
	const rounds, claimers = 10, 6
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				s, _ := newTestService(t, b)
				ids, secrets := map[string]string{}, map[string]jobs.Secret{}
				for _, p := range tt.products {
					addProduct(t, s, p, jobs.StageProduction)
					ids[p], secrets[p] = addToken(t, s, p, rounds, time.Time{})
				}
				for round := range rounds {
					hw := hwID(round)
					acts := make([]jobs.Activation, claimers)
					errs := make([]error, claimers)
					var wg sync.WaitGroup
					for c := range claimers {
						p := tt.products[c%len(tt.products)]
						wg.Go(func() { acts[c], errs[c] = s.Claim(ctx, p, secrets[p], hw, "1.0", "s") })
					}
					wg.Wait()
					d, err := s.Device(ctx, hw)
					if err != nil {
						t.Fatalf("Device(%s) = %v", hw, err)
					}
					first := 0
					for c := range claimers {
						p := tt.products[c%len(tt.products)]
						switch {
						case p == d.Product && errs[c] == nil:
							if acts[c].Serial != d.Serial {
								t.Errorf("Claim(%s, %s) = serial %s, want %s", p, hw, acts[c].Serial, d.Serial)
							}
							if !acts[c].Repeat {
								first++
							}
						case p != d.Product && errors.Is(errs[c], jobs.ErrLockedElsewhere):
						default:
							t.Errorf("Claim(%s, %s) = %+v, %v; the device went to %s", p, hw, acts[c], errs[c], d.Product)
						}
					}
					if first != 1 {
						t.Errorf("round %d: %d first activations of %s, want 1", round, first, hw)
					}
				}
				used := 0
				for _, p := range tt.products {
					info, err := s.Token(ctx, ids[p])
					if err != nil {
						t.Fatalf("Token(%s) = %v", ids[p], err)
					}
					used += info.Used
				}
				if used != rounds {
					t.Errorf("%d devices claimed = %d claims used, want %d", rounds, used, rounds)
				}
			})
		}
	})
}

// BenchmarkClaims is the store's claim rate: 32 goroutines, as 32
// stations would, each claiming new devices (distinct hardware ids) for
// one production product with one token, through Service.Claim. It
// reports claims/s.
func BenchmarkClaims(b *testing.B) {
	const claimers = 32
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			s := &Service{Store: openStore(b, be.dsn(b)), TokenKey: testKey}
			addProduct(b, s, "PROD", jobs.StageProduction)
			_, secret := addToken(b, s, "PROD", b.N, time.Time{})
			var next atomic.Int64
			var failed atomic.Pointer[error]
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := range claimers {
				wg.Go(func() {
					for {
						n := int(next.Add(1)) - 1
						if n >= b.N {
							return
						}
						if _, err := s.Claim(ctx, "PROD", secret, hwID(n), "1.0", fmt.Sprintf("station-%d", c)); err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatalf("Claim = %v", *err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "claims/s")
		})
	}
}
