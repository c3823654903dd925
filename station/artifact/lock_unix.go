//go:build unix

package artifact

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockShared takes the cache folder's lock shared, for one copy: copies
// run side by side, and Clean waits for none of them.
func lockShared(dir string) (unlock func(), err error) {
	f, err := openLock(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the artifact cache: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// lockExclusive takes the cache folder's lock exclusive if no copy holds
// it; ok is false when one does.
func lockExclusive(dir string) (unlock func(), ok bool, err error) {
	f, err := openLock(dir)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock the artifact cache: %w", err)
	}
	return func() { f.Close() }, true, nil
}

// openLock opens the cache folder itself, whose flock is the cache's
// lock: no lock file lies among the artifacts.
func openLock(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open the artifact cache to lock it: %w", err)
	}
	return f, nil
}
