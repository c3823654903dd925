package journal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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

// TestOlderFilesMadePrivate: a journal an older version created, 0644 or
// 0640, with or without the -wal and -shm files a running station keeps,
// is made 0600 when opened, and that is logged once, at info level; the
// next open has nothing to do and logs nothing.
func TestOlderFilesMadePrivate(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		open  bool                   // the older station still runs: -wal and -shm exist
		modes map[string]os.FileMode // by suffix of the database's name
		want  []string
	}{
		{"stopped", false, map[string]os.FileMode{"": 0o644},
			[]string{"journal.db (was 0644)"}},
		{"running", true, map[string]os.FileMode{"": 0o640, "-wal": 0o644, "-shm": 0o604},
			[]string{"journal.db (was 0640)", "journal.db-wal (was 0644)", "journal.db-shm (was 0604)"}},
		{"only the wal", true, map[string]os.FileMode{"-wal": 0o660},
			[]string{"journal.db-wal (was 0660)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			old, err := Open(ctx, path, "ST-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.Append(ctx, Event{Kind: KindOperator, Step: "signed_in", Status: StatusInfo}); err != nil {
				t.Fatal(err)
			}
			if !tc.open {
				if err := old.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				defer old.Close()
			}
			for suffix, mode := range tc.modes {
				if err := os.Chmod(path+suffix, mode); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			j, err := Open(ctx, path, "ST-1", logger)
			if err != nil {
				t.Fatalf("Open() of a journal with mode %v = %v, want it opened", tc.modes, err)
			}
			if _, err := j.Append(ctx, Event{Kind: KindOperator, Step: "signed_out", Status: StatusInfo}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatalf("%s: %v", filepath.Base(p), err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s has mode %v after Open, want 0600", filepath.Base(p), got)
				}
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(l, "private") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], fmt.Sprint(tc.want)) {
				t.Errorf("Open() logged %q, want one info line naming %v", lines, tc.want)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}

			logs.Reset()
			again, err := Open(ctx, path, "ST-1", logger)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if strings.Contains(logs.String(), "private") {
				t.Errorf("Open() of a private journal logged %q, want nothing about its mode", logs.String())
			}
		})
	}
}
