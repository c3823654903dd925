package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func validWorkOrder(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/workorder/valid.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWorkOrderValid(t *testing.T) {
	wo, err := ParseWorkOrder(validWorkOrder(t))
	if err != nil {
		t.Fatalf("ParseWorkOrder(valid) = %v", err)
	}
	if got := wo.Bundle.Artifacts[0].Address.Uint64(); got != 0x10000 {
		t.Errorf("address = %#x, want 0x10000", got)
	}
	if got := wo.Flasher.Timeouts["flash"].Std(); got != 10*time.Minute {
		t.Errorf("timeouts.flash = %v, want 10m", got)
	}
	if got := wo.Flasher.Timeouts["verify"].Std(); got != 90*time.Second {
		t.Errorf("timeouts.verify = %v, want 90s", got)
	}
	if wo.Authorization.Token.Reveal() != "stk_secret_value_123" {
		t.Errorf("token not read")
	}
	if !wo.LocksDMS() {
		t.Errorf("LocksDMS() = false for a production product, want true")
	}
}

// mutate applies a change to the valid work order as a generic JSON tree.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(validWorkOrder(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func artifact0(m map[string]any) map[string]any {
	return m["bundle"].(map[string]any)["artifacts"].([]any)[0].(map[string]any)
}

func TestParseWorkOrderInvalid(t *testing.T) {
	tests := []struct {
		name  string
		data  func(t *testing.T) []byte
		field string // the field the error must name
		want  string // and a fragment of what it says
	}{
		{"empty file", func(*testing.T) []byte { return nil }, "(document)", "is empty"},
		{"not json", func(*testing.T) []byte { return []byte("id: WO-1\n") }, "(document)", "not valid JSON at line 1"},
		{"cut short", func(t *testing.T) []byte { return validWorkOrder(t)[:200] }, "(document)", "cut short"},
		{"two objects", func(t *testing.T) []byte { return append(validWorkOrder(t), []byte("{}")...) }, "(document)", "more than one"},
		{"unknown field", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { m["quantiy"] = 3 }) }, "quantiy", "not a work order field"},
		{"quantity twice", func(t *testing.T) []byte {
			return bytes.Replace(validWorkOrder(t), []byte(`"quantity":`), []byte(`"quantity":1000,"quantity":`), 1)
		}, "quantity", "is given twice"},
		{"sha256 twice", func(t *testing.T) []byte {
			return bytes.Replace(validWorkOrder(t), []byte(`"sha256":`), []byte(`"sha256":"0000","sha256":`), 1)
		}, "bundle.artifacts[0].sha256", "is given twice"},
		{"quantity as string", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { m["quantity"] = "5" }) }, "quantity", "must be a number"},
		{"missing id", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { delete(m, "id") }) }, "id", "is missing"},
		{"bad id", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { m["id"] = "WO 1/2" }) }, "id", "must be 1 to 64"},
		{"zero quantity", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { m["quantity"] = 0 }) }, "quantity", "at least 1"},
		{"bad stage", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["product"].(map[string]any)["stage"] = "prod" })
		}, "product.stage", `"development" or "production"`},
		{"bad tag", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["bundle"].(map[string]any)["tag"] = "stable" })
		}, "bundle.tag", `"release", "beta" or "alpha"`},
		{"no artifacts", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["bundle"].(map[string]any)["artifacts"] = []any{} })
		}, "bundle.artifacts", "at least one artifact"},
		{"short sha256", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { artifact0(m)["sha256"] = "abc" }) }, "bundle.artifacts[0].sha256", "64 lowercase"},
		{"bad address", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { artifact0(m)["address"] = "0xZZ" })
		}, "bundle.artifacts[0].address", "not an address"},
		{"bad target", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { artifact0(m)["target"] = "jtag" })
		}, "bundle.artifacts[0].target", "must be one of"},
		{"bad format", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { artifact0(m)["format"] = "exe" }) }, "bundle.artifacts[0].format", "must be one of"},
		{"zero size", func(t *testing.T) []byte { return mutate(t, func(m map[string]any) { artifact0(m)["size"] = 0 }) }, "bundle.artifacts[0].size", "positive"},
		{"no authorization", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["authorization"] = map[string]any{} })
		}, "authorization", "is missing"},
		{"token and purchase order", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["authorization"].(map[string]any)["purchase_order"] = "PO-1" })
		}, "authorization", "exactly one"},
		{"bad lock name", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["lock"].(map[string]any)["device"] = []any{"JTAG DISABLE"} })
		}, "lock.device[0]", "not a lock name"},
		{"unknown step timeout", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["flasher"].(map[string]any)["timeouts"] = map[string]any{"flsh": "1m"} })
		}, "flasher.timeouts.flsh", "not a pipeline step"},
		{"bad timeout", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["flasher"].(map[string]any)["timeouts"] = map[string]any{"flash": "soon"} })
		}, "flasher.timeouts.flash", "not a duration"},
		{"timeout of a week", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["flasher"].(map[string]any)["timeouts"] = map[string]any{"flash": "168h"} })
		}, "flasher.timeouts.flash", "must be more than 0 and at most 6h0m0s"},
		{"zero timeout", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["flasher"].(map[string]any)["timeouts"] = map[string]any{"verify": 0} })
		}, "flasher.timeouts.verify", "must be more than 0"},
		{"bad baud", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["flasher"].(map[string]any)["baud"] = 12 })
		}, "flasher.baud", "not a serial speed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWorkOrder(tc.data(t))
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("ParseWorkOrder() = %v, want *InvalidError", err)
			}
			found := false
			for _, p := range inv.Problems {
				if p.Field == tc.field && strings.Contains(p.Problem, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("ParseWorkOrder() = %v, want field %q saying %q", err, tc.field, tc.want)
			}
			if strings.Contains(err.Error(), "stk_secret_value_123") {
				t.Errorf("error %q reveals the token", err)
			}
		})
	}
}

func TestParseWorkOrderListsEveryProblem(t *testing.T) {
	data := mutate(t, func(m map[string]any) {
		m["quantity"] = -1
		artifact0(m)["sha256"] = "x"
		m["product"].(map[string]any)["name"] = ""
	})
	_, err := ParseWorkOrder(data)
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Problems) != 3 {
		t.Fatalf("ParseWorkOrder() = %v, want 3 problems", err)
	}
	if !strings.HasPrefix(err.Error(), "work order WO-2026-0042 is invalid: ") {
		t.Errorf("error = %q, want it to name the work order", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	wo, err := ParseWorkOrder(validWorkOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "stk_secret_value_123"
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("loaded", "work_order", wo, "token", wo.Authorization.Token)
	js, _ := json.Marshal(wo)
	for name, s := range map[string]string{
		"%v":   fmt.Sprintf("%v", wo),
		"%+v":  fmt.Sprintf("%+v", wo),
		"%#v":  fmt.Sprintf("%#v", wo),
		"%s":   fmt.Sprintf("%s", wo.Authorization.Token),
		"json": string(js),
		"slog": logged.String(),
	} {
		if strings.Contains(s, secret) {
			t.Errorf("%s of the work order = %q, reveals the token", name, s)
		}
	}
	if !strings.Contains(string(js), Redacted) {
		t.Errorf("json = %s, want %q in place of the token", js, Redacted)
	}
}

// FuzzParseWorkOrder checks that no input makes the parser panic, that
// whatever it accepts is valid, and that errors name a field.
func FuzzParseWorkOrder(f *testing.F) {
	f.Add(validWorkOrder(f))
	f.Add([]byte(`{"id":"x","quantity":"1"}`))
	f.Add([]byte(`{"bundle":{"artifacts":[{"address":"0x"}]}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"flasher":{"timeouts":{"flash":-1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		wo, err := ParseWorkOrder(data)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || len(inv.Problems) == 0 {
				t.Fatalf("ParseWorkOrder() error %v is not an *InvalidError with problems", err)
			}
			for _, p := range inv.Problems {
				if p.Field == "" || p.Problem == "" {
					t.Fatalf("problem %+v lacks a field or a text", p)
				}
			}
			return
		}
		if err := wo.Validate(); err != nil {
			t.Fatalf("accepted work order does not validate: %v", err)
		}
	})
}
