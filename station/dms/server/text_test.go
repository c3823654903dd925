package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/station-dev/station/station/dms/dmsapi"
)

// TestTextOverHTTP sends text the DMS does not store to its calls, on
// both stores: every one is refused alike, 422 naming the field (and for
// an events batch the seq of the event at fault), or 400 for a path or
// query parameter; none is a 503.
func TestTextOverHTTP(t *testing.T) {
	for name, dsn := range backendDSNs(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, dsn())
			s := e.seed()
			event := func(seq int, extra string) string {
				return `{"seq":` + string(rune('0'+seq)) + `,"station":"line-1","time":"2026-03-01T09:00:01Z","kind":"step",` +
					`"work_order":"WO-1","slot":"S01","device":"D1","step":"flash","status":"passed"` + extra + `}`
			}
			batch := func(events ...string) raw { return raw(`{"events":[` + strings.Join(events, ",") + `]}`) }
			tests := []struct {
				name, method, path, key string
				body                    raw
				status                  int
				field                   string
				seq                     int64
			}{
				{"customer name with NUL", "POST", "/v1/customers", e.admin, raw(`{"id":"C1","name":"Acme\u0000"}`), 422, "name", 0},
				{"customer name not UTF-8", "POST", "/v1/customers", e.admin, raw("{\"id\":\"C1\",\"name\":\"Acme\xff\"}"), 422, "name", 0},
				{"customer name with escape", "POST", "/v1/customers", e.admin, raw(`{"id":"C1","name":"Acme\u001b[2J"}`), 422, "name", 0},
				{"customer name too long", "POST", "/v1/customers", e.admin, raw(`{"id":"C1","name":"` + strings.Repeat("a", 300) + `"}`), 422, "name", 0},
				{"key name with NUL", "POST", "/v1/keys", e.admin, raw(`{"role":"admin","name":"\u0000"}`), 422, "name", 0},
				{"product name with NUL", "POST", "/v1/products", e.admin,
					raw(`{"code":"P2","name":"P\u0000","part_number":"PN","stage":"development"}`), 422, "name", 0},
				{"artifact url not UTF-8", "POST", "/v1/products/THERMO/bundles", e.admin,
					raw("{\"version\":\"3.0\",\"tag\":\"release\",\"artifacts\":[{\"name\":\"a\",\"target\":\"esp\",\"format\":\"bin\",\"sha256\":\"" + s.sum + "\",\"size\":1,\"url\":\"\xc3\"}]}"),
					422, "artifacts[0].url", 0},
				{"work order label with NUL", "POST", "/v1/work-orders", e.admin,
					raw(`{"id":"WO-9","product":"THERMO","bundle":"1.0.0","quantity":1,"token_id":"` + s.tokenID + `","label":{"template":"a\u0000"}}`), 422, "label.template", 0},
				{"work order label with newline", "POST", "/v1/work-orders", e.admin,
					raw(`{"id":"WO-9","product":"THERMO","bundle":"1.0.0","quantity":1,"token_id":"` + s.tokenID + `","label":{"template":"a\nb"}}`), 422, "", 0},
				{"activation firmware with NUL", "POST", "/v1/activate", s.station,
					raw(`{"product":"THERMO","hardware_id":"aa:01","firmware_version":"1.0.0\u0000","token":"` + s.token + `"}`), 422, "firmware_version", 0},
				{"claim hardware id not UTF-8", "POST", "/v1/claim", "",
					raw("{\"product\":\"THERMO\",\"hardware_id\":\"aa\xff\",\"token\":\"" + s.token + "\"}"), 422, "hardware_id", 0},
				{"event error with NUL", "POST", "/v1/stations/line-1/events", s.station,
					batch(event(1, ""), event(2, `,"error":"boom\u0000"`), event(3, "")), 422, "error", 2},
				{"event data not UTF-8", "POST", "/v1/stations/line-1/events", s.station,
					batch(event(1, ""), event(2, ""), event(3, ",\"data\":{\"banner\":\"\xfe\"}")), 422, "data.banner", 3},
				{"event field name not UTF-8", "POST", "/v1/stations/line-1/events", s.station,
					batch(event(1, ",\"data\":{\"\xfe\":1}")), 422, `data."\ufffd"`, 1},
				{"customer id with escape", "POST", "/v1/customers", e.admin, raw(`{"id":"C\u001b1","name":"Acme"}`), 422, "", 0},
				{"event step with escape", "POST", "/v1/stations/line-1/events", s.station,
					batch(event(1, ""), strings.Replace(event(2, ""), `"flash"`, `"fl\u001bash"`, 1)), 422, "step", 2},
				{"path with NUL", "GET", "/v1/customers/A%00", e.admin, nil, 400, "", 0},
				{"path not UTF-8", "GET", "/v1/devices/aa%FF", e.admin, nil, 400, "", 0},
				{"query with NUL", "GET", "/v1/events?station=line%00", e.admin, nil, 400, "", 0},
				{"query not UTF-8", "GET", "/v1/flash-logs?device=%C3", e.admin, nil, 400, "", 0},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var body any
					if tt.body != nil {
						body = tt.body
					}
					resp := e.do(tt.method, tt.path, tt.key, body)
					var eb dmsapi.Error
					if err := json.Unmarshal(resp.body, &eb); err != nil {
						t.Fatalf("%s %s = %d %s: not an error body", tt.method, tt.path, resp.status, resp.body)
					}
					if resp.status != tt.status || eb.Error.Code != dmsapi.CodeInvalid {
						t.Fatalf("%s %s = %d %s, want %d invalid", tt.method, tt.path, resp.status, resp.body, tt.status)
					}
					if tt.field != "" && (eb.Error.Field != tt.field || eb.Error.Seq != tt.seq) {
						t.Errorf("%s %s = field %q seq %d (%s), want field %q seq %d", tt.method, tt.path, eb.Error.Field, eb.Error.Seq, eb.Error.Message, tt.field, tt.seq)
					}
					if strings.ContainsFunc(eb.Error.Message, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd }) {
						t.Errorf("%s %s: message %q holds a control character or bad UTF-8", tt.method, tt.path, eb.Error.Message)
					}
				})
			}
			// Nothing of the refused batches was stored; the rest of the
			// last batch, sent again without its bad event, is.
			var res dmsapi.IngestResponse
			e.want(200, "POST", "/v1/stations/line-1/events", s.station, batch(event(1, ""), event(3, "")), &res)
			if res.Stored != 2 || res.LastSeq != 3 {
				t.Errorf("ingest of events 1 and 3 = %+v, want 2 stored", res)
			}
		})
	}
}
