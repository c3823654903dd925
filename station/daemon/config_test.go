package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodFixture = `name: bench
slots:
  - name: A1
    protocol: esp
    port: /dev/ttyUSB0
`

func TestLoadConfig(t *testing.T) {
	pin := HashSecret("1234")
	base := `station: st-1
fixture: fixture.yaml
dms:
  url: http://dms.line:8080
  key_file: station.key
journal: journal.db
api:
  socket: api.sock
operators:
  - name: Ann
    pin_sha256: ` + pin + `
`
	tests := []struct {
		name    string
		config  string
		fixture string // "" writes none
		want    string // part of the error; "" means valid
	}{
		{"valid", base, goodFixture, ""},
		{"unknown key", base + "colour: blue\n", goodFixture, "line 12: unknown key \"colour\""},
		{"unknown nested key", strings.Replace(base, "  socket: api.sock", "  socket: api.sock\n  sokcet: x", 1), goodFixture, "line 9: unknown key \"sokcet\""},
		{"missing fixture file", base, "", "fixture: read fixture"},
		{"slot without port", base, "name: bench\nslots:\n  - name: A1\n    protocol: esp\n", "slots[0] (A1).port: is missing"},
		{"no station", strings.Replace(base, "station: st-1\n", "", 1), goodFixture, "station: is missing"},
		{"remote DMS without key", strings.Replace(base, "  key_file: station.key\n", "", 1), goodFixture, "dms.key_file: is missing"},
		{"bad PIN hash", strings.Replace(base, pin, "1234", 1), goodFixture, "operators[0].pin_sha256: must be 64 hex digits"},
		{"loopback without key", strings.Replace(base, "  socket: api.sock", "  socket: api.sock\n  listen: 127.0.0.1:9000", 1), goodFixture, "api.key_file: is missing"},
		{"bad work order", base + "work_order: WO-1;x\n", goodFixture, "work_order: \"WO-1;x\" is not a work order id"},
		{"empty", "", goodFixture, "the file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.fixture != "" {
				if err := os.WriteFile(filepath.Join(dir, "fixture.yaml"), []byte(tt.fixture), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "station.yaml")
			if err := os.WriteFile(path, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("LoadConfig() = %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("LoadConfig() = %v, want an error with %q", err, tt.want)
			case tt.want == "":
				if got, want := cfg.Path(cfg.Journal), filepath.Join(dir, "journal.db"); got != want {
					t.Errorf("journal path = %s, want %s", got, want)
				}
				if got, want := cfg.StatePath(), filepath.Join(dir, "station-state.json"); got != want {
					t.Errorf("StatePath() = %s, want %s", got, want)
				}
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		ref, want string
		ok        bool
	}{
		{"WO-123", "WO-123", true},
		{"WO:WO-123", "WO-123", true},
		{"wo:WO-123", "WO-123", true},
		{"]C1WO-123", "WO-123", true},
		{"]Q1WO:WO-123\r\n", "WO-123", true},
		{"  WO-123\t", "WO-123", true},
		{"WO-123; DROP", "", false},
		{"", "", false},
		{"]C1", "", false},
	}
	for _, tt := range tests {
		got, err := ParseRef(tt.ref)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q, ok %v", tt.ref, got, err, tt.want, tt.ok)
		}
	}
}
