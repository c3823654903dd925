package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/station-dev/station/flasher"
)

// planner is a Connector that knows, from the fixture alone, what each
// slot's device offers (the fixture's Connector is one).
type planner interface {
	Plan(slot string) (flasher.Plan, error)
}

// labelChecker is a Printer that can tell, without printing, whether a
// label renders (a template it knows, data the template can carry).
type labelChecker interface {
	Check(l Label) error
}

// printerReach is a Printer that can tell whether it answers (a printer
// out of paper answers: the label step waits for it, saying why).
type printerReach interface {
	Reachable(ctx context.Context) error
}

// Check is the work order's load-time check, run before any device is
// touched: every slot the bundle has an image for can take the image and
// offers every lock the work order asks for; the label renders; the
// printer answers (out of paper or paused is not a refusal: the label
// step waits for it). It returns an *InvalidError naming each work order
// field at fault, and flasher.ErrUnsupported (or ErrPrinterUnavailable
// when the printer cannot print), through errors.As and errors.Is. Slots whose
// protocol the bundle has no artifact for are not used by the work
// order and not checked; a work order no slot can flash is refused.
//
// Preflight checks again, per device, what depends on the device (its
// chip's locks, its own flash size), and the lock step renders the
// device's own label before anything is locked.
func (r *Runner) Check(ctx context.Context) error {
	wo := &r.WorkOrder
	v := &InvalidError{ID: wo.ID}
	bad := func(field, format string, args ...any) {
		v.Problems = append(v.Problems, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	var used, unused []string
	for _, s := range r.Slots {
		img, ok := r.Images[s.Protocol]
		if !ok {
			unused = append(unused, s.Name)
			continue
		}
		used = append(used, s.Name)
		pl, ok := r.Connector.(planner)
		if !ok {
			continue
		}
		p, err := pl.Plan(s.Name)
		if err != nil {
			bad("fixture", "%v", err)
			continue
		}
		for _, pr := range p.Check(img, wo.Lock.Device) {
			field := "bundle"
			switch {
			case pr.Lock >= 0:
				field = fmt.Sprintf("lock.device[%d]", pr.Lock)
			case pr.Segment != "":
				if i := slices.IndexFunc(wo.Bundle.Artifacts, func(a Artifact) bool { return a.Name == pr.Segment }); i >= 0 {
					field = fmt.Sprintf("bundle.artifacts[%d]", i)
				}
			}
			bad(field, "slot %s: %s", s.Name, pr.Msg)
		}
	}
	if len(used) == 0 && len(r.Slots) > 0 {
		var targets []string
		for p := range r.Images {
			targets = append(targets, p)
		}
		slices.Sort(targets)
		bad("bundle.artifacts", "bundle %s flashes %s, and the fixture has no slot of that protocol (its slots are %s)",
			wo.Bundle.Version, strings.Join(targets, ", "), strings.Join(unused, ", "))
	}
	if c, ok := r.Printer.(labelChecker); ok {
		if err := c.Check(r.sampleLabel()); err != nil {
			bad("label", "%v", err)
		}
	}
	var down error
	if s, ok := r.Printer.(printerReach); ok && len(used) > 0 {
		if err := s.Reachable(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			bad("label", "%v", err)
			if errors.Is(err, ErrPrinterUnavailable) {
				down = ErrPrinterUnavailable
			}
		}
	}
	if len(v.Problems) == 0 {
		return nil
	}
	e := &refusal{InvalidError: v, cause: flasher.ErrUnsupported}
	if down != nil {
		e.cause = down
	}
	return e
}

// refusal is a work order the station cannot run: the fields at fault,
// and why (flasher.ErrUnsupported, ErrPrinterUnavailable).
type refusal struct {
	*InvalidError
	cause error
}

func (e *refusal) Error() string {
	msg := e.InvalidError.Error()
	return strings.Replace(msg, " is invalid: ", " cannot run on this station; nothing was touched: ", 1)
}

func (e *refusal) Unwrap() []error { return []error{e.InvalidError, e.cause} }

// sampleLabel is the label of a device of the work order as the label
// step prints it, with a serial in the DMS's form (product code, dash,
// six digits), for the load-time check.
func (r *Runner) sampleLabel() Label {
	return r.labelFor(r.WorkOrder.Product.Code+"-000001", "", "")
}
