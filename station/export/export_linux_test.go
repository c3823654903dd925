package export

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteDiskFull fails an export midway as a full disk would: with
// the file size limit (RLIMIT_FSIZE) below events.jsonl's size, a write
// fails with EFBIG (Go ignores SIGXFSZ) after devices.csv, part of
// events.jsonl and some transcripts are written.
func TestWriteDiskFull(t *testing.T) {
	j := buildJournal(t, 60)
	key := testKey(t)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := old
	limit.Cur = 96 << 10
	if limit.Max < limit.Cur {
		t.Fatalf("the file size limit is %d already", limit.Max)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	_, err := write(context.Background(), j, Filter{}, dir, key, 7)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), EventsFile) ||
		!strings.Contains(err.Error(), "unfinished export was removed") {
		t.Errorf("Write past the file size limit = %v, want EFBIG writing %s, saying the export was removed", err, EventsFile)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder of the failed export is still there (%v)", err)
	}
	// Without the limit, the same export works.
	if _, err := write(context.Background(), j, Filter{}, dir, key, 7); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir, nil); err != nil {
		t.Error(err)
	}
}
