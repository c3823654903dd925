package label

import (
	"bytes"
	"context"
	"fmt"
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

// TestDirSinkDrawsPreviewsInOrder: previews are drawn behind the prints,
// in order, so that a reprint's preview is the last one printed, and
// Flush waits for all of them.
func TestDirSinkDrawsPreviewsInOrder(t *testing.T) {
	dir := t.TempDir()
	s := &DirSink{Dir: dir}
	last := map[string]jobs.Label{}
	for i := range 6 {
		l := testLabel("default")
		l.Serial = fmt.Sprintf("THERMO-%06d", i%3+1)
		l.FirmwareVersion = fmt.Sprintf("1.2.%d", i) // a reprint shows the later version
		if err := s.Print(context.Background(), l); err != nil {
			t.Fatal(err)
		}
		last[l.Serial] = l
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	for serial, l := range last {
		got, err := os.ReadFile(filepath.Join(dir, serial+".png"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := PNG(l)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s.png is not the preview of the last print (firmware %s)", serial, l.FirmwareVersion)
		}
	}
}

// TestDirSinkPreviewFailureLeavesThePrint: a preview that cannot be
// written does not fail the print; Flush reports it, once.
func TestDirSinkPreviewFailureLeavesThePrint(t *testing.T) {
	dir := t.TempDir()
	// A folder where the preview goes: the preview cannot replace it.
	if err := os.MkdirAll(filepath.Join(dir, "THERMO-000001.png", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &DirSink{Dir: dir}
	if err := s.Print(context.Background(), testLabel("default")); err != nil {
		t.Fatalf("Print() = %v, want the label printed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "THERMO-000001.zpl")); err != nil {
		t.Errorf("the ZPL was not written: %v", err)
	}
	if err := s.Flush(); err == nil || !strings.Contains(err.Error(), "THERMO-000001") {
		t.Errorf("Flush() = %v, want the preview of THERMO-000001 reported", err)
	}
	if err := s.Flush(); err != nil {
		t.Errorf("second Flush() = %v, want nil: the failure was reported", err)
	}
}
