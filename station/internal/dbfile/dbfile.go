// Package dbfile keeps the station's SQLite files (the journal, the DMS's
// database) readable by their owner only.
package dbfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// MakePrivate makes the database at path and its -wal and -shm files,
// those that exist, the owner's alone (0600) when group or others have any
// access to them: files an older version created 0644 keep that mode
// otherwise, since SQLite gives new -wal and -shm files the database's
// mode. It returns the files it changed, as "journal.db-wal (was 0644)",
// and an error for those it could not change; it removes nothing.
func MakePrivate(path string) (changed []string, err error) {
	var errs []error
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, serr := os.Stat(p)
		if errors.Is(serr, fs.ErrNotExist) {
			continue
		}
		if serr != nil {
			errs = append(errs, serr)
			continue
		}
		perm := fi.Mode().Perm()
		if perm&0o077 == 0 {
			continue
		}
		if cerr := os.Chmod(p, 0o600); cerr != nil {
			errs = append(errs, cerr)
			continue
		}
		changed = append(changed, fmt.Sprintf("%s (was %04o)", filepath.Base(p), perm))
	}
	return changed, errors.Join(errs...)
}
