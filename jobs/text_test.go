package jobs

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckText(t *testing.T) {
	tests := []struct {
		name     string
		s        string
		max      int
		wantName string // fragment of CheckName's error, "" for nil
		wantText string // fragment of CheckText's error, "" for nil
	}{
		{"plain", "Smart thermostat", 256, "", ""},
		{"unicode", "Thermostat Café ☃", 256, "", ""},
		{"written U+FFFD", "a\ufffdb", 256, "", ""},
		{"empty", "", 256, "", ""},
		{"NUL", "a\x00b", 256, "NUL byte (byte 1)", "NUL byte (byte 1)"},
		{"not UTF-8", "a\xffb", 256, "not valid UTF-8 (byte 1)", "not valid UTF-8 (byte 1)"},
		{"cut UTF-8", "caf\xc3", 256, "not valid UTF-8 (byte 3)", "not valid UTF-8 (byte 3)"},
		{"tab", "a\tb", 256, "U+0009", ""},
		{"newline", "line 1\nline 2", 256, "U+000A", ""},
		{"escape", "\x1b[2Jgone", 256, "U+001B", ""},
		{"DEL", "a\x7f", 256, "U+007F", ""},
		{"C1 control", "a\u0085b", 256, "U+0085", ""},
		{"at the limit", strings.Repeat("é", 128), 256, "", ""},
		{"over the limit", strings.Repeat("a", 257), 256, "257 bytes long; at most 256", "257 bytes long; at most 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				fn   func(string, int) error
				name string
				want string
			}{{CheckName, "CheckName", tt.wantName}, {CheckText, "CheckText", tt.wantText}} {
				err := c.fn(tt.s, tt.max)
				switch {
				case c.want == "" && err != nil:
					t.Errorf("%s(%q, %d) = %v, want nil", c.name, tt.s, tt.max, err)
				case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
					t.Errorf("%s(%q, %d) = %v, want an error with %q", c.name, tt.s, tt.max, err, c.want)
				case err != nil && strings.ContainsAny(err.Error(), "\x00\x1b\xff"):
					t.Errorf("%s(%q, %d) = %q quotes the text", c.name, tt.s, tt.max, err)
				}
			}
		})
	}
}

// TestWorkOrderText sends text the station and the DMS do not take
// through every text field of a work order file.
func TestWorkOrderText(t *testing.T) {
	tests := []struct {
		name  string
		data  func(t *testing.T) []byte
		field string
		want  string
	}{
		{"NUL in the product name", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["product"].(map[string]any)["name"] = "Thermo\x00" })
		}, "product.name", "NUL"},
		{"escape in the part number", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["product"].(map[string]any)["part_number"] = "\x1b]0;owned\x07" })
		}, "product.part_number", "U+001B"},
		{"newline in the version", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["bundle"].(map[string]any)["version"] = "2.3\n" })
		}, "bundle.version", "U+000A"},
		{"long artifact name", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { artifact0(m)["name"] = strings.Repeat("n", MaxNameLen+1) })
		}, "bundle.artifacts[0].name", "at most 256"},
		{"NUL in the url", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { artifact0(m)["url"] = "app.bin\x00.sh" })
		}, "bundle.artifacts[0].url", "NUL"},
		{"NUL in the label template", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["label"] = map[string]any{"template": "a\x00"} })
		}, "label.template", "NUL"},
		{"bad UTF-8 in the product name", func(t *testing.T) []byte {
			return []byte(strings.Replace(string(validWorkOrder(t)), `"name": "`, "\"name\": \"\xff", 1))
		}, "product.name", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWorkOrder(tt.data(t))
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("ParseWorkOrder = %v, want an *InvalidError", err)
			}
			for _, p := range inv.Problems {
				if p.Field == tt.field && strings.Contains(p.Problem, tt.want) {
					return
				}
			}
			t.Errorf("ParseWorkOrder = %v, want field %s: %q", err, tt.field, tt.want)
		})
	}
}
