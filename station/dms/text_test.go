package dms

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

func TestCheckJSONText(t *testing.T) {
	tests := []struct {
		name, doc      string
		field, problem string // "" when the document is fit
	}{
		{"clean", `{"a":"b","c":[1,"d",{"e":"f"}],"g":null,"h":true}`, "", ""},
		{"clean unicode", `{"name":"Café \u00e9 ☃","x":"\t\n"}`, "", ""},
		{"NUL escaped", `{"name":"a\u0000b"}`, "name", "NUL"},
		{"NUL in a list", `{"events":[{"seq":1},{"seq":2,"error":"x\u0000"}]}`, "events[1].error", "NUL"},
		{"NUL after a nested list", `{"a":[{"b":"c"},[1,2]],"d":"\u0000"}`, "d", "NUL"},
		{"NUL in a nested object", `{"data":{"banner":{"text":"\u0000"}}}`, "data.banner.text", "NUL"},
		{"not UTF-8", "{\"name\":\"a\xffb\"}", "name", "UTF-8"},
		{"not UTF-8 in a list", "{\"lock\":{\"device\":[\"A\",\"\xc3\"]}}", "lock.device[1]", "UTF-8"},
		{"field name not UTF-8", "{\"data\":{\"k\xff\":1}}", `data."k\ufffd"`, "field name"},
		{"field name with NUL", `{"k\u0000":1}`, `"k\x00"`, "field name"},
		{"not JSON", `{"a":"\u0000`, "", ""},
		{"a bare string", `"\u0000"`, "", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckJSONText([]byte(tt.doc))
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("CheckJSONText(%q) = %v, want nil", tt.doc, err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("CheckJSONText(%q) = %v, want a *FieldError", tt.doc, err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("CheckJSONText(%q) = field %q problem %q, want field %q problem with %q", tt.doc, fe.Field, fe.Problem, tt.field, tt.problem)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("CheckJSONText(%q) = %v, want ErrInvalid", tt.doc, err)
			}
		})
	}
}

// textEvent is a valid step event of station line-1.
func textEvent(seq int64) journal.Event {
	return journal.Event{Seq: seq, Station: "line-1", Time: time.Date(2026, 3, 1, 9, 0, int(seq), 0, time.UTC),
		Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "S01", Device: "D1", Step: "flash", Status: journal.StatusPassed}
}

// TestTextRules sends text PostgreSQL cannot store or the rules refuse
// to every boundary of the service, on both stores: each is refused alike
// with ErrInvalid naming its field (and, for an event, its seq), and
// nothing of it is stored.
func TestTextRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		svc, _ := newTestService(t, b)
		addProduct(t, svc, "THERMO", jobs.StageDevelopment)
		ingest := func(mod func(*journal.Event)) func() error {
			return func() error {
				bad := textEvent(2)
				mod(&bad)
				_, err := svc.IngestEvents(ctx, "line-1", []journal.Event{textEvent(1), bad, textEvent(3)})
				return err
			}
		}
		product := func(mod func(*jobs.Product)) func() error {
			return func() error {
				p := jobs.Product{Code: "P2", Name: "Product 2", PartNumber: "PN-2", Stage: jobs.StageDevelopment}
				mod(&p)
				return svc.CreateProduct(ctx, "", p)
			}
		}
		tests := []struct {
			name  string
			call  func() error
			field string // "" when the refusal names no FieldError
			seq   int64
		}{
			{"customer name with NUL", func() error { return svc.CreateCustomer(ctx, Customer{ID: "C1", Name: "Acme\x00"}) }, "name", 0},
			{"customer name not UTF-8", func() error { return svc.CreateCustomer(ctx, Customer{ID: "C1", Name: "Acme\xff"}) }, "name", 0},
			{"customer name with escape", func() error { return svc.CreateCustomer(ctx, Customer{ID: "C1", Name: "Acme\x1b[2J"}) }, "name", 0},
			{"customer name too long", func() error {
				return svc.CreateCustomer(ctx, Customer{ID: "C1", Name: strings.Repeat("a", jobs.MaxNameLen+1)})
			}, "name", 0},
			{"customer id with NUL", func() error { return svc.CreateCustomer(ctx, Customer{ID: "C\x001", Name: "Acme"}) }, "", 0},
			{"key name with NUL", func() error {
				_, _, err := svc.CreateKey(ctx, Key{Role: RoleAdmin, Name: "k\x00"})
				return err
			}, "name", 0},
			{"product name with NUL", product(func(p *jobs.Product) { p.Name = "Thermo\x00" }), "", 0},
			{"product part number with newline", product(func(p *jobs.Product) { p.PartNumber = "PN\n2" }), "", 0},
			{"event error with NUL", ingest(func(e *journal.Event) { e.Error = "flash failed\x00" }), "error", 2},
			{"event error not UTF-8", ingest(func(e *journal.Event) { e.Error = "flash \xfe failed" }), "error", 2},
			{"event error too long", ingest(func(e *journal.Event) { e.Error = strings.Repeat("e", jobs.MaxTextLen+1) }), "error", 2},
			{"event step with escape", ingest(func(e *journal.Event) { e.Step = "flash\x1b" }), "step", 2},
			{"event device with NUL", ingest(func(e *journal.Event) { e.Device = "D\x001" }), "device", 2},
			{"event operator not UTF-8", ingest(func(e *journal.Event) { e.Operator = "\xc3" }), "operator", 2},
			{"event data with escaped NUL", ingest(func(e *journal.Event) { e.Data = json.RawMessage(`{"banner":"boot\u0000"}`) }), "data.banner", 2},
			{"event data not UTF-8", ingest(func(e *journal.Event) { e.Data = json.RawMessage("{\"banner\":\"\xff\"}") }), "data.banner", 2},
			{"event data too long", ingest(func(e *journal.Event) {
				e.Data = json.RawMessage(`{"x":"` + strings.Repeat("x", MaxEventData) + `"}`)
			}), "data", 2},
			{"event of another station", ingest(func(e *journal.Event) { e.Station = "line-2" }), "station", 2},
			{"event with no kind", ingest(func(e *journal.Event) { e.Kind = "" }), "kind", 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				if tt.field == "" {
					return
				}
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want a *FieldError", err)
				}
				if fe.Field != tt.field || fe.Seq != tt.seq {
					t.Errorf("err = field %q seq %d (%v), want field %q seq %d", fe.Field, fe.Seq, err, tt.field, tt.seq)
				}
				if strings.ContainsAny(fe.Error(), "\x00\x1b\xfe\xff") {
					t.Errorf("err = %q holds the value refused", fe)
				}
			})
		}

		// Nothing of the refused batches was stored; without the bad
		// event, the same batch is.
		got, err := svc.Events(ctx, EventFilter{})
		if err != nil || len(got) != 0 {
			t.Fatalf("Events after the refusals = %d events, %v; want none", len(got), err)
		}
		res, err := svc.IngestEvents(ctx, "line-1", []journal.Event{textEvent(1), textEvent(3)})
		if err != nil || res.Stored != 2 || res.LastSeq != 3 {
			t.Fatalf("IngestEvents(1, 3) = %+v, %v; want 2 stored, last seq 3", res, err)
		}
		if _, err := svc.Customer(ctx, "C1"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("Customer(C1) = %v, want ErrNotFound: no refused customer is stored", err)
		}
	})
}

// TestTextNet looks things up by text no store keeps: every store
// answers "not found" or ErrInvalid, never a storage error.
func TestTextNet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		svc, _ := newTestService(t, b)
		addProduct(t, svc, "THERMO", jobs.StageDevelopment)
		tests := []struct {
			name string
			call func() error
		}{
			{"customer", func() error { _, err := svc.Customer(ctx, "A\x00"); return err }},
			{"product", func() error { _, err := svc.Product(ctx, "THERMO\x00"); return err }},
			{"token", func() error { _, err := svc.Token(ctx, "T-\xff"); return err }},
			{"work order", func() error { _, err := svc.WorkOrder(ctx, "WO\x00"); return err }},
			{"device", func() error { _, err := svc.Device(ctx, "aa\x00"); return err }},
			{"events", func() error { _, err := svc.Events(ctx, EventFilter{Station: "line\x00"}); return err }},
			{"flash logs", func() error {
				_, _, err := svc.FlashLogPage(ctx, FlashLogFilter{EventFilter: EventFilter{Device: "\xff"}}, Page{})
				return err
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				if !errors.Is(err, ErrInvalid) && !errors.Is(err, jobs.ErrNotFound) {
					t.Errorf("err = %v, want ErrInvalid or jobs.ErrNotFound", err)
				}
			})
		}
	})
}
