package block

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/station-dev/station/flasher"
)

// Config says how a Backend opens its device. The zero value is ready.
type Config struct {
	// AllowFixed lets the backend write a disk that is not removable.
	AllowFixed bool
	// Direct opens the device with O_DIRECT.
	Direct bool
}

// Backend adapts one block device (or image file) to flasher.Backend.
// Segment addresses are byte offsets on the device.
type Backend struct {
	path string
	cfg  Config
	dev  *Device
}

var _ flasher.Backend = (*Backend)(nil)

// NewBackend returns a backend for the device at path; nothing is opened
// until Identify.
func NewBackend(path string, cfg Config) *Backend {
	return &Backend{path: path, cfg: cfg}
}

func (b *Backend) open() error {
	if b.dev != nil {
		return nil
	}
	d, err := OpenTarget(b.path, Options{AllowFixed: b.cfg.AllowFixed, Direct: b.cfg.Direct})
	if err != nil {
		return err
	}
	b.dev = d
	return nil
}

// Identify runs the safety checks, opens the device and returns its
// hardware id and size.
func (b *Backend) Identify(ctx context.Context) (flasher.Device, error) {
	if err := b.open(); err != nil {
		return flasher.Device{}, fmt.Errorf("identify %s: %w", b.path, err)
	}
	id, err := HardwareID(b.path)
	if err != nil {
		return flasher.Device{}, fmt.Errorf("identify %s: %w", b.path, err)
	}
	d := flasher.Device{HardwareID: id, Chip: "block device"}
	if b.dev.block {
		d.FlashSize = b.dev.Size()
	} else {
		d.Chip = "image file"
	}
	return d, nil
}

// Flash writes the segments of img at their byte offsets and flushes.
func (b *Backend) Flash(ctx context.Context, img flasher.Image, progress flasher.Progress) error {
	if err := img.Validate(); err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	if err := b.open(); err != nil {
		return fmt.Errorf("flash %s: %w", b.path, err)
	}
	if end := img.Segments[len(img.Segments)-1].End(); end > uint64(b.dev.Size()) {
		return fmt.Errorf("flash %s: the image ends at byte %d but the device holds %d: use a larger card: %w",
			b.path, end, b.dev.Size(), flasher.ErrUnsupported)
	}
	total := img.Size()
	var done int64
	for _, s := range img.Segments {
		for off := 0; off < len(s.Data); off += DefaultChunkSize {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("flash %s: %w", b.path, err)
			}
			p := s.Data[off:min(off+DefaultChunkSize, len(s.Data))]
			at := int64(s.Addr) + int64(off)
			if _, err := b.dev.WriteAt(p, at); err != nil {
				return fmt.Errorf("flash %s segment %s at offset %d: %w: %w", b.path, s.Name, at, flasher.ErrWrite, err)
			}
			done += int64(len(p))
			if progress != nil {
				progress(done, total)
			}
		}
	}
	if err := b.dev.Flush(); err != nil {
		return fmt.Errorf("flash %s: %w: %w", b.path, flasher.ErrWrite, err)
	}
	return nil
}

// Verify drops the cache and reads every segment back.
func (b *Backend) Verify(ctx context.Context, img flasher.Image) error {
	if err := b.open(); err != nil {
		return fmt.Errorf("verify %s: %w", b.path, err)
	}
	if err := b.dev.DropCache(); err != nil {
		return fmt.Errorf("verify %s: %w", b.path, err)
	}
	buf := alignedBuf(DefaultChunkSize)
	for _, s := range img.Segments {
		for off := 0; off < len(s.Data); off += DefaultChunkSize {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("verify %s: %w", b.path, err)
			}
			want := s.Data[off:min(off+DefaultChunkSize, len(s.Data))]
			at := int64(s.Addr) + int64(off)
			got := buf[:len(want)]
			if n, err := b.dev.ReadAt(got, at); n < len(got) {
				return fmt.Errorf("verify %s segment %s: read at offset %d: %w", b.path, s.Name, at+int64(n), err)
			}
			if !bytes.Equal(got, want) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				return fmt.Errorf("verify %s segment %s: byte at offset %d is %#02x, want %#02x: %w",
					b.path, s.Name, at+int64(i), got[i], want[i], flasher.ErrVerify)
			}
		}
	}
	return nil
}

// WriteSource streams a large image to the device: MultiWrite with this
// backend's device as the only target.
func (b *Backend) WriteSource(ctx context.Context, src Source, opts Options) Result {
	if err := b.open(); err != nil {
		return Result{Target: b.path, Err: fmt.Errorf("write %s: %w", b.path, err)}
	}
	return MultiWrite(ctx, src, []Target{b.dev}, opts)[0]
}

// LockOptions returns none: a card has no device-side lock.
func (b *Backend) LockOptions() []string { return nil }

// Lock refuses: SD cards and eMMC behind a reader offer no lock the
// station can set (eMMC write protection needs the host's MMC interface).
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	if len(opts) == 0 {
		return nil
	}
	return fmt.Errorf("lock %s: block devices have no device-side lock; remove the lock step for this slot: %w", b.path, flasher.ErrUnsupported)
}

// Reset does nothing: a card has no application to start. It returns "".
func (b *Backend) Reset(ctx context.Context) (string, error) { return "", nil }

// Close closes the device.
func (b *Backend) Close() error {
	if b.dev == nil {
		return nil
	}
	err := b.dev.Close()
	b.dev = nil
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close %s: %w", b.path, err)
	}
	return nil
}
