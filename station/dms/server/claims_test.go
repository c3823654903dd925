package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/pgtest"
	"github.com/station-dev/station/station/dms/server"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// claimDMS is a DMS served over loopback HTTP, on SQLite or PostgreSQL,
// holding one production product and a token for it.
type claimDMS struct {
	url    string
	token  string
	client *http.Client
}

// backendDSNs names the databases the claim tests and benchmarks run on.
func backendDSNs(tb testing.TB) map[string]func() string {
	return map[string]func() string{
		"sqlite":   func() string { return "sqlite:" + filepath.Join(tb.TempDir(), "dms.db") },
		"postgres": func() string { return pgtest.NewDatabase(tb) },
	}
}

func newClaimDMS(tb testing.TB, dsn string, maxClaims int) *claimDMS {
	tb.Helper()
	ctx := context.Background()
	st, err := dms.Open(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	svc := &dms.Service{Store: st}
	if err := svc.CreateCustomer(ctx, dms.Customer{ID: "ACME", Name: "Acme"}); err != nil {
		tb.Fatal(err)
	}
	if err := svc.CreateProduct(ctx, "ACME", jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageProduction}); err != nil {
		tb.Fatal(err)
	}
	_, token, err := svc.CreateToken(ctx, "THERMO", maxClaims, time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Config{Service: svc}))
	tb.Cleanup(srv.Close)
	return &claimDMS{url: srv.URL, token: token.Reveal(), client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute,
	}}
}

// claim posts one claim, as "station dms claim" does, and returns the
// answer's status and error code.
func (d *claimDMS) claim(hw string) (int, string, error) {
	body, _ := json.Marshal(dmsapi.ClaimRequest{Product: "THERMO", Token: d.token, HardwareID: flasher.HardwareID(hw)})
	resp, err := d.client.Post(d.url+"/v1/claim", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		var a jobs.Activation
		return resp.StatusCode, "", json.NewDecoder(resp.Body).Decode(&a)
	}
	var e dmsapi.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return resp.StatusCode, "", fmt.Errorf("status %d with no error body: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, e.Error.Code, nil
}

// TestConcurrentClaimsOverHTTP: 32 claimers race 200 distinct devices
// through the HTTP API onto a token with 100 claims. Exactly 100 succeed;
// every other answer says the token is spent.
func TestConcurrentClaimsOverHTTP(t *testing.T) {
	for name, dsn := range backendDSNs(t) {
		t.Run(name, func(t *testing.T) {
			const claimers, devices, maxClaims = 32, 200, 100
			d := newClaimDMS(t, dsn(), maxClaims)
			var next, ok, spent atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, devices)
			for range claimers {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > devices {
							return
						}
						status, code, err := d.claim(fmt.Sprintf("HW-%04d", i))
						switch {
						case err != nil:
							errs <- err
						case status == http.StatusOK:
							ok.Add(1)
						case status == http.StatusConflict && code == dmsapi.CodeTokenSpent:
							spent.Add(1)
						default:
							errs <- fmt.Errorf("device %d: status %d, code %q", i, status, code)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if ok.Load() != maxClaims || spent.Load() != devices-maxClaims {
				t.Fatalf("%d claims succeeded and %d were refused as spent; want %d and %d", ok.Load(), spent.Load(), maxClaims, devices-maxClaims)
			}
		})
	}
}

// BenchmarkClaimsHTTP measures claims per second through the HTTP API
// with 32 concurrent clients, each claiming distinct devices.
func BenchmarkClaimsHTTP(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			d := newClaimDMS(b, backendDSNs(b)[name](), 1<<30)
			const clients = 32
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range clients {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if status, code, err := d.claim(fmt.Sprintf("BENCH-%08d", i)); err != nil || status != http.StatusOK {
							failed.Store(fmt.Sprintf("claim %d: status %d, code %q, %v", i, status, code, err))
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			if f := failed.Load(); f != nil {
				b.Fatal(f)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "claims/s")
		})
	}
}
