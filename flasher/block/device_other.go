//go:build !linux

package block

import (
	"errors"
	"fmt"

	"github.com/station-dev/station/flasher"
)

// errNotLinux explains why nothing here works: the safety checks, ioctls
// and sysfs identities are Linux's.
var errNotLinux = fmt.Errorf("writing block devices needs Linux (mountinfo, sysfs, BLK* ioctls): %w", flasher.ErrUnsupported)

// ErrUnsafe means a target was refused because writing it could destroy
// data in use: it is mounted, holds the system, or is a fixed disk.
var ErrUnsafe = errors.New("refusing to write this device")

// Device is a block device or file opened as a Target; Linux only.
type Device struct {
	block bool
}

// OpenTarget fails: Linux only.
func OpenTarget(path string, opts Options) (*Device, error) { return nil, errNotLinux }

// HardwareID fails: Linux only.
func HardwareID(path string) (flasher.HardwareID, error) { return "", errNotLinux }

// CheckSafe fails: Linux only.
func CheckSafe(dev uint64, allowFixed bool) error { return errNotLinux }

// Name returns "".
func (d *Device) Name() string { return "" }

// Size returns 0.
func (d *Device) Size() int64 { return 0 }

// WriteAt fails.
func (d *Device) WriteAt(p []byte, off int64) (int, error) { return 0, errNotLinux }

// ReadAt fails.
func (d *Device) ReadAt(p []byte, off int64) (int, error) { return 0, errNotLinux }

// Discard fails.
func (d *Device) Discard(off, n int64) error { return errNotLinux }

// Zero fails.
func (d *Device) Zero(off, n int64) error { return errNotLinux }

// Flush fails.
func (d *Device) Flush() error { return errNotLinux }

// DropCache fails.
func (d *Device) DropCache() error { return errNotLinux }

// Close does nothing.
func (d *Device) Close() error { return nil }
