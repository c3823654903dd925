package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/journal"
)

func TestAuth(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	revoked := e.newKey(map[string]any{"role": "support", "product": "THERMO"})
	var keys []dms.Key
	e.want(200, "GET", "/v1/keys", e.admin, nil, &keys)
	last := keys[len(keys)-1]
	e.want(204, "DELETE", "/v1/keys/"+last.ID, e.admin, nil, nil)

	batch := dmsapi.IngestRequest{Events: []journal.Event{stepEvent("line-2", 1, "D1", "identify", journal.StatusPassed)}}
	tests := []struct {
		name         string
		method, path string
		key          string
		body         any
		status       int
		code         string
		msg          string
	}{
		{"no key", "GET", "/v1/products", "", nil, 401, dmsapi.CodeUnauthenticated, "this call needs an API key: send Authorization: Bearer dmk_"},
		{"unknown key", "GET", "/v1/products", "dmk_nosuchkey", nil, 401, dmsapi.CodeUnauthenticated, "unknown or revoked"},
		{"not a key", "GET", "/v1/products", "stk_" + s.token, nil, 401, dmsapi.CodeUnauthenticated, "unknown or revoked"},
		{"revoked key", "GET", "/v1/products/THERMO", revoked, nil, 401, dmsapi.CodeUnauthenticated, "unknown or revoked"},
		{"support writes", "POST", "/v1/customers", s.support, map[string]any{"id": "X", "name": "X"}, 403, dmsapi.CodeForbidden, "needs a key of role admin"},
		{"support patches", "PATCH", "/v1/products/THERMO", s.support, map[string]any{"archived": true}, 403, dmsapi.CodeForbidden, "role admin"},
		{"support other product", "GET", "/v1/products/OTHER", s.support, nil, 404, dmsapi.CodeNotFound, "product OTHER is not known to the DMS, or is not product THERMO's"},
		{"support other bundles", "GET", "/v1/products/OTHER/bundles", s.support, nil, 404, dmsapi.CodeNotFound, "not product THERMO's"},
		{"support other work order", "GET", "/v1/work-orders/WO-1", s.supportOther, nil, 404, dmsapi.CodeNotFound, "work order WO-1 is not known to the DMS, or is not product OTHER's"},
		{"support other token", "GET", "/v1/tokens/" + s.tokenID, s.supportOther, nil, 404, dmsapi.CodeNotFound, "is not known to the DMS, or is not product OTHER's"},
		{"station without work order", "POST", "/v1/lock", s.station, jobs.LockRequest{Product: "THERMO", HardwareID: "aa:04"}, 422, dmsapi.CodeInvalid, "work_order is missing"},
		{"station under unknown work order", "POST", "/v1/complete", s.station, jobs.CompleteRequest{WorkOrder: "WO-9", HardwareID: "aa:04"}, 404, dmsapi.CodeNotFound, "work order WO-9 is not known to the DMS, or is not assigned to station line-1"},
		{"support activates", "POST", "/v1/activate", s.support, activateBody("THERMO", "aa:01", s.token), 403, dmsapi.CodeForbidden, "admin or station"},
		{"station reads keys", "GET", "/v1/keys", s.station, nil, 403, dmsapi.CodeForbidden, "role admin"},
		{"station lists products", "GET", "/v1/products", s.station, nil, 403, dmsapi.CodeForbidden, "admin or support"},
		{"station pushes another's events", "POST", "/v1/stations/line-2/events", s.station, batch, 403, dmsapi.CodeForbidden, "station line-1 and may not act for station line-2"},
		{"station activates as another", "POST", "/v1/activate", s.station, dmsapi.ActivateRequest{Product: "THERMO", HardwareID: "aa:02", Token: s.token, Station: "line-9"}, 403, dmsapi.CodeForbidden, "line-9"},
		{"claim without token", "POST", "/v1/claim", "", dmsapi.ClaimRequest{Product: "THERMO", HardwareID: "aa:03"}, 401, dmsapi.CodeUnauthenticated, "activation token"},
		{"no such call", "GET", "/v1/nothing", e.admin, nil, 404, dmsapi.CodeNotFound, "no call GET /v1/nothing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			msg := e.wantError(tc.status, tc.code, tc.method, tc.path, tc.key, tc.body)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("%s %s message = %q, want it to contain %q", tc.method, tc.path, msg, tc.msg)
			}
		})
	}
	e.t = t

	// What needs no key.
	e.want(200, "GET", "/healthz", "", nil, nil)
	var act jobs.Activation
	e.want(200, "POST", "/v1/claim", "", dmsapi.ClaimRequest{Product: "THERMO", Token: s.token, HardwareID: "cm:00:01"}, &act)
	if act.Serial != "THERMO-000001" || act.ClaimsLeft != 2 {
		t.Errorf("claim with only a token = %+v, want serial THERMO-000001, 2 claims left", act)
	}
	// A station key pushes its own events and reads what a station reads.
	own := dmsapi.IngestRequest{Events: []journal.Event{stepEvent("line-1", 1, "D1", "identify", journal.StatusPassed)}}
	e.want(200, "POST", "/v1/stations/line-1/events", s.station, own, nil)
	e.want(200, "GET", "/v1/work-orders/WO-1", s.station, nil, nil)
	e.want(200, "GET", "/v1/products/THERMO/bundles/1.0.0", s.station, nil, nil)
	e.want(200, "GET", "/v1/artifacts/"+s.sum, s.station, nil, nil)
	// A support key reads its own product.
	e.want(200, "GET", "/v1/work-orders/WO-1", s.support, nil, nil)
	e.want(200, "GET", "/v1/tokens/"+s.tokenID, s.support, nil, nil)
}

func TestCatalog(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	a := e.admin

	var c dms.Customer
	e.want(200, "GET", "/v1/customers/ACME", a, nil, &c)
	if c != (dms.Customer{ID: "ACME", Name: "Acme Heating"}) {
		t.Errorf("GET customer = %+v", c)
	}

	var products []dms.ProductInfo
	e.want(200, "GET", "/v1/products", a, nil, &products)
	if codes := productCodes(products); codes != "OTHER,THERMO" {
		t.Errorf("GET /v1/products (admin) = %s, want OTHER,THERMO", codes)
	}
	e.want(200, "GET", "/v1/products", s.support, nil, &products)
	if codes := productCodes(products); codes != "THERMO" {
		t.Errorf("GET /v1/products (THERMO support) = %s, want THERMO only", codes)
	}
	var p dms.ProductInfo
	e.want(200, "GET", "/v1/products/THERMO", s.support, nil, &p)
	if p.Customer != "ACME" || p.Stage != jobs.StageDevelopment || p.PartNumber != "PN-THERMO" {
		t.Errorf("GET /v1/products/THERMO = %+v", p)
	}
	e.want(200, "PATCH", "/v1/products/THERMO", a, map[string]any{"stage": "production", "name": "Smart thermostat"}, &p)
	if p.Stage != jobs.StageProduction || p.Name != "Smart thermostat" || p.PartNumber != "PN-THERMO" {
		t.Errorf("PATCH stage = %+v, want production, new name, same part number", p)
	}
	e.want(200, "PATCH", "/v1/products/THERMO", a, map[string]any{"archived": true}, &p)
	if !p.Archived || p.Stage != jobs.StageProduction {
		t.Errorf("PATCH archived = %+v", p)
	}

	// A product without devices can be deleted, with its bundles.
	e.want(201, "POST", "/v1/products", a, map[string]any{"code": "TMP", "name": "Temp", "part_number": "T-1", "stage": "development"}, nil)
	e.want(201, "POST", "/v1/products/TMP/bundles", a, bundleBody("0.1", s.sum, len(s.image)), nil)
	e.want(204, "DELETE", "/v1/products/TMP", a, nil, nil)
	e.wantError(404, dmsapi.CodeNotFound, "GET", "/v1/products/TMP", a, nil)

	// Bundles point at the DMS's copy of their artifacts.
	var bundles []jobs.Bundle
	e.want(200, "GET", "/v1/products/OTHER/bundles", s.supportOther, nil, &bundles)
	if len(bundles) != 1 || bundles[0].Version != "1.0.0" {
		t.Fatalf("GET bundles = %+v", bundles)
	}
	if got := bundles[0].Artifacts[0]; got.URL != "/v1/artifacts/"+s.sum || got.Size != int64(len(s.image)) || got.Address.Uint64() != 0x10000 {
		t.Errorf("bundle artifact = %+v, want url /v1/artifacts/%s", got, s.sum)
	}
	// A station reads the bundles of its work orders' products: line-1
	// takes WO-1 (THERMO) by reading it first.
	var b jobs.Bundle
	e.wantError(404, dmsapi.CodeNotFound, "GET", "/v1/products/THERMO/bundles/1.0.0", s.station, nil)
	e.want(200, "GET", "/v1/work-orders/WO-1", s.station, nil, nil)
	e.want(200, "GET", "/v1/products/THERMO/bundles/1.0.0", s.station, nil, &b)
	if b.Artifacts[0].SHA256 != s.sum {
		t.Errorf("GET bundle = %+v", b)
	}

	// Keys: listed without their secrets; a revoked one stays listed.
	var keys []dms.Key
	resp := e.want(200, "GET", "/v1/keys", a, nil, &keys)
	if len(keys) != 4 {
		t.Errorf("GET /v1/keys = %d keys, want 4 (admin, station, 2 support)", len(keys))
	}
	for _, secret := range []string{e.admin, s.station, s.support} {
		if bytes.Contains(resp.body, []byte(secret)) {
			t.Errorf("GET /v1/keys answer holds a key's secret")
		}
	}
	if keys[1].Role != dms.RoleStation || keys[1].Station != "line-1" || keys[1].Name != "line 1" {
		t.Errorf("station key = %+v", keys[1])
	}
}

func productCodes(ps []dms.ProductInfo) string {
	var codes []string
	for _, p := range ps {
		codes = append(codes, p.Code)
	}
	return strings.Join(codes, ",")
}

func TestWorkOrdersTokensPurchaseOrders(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	a := e.admin

	var wo dmsapi.WorkOrder
	resp := e.want(200, "GET", "/v1/work-orders/WO-1", s.station, nil, &wo)
	if wo.ID != "WO-1" || wo.Product.Code != "THERMO" || wo.Bundle.Version != "1.0.0" || wo.Quantity != 3 || wo.TokenID != s.tokenID {
		t.Errorf("GET work order = %+v", wo)
	}
	if u := wo.Bundle.Artifacts[0].URL; u != "/v1/artifacts/"+s.sum {
		t.Errorf("work order artifact url = %q, want /v1/artifacts/%s", u, s.sum)
	}
	if !wo.Authorization.Token.IsZero() || bytes.Contains(resp.body, []byte(dms.TokenPrefix)) {
		t.Errorf("GET work order answer holds a token: %s", resp.body)
	}

	var info dms.TokenInfo
	e.want(200, "GET", "/v1/tokens/"+s.tokenID, s.support, nil, &info)
	if info.MaxClaims != 3 || info.Left != 3 || info.Product != "THERMO" || info.Revoked {
		t.Errorf("GET token = %+v", info)
	}
	var tokens []dms.TokenInfo
	e.want(200, "GET", "/v1/products/THERMO/tokens", s.support, nil, &tokens)
	if len(tokens) != 1 || tokens[0].ID != s.tokenID {
		t.Errorf("GET tokens = %+v", tokens)
	}
	var created struct {
		Token  dms.TokenInfo `json:"token"`
		Secret string        `json:"secret"`
	}
	e.want(201, "POST", "/v1/products/THERMO/tokens", a, map[string]any{"max_claims": 5, "expires": "2027-01-01T00:00:00Z"}, &created)
	if !strings.HasPrefix(created.Secret, dms.TokenPrefix) || created.Token.Left != 5 || !created.Token.Expires.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("POST token = %+v", created)
	}
	e.want(200, "POST", "/v1/tokens/"+created.Token.ID+"/revoke", a, nil, &info)
	if !info.Revoked {
		t.Errorf("revoke answered %+v, want revoked", info)
	}

	var po dms.PurchaseOrder
	e.want(201, "POST", "/v1/purchase-orders", a, map[string]any{"id": "PO-9", "product": "THERMO", "quantity": 2, "moq": 1}, &po)
	if po.ID != "PO-9" || po.Quantity != 2 || po.MinimumOrderQuantity != 1 {
		t.Errorf("POST purchase order = %+v", po)
	}
	var byPO dmsapi.WorkOrder
	e.want(201, "POST", "/v1/work-orders", a, map[string]any{"id": "WO-PO", "product": "THERMO", "bundle": "1.0.0", "quantity": 2, "purchase_order": "PO-9"}, &byPO)
	if byPO.Authorization.PurchaseOrder != "PO-9" || byPO.TokenID != "" {
		t.Errorf("POST work order by purchase order = %+v", byPO)
	}
	var act jobs.Activation
	e.want(200, "POST", "/v1/activate", s.station, dmsapi.ActivateRequest{WorkOrder: "WO-PO", Product: "THERMO", HardwareID: "po:01", PurchaseOrder: "PO-9"}, &act)
	if !act.Locked || act.ClaimsLeft != -1 {
		t.Errorf("activate by purchase order = %+v, want locked", act)
	}
	e.want(200, "GET", "/v1/purchase-orders/PO-9", s.support, nil, &po)
	if po.Registered != 1 {
		t.Errorf("purchase order registered = %d, want 1", po.Registered)
	}
}

func TestStationFlow(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	const hw = "24:6f:28:aa:bb:01"
	var v jobs.Verdict
	e.want(200, "POST", "/v1/preflight", s.station, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hw}, &v)
	if v.Known || v.Refusal != "" {
		t.Errorf("preflight of a new device = %+v", v)
	}
	var act jobs.Activation
	req := dmsapi.ActivateRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hw, FirmwareVersion: "1.0.0", Token: s.token}
	e.want(200, "POST", "/v1/activate", s.station, req, &act)
	if act.Serial != "THERMO-000001" || act.Repeat || act.ClaimsLeft != 2 {
		t.Errorf("activate = %+v", act)
	}
	e.want(200, "POST", "/v1/activate", s.station, req, &act)
	if !act.Repeat || act.ClaimsLeft != 2 {
		t.Errorf("activate again = %+v, want a repeat using no claim", act)
	}
	e.want(204, "POST", "/v1/lock", s.station, jobs.LockRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hw}, nil)
	e.want(204, "POST", "/v1/complete", s.station, jobs.CompleteRequest{WorkOrder: "WO-1", HardwareID: hw, Serial: act.Serial}, nil)
	e.want(200, "POST", "/v1/preflight", s.station, jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hw}, &v)
	if !v.Done || v.Serial != "THERMO-000001" || !v.Locked {
		t.Errorf("preflight after complete = %+v, want done and locked", v)
	}

	var d dms.Device
	e.want(200, "GET", "/v1/devices/"+hw, s.support, nil, &d)
	if d.Serial != "THERMO-000001" || !d.Locked || len(d.History) == 0 {
		t.Errorf("GET device = %+v", d)
	}
	for _, ev := range d.History {
		if ev.Station != "" && ev.Station != "line-1" {
			t.Errorf("history event %+v: station is not the key's", ev)
		}
	}
	if d.History[0].Station != "line-1" {
		t.Errorf("activation recorded station %q, want the key's line-1", d.History[0].Station)
	}
	e.wantError(404, dmsapi.CodeNotFound, "GET", "/v1/devices/"+hw, s.supportOther, nil)
	var devs []dms.Device
	e.want(200, "GET", "/v1/products/THERMO/devices", s.support, nil, &devs)
	if len(devs) != 1 || devs[0].HardwareID != hw {
		t.Errorf("GET devices = %+v", devs)
	}
	e.want(200, "GET", "/v1/products/OTHER/devices", e.admin, nil, &devs)
	if len(devs) != 0 {
		t.Errorf("GET devices of OTHER = %+v, want none", devs)
	}

	// WO-1 was taken by line-1, its first station; a second line is
	// assigned, and line-1 taken off.
	line2 := e.newKey(map[string]any{"role": "station", "station": "line-2"})
	e.wantError(404, dmsapi.CodeNotFound, "GET", "/v1/work-orders/WO-1", line2, nil)
	var wo dmsapi.WorkOrder
	e.want(200, "POST", "/v1/work-orders/WO-1/stations", e.admin, map[string]any{"stations": []string{"line-2"}}, &wo)
	if !slices.Equal(wo.Stations, []string{"line-1", "line-2"}) {
		t.Errorf("assign line-2: stations = %q, want line-1 and line-2", wo.Stations)
	}
	e.want(200, "GET", "/v1/work-orders/WO-1", line2, nil, nil)
	e.want(204, "DELETE", "/v1/work-orders/WO-1/stations/line-1", e.admin, nil, nil)
	e.wantError(404, dmsapi.CodeNotFound, "POST", "/v1/lock", s.station, jobs.LockRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: hw})
	e.wantError(404, dmsapi.CodeNotFound, "DELETE", "/v1/work-orders/WO-1/stations/line-1", e.admin, nil)
	e.wantError(422, dmsapi.CodeInvalid, "POST", "/v1/work-orders/WO-1/stations", e.admin, map[string]any{"stations": []string{"bad station"}})
}

func TestDomainErrors(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	a := e.admin
	// A one-claim token, spent; an expiring token; a revoked token.
	newToken := func(body map[string]any) (id, secret string) {
		var tok struct {
			Token  dms.TokenInfo `json:"token"`
			Secret string        `json:"secret"`
		}
		e.want(201, "POST", "/v1/products/THERMO/tokens", a, body, &tok)
		return tok.Token.ID, tok.Secret
	}
	_, one := newToken(map[string]any{"max_claims": 1})
	e.want(200, "POST", "/v1/claim", "", dmsapi.ClaimRequest{Product: "THERMO", Token: one, HardwareID: "sp:01"}, nil)
	_, expiring := newToken(map[string]any{"max_claims": 5, "expires": "2026-03-02T00:00:00Z"})
	e.clock.Advance(48 * time.Hour)
	revID, revoked := newToken(map[string]any{"max_claims": 5})
	e.want(200, "POST", "/v1/tokens/"+revID+"/revoke", a, nil, nil)
	// A device locked to OTHER (production); an archived product.
	e.want(200, "POST", "/v1/activate", a, activateBody("OTHER", "lk:01", s.otherToken), nil)
	e.want(201, "POST", "/v1/products", a, map[string]any{"code": "OLD", "name": "Old", "part_number": "O-1", "stage": "development"}, nil)
	e.want(201, "POST", "/v1/products/OLD/bundles", a, bundleBody("1.0.0", s.sum, len(s.image)), nil)
	var oldTok struct {
		Secret string `json:"secret"`
	}
	e.want(201, "POST", "/v1/products/OLD/tokens", a, map[string]any{"max_claims": 5}, &oldTok)
	e.want(200, "PATCH", "/v1/products/OLD", a, map[string]any{"archived": true}, nil)

	tests := []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
		msg          string
	}{
		{"token spent", "POST", "/v1/activate", activateBody("THERMO", "sp:02", one), 409, dmsapi.CodeTokenSpent, "no claims left (1 of 1 used)"},
		{"token expired", "POST", "/v1/activate", activateBody("THERMO", "ex:01", expiring), 409, dmsapi.CodeTokenExpired, "expired on 2026-03-02"},
		{"token revoked", "POST", "/v1/activate", activateBody("THERMO", "rv:01", revoked), 409, dmsapi.CodeTokenRevoked, "was revoked"},
		{"token unknown", "POST", "/v1/activate", activateBody("THERMO", "in:01", dms.TokenPrefix+"nosuchtoken"), 409, dmsapi.CodeTokenInvalid, "not known to the DMS"},
		{"token of another product", "POST", "/v1/activate", activateBody("THERMO", "in:02", s.otherToken), 409, dmsapi.CodeTokenInvalid, "is for product OTHER"},
		{"claim with a spent token", "POST", "/v1/claim", dmsapi.ClaimRequest{Product: "THERMO", Token: one, HardwareID: "sp:03"}, 409, dmsapi.CodeTokenSpent, "no claims left"},
		{"locked elsewhere", "POST", "/v1/activate", activateBody("THERMO", "lk:01", s.token), 409, dmsapi.CodeLockedElsewhere, "locked to product OTHER"},
		{"archived", "POST", "/v1/activate", activateBody("OLD", "ar:01", oldTok.Secret), 409, dmsapi.CodeArchived, "archived"},
		{"in use", "DELETE", "/v1/products/OTHER", nil, 409, dmsapi.CodeInUse, "archive it instead"},
		{"customer exists", "POST", "/v1/customers", map[string]any{"id": "ACME", "name": "Again"}, 409, dmsapi.CodeExists, "already exists"},
		{"bundle exists", "POST", "/v1/products/THERMO/bundles", bundleBody("1.0.0", s.sum, len(s.image)), 409, dmsapi.CodeExists, "already has bundle 1.0.0"},
		{"stage change", "PATCH", "/v1/products/OTHER", map[string]any{"stage": "development"}, 409, dmsapi.CodeStageChange, "cannot go back"},
		{"purchase order unknown", "POST", "/v1/work-orders", map[string]any{"id": "WO-X", "product": "THERMO", "bundle": "1.0.0", "quantity": 1, "purchase_order": "PO-NONE"}, 409, dmsapi.CodePurchaseOrder, "PO-NONE"},
		{"not activated", "POST", "/v1/lock", jobs.LockRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: "na:01"}, 409, dmsapi.CodeNotActivated, "has not been activated"},
		{"work order not found", "GET", "/v1/work-orders/WO-NONE", nil, 404, dmsapi.CodeNotFound, "WO-NONE"},
		{"key not found", "DELETE", "/v1/keys/K-999", nil, 404, dmsapi.CodeNotFound, "K-999"},
		{"artifact not found", "GET", "/v1/artifacts/" + strings.Repeat("0", 64), nil, 404, dmsapi.CodeNotFound, "no artifact"},
		{"invalid product", "POST", "/v1/products", map[string]any{"code": "NEW", "part_number": "N", "stage": "development"}, 422, dmsapi.CodeInvalid, "product.name"},
		{"invalid key role", "POST", "/v1/keys", map[string]any{"role": "root"}, 422, dmsapi.CodeInvalid, `"root"`},
		{"bundle without upload", "POST", "/v1/products/THERMO/bundles", bundleBody("2.0", strings.Repeat("1", 64), 10), 422, dmsapi.CodeInvalid, "upload it first with PUT /v1/artifacts/1111"},
		{"malformed JSON", "POST", "/v1/customers", raw(`{"id": "X",`), 400, dmsapi.CodeInvalid, "ends in the middle"},
		{"bad JSON", "POST", "/v1/customers", raw(`{"id": x}`), 400, dmsapi.CodeInvalid, "not valid JSON at byte"},
		{"unknown field", "POST", "/v1/customers", map[string]any{"id": "X", "nmae": "X"}, 400, dmsapi.CodeInvalid, `"nmae" is not a field of this call`},
		{"wrong type", "POST", "/v1/products/THERMO/tokens", map[string]any{"max_claims": "ten"}, 400, dmsapi.CodeInvalid, `field "max_claims" is a JSON string; it must be a number`},
		{"two values", "POST", "/v1/customers", raw(`{"id": "X", "name": "X"} {}`), 400, dmsapi.CodeInvalid, "more than one JSON value"},
		{"empty body", "POST", "/v1/customers", nil, 400, dmsapi.CodeInvalid, "empty"},
		{"bad filter", "GET", "/v1/flash-logs?since=yesterday", nil, 400, dmsapi.CodeInvalid, "RFC 3339"},
		{"bad result", "GET", "/v1/flash-logs?result=great", nil, 400, dmsapi.CodeInvalid, "not a result"},
		{"unknown filter", "GET", "/v1/events?colour=red", nil, 400, dmsapi.CodeInvalid, `"colour" is not a filter`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			key := a
			if tc.path == "/v1/claim" {
				key = ""
			}
			msg := e.wantError(tc.status, tc.code, tc.method, tc.path, key, tc.body)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("%s %s message = %q, want it to contain %q", tc.method, tc.path, msg, tc.msg)
			}
		})
	}
}

func TestArtifacts(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	img := firmware(9, 100_000)
	sha := sum(img)
	path := "/v1/artifacts/" + sha

	msg := e.wantError(422, dmsapi.CodeInvalid, "PUT", path, a, raw(img[:len(img)-1]))
	if !strings.Contains(msg, "hash to "+sum(img[:len(img)-1])) {
		t.Errorf("mismatch message = %q", msg)
	}
	e.wantError(404, dmsapi.CodeNotFound, "GET", path, a, nil)
	e.wantError(400, dmsapi.CodeInvalid, "PUT", "/v1/artifacts/ABC", a, raw(img))
	if entries, _ := os.ReadDir(e.uploads); len(entries) != 0 {
		t.Errorf("refused uploads left %d files in the upload folder", len(entries))
	}

	var up struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	}
	e.want(201, "PUT", path, a, raw(img), &up)
	if up.SHA256 != sha || up.Size != int64(len(img)) {
		t.Errorf("PUT artifact = %+v", up)
	}

	check := func(stage string) {
		t.Helper()
		resp := e.do("GET", path, a, nil)
		if resp.status != 200 || !bytes.Equal(resp.body, img) {
			t.Fatalf("%s: GET artifact = %d, %d bytes, want 200 and the image", stage, resp.status, len(resp.body))
		}
		if got := resp.header.Get("ETag"); got != `"`+sha+`"` {
			t.Errorf("%s: ETag = %s", stage, got)
		}
		if got := resp.header.Get("Content-Length"); got != fmt.Sprint(len(img)) {
			t.Errorf("%s: Content-Length = %s", stage, got)
		}
		tests := []struct {
			rng        string
			from, to   int // bytes wanted: img[from:to]
			wantStatus int
		}{
			{"bytes=1000-", 1000, len(img), 206},
			{"bytes=0-99", 0, 100, 206},
			{"bytes=-10", len(img) - 10, len(img), 206},
		}
		for _, tc := range tests {
			resp := e.do("GET", path, a, nil, "Range", tc.rng)
			if resp.status != tc.wantStatus || !bytes.Equal(resp.body, img[tc.from:tc.to]) {
				t.Errorf("%s: GET Range %s = %d, %d bytes, want %d and bytes %d to %d", stage, tc.rng, resp.status, len(resp.body), tc.wantStatus, tc.from, tc.to)
			}
			if want := fmt.Sprintf("bytes %d-%d/%d", tc.from, tc.to-1, len(img)); resp.header.Get("Content-Range") != want {
				t.Errorf("%s: Content-Range = %q, want %q", stage, resp.header.Get("Content-Range"), want)
			}
		}
		// Resuming with If-Range and the ETag still gives the part.
		resp = e.do("GET", path, a, nil, "Range", "bytes=50000-", "If-Range", `"`+sha+`"`)
		if resp.status != 206 || !bytes.Equal(resp.body, img[50000:]) {
			t.Errorf("%s: GET with If-Range = %d, %d bytes", stage, resp.status, len(resp.body))
		}
		resp = e.do("GET", path, a, nil, "If-None-Match", `"`+sha+`"`)
		if resp.status != http.StatusNotModified {
			t.Errorf("%s: GET with If-None-Match = %d, want 304", stage, resp.status)
		}
	}
	check("uploaded")

	e.want(201, "POST", "/v1/products", a, map[string]any{"code": "P", "name": "P", "part_number": "P-1", "stage": "development"}, nil)
	var b jobs.Bundle
	e.want(201, "POST", "/v1/products/P/bundles", a, bundleBody("1.0", sha, len(img)), &b)
	if b.Artifacts[0].URL != path {
		t.Errorf("bundle artifact url = %q, want %s", b.Artifacts[0].URL, path)
	}
	if _, err := os.Stat(filepath.Join(e.uploads, sha)); !os.IsNotExist(err) {
		t.Errorf("upload still waiting after its bundle was stored: %v", err)
	}
	check("stored")
	// A wrong size is refused by the bundle.
	e.wantError(422, dmsapi.CodeInvalid, "POST", "/v1/products/P/bundles", a, bundleBody("1.1", sha, 7))
}

// stepEvent is a journal event of a device step.
func stepEvent(station string, seq int64, device, step string, status journal.Status) journal.Event {
	return journal.Event{
		Seq: seq, Station: station, Time: time.Date(2026, 3, 1, 9, 0, int(seq), 0, time.UTC),
		Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "S01", Device: device, Step: step, Status: status,
	}
}

func TestIngestAndQA(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	var events []journal.Event
	seq := int64(0)
	for _, dev := range []string{"D1", "D2"} {
		for _, step := range []string{"identify", "flash", "done"} {
			status := journal.StatusPassed
			if dev == "D2" && step == "flash" {
				status = journal.StatusFailed
			}
			seq++
			events = append(events, stepEvent("line-1", seq, dev, step, status))
			if status == journal.StatusFailed {
				events[len(events)-1].Error = "flash write failed at 0x10000"
				break
			}
		}
	}
	batch := dmsapi.IngestRequest{Events: events}
	var res dmsapi.IngestResponse
	e.want(200, "POST", "/v1/stations/line-1/events", s.station, batch, &res)
	if res != (dmsapi.IngestResponse{Stored: len(events), LastSeq: seq}) {
		t.Errorf("first ingest = %+v, want %d stored", res, len(events))
	}
	e.want(200, "POST", "/v1/stations/line-1/events", s.station, batch, &res)
	if res != (dmsapi.IngestResponse{Duplicates: len(events), LastSeq: seq}) {
		t.Errorf("second ingest of the same batch = %+v, want all %d duplicates", res, len(events))
	}
	// An event of another station in the batch refuses it.
	bad := dmsapi.IngestRequest{Events: []journal.Event{stepEvent("line-2", 99, "D1", "identify", journal.StatusPassed)}}
	e.wantError(422, dmsapi.CodeInvalid, "POST", "/v1/stations/line-1/events", s.station, bad)

	var got []journal.Event
	e.want(200, "GET", "/v1/events?station=line-1", s.support, nil, &got)
	if len(got) != len(events) {
		t.Errorf("GET events = %d events, want %d stored once", len(got), len(events))
	}
	e.want(200, "GET", "/v1/events?after_seq=2&limit=2", e.admin, nil, &got)
	if len(got) != 2 || got[0].Seq != 3 {
		t.Errorf("GET events after 2, limit 2 = %+v", got)
	}
	e.want(200, "GET", "/v1/events", s.supportOther, nil, &got)
	if len(got) != 0 {
		t.Errorf("GET events (OTHER's support key) = %d events of THERMO's work order, want none", len(got))
	}

	var logs []struct {
		WorkOrder string   `json:"work_order"`
		Device    string   `json:"device"`
		Result    string   `json:"result"`
		LastError string   `json:"last_error"`
		Stations  []string `json:"stations"`
	}
	e.want(200, "GET", "/v1/flash-logs?work_order=WO-1", s.support, nil, &logs)
	if len(logs) != 2 || logs[0].Device != "D1" || logs[0].Result != "done" || logs[1].Result != "failed" || logs[1].LastError == "" {
		t.Errorf("GET flash-logs = %+v", logs)
	}
	e.want(200, "GET", "/v1/flash-logs?result=failed&since=2026-03-01T00:00:00Z", e.admin, nil, &logs)
	if len(logs) != 1 || logs[0].Device != "D2" || len(logs[0].Stations) != 1 || logs[0].Stations[0] != "line-1" {
		t.Errorf("GET flash-logs?result=failed = %+v", logs)
	}
	e.want(200, "GET", "/v1/flash-logs?until=2026-03-01T00:00:00Z", e.admin, nil, &logs)
	if len(logs) != 0 {
		t.Errorf("GET flash-logs before any event = %+v", logs)
	}
}

// TestSecretsStayOut creates a token and a key, then uses them every way
// there is, and checks that neither secret appears in the log or in any
// answer but the ones that created them.
func TestSecretsStayOut(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	var bodies [][]byte
	call := func(status int, method, path, key string, body any) {
		t.Helper()
		resp := e.do(method, path, key, body)
		if resp.status != status {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.status, resp.body, status)
		}
		bodies = append(bodies, resp.body)
	}
	station := e.newKey(map[string]any{"role": "station", "station": "line-7"})
	var tok struct {
		Token  dms.TokenInfo `json:"token"`
		Secret string        `json:"secret"`
	}
	e.want(201, "POST", "/v1/products/THERMO/tokens", e.admin, map[string]any{"max_claims": 2}, &tok)
	e.want(201, "POST", "/v1/work-orders", e.admin, map[string]any{"id": "WO-7", "product": "THERMO", "bundle": "1.0.0", "quantity": 2, "token_id": tok.Token.ID}, nil)

	call(200, "GET", "/v1/work-orders/WO-7", station, nil)
	call(200, "GET", "/v1/tokens/"+tok.Token.ID, e.admin, nil)
	call(200, "GET", "/v1/products/THERMO/tokens", e.admin, nil)
	call(200, "GET", "/v1/keys", e.admin, nil)
	call(200, "POST", "/v1/claim", "", dmsapi.ClaimRequest{Product: "THERMO", Token: tok.Secret, HardwareID: "sc:01"})
	call(200, "POST", "/v1/activate", station, dmsapi.ActivateRequest{WorkOrder: "WO-7", Product: "THERMO", HardwareID: "sc:02", FirmwareVersion: "1.0.0", Token: tok.Secret})
	call(409, "POST", "/v1/activate", station, dmsapi.ActivateRequest{WorkOrder: "WO-7", Product: "THERMO", HardwareID: "sc:03", Token: tok.Secret})
	call(409, "POST", "/v1/claim", "", dmsapi.ClaimRequest{Product: "OTHER", Token: tok.Secret, HardwareID: "sc:04"})
	call(400, "POST", "/v1/claim", "", raw(`{"product": "THERMO", "token": "`+tok.Secret+`", "hardware_id": 7}`))
	call(200, "POST", "/v1/tokens/"+tok.Token.ID+"/revoke", e.admin, nil)
	call(409, "POST", "/v1/claim", "", dmsapi.ClaimRequest{Product: "THERMO", Token: tok.Secret, HardwareID: "sc:05"})
	call(200, "GET", "/v1/devices/sc:02", e.admin, nil)
	call(401, "GET", "/v1/products", tok.Secret, nil)
	call(200, "GET", "/v1/events", e.admin, nil)

	logs := e.logs.String()
	if !strings.Contains(logs, "path=/v1/claim") || !strings.Contains(logs, "role=station") {
		t.Fatalf("the log has no request lines:\n%s", logs)
	}
	secrets := map[string]string{"token": tok.Secret, "station key": station, "admin key": e.admin, "seeded token": s.token}
	for what, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the %s's secret", what)
		}
		// The secret's random part alone must not appear either.
		tail := secret[len(secret)-20:]
		for i, b := range bodies {
			if bytes.Contains(b, []byte(tail)) {
				t.Errorf("answer %d (%s) holds the %s's secret", i, b, what)
			}
		}
		if strings.Contains(logs, tail) {
			t.Errorf("the log holds part of the %s's secret", what)
		}
	}
}

// TestStorageFailure closes the database under the server: the answer
// is 503 in general words, and the cause goes to the log.
func TestStorageFailure(t *testing.T) {
	e := newEnv(t)
	if err := e.svc.Store.Close(); err != nil {
		t.Fatal(err)
	}
	msg := e.wantError(503, dmsapi.CodeUnavailable, "GET", "/v1/products", e.admin, nil)
	if strings.Contains(msg, "sql") || strings.Contains(msg, "database is closed") {
		t.Errorf("503 message leaks the cause: %q", msg)
	}
	e.wantError(503, dmsapi.CodeUnavailable, "GET", "/healthz", "", nil)
	if logs := e.logs.String(); !strings.Contains(logs, "database is closed") || !strings.Contains(logs, "level=ERROR") {
		t.Errorf("the cause of the 503 is not in the log:\n%s", logs)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	big := map[string]any{"id": "BIG", "name": strings.Repeat("x", 2<<20)}
	e.wantError(413, dmsapi.CodeInvalid, "POST", "/v1/customers", e.admin, big)
	var answer json.RawMessage
	e.want(200, "GET", "/healthz", "", nil, &answer)
}

// TestBodyType: a JSON call's body must say it is JSON, whatever it holds
// (a browser's form or text/plain post is no API call), and must give
// each field once.
func TestBodyType(t *testing.T) {
	e := newEnv(t)
	body := raw(`{"id":"ACME","name":"Acme Heating"}`)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "", "application/jsonx", "application/json; charset=utf-8"} {
		t.Run(ct, func(t *testing.T) {
			resp := e.do("POST", "/v1/customers", e.admin, body, "Content-Type", ct)
			want := 415
			if ct == "application/json; charset=utf-8" {
				want = 201
			}
			if resp.status != want {
				t.Fatalf("POST /v1/customers as %q = %d %s, want %d", ct, resp.status, resp.body, want)
			}
		})
	}
	for _, tc := range []struct {
		path string
		body string
		dup  string
	}{
		{"/v1/customers", `{"id":"DUP","name":"first","name":"second"}`, "name"},
		{"/v1/keys", `{"role":"support","role":"admin","product":"THERMO"}`, "role"},
	} {
		msg := e.wantError(400, dmsapi.CodeInvalid, "POST", tc.path, e.admin, raw(tc.body))
		if !strings.Contains(msg, `"`+tc.dup+`" is given twice`) {
			t.Errorf("POST %s %s: message %q, want it to name %s", tc.path, tc.body, msg, tc.dup)
		}
	}
	// A customer posted twice by mistake (no duplicate inside) is still
	// refused for what it is, not for its keys.
	e.wantError(409, dmsapi.CodeExists, "POST", "/v1/customers", e.admin, raw(`{"id":"ACME","name":"Acme Heating"}`))
}
