package jobs

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/station-dev/station/flasher"
)

// timedBackend adds up the time spent in a backend's calls: the device
// link's share of a device's wall time. The rest is the station's own
// (journal, DMS, labels, scheduling), which the performance model wants
// small against the link.
type timedBackend struct {
	flasher.Backend
	link *atomic.Int64 // nanoseconds
}

func (b timedBackend) since(start time.Time) { b.link.Add(int64(time.Since(start))) }

func (b timedBackend) Identify(ctx context.Context) (flasher.Device, error) {
	defer b.since(time.Now())
	return b.Backend.Identify(ctx)
}

func (b timedBackend) Flash(ctx context.Context, img flasher.Image, p flasher.Progress) error {
	defer b.since(time.Now())
	return b.Backend.Flash(ctx, img, p)
}

func (b timedBackend) Verify(ctx context.Context, img flasher.Image) error {
	defer b.since(time.Now())
	return b.Backend.Verify(ctx, img)
}

func (b timedBackend) Lock(ctx context.Context, opts []string) error {
	defer b.since(time.Now())
	return b.Backend.Lock(ctx, opts)
}

func (b timedBackend) Reset(ctx context.Context) (string, error) {
	defer b.since(time.Now())
	return b.Backend.Reset(ctx)
}

// Unwrap returns the backend whose calls b times.
func (b timedBackend) Unwrap() flasher.Backend { return b.Backend }
