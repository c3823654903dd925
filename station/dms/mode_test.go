package dms

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSQLiteFilesPrivate creates a DMS database and writes to it: the
// database and its -wal and -shm files are the DMS's alone (0600).
func TestSQLiteFilesPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dms.db")
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), got)
		}
	}
}

// TestOlderSQLiteFilesMadePrivate: a DMS database an older version
// created 0644, with the -wal and -shm files a running DMS keeps, is made
// 0600 when opened, and that is logged once, at info level; the next open
// has nothing to do and logs nothing.
func TestOlderSQLiteFilesMadePrivate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dms.db")
	old, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	modes := map[string]os.FileMode{"": 0o644, "-wal": 0o644, "-shm": 0o640}
	for suffix, mode := range modes {
		if err := os.Chmod(path+suffix, mode); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(ctx, "sqlite:"+path, WithLogger(logger))
	if err != nil {
		t.Fatalf("Open() of a database with modes %v = %v, want it opened", modes, err)
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
	want := "[dms.db (was 0644) dms.db-wal (was 0644) dms.db-shm (was 0640)]"
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], want) {
		t.Errorf("Open() logged %q, want one info line naming %s", lines, want)
	}
	s.Close()

	logs.Reset()
	again, err := OpenSQLite(ctx, path, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if logs.Len() > 0 {
		t.Errorf("OpenSQLite() of a private database logged %q, want nothing", logs.String())
	}
}
