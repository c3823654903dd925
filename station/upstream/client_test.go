package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/artifact"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

func TestWorkOrderAndArtifacts(t *testing.T) {
	ctx := context.Background()
	d := newTestDMS(t)
	logs := &logBuffer{}
	c := d.client(t, logs)

	wo, err := c.WorkOrder(ctx, "WO-1")
	if err != nil {
		t.Fatalf("WorkOrder(WO-1) = %v", err)
	}
	if wo.ID != "WO-1" || wo.Product.Code != "THERMO" || wo.Bundle.Version != "2.0" || wo.TokenID != d.seed.TokenID {
		t.Errorf("WorkOrder(WO-1) = %s %s %s token %s; want WO-1 THERMO 2.0 token %s", wo.ID, wo.Product.Code, wo.Bundle.Version, wo.TokenID, d.seed.TokenID)
	}
	if !wo.Authorization.Token.IsZero() {
		t.Errorf("WorkOrder(WO-1) carries a token secret")
	}
	if len(wo.Bundle.Artifacts) != 2 {
		t.Fatalf("WorkOrder(WO-1) has %d artifacts, want 2", len(wo.Bundle.Artifacts))
	}
	var progress sync.Map
	cache := &artifact.Cache{Dir: t.TempDir(), HTTP: c.HTTPClient(), Logger: newLogger(logs),
		Progress: func(name string, done, total int64) {
			if done == total {
				progress.Store(name, total)
			}
		}}
	for _, a := range wo.Bundle.Artifacts {
		want := d.srv.URL + "/v1/artifacts/" + a.SHA256
		if a.URL != want {
			t.Errorf("artifact %s URL = %q, want %q", a.Name, a.URL, want)
		}
		got, err := cache.Load(ctx, a, "")
		if err != nil {
			t.Fatalf("Load(%s) with the client's HTTP client = %v", a.Name, err)
		}
		if !bytes.Equal(got, d.files[a.Name]) {
			t.Errorf("Load(%s) = %d bytes, not the bundle's file", a.Name, len(got))
		}
		if n, ok := progress.Load(a.Name); !ok || n.(int64) != a.Size {
			t.Errorf("Progress(%s) ended at %v, want %d", a.Name, n, a.Size)
		}
	}
	// Without the key, the DMS refuses the download.
	plain := &artifact.Cache{Dir: t.TempDir(), HTTP: d.srv.Client()}
	if _, err := plain.Load(ctx, wo.Bundle.Artifacts[0], ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Load without the key = %v, want a 401 refusal", err)
	}
	assertNoSecret(t, "logs", logs.String(), d.key, d.seed.Token)
}

func TestWorkOrderURLs(t *testing.T) {
	tests := []struct {
		base, in, want string
	}{
		{"http://dms:8080", "/v1/artifacts/ab", "http://dms:8080/v1/artifacts/ab"},
		{"http://dms:8080/", "/v1/artifacts/ab", "http://dms:8080/v1/artifacts/ab"},
		{"https://host/dms/", "/v1/artifacts/ab", "https://host/dms/v1/artifacts/ab"},
		{"https://host/dms", "v1/artifacts/ab", "https://host/dms/v1/artifacts/ab"},
		{"https://host/dms", "https://cdn.example/x.bin", "https://cdn.example/x.bin"},
	}
	for _, tc := range tests {
		c, err := New(Config{URL: tc.base, Key: jobs.NewSecret("dmk_x"), Station: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.resolve(tc.in); err != nil || got != tc.want {
			t.Errorf("New(%s).resolve(%s) = %q, %v; want %q", tc.base, tc.in, got, err, tc.want)
		}
	}
}

func TestHTTPClientSendsKeyToDMSOnly(t *testing.T) {
	d := newTestDMS(t)
	var mu sync.Mutex
	var got []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer elsewhere.Close()
	c := d.client(t, &logBuffer{})
	hc := c.HTTPClient()
	// Straight to another host, and by a redirect from the DMS's host.
	for _, u := range []string{elsewhere.URL + "/x", d.srv.URL + "/test/redirect?to=" + url.QueryEscape(elsewhere.URL+"/y")} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s = %v", u, err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "" || got[1] != "" {
		t.Errorf("Authorization headers seen by another host = %q, want two empty ones", got)
	}
	// The DMS's host gets the key.
	resp, err := hc.Get(d.srv.URL + "/v1/work-orders/WO-1")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET work order through HTTPClient = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
}

func TestErrorMapping(t *testing.T) {
	ctx := context.Background()
	d := newTestDMS(t)
	logs := &logBuffer{}
	c := d.client(t, logs)
	svc := d.svc

	// A development product with its own token, for locked_elsewhere.
	if err := svc.CreateProduct(ctx, "ACME", jobs.Product{Code: "DEV", Name: "Dev board", PartNumber: "DV-1", Stage: jobs.StageDevelopment}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateBundle(ctx, "DEV", jobs.Bundle{Version: "0.1", Tag: jobs.TagAlpha, Artifacts: []jobs.Artifact{
		{Name: "dev.bin", Target: "esp", Address: jobs.NewAddress(0), Format: "bin", URL: "dev.bin"},
	}}, map[string][]byte{"dev.bin": image("dev", 100)}); err != nil {
		t.Fatal(err)
	}
	devTokenID, devToken, err := svc.CreateToken(ctx, "DEV", 5, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	oneClaimID, oneClaim, err := svc.CreateToken(ctx, "THERMO", 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	shortLivedID, shortLived, err := svc.CreateToken(ctx, "THERMO", 5, d.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	revokedID, revoked, err := svc.CreateToken(ctx, "THERMO", 5, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// A station acts only under a work order, with the token the work
	// order names: WO-1 for THERMO's seeded token, WO-DEV for DEV's, and
	// one work order for each of THERMO's other tokens (the station
	// takes each on first use).
	for _, w := range []dms.WorkOrderSpec{
		{ID: "WO-DEV", Product: "DEV", Bundle: "0.1", TokenID: devTokenID},
		{ID: "WO-ONE", Product: "THERMO", Bundle: "2.0", TokenID: oneClaimID},
		{ID: "WO-SHORT", Product: "THERMO", Bundle: "2.0", TokenID: shortLivedID},
		{ID: "WO-REVOKED", Product: "THERMO", Bundle: "2.0", TokenID: revokedID},
	} {
		w.Quantity = 5
		if _, err := svc.CreateWorkOrder(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.RevokeToken(ctx, revokedID); err != nil {
		t.Fatal(err)
	}
	_, supportKey, err := svc.CreateKey(ctx, dms.Key{Role: dms.RoleSupport, Product: "THERMO"})
	if err != nil {
		t.Fatal(err)
	}
	support, err := New(Config{URL: d.srv.URL, Key: supportKey, Station: testStation, Logger: newLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := New(Config{URL: d.srv.URL, Key: jobs.NewSecret("dmk_not-a-key-of-this-dms"), Station: testStation, Logger: newLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	activate := func(cl *Client, workOrder, product string, token jobs.Secret, hw int) func() error {
		return func() error {
			_, err := cl.Activate(ctx, jobs.ActivateRequest{WorkOrder: workOrder, Product: product, HardwareID: hwID(hw), FirmwareVersion: "", Token: token})
			return err
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T)
		call  func() error
		want  error  // sentinel, nil for none
		code  string // error code
	}{
		{"token_spent", func(t *testing.T) {
			if err := activate(c, "WO-ONE", "THERMO", oneClaim, 1)(); err != nil {
				t.Fatalf("first claim = %v", err)
			}
		}, activate(c, "WO-ONE", "THERMO", oneClaim, 2), jobs.ErrTokenSpent, dmsapi.CodeTokenSpent},
		{"token_expired", func(*testing.T) { d.clock.Advance(2 * time.Hour) }, activate(c, "WO-SHORT", "THERMO", shortLived, 3), jobs.ErrTokenExpired, dmsapi.CodeTokenExpired},
		{"token_revoked", nil, activate(c, "WO-REVOKED", "THERMO", revoked, 4), jobs.ErrTokenRevoked, dmsapi.CodeTokenRevoked},
		{"token_invalid", nil, activate(c, "WO-1", "THERMO", jobs.NewSecret("stk_not-a-token-of-this-dms"), 5), jobs.ErrTokenInvalid, dmsapi.CodeTokenInvalid},
		{"token of another product", nil, activate(c, "WO-1", "THERMO", devToken, 5), jobs.ErrTokenInvalid, dmsapi.CodeTokenInvalid},
		{"locked_elsewhere", func(t *testing.T) {
			if err := activate(c, "WO-1", "THERMO", d.seed.Token, 6)(); err != nil {
				t.Fatalf("claim for THERMO = %v", err)
			}
		}, activate(c, "WO-DEV", "DEV", devToken, 6), jobs.ErrLockedElsewhere, dmsapi.CodeLockedElsewhere},
		{"archived", func(t *testing.T) {
			p, err := svc.Product(ctx, "DEV")
			if err != nil {
				t.Fatal(err)
			}
			p.Archived = true
			if err := svc.UpdateProduct(ctx, p.Product); err != nil {
				t.Fatal(err)
			}
		}, activate(c, "WO-DEV", "DEV", devToken, 7), jobs.ErrArchived, dmsapi.CodeArchived},
		{"unauthenticated", nil, func() error {
			_, err := stranger.Preflight(ctx, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(8)})
			return err
		}, jobs.ErrUnauthorized, dmsapi.CodeUnauthenticated},
		{"forbidden", nil, func() error {
			_, err := support.Preflight(ctx, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(8)})
			return err
		}, jobs.ErrUnauthorized, dmsapi.CodeForbidden},
		{"not_found", nil, func() error { _, err := c.WorkOrder(ctx, "WO-none"); return err }, jobs.ErrNotFound, dmsapi.CodeNotFound},
		{"not_activated", nil, func() error {
			return c.Lock(ctx, jobs.LockRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(9)})
		}, nil, dmsapi.CodeNotActivated},
		{"invalid", nil, func() error {
			return c.Complete(ctx, jobs.CompleteRequest{WorkOrder: "WO-1", HardwareID: " bad id "})
		}, nil, dmsapi.CodeInvalid},
		{"unavailable", func(*testing.T) { d.gate.mode.Store(down) }, activate(c, "WO-1", "THERMO", d.seed.Token, 10), jobs.ErrUnavailable, dmsapi.CodeUnavailable},
		{"connection dropped", func(*testing.T) { d.gate.mode.Store(drop) }, activate(c, "WO-1", "THERMO", d.seed.Token, 10), jobs.ErrUnavailable, ""},
	}
	sentinels := []error{jobs.ErrUnavailable, jobs.ErrTokenSpent, jobs.ErrTokenExpired, jobs.ErrTokenRevoked, jobs.ErrTokenInvalid,
		jobs.ErrLockedElsewhere, jobs.ErrArchived, jobs.ErrUnauthorized, jobs.ErrNotFound}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer d.gate.mode.Store(pass)
			if tc.setup != nil {
				tc.setup(t)
			}
			err := tc.call()
			if err == nil {
				t.Fatalf("call = nil, want %v (%s)", tc.want, tc.code)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == tc.want) {
					t.Errorf("errors.Is(%q, %v) = %v, want %v", err, s, !(s == tc.want), s == tc.want)
				}
			}
			var e *Error
			switch {
			case tc.code == "":
			case !errors.As(err, &e):
				t.Errorf("call = %q, not an *upstream.Error", err)
			case e.Code != tc.code || e.Message == "":
				t.Errorf("call = %+v, want code %s with the DMS's message", e, tc.code)
			}
			assertNoSecret(t, "error", err.Error(), d.key, d.seed.Token, oneClaim, shortLived, revoked, devToken, supportKey)
		})
	}
	// And the calls that succeed.
	v, err := c.Preflight(ctx, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(6)})
	if err != nil || !v.Known || !v.Locked || v.Product != "THERMO" {
		t.Errorf("Preflight(activated device) = %+v, %v; want known, locked to THERMO", v, err)
	}
	a, err := c.Activate(ctx, jobs.ActivateRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(6), FirmwareVersion: "2.0", Token: d.seed.Token})
	if err != nil || !a.Repeat || a.Serial == "" {
		t.Errorf("Activate(again) = %+v, %v; want a repeat with the serial", a, err)
	}
	if err := c.Lock(ctx, jobs.LockRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(6)}); err != nil {
		t.Errorf("Lock = %v", err)
	}
	if err := c.Complete(ctx, jobs.CompleteRequest{WorkOrder: "WO-1", HardwareID: hwID(6), Serial: a.Serial}); err != nil {
		t.Errorf("Complete = %v", err)
	}
	if v, err := c.Preflight(ctx, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(6)}); err != nil || !v.Done {
		t.Errorf("Preflight(completed device) = %+v, %v; want done", v, err)
	}
	dev, err := svc.Device(ctx, hwID(6))
	if err != nil || dev.Serial != a.Serial {
		t.Errorf("Device(%s) = %+v, %v; want serial %s", hwID(6), dev, err, a.Serial)
	}
	assertNoSecret(t, "logs", logs.String(), d.key, d.seed.Token, oneClaim, shortLived, revoked, devToken, supportKey)
}

func TestDMSDown(t *testing.T) {
	ctx := context.Background()
	d := newTestDMS(t)
	c := d.client(t, &logBuffer{})
	d.srv.Close()
	_, err := c.Activate(ctx, jobs.ActivateRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(1), Token: d.seed.Token})
	if !errors.Is(err, jobs.ErrUnavailable) {
		t.Fatalf("Activate(DMS closed) = %v, want jobs.ErrUnavailable", err)
	}
	for _, want := range []string{"cannot be reached", d.srv.URL, "retries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Activate(DMS closed) = %q, want it to say %q", err, want)
		}
	}
	assertNoSecret(t, "error", err.Error(), d.key, d.seed.Token)

	// A caller's cancel is the caller's, not the DMS's; a DMS that does
	// not answer in time is unavailable.
	d2 := newTestDMS(t)
	d2.gate.mode.Store(stall)
	c2, err := New(Config{URL: d2.srv.URL, Key: d2.key, Station: testStation, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Preflight(ctx, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hwID(1)}); !errors.Is(err, jobs.ErrUnavailable) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("Preflight(DMS stalled) = %v, want jobs.ErrUnavailable saying it did not answer", err)
	}

	// A caller's cancel is the caller's, not the DMS's.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.WorkOrder(cctx, "WO-1"); !errors.Is(err, context.Canceled) || errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("WorkOrder(cancelled) = %v, want context.Canceled only", err)
	}
}

func TestNewRefuses(t *testing.T) {
	key := jobs.NewSecret("dmk_secret-value")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no url", Config{Key: key, Station: "s"}},
		{"not http", Config{URL: "ftp://dms", Key: key, Station: "s"}},
		{"user info", Config{URL: "https://u:pw@dms", Key: key, Station: "s"}},
		{"no key", Config{URL: "https://dms", Station: "s"}},
		{"no station", Config{URL: "https://dms", Key: key}},
	}
	for _, tc := range tests {
		_, err := New(tc.cfg)
		if err == nil {
			t.Errorf("New(%s) = nil error, want a refusal", tc.name)
			continue
		}
		if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), key.Reveal()) {
			t.Errorf("New(%s) = %q, holds a secret", tc.name, err)
		}
	}
}

// TestClientKeepsAConnectionPerSlot: slots that call the DMS together,
// time after time, reuse their connections instead of opening new ones
// (over https, each with its TLS handshake).
func TestClientKeepsAConnectionPerSlot(t *testing.T) {
	const slots = 16
	var (
		mu      sync.Mutex
		release chan struct{}
		opened  atomic.Int32
	)
	arrived := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		wait := release
		mu.Unlock()
		arrived <- struct{}{}
		<-wait
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Key: jobs.NewSecret(dms.KeyPrefix + "test"), Station: testStation})
	if err != nil {
		t.Fatal(err)
	}
	// Each round has every slot's call in flight at once.
	round := func() {
		mu.Lock()
		release = make(chan struct{})
		mu.Unlock()
		var wg sync.WaitGroup
		for range slots {
			wg.Go(func() {
				resp, err := c.HTTPClient().Get(srv.URL + "/v1/ping")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		for range slots {
			<-arrived
		}
		close(release)
		wg.Wait()
	}
	round()
	if n := opened.Load(); n != slots {
		t.Fatalf("first round opened %d connections, want %d", n, slots)
	}
	round()
	if n := opened.Load() - slots; n != 0 {
		t.Errorf("second round opened %d new connections, want none: every slot's was kept", n)
	}
}
