package flasher

import (
	"context"
	"errors"
	"fmt"
)

// HardwareID is the identity a device reports from its own silicon: an ESP
// MAC address, an STM32 96-bit UID as 24 hex digits, a USB serial string or
// an eMMC CID. It is what the journal and the DMS key a device by.
type HardwareID string

// Device is what Identify learnt about the device in a slot.
type Device struct {
	// HardwareID is the device's own identity, never empty on success.
	HardwareID HardwareID `json:"hardware_id"`
	// Chip names the silicon, for example "ESP32-D0WD-V3".
	Chip string `json:"chip"`
	// FlashSize is the size of the device's flash in bytes, 0 if unknown.
	FlashSize int64 `json:"flash_size,omitempty"`
	// FlashBase is the address of the flash's first byte in the
	// device's memory map (0x08000000 on an STM32); 0 where image
	// addresses are flash offsets (ESP).
	FlashBase uint64 `json:"flash_base,omitempty"`
	// Locked reports that device-side protection is already in place
	// (a burnt eFuse, read-out protection).
	Locked bool `json:"locked"`
	// LockState names each lock the backend knows and whether it is set.
	LockState map[string]bool `json:"lock_state,omitempty"`
}

// Segment is one contiguous run of bytes to write at Addr.
type Segment struct {
	// Name is the artifact the segment came from, for messages.
	Name string
	// Addr is the flash address or block offset of the first byte.
	Addr uint64
	// Data is what to write.
	Data []byte
}

// End returns the address just past the segment.
func (s Segment) End() uint64 { return s.Addr + uint64(len(s.Data)) }

// Image is everything one device receives: segments in increasing address
// order that do not overlap.
type Image struct {
	// Version is the firmware version the image carries.
	Version string
	// Segments are the runs to write.
	Segments []Segment
}

// Size returns the number of image bytes over all segments.
func (img Image) Size() int64 {
	var n int64
	for _, s := range img.Segments {
		n += int64(len(s.Data))
	}
	return n
}

// Validate checks that segments are non-empty, ordered and do not overlap.
func (img Image) Validate() error {
	if len(img.Segments) == 0 {
		return errors.New("image has no segments")
	}
	for i, s := range img.Segments {
		if len(s.Data) == 0 {
			return fmt.Errorf("segment %d (%s) is empty", i, s.Name)
		}
		if i > 0 && s.Addr < img.Segments[i-1].End() {
			return fmt.Errorf("segment %d (%s) at %#x overlaps segment %d (%s) ending at %#x",
				i, s.Name, s.Addr, i-1, img.Segments[i-1].Name, img.Segments[i-1].End())
		}
	}
	return nil
}

// Progress receives the bytes done out of total during a long operation.
// It is called from the backend's goroutine and must not block.
type Progress func(done, total int64)

// Backend flashes one device over one open transport. A backend serves one
// slot at a time and is not safe for concurrent use.
type Backend interface {
	// Identify connects to the device's bootloader and reads who it is.
	Identify(ctx context.Context) (Device, error)
	// Flash writes img to the device.
	Flash(ctx context.Context, img Image, progress Progress) error
	// Verify checks that the device holds img, with a hash computed on the
	// device where the protocol has one and a readback otherwise.
	Verify(ctx context.Context, img Image) error
	// LockOptions lists the device-side locks Lock accepts.
	LockOptions() []string
	// Lock applies the named device-side protections. It is idempotent:
	// a protection already in place is not an error.
	Lock(ctx context.Context, opts []string) error
	// Reset restarts the device into its application and returns the first
	// line the application printed, or "" where the link cannot see it.
	Reset(ctx context.Context) (banner string, err error)
	// Close releases the backend; the transport is closed by its owner.
	Close() error
}

// LockReporter is a Backend that reads its locks back from the device.
// The pipeline journals the report of every lock step, so that the
// record of a locked device is what the device answered, not what was
// asked of it.
type LockReporter interface {
	// LockReport returns what the last Lock call read back from the
	// device, whether it succeeded or failed.
	LockReport() LockReport
}

// Unwrapper is a Backend that adds to another one (closing its port,
// timing its calls): Unwrap returns the backend inside.
type Unwrapper interface {
	Unwrap() Backend
}

// ReportLock returns the lock report of b, or of the first backend that
// b wraps (see Unwrapper) that reads its locks back; false if none does.
func ReportLock(b Backend) (LockReport, bool) {
	for b != nil {
		if r, ok := b.(LockReporter); ok {
			return r.LockReport(), true
		}
		u, ok := b.(Unwrapper)
		if !ok {
			break
		}
		b = u.Unwrap()
	}
	return LockReport{}, false
}

// LockReport is the evidence of a lock: what the device reads back.
type LockReport struct {
	// State names each lock Lock was asked for and whether the device
	// shows it set.
	State map[string]bool `json:"lock_state"`
	// ReadBack lists the values read from the device, in order.
	ReadBack []Reading `json:"read_back,omitempty"`
}

// Reading is one value read back from a device.
type Reading struct {
	// Stage says when it was read, for example "before", "after burn 1".
	Stage string `json:"stage"`
	// Register names what was read: a register, or a bootloader command
	// and the field of its answer.
	Register string `json:"register"`
	// Addr is the register's address in hex, "" for a command's answer.
	Addr string `json:"addr,omitempty"`
	// Value is what was read, in hex, or the words "no answer".
	Value string `json:"value"`
	// Want says what a device with the lock set reads, where one value
	// does not say it alone (e.g. "any value but 0xaa and 0xcc").
	Want string `json:"want,omitempty"`
}

// Sentinel errors that let the pipeline and the operator's messages tell
// failures apart; backends wrap them.
var (
	// ErrNoResponse means the device did not answer: not in its
	// bootloader, wrong port, cable, or power.
	ErrNoResponse = errors.New("device does not respond")
	// ErrLinkLost means the link dropped in the middle of an operation:
	// the device was unplugged or reset.
	ErrLinkLost = errors.New("link to device lost")
	// ErrVerify means the device does not hold what was written.
	ErrVerify = errors.New("verification failed")
	// ErrLocked means device-side protection refuses the operation.
	ErrLocked = errors.New("device is locked")
	// ErrLockNotSet means a lock was applied but reading the device back
	// shows it is not in place.
	ErrLockNotSet = errors.New("device lock not in place")
	// ErrWrite means the device reported a flash write or erase failure.
	ErrWrite = errors.New("flash write failed")
	// ErrUnsupported means the device or backend cannot do what was asked.
	ErrUnsupported = errors.New("not supported by this device")
)
