package dms

import (
	"context"
	"errors"
	"fmt"

	"github.com/station-dev/station/jobs"
)

// Local is the DMS in the station's own process: jobs.Upstream over a
// Service, for station demo and tests. Its answers are the Service's;
// an error that is no rule's refusal (the database failing, a busy
// timeout) is reported as jobs.ErrUnavailable, which the pipeline may
// retry, as it would a DMS it cannot reach.
type Local struct {
	// Service answers.
	Service *Service
}

var (
	_ jobs.Upstream    = (*Local)(nil)
	_ jobs.DoneCounter = (*Local)(nil)
)

// Preflight tells what the DMS knows of a device; see Service.Preflight.
func (l *Local) Preflight(ctx context.Context, req jobs.PreflightRequest) (jobs.Verdict, error) {
	v, err := l.Service.Preflight(ctx, req)
	return v, unavailable(err)
}

// Activate claims the device with the request's token or purchase order;
// see Service.Activate.
func (l *Local) Activate(ctx context.Context, req jobs.ActivateRequest) (jobs.Activation, error) {
	a, err := l.Service.Activate(ctx, req)
	return a, unavailable(err)
}

// Lock records that the device is locked to the product by the work
// order; see Service.Lock.
func (l *Local) Lock(ctx context.Context, req jobs.LockRequest) error {
	return unavailable(l.Service.Lock(ctx, req))
}

// Complete records that the work order completed the device, so that its
// Preflight answers Done; see Service.MarkDone.
func (l *Local) Complete(ctx context.Context, req jobs.CompleteRequest) error {
	return unavailable(l.Service.MarkDone(ctx, req.WorkOrder, req.HardwareID))
}

// WorkOrderDone returns how many devices the work order has completed;
// see Service.WorkOrderDone.
func (l *Local) WorkOrderDone(ctx context.Context, workOrder string) (int, error) {
	n, err := l.Service.WorkOrderDone(ctx, workOrder)
	return n, unavailable(err)
}

// unavailable marks an error that no rule decided as jobs.ErrUnavailable.
func unavailable(err error) error {
	if err == nil || isFailure(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", jobs.ErrUnavailable, err)
}
