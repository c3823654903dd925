package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/internal/testkit"
)

// testEnv is a DMS on a real SQLite file behind a real HTTP server.
type testEnv struct {
	t       *testing.T
	svc     *dms.Service
	url     string
	clock   *testkit.Clock
	logs    *testkit.Buffer
	uploads string
	admin   string // an admin key's secret
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnvOn(t, "sqlite:"+filepath.Join(t.TempDir(), "dms.db"))
}

// newEnvOn is newEnv on the database dsn (see backendDSNs).
func newEnvOn(t *testing.T, dsn string) *testEnv {
	t.Helper()
	ctx := context.Background()
	store, err := dms.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &testEnv{t: t, clock: testkit.NewClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)), logs: &testkit.Buffer{}, uploads: t.TempDir()}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.svc = &dms.Service{Store: store, Clock: e.clock.Now, Logger: logger, TokenKey: []byte("test token key")}
	srv := httptest.NewServer(server.New(server.Config{Service: e.svc, Logger: logger, UploadDir: e.uploads}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	_, secret, err := e.svc.CreateKey(ctx, dms.Key{Role: dms.RoleAdmin, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e.admin = secret.Reveal()
	return e
}

// response is an answer as received.
type response struct {
	status int
	header http.Header
	body   []byte
}

// raw is a request body sent as it is.
type raw []byte

// do makes a call with key (none if empty). body is nil, raw bytes, or a
// value sent as JSON; a body goes as application/json unless header says
// otherwise.
func (e *testEnv) do(method, path, key string, body any, header ...string) response {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case raw:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// want makes a call, checks its status and decodes the answer into out
// (unless nil).
func (e *testEnv) want(status int, method, path, key string, body, out any) response {
	e.t.Helper()
	resp := e.do(method, path, key, body)
	if resp.status != status {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.status, resp.body, status)
	}
	if out != nil {
		if err := json.Unmarshal(resp.body, out); err != nil {
			e.t.Fatalf("%s %s: answer %s: %v", method, path, resp.body, err)
		}
	}
	return resp
}

// wantError makes a call that must fail with status and code, and
// returns the message.
func (e *testEnv) wantError(status int, code, method, path, key string, body any) string {
	e.t.Helper()
	resp := e.do(method, path, key, body)
	var eb dmsapi.Error
	if err := json.Unmarshal(resp.body, &eb); err != nil {
		e.t.Fatalf("%s %s = %d %s: not an error body: %v", method, path, resp.status, resp.body, err)
	}
	if resp.status != status || eb.Error.Code != code {
		e.t.Fatalf("%s %s = %d %s, want %d %s", method, path, resp.status, resp.body, status, code)
	}
	if eb.Error.Message == "" {
		e.t.Errorf("%s %s: error %s has no message", method, path, code)
	}
	return eb.Error.Message
}

// firmware returns n bytes of an image that differ by seed.
func firmware(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// seeded is what seed made.
type seeded struct {
	image        []byte
	sum          string
	tokenID      string
	token        string // THERMO's token secret, 3 claims
	otherToken   string // OTHER's token secret, 10 claims
	station      string // line-1's key
	support      string // THERMO's support key
	supportOther string // OTHER's support key
}

// seed builds a catalogue over HTTP: customer ACME; THERMO
// (development) and OTHER (production), each with bundle 1.0.0; a
// 3-claim token for THERMO and work order WO-1 using it; a token for
// OTHER; keys for station line-1 and support of each product.
func (e *testEnv) seed() seeded {
	e.t.Helper()
	s := seeded{image: firmware(1, 64<<10)}
	s.sum = sum(s.image)
	a := e.admin
	e.want(201, "POST", "/v1/customers", a, map[string]any{"id": "ACME", "name": "Acme Heating"}, nil)
	for _, p := range []struct{ code, stage string }{{"THERMO", "development"}, {"OTHER", "production"}} {
		e.want(201, "POST", "/v1/products", a, map[string]any{
			"customer": "ACME", "code": p.code, "name": "Product " + p.code, "part_number": "PN-" + p.code, "stage": p.stage,
		}, nil)
	}
	e.want(201, "PUT", "/v1/artifacts/"+s.sum, a, raw(s.image), nil)
	for _, code := range []string{"THERMO", "OTHER"} {
		e.want(201, "POST", "/v1/products/"+code+"/bundles", a, bundleBody("1.0.0", s.sum, len(s.image)), nil)
	}
	var tok struct {
		Token  dms.TokenInfo `json:"token"`
		Secret string        `json:"secret"`
	}
	e.want(201, "POST", "/v1/products/THERMO/tokens", a, map[string]any{"max_claims": 3}, &tok)
	s.tokenID, s.token = tok.Token.ID, tok.Secret
	e.want(201, "POST", "/v1/products/OTHER/tokens", a, map[string]any{"max_claims": 10}, &tok)
	s.otherToken = tok.Secret
	e.want(201, "POST", "/v1/work-orders", a, map[string]any{
		"id": "WO-1", "product": "THERMO", "bundle": "1.0.0", "quantity": 3, "token_id": s.tokenID, "lock": map[string]any{"dms": true},
	}, nil)
	s.station = e.newKey(map[string]any{"role": "station", "station": "line-1", "name": "line 1"})
	s.support = e.newKey(map[string]any{"role": "support", "product": "THERMO"})
	s.supportOther = e.newKey(map[string]any{"role": "support", "product": "OTHER"})
	return s
}

// newKey creates an API key and returns its secret.
func (e *testEnv) newKey(body map[string]any) string {
	e.t.Helper()
	var k struct {
		Key    dms.Key `json:"key"`
		Secret string  `json:"secret"`
	}
	e.want(201, "POST", "/v1/keys", e.admin, body, &k)
	if !strings.HasPrefix(k.Secret, dms.KeyPrefix) {
		e.t.Fatalf("POST /v1/keys secret = %q, want prefix %s", k.Secret, dms.KeyPrefix)
	}
	return k.Secret
}

func bundleBody(version, sha string, size int) map[string]any {
	return map[string]any{"version": version, "tag": "release", "artifacts": []map[string]any{{
		"name": "app.bin", "target": "esp", "address": "0x10000", "format": "bin", "sha256": sha, "size": size,
	}}}
}

// activateBody is a station's activation of device hw for product with
// token, outside any work order.
func activateBody(product, hw, token string) dmsapi.ActivateRequest {
	return dmsapi.ActivateRequest{Product: product, HardwareID: flasher.HardwareID(hw), FirmwareVersion: "1.0.0", Token: token}
}
