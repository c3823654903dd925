package journal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestFilesPrivate opens a new journal and writes to it: the database and
// its -wal and -shm files are the station's alone (0600), whatever the
// umask would let through; StationOf reads the station it names.
func TestFilesPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(context.Background(), path, "ST-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Append(context.Background(), Event{Kind: KindOperator, Step: "signed_in", Status: StatusInfo}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), got)
		}
	}
	if id, err := StationOf(context.Background(), path); err != nil || id != "ST-1" {
		t.Errorf("StationOf() = %q, %v; want ST-1", id, err)
	}
}
