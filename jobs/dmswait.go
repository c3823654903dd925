package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// DMSCallTimeout bounds one call to the DMS; a call that times out counts
// as the DMS being unreachable, and is tried again.
const DMSCallTimeout = 30 * time.Second

// Backoff bounds of the wait for an unreachable DMS.
const (
	dmsRetryMin = 500 * time.Millisecond
	dmsRetryMax = 15 * time.Second
)

// callDMS runs f, a call to the DMS that a step needs. While the DMS is
// unreachable it waits and tries again, without limit: the device keeps
// what it has, its slot says what it waits for, and the other slots carry
// on flashing. Only the operator's stop ends the wait. The wait runs on
// the device's context, not the step's, so that a step's timeout bounds
// its work with the device and not an outage upstream.
func (d *deviceRun) callDMS(what string, f func(ctx context.Context) error) error {
	return d.outlast("the DMS", ErrUnavailable, what, f)
}

// outlast runs f, which needs a service the station shares (the DMS, the
// label printer), and while f fails with down (the service is away) waits
// with jittered backoff and tries again, saying in the slot what it waits
// for, until f succeeds, fails otherwise, or the device's context ends.
func (d *deviceRun) outlast(service string, down error, what string, f func(ctx context.Context) error) error {
	ctx := d.ctx
	delay := dmsRetryMin
	var since time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, DMSCallTimeout)
		err := f(cctx)
		timedOut := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		if timedOut && err != nil && !errors.Is(err, down) {
			err = fmt.Errorf("%w: no answer within %s", down, DMSCallTimeout)
		}
		if !errors.Is(err, down) {
			if !since.IsZero() {
				d.log.Info(service+" reachable again", "waited", time.Since(since).Round(time.Second), "for", what)
				d.r.Bus.Update(d.spec.Name, func(s *SlotState) { s.Waiting = "" })
			}
			return err
		}
		if since.IsZero() {
			since = time.Now()
			d.log.Warn("waiting for "+service, "for", what, "err", err)
		}
		msg := fmt.Sprintf("waiting for %s since %s: %s needs it (%v)", service, since.Format("15:04:05"), what, err)
		d.r.Bus.Update(d.spec.Name, func(s *SlotState) { s.Waiting = msg })
		// Full jitter, so that many slots do not knock together.
		wait := time.Duration(rand.Int64N(int64(delay))) + dmsRetryMin/2
		delay = min(2*delay, dmsRetryMax)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w while %s: %w", ErrStopped, msg, err)
		case <-time.After(wait):
		}
	}
}
