package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Names of the cache's temporary files. A download goes to
// "<sha256>.part" and is kept between runs, to be resumed with a Range
// request; it never grows past the artifact's size. A local copy goes to
// "<sha256>.copy-<random>.part" and is never resumed: one left behind by
// a process that died during the copy is stale.
const (
	partSuffix    = ".part"
	copyPartInfix = ".copy-"
)

// Clean removes the stale copies a process that died left in the cache
// (what it was copying when it was killed). It runs when a station starts
// a work order, before any artifact is fetched. A copy in progress in
// another process holds the cache's lock, and Clean then leaves every
// file alone until next time. Downloads kept for resuming stay.
func (c *Cache) Clean() error {
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean the artifact cache: %w", err)
	}
	var stale []string
	for _, e := range ents {
		if n := e.Name(); e.Type().IsRegular() && strings.HasSuffix(n, partSuffix) && strings.Contains(n, copyPartInfix) {
			stale = append(stale, n)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	unlock, ok, err := lockExclusive(c.Dir)
	if err != nil || !ok {
		return err
	}
	defer unlock()
	var errs []error
	for _, n := range stale {
		if err := os.Remove(filepath.Join(c.Dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if c.Logger != nil {
			c.Logger.Info("removed an unfinished artifact copy", "file", n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean the artifact cache: %w", err)
	}
	return nil
}
