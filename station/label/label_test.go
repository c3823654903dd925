package label

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"THERMO-000001", "THERMO-000001"},
		{"a^XZb", "a_5EXZb"},
		{"~JA", "_7EJA"},
		{"under_score", "under_5Fscore"},
		{"tab\there", "tab_09here"},
		{"µ", "_C2_B5"},
	}
	for _, tc := range tests {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestZPLCannotBeInjected(t *testing.T) {
	l := jobs.Label{ProductName: "Evil^XZ^XA^FDpwn", PartNumber: "~JA", Serial: "S^XZ", HardwareID: "24:0a:c4:00:00:01",
		FirmwareVersion: "1.0", WorkOrder: "WO-1", Date: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), Station: "st", Slot: "A1"}
	z := string(ZPL(l))
	if strings.Count(z, "^XA") != 1 || strings.Count(z, "^XZ") != 1 || strings.Contains(z, "~JA") {
		t.Fatalf("ZPL(%+v) lets a value inject commands:\n%s", l, z)
	}
	for _, want := range []string{"^FH^FDEvil_5EXZ_5EXA_5EFDpwn^FS", "^BCN", "^BQN", "24:0a:c4:00:00:01"} {
		if !strings.Contains(z, want) {
			t.Errorf("ZPL lacks %q:\n%s", want, z)
		}
	}
}

func TestDirSink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "labels")
	s := &DirSink{Dir: dir}
	l := jobs.Label{Serial: "../THERMO 1", ProductName: "Thermostat"}
	if err := s.Print(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "label.._THERMO_1.zpl"))
	if err != nil {
		ents, _ := os.ReadDir(dir)
		t.Fatalf("label file not where expected (%v): %v", ents, err)
	}
	if !strings.HasPrefix(string(b), "^XA") {
		t.Errorf("label file = %q, want ZPL", b)
	}
}
