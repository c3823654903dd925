package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/internal/testkit"
	"github.com/station-dev/station/station/journal"
)

// matrixColumns are the callers of docs/api.md's "Who may do what"
// table, in the doc's order.
var matrixColumns = []string{"admin", "support", "support, other product", "station", "station, other", "token only", "revoked key", "no key"}

// The devices of an authWorld.
const (
	devActivated = "24:6f:28:00:00:01" // activated under WO-1 by line-1
	devClaimed   = "24:6f:28:00:00:02" // claimed with THERMO's token, under no work order
	devGhost     = "24:6f:28:ff:ff:ff" // never seen
)

// authWorld is the DMS the authorization tables of docs/api.md run
// against: products THERMO and OTHER of customer ACME, each with bundle
// 1.0.0 (its own artifact) and a token; purchase order PO-1 of THERMO;
// work orders WO-1 (THERMO, assigned to line-1), WO-2 (OTHER, line-2),
// WO-3 (THERMO, line-3) and WO-4 (THERMO, its one station taken off);
// a device activated under WO-1 by line-1 and one claimed outside any
// work order; a journal event of line-1; and a key for each caller.
type authWorld struct {
	*testEnv
	ctx context.Context
	// bearer is each caller's Authorization bearer, by column; "" sends
	// none.
	bearer map[string]string
	// reads lists, by column, the products a caller may read, whose
	// codes its answers may hold.
	reads map[string][]string
	// secrets are every secret of the world, by what it is.
	secrets map[string]string
	token   string // THERMO's token secret
	tokenID string
	sum     string // THERMO's artifact
	serial  string // devActivated's serial
	n       int    // the last number handed out for a new id
}

// newAuthWorld builds an authWorld on the database dsn.
func newAuthWorld(t *testing.T, dsn string) *authWorld {
	t.Helper()
	ctx := context.Background()
	store, err := dms.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &testEnv{t: t, clock: testkit.NewClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)), logs: &testkit.Buffer{}, uploads: t.TempDir()}
	e.svc = &dms.Service{Store: store, Clock: e.clock.Now, TokenKey: []byte("matrix token key")}
	srv := httptest.NewServer(server.New(server.Config{Service: e.svc, UploadDir: e.uploads}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	w := &authWorld{testEnv: e, ctx: ctx}
	svc := e.svc
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	must(svc.CreateCustomer(ctx, dms.Customer{ID: "ACME", Name: "Acme Heating"}))
	for i, code := range []string{"THERMO", "OTHER"} {
		must(svc.CreateProduct(ctx, "ACME", jobs.Product{Code: code, Name: "Product " + code, PartNumber: "PN-" + code, Stage: jobs.StageDevelopment}))
		img := firmware(byte(i+1), 4096)
		b := jobs.Bundle{Version: "1.0.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{
			Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Format: "bin", URL: "app.bin",
		}}}
		_, err := svc.CreateBundle(ctx, code, b, map[string][]byte{"app.bin": img})
		must(err)
		if code == "THERMO" {
			w.sum = sum(img)
		}
	}
	id, tok, err := svc.CreateToken(ctx, "THERMO", 100, time.Time{})
	must(err)
	w.tokenID, w.token = id, tok.Reveal()
	otherID, _, err := svc.CreateToken(ctx, "OTHER", 100, time.Time{})
	must(err)
	must(svc.CreatePurchaseOrder(ctx, dms.PurchaseOrder{ID: "PO-1", Product: "THERMO", Quantity: 10}))
	for _, wo := range []dms.WorkOrderSpec{
		{ID: "WO-1", Product: "THERMO", TokenID: w.tokenID, Stations: []string{"line-1"}},
		{ID: "WO-2", Product: "OTHER", TokenID: otherID, Stations: []string{"line-2"}},
		{ID: "WO-3", Product: "THERMO", TokenID: w.tokenID, Stations: []string{"line-3"}},
		{ID: "WO-4", Product: "THERMO", TokenID: w.tokenID, Stations: []string{"line-1"}},
	} {
		wo.Bundle, wo.Quantity, wo.Lock = "1.0.0", 10, jobs.LockPolicy{DMS: true}
		_, err := svc.CreateWorkOrder(ctx, wo)
		must(err)
	}
	must(svc.UnassignStation(ctx, "WO-4", "line-1"))

	key := func(k dms.Key) (dms.Key, string) {
		t.Helper()
		k, secret, err := svc.CreateKey(ctx, k)
		must(err)
		return k, secret.Reveal()
	}
	_, admin := key(dms.Key{Role: dms.RoleAdmin})
	_, support := key(dms.Key{Role: dms.RoleSupport, Product: "THERMO"})
	_, supportOther := key(dms.Key{Role: dms.RoleSupport, Product: "OTHER"})
	_, station := key(dms.Key{Role: dms.RoleStation, Station: "line-1"})
	_, stationOther := key(dms.Key{Role: dms.RoleStation, Station: "line-2"})
	revokedKey, revoked := key(dms.Key{Role: dms.RoleStation, Station: "line-1", Name: "revoked"})
	must(svc.RevokeKey(ctx, revokedKey.ID))
	e.admin = admin
	w.bearer = map[string]string{
		"admin": admin, "support": support, "support, other product": supportOther,
		"station": station, "station, other": stationOther,
		"token only": w.token, "revoked key": revoked, "no key": "",
	}
	w.reads = map[string][]string{
		"admin": {"THERMO", "OTHER"}, "support": {"THERMO"}, "support, other product": {"OTHER"},
		"station": {"THERMO"}, "station, other": {"OTHER"}, "token only": {"THERMO"},
	}
	w.secrets = map[string]string{}
	for col, secret := range w.bearer {
		if secret != "" {
			w.secrets[col+"'s credential"] = secret
		}
	}

	act, err := svc.Activate(ctx, jobs.ActivateRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: devActivated, FirmwareVersion: "1.0.0", Token: tok, Station: "line-1"})
	must(err)
	w.serial = act.Serial
	_, err = svc.Claim(ctx, "THERMO", tok, devClaimed, "", "")
	must(err)
	_, err = svc.IngestEvents(ctx, "line-1", []journal.Event{stepEvent("line-1", w.count(), devActivated, "identify", journal.StatusPassed)})
	must(err)
	return w
}

// count hands out the next number, for new ids and sequence numbers.
func (w *authWorld) count() int64 {
	w.n++
	return int64(w.n)
}

// next is a new id starting with prefix.
func (w *authWorld) next(prefix string) string { return fmt.Sprintf("%s-%d", prefix, w.count()) }

// newWorkOrder creates a work order of THERMO assigned to stations and
// returns its id.
func (w *authWorld) newWorkOrder(stations []string) string {
	w.t.Helper()
	id := w.next("WO-N")
	_, err := w.svc.CreateWorkOrder(w.ctx, dms.WorkOrderSpec{ID: id, Product: "THERMO", Bundle: "1.0.0", Quantity: 1, TokenID: w.tokenID, Stations: stations})
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

// authCall is one request of an authorization table.
type authCall struct {
	method, path string
	body         any // nil, raw, or a value sent as JSON
	// ghost is a record the call names and an id of its kind that names
	// nothing: a 404 must read the same for both.
	ghost [2]string
	// seq is the sequence number of the one event an events batch
	// sends, which a refusal names.
	seq int64
}

// text is the call's path and body, as sent.
func (c authCall) text(t *testing.T) string {
	t.Helper()
	switch b := c.body.(type) {
	case nil:
		return c.path
	case raw:
		return c.path + " " + string(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return c.path + " " + string(data)
	}
}

// haunted is the call with its record replaced by the ghost.
func (c authCall) haunted(t *testing.T) authCall {
	t.Helper()
	g := c
	g.path = strings.ReplaceAll(c.path, c.ghost[0], c.ghost[1])
	if c.body != nil {
		_, body, _ := strings.Cut(c.text(t), " ")
		g.body = raw(strings.ReplaceAll(body, c.ghost[0], c.ghost[1]))
	}
	return g
}

// authCalls are the requests of TestAuthorizationMatrix, by the call they
// make, as the caller in column would make it: on THERMO's records, or on
// new ones for the calls that create or remove.
func authCalls() map[string]func(w *authWorld, column string) authCall {
	get := func(path string, ghost ...string) func(*authWorld, string) authCall {
		return func(*authWorld, string) authCall {
			c := authCall{method: "GET", path: path}
			copy(c.ghost[:], ghost)
			return c
		}
	}
	return map[string]func(w *authWorld, column string) authCall{
		"GET /healthz": get("/healthz"),
		"POST /v1/claim": func(w *authWorld, column string) authCall {
			req := dmsapi.ClaimRequest{Product: "THERMO", HardwareID: devActivated, FirmwareVersion: "1.0.0"}
			if column == "token only" {
				req.Token = w.token
			}
			return authCall{method: "POST", path: "/v1/claim", body: req}
		},
		"POST /v1/keys": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/keys", body: map[string]any{"role": "support", "product": "THERMO", "name": w.next("key")}}
		},
		"GET /v1/keys": get("/v1/keys"),
		"DELETE /v1/keys/{id}": func(w *authWorld, _ string) authCall {
			k, _, err := w.svc.CreateKey(w.ctx, dms.Key{Role: dms.RoleSupport, Product: "THERMO"})
			if err != nil {
				w.t.Fatal(err)
			}
			return authCall{method: "DELETE", path: "/v1/keys/" + k.ID}
		},
		"POST /v1/customers": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/customers", body: map[string]any{"id": w.next("C"), "name": "A customer"}}
		},
		"GET /v1/customers/{id}": get("/v1/customers/ACME"),
		"POST /v1/products": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/products", body: map[string]any{
				"customer": "ACME", "code": w.next("NEW"), "name": "New", "part_number": "PN-NEW", "stage": "development"}}
		},
		"GET /v1/products":        get("/v1/products"),
		"GET /v1/products/{code}": get("/v1/products/THERMO", "THERMO", "NOSUCH"),
		"PATCH /v1/products/{code}": func(*authWorld, string) authCall {
			return authCall{method: "PATCH", path: "/v1/products/THERMO", body: map[string]any{"name": "Smart thermostat"}}
		},
		"DELETE /v1/products/{code}": func(w *authWorld, _ string) authCall {
			code := w.next("DEL")
			if err := w.svc.CreateProduct(w.ctx, "ACME", jobs.Product{Code: code, Name: "Gone", PartNumber: "PN-GONE", Stage: jobs.StageDevelopment}); err != nil {
				w.t.Fatal(err)
			}
			return authCall{method: "DELETE", path: "/v1/products/" + code}
		},
		"PUT /v1/artifacts/{sha256}": func(w *authWorld, _ string) authCall {
			img := []byte("artifact " + w.next("A"))
			return authCall{method: "PUT", path: "/v1/artifacts/" + sum(img), body: raw(img)}
		},
		"GET /v1/artifacts/{sha256}": func(w *authWorld, _ string) authCall {
			return authCall{method: "GET", path: "/v1/artifacts/" + w.sum, ghost: [2]string{w.sum, strings.Repeat("0", 64)}}
		},
		"POST /v1/products/{code}/bundles": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/products/THERMO/bundles", body: bundleBody(fmt.Sprintf("2.0.%d", w.count()), w.sum, 4096)}
		},
		"GET /v1/products/{code}/bundles":           get("/v1/products/THERMO/bundles", "THERMO", "NOSUCH"),
		"GET /v1/products/{code}/bundles/{version}": get("/v1/products/THERMO/bundles/1.0.0", "THERMO", "NOSUCH"),
		"POST /v1/work-orders": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/work-orders", body: map[string]any{
				"id": w.next("WO-N"), "product": "THERMO", "bundle": "1.0.0", "quantity": 1, "token_id": w.tokenID}}
		},
		"GET /v1/work-orders/{id}": get("/v1/work-orders/WO-1", "WO-1", "WO-NOSUCH"),
		"POST /v1/work-orders/{id}/stations": func(w *authWorld, _ string) authCall {
			id := w.newWorkOrder([]string{"line-1"})
			return authCall{method: "POST", path: "/v1/work-orders/" + id + "/stations", body: map[string]any{"stations": []string{"line-3"}}}
		},
		"DELETE /v1/work-orders/{id}/stations/{station}": func(w *authWorld, _ string) authCall {
			id := w.newWorkOrder([]string{"line-1"})
			return authCall{method: "DELETE", path: "/v1/work-orders/" + id + "/stations/line-1"}
		},
		"POST /v1/products/{code}/tokens": func(*authWorld, string) authCall {
			return authCall{method: "POST", path: "/v1/products/THERMO/tokens", body: map[string]any{"max_claims": 5}}
		},
		"GET /v1/products/{code}/tokens": get("/v1/products/THERMO/tokens", "THERMO", "NOSUCH"),
		"GET /v1/tokens/{id}": func(w *authWorld, _ string) authCall {
			return authCall{method: "GET", path: "/v1/tokens/" + w.tokenID, ghost: [2]string{w.tokenID, "T-999"}}
		},
		"POST /v1/tokens/{id}/revoke": func(w *authWorld, _ string) authCall {
			id, _, err := w.svc.CreateToken(w.ctx, "THERMO", 5, time.Time{})
			if err != nil {
				w.t.Fatal(err)
			}
			return authCall{method: "POST", path: "/v1/tokens/" + id + "/revoke"}
		},
		"POST /v1/purchase-orders": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/purchase-orders", body: map[string]any{"id": w.next("PO-N"), "product": "THERMO", "quantity": 5, "moq": 1}}
		},
		"GET /v1/purchase-orders/{id}":    get("/v1/purchase-orders/PO-1", "PO-1", "PO-NOSUCH"),
		"GET /v1/devices/{hardware_id}":   get("/v1/devices/"+devActivated, devActivated, devGhost),
		"GET /v1/products/{code}/devices": get("/v1/products/THERMO/devices", "THERMO", "NOSUCH"),
		"POST /v1/preflight": func(*authWorld, string) authCall {
			return authCall{method: "POST", path: "/v1/preflight", ghost: [2]string{"WO-1", "WO-NOSUCH"},
				body: jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: devActivated}}
		},
		"POST /v1/activate": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/activate", ghost: [2]string{"WO-1", "WO-NOSUCH"},
				body: dmsapi.ActivateRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: devActivated, FirmwareVersion: "1.0.0", Token: w.token}}
		},
		"POST /v1/lock": func(*authWorld, string) authCall {
			return authCall{method: "POST", path: "/v1/lock", ghost: [2]string{"WO-1", "WO-NOSUCH"},
				body: jobs.LockRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: devActivated}}
		},
		"POST /v1/complete": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/complete", ghost: [2]string{"WO-1", "WO-NOSUCH"},
				body: jobs.CompleteRequest{WorkOrder: "WO-1", HardwareID: devActivated, Serial: w.serial}}
		},
		"POST /v1/stations/{station}/events": func(w *authWorld, _ string) authCall {
			return authCall{method: "POST", path: "/v1/stations/line-1/events",
				body: dmsapi.IngestRequest{Events: []journal.Event{stepEvent("line-1", w.count(), devActivated, "flash", journal.StatusPassed)}}}
		},
		"GET /v1/flash-logs": get("/v1/flash-logs?work_order=WO-1"),
		"GET /v1/events":     get("/v1/events?work_order=WO-1"),
	}
}

// TestAuthorizationMatrix makes every call of the DMS as every kind of
// caller and checks each answer's status against docs/api.md's "Who may
// do what" table, on SQLite and on PostgreSQL. The table, the DMS's calls
// (server.Calls) and this test's requests must be the same list. Each
// answer is also checked for what a refusal must not tell: a 404 reads as
// the answer about a record that does not exist, and no answer holds a
// secret or the code of a product the caller may not read (unless the
// request named it).
func TestAuthorizationMatrix(t *testing.T) {
	tab := readDocTable(t, "call", "admin")
	if !slices.Equal(tab.header[1:], matrixColumns) {
		t.Fatalf("docs/api.md:%d: the table's columns are %q, want %q", tab.line, tab.header[1:], matrixColumns)
	}
	calls := authCalls()
	checkSameCalls(t, tab, "docs/api.md's table", tab.keys())
	checkSameCalls(t, tab, "TestAuthorizationMatrix's requests", keysOf(calls))
	if t.Failed() {
		return
	}
	// Admin last: the calls refused first must find the world as it was.
	order := append(slices.Clone(matrixColumns[1:]), matrixColumns[0])
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			w := newAuthWorld(t, backendDSNs(t)[backend]())
			for _, row := range tab.rows {
				call := row.cells[0]
				t.Run(call, func(t *testing.T) {
					for _, col := range order {
						want := row.status(t, tab, col)
						t.Run(col, func(t *testing.T) {
							w.t = t
							c := calls[call](w, col)
							got := w.checkAnswer(t, c, col, want)
							if want == 404 && c.ghost[0] != "" {
								g := w.checkAnswer(t, c.haunted(t), col, 404)
								if back := bytes.ReplaceAll(g, []byte(c.ghost[1]), []byte(c.ghost[0])); !bytes.Equal(back, got) {
									t.Errorf("%s %s as %s = %s, but about %s, which does not exist, %s: a refusal must not tell the two apart",
										c.method, c.path, col, got, c.ghost[1], g)
								}
							}
						})
					}
				})
			}
		})
	}
}

// checkAnswer makes the call c as the caller in column and checks that it
// answers want, with the error code of that status, and holds no secret
// and no product code the caller may not read; it returns the body.
func (w *authWorld) checkAnswer(t *testing.T, c authCall, column string, want int) []byte {
	t.Helper()
	resp := w.do(c.method, c.path, w.bearer[column], c.body)
	if resp.status != want {
		t.Errorf("%s %s as %s = %d %s, want %d (docs/api.md)", c.method, c.path, column, resp.status, resp.body, want)
	}
	codes := map[int]string{401: dmsapi.CodeUnauthenticated, 403: dmsapi.CodeForbidden, 404: dmsapi.CodeNotFound}
	if code, ok := codes[resp.status]; ok {
		var e dmsapi.Error
		if err := json.Unmarshal(resp.body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
			t.Errorf("%s %s as %s = %d %s, want error %s with a message", c.method, c.path, column, resp.status, resp.body, code)
		}
	}
	sent := c.text(t)
	for _, product := range []string{"THERMO", "OTHER"} {
		if bytes.Contains(resp.body, []byte(product)) && !slices.Contains(w.reads[column], product) && !strings.Contains(sent, product) {
			t.Errorf("%s %s as %s = %d %s: the answer names product %s, which the caller may not read", c.method, c.path, column, resp.status, resp.body, product)
		}
	}
	for what, secret := range w.secrets {
		if bytes.Contains(resp.body, []byte(secret[len(secret)-20:])) {
			t.Errorf("%s %s as %s: the answer holds %s", c.method, c.path, column, what)
		}
	}
	return resp.body
}

// scopeTarget is what a station key's call on a device names.
type scopeTarget struct {
	workOrder, product string
	hw                 flasher.HardwareID
	// token is the activation token's secret an activation carries;
	// empty, THERMO's token, the one WO-1 names.
	token string
}

// scopeCases are the rows of docs/api.md's table of a station key's
// calls: what the call names, built anew for each call where the call
// changes it.
func scopeCases() map[string]func(w *authWorld) scopeTarget {
	fixed := func(wo, product string, hw flasher.HardwareID) func(*authWorld) scopeTarget {
		return func(*authWorld) scopeTarget { return scopeTarget{workOrder: wo, product: product, hw: hw} }
	}
	return map[string]func(w *authWorld) scopeTarget{
		"a work order assigned to its station":           fixed("WO-1", "THERMO", devActivated),
		"a work order that does not exist":               fixed("WO-NOSUCH", "THERMO", devActivated),
		"a work order assigned to another station":       fixed("WO-3", "THERMO", devActivated),
		"a work order whose stations were all taken off": fixed("WO-4", "THERMO", devActivated),
		"a work order that has never listed a station (and takes it)": func(w *authWorld) scopeTarget {
			return scopeTarget{workOrder: w.newWorkOrder(nil), product: "THERMO", hw: devActivated}
		},
		"no work order":                        fixed("", "THERMO", devActivated),
		"its work order, with another product": fixed("WO-1", "OTHER", devActivated),
		"its work order, with a device that work order did not activate": fixed("WO-1", "THERMO", devClaimed),
		"its work order, with another activation token of its product": func(w *authWorld) scopeTarget {
			_, secret, err := w.svc.CreateToken(w.ctx, "THERMO", 5, time.Time{})
			if err != nil {
				w.t.Fatal(err)
			}
			w.secrets["another token of THERMO"] = secret.Reveal()
			return scopeTarget{"WO-1", "THERMO", devGhost, secret.Reveal()}
		},
	}
}

// scopeCall is the call named by the column of the station key's table,
// on tg.
func (w *authWorld) scopeCall(t *testing.T, call string, tg scopeTarget) authCall {
	switch call {
	case "GET /v1/work-orders/{id}":
		return authCall{method: "GET", path: "/v1/work-orders/" + tg.workOrder}
	case "POST /v1/preflight":
		return authCall{method: "POST", path: "/v1/preflight", body: jobs.PreflightRequest{WorkOrder: tg.workOrder, Product: tg.product, HardwareID: tg.hw}}
	case "POST /v1/activate":
		token := tg.token
		if token == "" {
			token = w.token
		}
		return authCall{method: "POST", path: "/v1/activate", body: dmsapi.ActivateRequest{
			WorkOrder: tg.workOrder, Product: tg.product, HardwareID: tg.hw, FirmwareVersion: "1.0.0", Token: token}}
	case "POST /v1/lock":
		return authCall{method: "POST", path: "/v1/lock", body: jobs.LockRequest{WorkOrder: tg.workOrder, Product: tg.product, HardwareID: tg.hw}}
	case "POST /v1/complete":
		return authCall{method: "POST", path: "/v1/complete", body: jobs.CompleteRequest{WorkOrder: tg.workOrder, HardwareID: tg.hw, Serial: w.serial}}
	case "POST /v1/stations/{station}/events":
		e := stepEvent("line-1", w.count(), string(tg.hw), "flash", journal.StatusPassed)
		e.WorkOrder = tg.workOrder
		return authCall{method: "POST", path: "/v1/stations/line-1/events", body: dmsapi.IngestRequest{Events: []journal.Event{e}}, seq: e.Seq}
	}
	t.Fatalf("docs/api.md: TestStationScope does not know the call %q: teach scopeCall it", call)
	return authCall{}
}

// TestStationScope makes the calls of docs/api.md's table of a station
// key's calls as station line-1, naming each kind of work order the
// table names, and checks each answer's status against the table, on
// SQLite and on PostgreSQL. A work order that does not exist, one of
// another station and one whose stations were taken off must be refused
// in the same words, but for the id (and an event's seq); an event
// refused is named by its seq and field, so that the station sets it
// aside.
func TestStationScope(t *testing.T) {
	tab := readDocTable(t, "a station key's call names", "GET /v1/work-orders/{id}")
	cases := scopeCases()
	for _, row := range tab.rows {
		if cases[row.cells[0]] == nil {
			t.Errorf("docs/api.md:%d: TestStationScope does not know the row %q: add it to scopeCases", row.line, row.cells[0])
		}
	}
	if len(tab.rows) != len(cases) {
		t.Errorf("docs/api.md:%d: the table has %d rows, scopeCases %d: they must be the same list", tab.line, len(tab.rows), len(cases))
	}
	for _, call := range tab.header[1:] {
		if !slices.Contains(server.Calls(), call) {
			t.Errorf("docs/api.md:%d: the table's column %q is not a call of the DMS", tab.line, call)
		}
	}
	if t.Failed() {
		return
	}
	alike := []string{"a work order that does not exist", "a work order assigned to another station", "a work order whose stations were all taken off"}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			w := newAuthWorld(t, backendDSNs(t)[backend]())
			refusals := map[string]map[string]string{} // call → row → body, the id replaced
			for _, row := range tab.rows {
				t.Run(row.cells[0], func(t *testing.T) {
					for i, call := range tab.header[1:] {
						if row.cells[i+1] == "—" {
							continue
						}
						want := row.status(t, tab, call)
						t.Run(call, func(t *testing.T) {
							w.t = t
							tg := cases[row.cells[0]](w)
							c := w.scopeCall(t, call, tg)
							body := w.checkAnswer(t, c, "station", want)
							if c.seq > 0 && want == 422 {
								var e dmsapi.Error
								if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != dmsapi.CodeInvalid || e.Error.Field != "work_order" || e.Error.Seq != c.seq {
									t.Errorf("%s as station = %s, want %s naming field work_order and seq %d, which the station sets aside", call, body, dmsapi.CodeInvalid, c.seq)
								}
							}
							if slices.Contains(alike, row.cells[0]) {
								if refusals[call] == nil {
									refusals[call] = map[string]string{}
								}
								words := strings.ReplaceAll(string(body), tg.workOrder, "{id}")
								if c.seq > 0 {
									words = strings.NewReplacer(fmt.Sprintf("seq %d", c.seq), "seq {seq}", fmt.Sprintf(`"seq":%d`, c.seq), `"seq":{seq}`).Replace(words)
								}
								refusals[call][row.cells[0]] = words
							}
						})
					}
				})
			}
			for call, byRow := range refusals {
				for _, r := range alike[1:] {
					if byRow[r] != byRow[alike[0]] {
						t.Errorf("%s naming %s = %s, naming %s = %s: a station must not tell them apart", call, r, byRow[r], alike[0], byRow[alike[0]])
					}
				}
			}
		})
	}
}

// docTable is a table of docs/api.md, read.
type docTable struct {
	line   int      // where its header is
	header []string // the header's cells, without backquotes
	rows   []docRow
}

// docRow is a row of a docTable.
type docRow struct {
	line  int
	cells []string // without backquotes
}

// keys returns the first cell of each row.
func (tab docTable) keys() []string {
	var out []string
	for _, r := range tab.rows {
		out = append(out, r.cells[0])
	}
	return out
}

// status is the row's cell in column, a status code.
func (r docRow) status(t *testing.T, tab docTable, column string) int {
	t.Helper()
	i := slices.Index(tab.header, column)
	if i < 1 || i >= len(r.cells) {
		t.Fatalf("docs/api.md:%d: the row has no cell for %q", r.line, column)
	}
	n, err := strconv.Atoi(r.cells[i])
	if err != nil || n < 100 || n > 599 {
		t.Fatalf("docs/api.md:%d: the cell for %q is %q, not a status", r.line, column, r.cells[i])
	}
	return n
}

// readDocTable returns the table of docs/api.md whose header's first two
// cells are first and second.
func readDocTable(t *testing.T, first, second string) docTable {
	t.Helper()
	b, err := os.ReadFile(apiDocPath)
	if err != nil {
		t.Fatal(err)
	}
	cells := func(l string) []string {
		parts := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), "|")
		for i, p := range parts {
			parts[i] = strings.Trim(strings.TrimSpace(p), "`")
		}
		return parts
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "|") || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "|--") {
			continue
		}
		if h := cells(l); len(h) < 2 || h[0] != first || h[1] != second {
			continue
		}
		tab := docTable{line: i + 1, header: cells(l)}
		for j := i + 2; j < len(lines) && strings.HasPrefix(lines[j], "|"); j++ {
			row := docRow{line: j + 1, cells: cells(lines[j])}
			if len(row.cells) != len(tab.header) {
				t.Fatalf("docs/api.md:%d: the row has %d cells, the header %d", j+1, len(row.cells), len(tab.header))
			}
			tab.rows = append(tab.rows, row)
		}
		return tab
	}
	t.Fatalf("docs/api.md has no table whose header starts with %q, %q", first, second)
	return docTable{}
}

// checkSameCalls fails unless list holds each call of the DMS once, and
// nothing else.
func checkSameCalls(t *testing.T, tab docTable, what string, list []string) {
	t.Helper()
	calls := server.Calls()
	for _, c := range calls {
		n := 0
		for _, l := range list {
			if l == c {
				n++
			}
		}
		if n != 1 {
			t.Errorf("docs/api.md:%d: %s has the call %s %d times, want once", tab.line, what, c, n)
		}
	}
	for _, c := range list {
		if !slices.Contains(calls, c) {
			t.Errorf("docs/api.md:%d: %s has %q, which is not a call of the DMS (server.Calls)", tab.line, what, c)
		}
	}
}

// keysOf returns m's keys.
func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
