package jobs_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// fakeBackend is a hand-written flasher backend: each method calls its
// function field when set and succeeds otherwise.
type fakeBackend struct {
	dev      *fakeDevice
	identify func(ctx context.Context) (flasher.Device, error)
	flash    func(ctx context.Context, img flasher.Image, p flasher.Progress) error
	verify   func(ctx context.Context, img flasher.Image) error
	lock     func(ctx context.Context, opts []string) error
	reset    func(ctx context.Context) (string, error)
	// trace receives a line per call, as a backend's protocol
	// transcript; nil when none is kept.
	trace io.Writer
}

var _ flasher.Backend = (*fakeBackend)(nil)

func (b *fakeBackend) Identify(ctx context.Context) (flasher.Device, error) {
	if b.trace != nil {
		fmt.Fprintf(b.trace, "> IDENTIFY\n< %s\n", b.dev.hw)
	}
	if b.identify != nil {
		return b.identify(ctx)
	}
	return flasher.Device{HardwareID: b.dev.hw, Chip: "FAKE", FlashSize: 4 << 20, Locked: b.dev.locked.Load()}, nil
}

func (b *fakeBackend) Flash(ctx context.Context, img flasher.Image, p flasher.Progress) error {
	b.dev.flashes.Add(1)
	if b.flash != nil {
		return b.flash(ctx, img, p)
	}
	p(img.Size(), img.Size())
	b.dev.mu.Lock()
	b.dev.version = img.Version
	b.dev.mu.Unlock()
	return nil
}

func (b *fakeBackend) Verify(ctx context.Context, img flasher.Image) error {
	if b.verify != nil {
		return b.verify(ctx, img)
	}
	return nil
}

func (b *fakeBackend) LockOptions() []string { return []string{"JTAG_DISABLE", "SECURE_DOWNLOAD"} }

func (b *fakeBackend) Lock(ctx context.Context, opts []string) error {
	if b.lock != nil {
		return b.lock(ctx, opts)
	}
	b.dev.locked.Store(true)
	return nil
}

// LockReport reads the fake device's lock back.
func (b *fakeBackend) LockReport() flasher.LockReport {
	on := b.dev.locked.Load()
	v := "0x00000000"
	if on {
		v = "0x00000040"
	}
	return flasher.LockReport{
		State:    map[string]bool{"JTAG_DISABLE": on},
		ReadBack: []flasher.Reading{{Stage: "after burn 1", Register: "FAKE_LOCK_REG", Addr: "0x1000", Value: v}},
	}
}

var _ flasher.LockReporter = (*fakeBackend)(nil)

func (b *fakeBackend) Reset(ctx context.Context) (string, error) {
	if b.reset != nil {
		return b.reset(ctx)
	}
	b.dev.mu.Lock()
	defer b.dev.mu.Unlock()
	return b.dev.version, nil
}

func (b *fakeBackend) Close() error { return nil }

// fakeDevice is the device in one slot; configure sets the next backend's
// behaviour, so a test can inject a fault and clear it for a retry.
type fakeDevice struct {
	hw        flasher.HardwareID
	mu        sync.Mutex
	version   string
	locked    atomic.Bool
	flashes   atomic.Int32
	configure func(b *fakeBackend)
}

// fakeFixture implements jobs.Connector over fake devices.
type fakeFixture struct {
	mu      sync.Mutex
	devices map[string]*fakeDevice
	// busy counts slots connected at once; maxBusy is the most seen.
	busy, maxBusy atomic.Int32
}

func newFakeFixture(n int) (*fakeFixture, []jobs.SlotSpec) {
	f := &fakeFixture{devices: map[string]*fakeDevice{}}
	var specs []jobs.SlotSpec
	for i := range n {
		name := fmt.Sprintf("S%d", i+1)
		f.devices[name] = &fakeDevice{hw: flasher.HardwareID(fmt.Sprintf("aa:bb:cc:00:00:%02x", i+1))}
		specs = append(specs, jobs.SlotSpec{Name: name, Protocol: "esp"})
	}
	return f, specs
}

func (f *fakeFixture) device(slot string) *fakeDevice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devices[slot]
}

func (f *fakeFixture) Connect(ctx context.Context, slot string, opts jobs.ConnectOptions) (flasher.Backend, error) {
	d := f.device(slot)
	if d == nil {
		return nil, fmt.Errorf("no device in slot %s: %w", slot, flasher.ErrNoResponse)
	}
	n := f.busy.Add(1)
	for {
		m := f.maxBusy.Load()
		if n <= m || f.maxBusy.CompareAndSwap(m, n) {
			break
		}
	}
	b := &fakeBackend{dev: d, trace: opts.Trace}
	if d.configure != nil {
		d.configure(b)
	}
	return &closingBackend{fakeBackend: b, onClose: func() { f.busy.Add(-1) }}, nil
}

type closingBackend struct {
	*fakeBackend
	onClose func()
}

func (c *closingBackend) Close() error { c.onClose(); return nil }
