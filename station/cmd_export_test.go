package station

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/station-dev/station/station/journal"
)

// exportJournal writes a small journal of station line-1: two devices,
// one done and one failed.
func exportJournal(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(context.Background(), path, "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var events []journal.Event
	for _, dev := range []string{"dev-a", "dev-b"} {
		for _, step := range []string{"identify", "preflight", "flash", "verify", "activate", "lock", "label", "done"} {
			status := journal.StatusPassed
			e := journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "A1", Device: dev, Step: step, Status: status}
			if dev == "dev-b" && step == "verify" {
				e.Status, e.Error = journal.StatusFailed, "verify mismatch at 0x1000"
				events = append(events, e)
				break
			}
			events = append(events, e)
		}
	}
	if _, err := j.Append(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// notJournal is a file that is not a journal.
func notJournal(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notes.db")
	if err := os.WriteFile(p, []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runExportCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	err := m.Run(context.Background(), args)
	return out.String(), errb.String(), Code(err)
}

func TestExportCommand(t *testing.T) {
	jp := exportJournal(t)
	dir := filepath.Join(t.TempDir(), "qa")
	stdout, stderr, code := runExportCmd(t, "export", "--journal", jp, "--station", "line-1", "--work-order", "WO-1", "--out", dir, "--json")
	if code != ExitOK {
		t.Fatalf("export exit %d, stderr %s", code, stderr)
	}
	var sum struct {
		Devices, Events, Files int
		PublicKey              string `json:"public_key"`
		KeyFile                string `json:"key_file"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("summary %q: %v", stdout, err)
	}
	if sum.Devices != 2 || sum.Events != 12 || sum.Files != 6 {
		t.Errorf("summary %+v, want 2 devices, 12 events, 6 files", sum)
	}
	if sum.KeyFile != filepath.Join(filepath.Dir(jp), "station-export.key") {
		t.Errorf("key file %s, want next to the journal", sum.KeyFile)
	}
	pub := filepath.Join(t.TempDir(), "line-1.pub")
	if err := os.WriteFile(pub, []byte(sum.PublicKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if stdout, _, code := runExportCmd(t, "export", "verify", dir, "--pub", pub); code != ExitOK || !strings.Contains(stdout, "intact") {
		t.Fatalf("verify exit %d, stdout %q", code, stdout)
	}
	// A second export with --result failed picks the failed device only.
	dir2 := filepath.Join(t.TempDir(), "failed")
	stdout, _, code = runExportCmd(t, "export", "--journal", jp, "--station", "line-1", "--result", "failed", "--out", dir2)
	if code != ExitOK || !strings.Contains(stdout, "exported 1 devices") {
		t.Errorf("export --result failed: exit %d, stdout %q", code, stdout)
	}

	csvPath := filepath.Join(dir, "devices.csv")
	data, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 1
	if err := os.WriteFile(csvPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code = runExportCmd(t, "export", "verify", "--pub", pub, dir); code != ExitFailed {
		t.Errorf("verify of a changed export: exit %d, want %d", code, ExitFailed)
	}
	var out bytes.Buffer
	m := &Main{Stdout: &out}
	err = m.Run(context.Background(), []string{"export", "verify", dir})
	if err == nil || !strings.Contains(err.Error(), "devices.csv") {
		t.Errorf("verify error %v, want it to name devices.csv", err)
	}
}

func TestExportCommandUsage(t *testing.T) {
	jp := exportJournal(t)
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no out", []string{"export", "--journal", jp}, ExitUsage},
		{"bad result", []string{"export", "--journal", jp, "--out", "x", "--result", "great"}, ExitUsage},
		{"bad since", []string{"export", "--journal", jp, "--out", "x", "--since", "yesterday"}, ExitUsage},
		{"no journal", []string{"export", "--journal", filepath.Join(t.TempDir(), "none.db"), "--out", filepath.Join(t.TempDir(), "x")}, ExitProblem},
		{"other station", []string{"export", "--journal", jp, "--station", "line-2", "--out", filepath.Join(t.TempDir(), "x")}, ExitProblem},
		{"the journal's own station", []string{"export", "--journal", jp, "--out", filepath.Join(t.TempDir(), "x")}, ExitOK},
		{"not a journal", []string{"export", "--journal", notJournal(t), "--out", filepath.Join(t.TempDir(), "x")}, ExitProblem},
		{"verify no dir", []string{"export", "verify"}, ExitUsage},
		{"verify missing", []string{"export", "verify", filepath.Join(t.TempDir(), "none")}, ExitProblem},
		{"help", []string{"export", "--help"}, ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, stderr, code := runExportCmd(t, tt.args...); code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, stderr)
			}
		})
	}
}
