package flasher

import (
	"context"
	"time"
)

// CtxErr returns the context's cause once it is done, nil before: what a
// backend returns when the operator's stop or a step's timeout ends its
// work.
func CtxErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// Sleep waits for d or until ctx is done, returning the context's cause
// then.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return CtxErr(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
