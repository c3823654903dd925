package jobs

import (
	"context"
	"errors"
	"strings"

	"github.com/station-dev/station/flasher"
)

// StepError is a step's failure on one device. Its message names the slot,
// the device and the step.
type StepError struct {
	Slot   string
	Device flasher.HardwareID
	Step   Step
	Err    error
}

func (e *StepError) Error() string {
	var b strings.Builder
	b.WriteString("slot " + e.Slot)
	if e.Device != "" {
		b.WriteString(", device " + string(e.Device))
	}
	b.WriteString(", step " + string(e.Step) + ": " + e.Err.Error())
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrRefused means the DMS or the station refused the device: it must be
// set aside, not retried.
var ErrRefused = errors.New("device refused")

// ErrStopped means the operator stopped the work.
var ErrStopped = errors.New("stopped by the operator")

// Explain turns a failure into words an operator understands, with what to
// do next. The technical error stays in the journal's event data.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	var advice string
	switch {
	case errors.Is(err, ErrStopped) || errors.Is(err, context.Canceled):
		advice = "Stopped before this step finished. Run the slot again to carry on."
	case errors.Is(err, context.DeadlineExceeded):
		advice = "The step took too long. Check the cable and the device, then retry the slot."
	case errors.Is(err, ErrRefused):
		advice = "Set this device aside: it must not be provisioned by this work order."
	case errors.Is(err, ErrUnavailable):
		advice = "The device-management service cannot be reached. The device keeps what it has; retry the slot when the service is back."
	case errors.Is(err, ErrTokenSpent):
		advice = "The activation token has no claims left. Ask your administrator for a new token; the device keeps its firmware and can be retried."
	case errors.Is(err, ErrTokenExpired):
		advice = "The activation token has expired. Ask your administrator for a new token."
	case errors.Is(err, ErrTokenRevoked):
		advice = "The activation token was revoked. Ask your administrator for a new token."
	case errors.Is(err, ErrTokenInvalid):
		advice = "The activation token is not valid for this product. Check the work order's token."
	case errors.Is(err, ErrLockedElsewhere):
		advice = "This device is locked to another product. Set it aside."
	case errors.Is(err, ErrArchived):
		advice = "The product is archived and takes no new devices. Ask your administrator."
	case errors.Is(err, ErrUnauthorized):
		advice = "The station's credentials were refused. Ask your administrator to check the station key."
	case errors.Is(err, flasher.ErrLinkLost):
		advice = "The link to the device dropped (unplugged or reset). Reseat the device and retry the slot."
	case errors.Is(err, flasher.ErrNoResponse):
		advice = "The device does not answer. Check that it is seated, powered and in the right slot, then retry."
	case errors.Is(err, flasher.ErrVerify):
		advice = "What the device holds differs from the image. Retry the slot; if it fails again, set the device aside."
	case errors.Is(err, flasher.ErrWrite):
		advice = "The device's flash refused a write. Retry once; if it fails again, set the device aside as faulty."
	case errors.Is(err, ErrReadBack):
		advice = "The device-management service acknowledged a record it does not hold. Set the device aside and tell your administrator: the DMS needs checking."
	case errors.Is(err, flasher.ErrLockNotSet):
		advice = "The device's protection did not take: read back after the lock, it is not set. Set the device aside and call a technician to check the fixture's lock."
	case errors.Is(err, flasher.ErrLocked):
		advice = "The device's protection refuses this. It was provisioned before; set it aside."
	case errors.Is(err, flasher.ErrUnsupported):
		advice = "The device cannot do what the work order asks. Check the work order and the fixture."
	default:
		advice = "Retry the slot; if it fails again, set the device aside and call a technician."
	}
	return err.Error() + ". " + advice
}

// retryable reports whether trying the device again may help by itself.
func retryable(err error) bool {
	switch {
	case errors.Is(err, ErrStopped), errors.Is(err, context.Canceled), errors.Is(err, ErrRefused):
		return false
	case errors.Is(err, flasher.ErrLinkLost), errors.Is(err, flasher.ErrNoResponse),
		errors.Is(err, flasher.ErrVerify), errors.Is(err, flasher.ErrWrite),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrUnavailable):
		return true
	}
	return false
}
