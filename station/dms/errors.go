package dms

import (
	"errors"
	"fmt"
)

// Errors the DMS returns besides the jobs package's sentinels
// (jobs.ErrTokenSpent, jobs.ErrLockedElsewhere, jobs.ErrNotFound ...).
// Every error is wrapped with what happened and what to do; tell them
// apart with errors.Is.
var (
	// ErrInvalid means a value given to the DMS is malformed or missing.
	ErrInvalid = errors.New("invalid input")
	// ErrExists means the id, code or version is already taken.
	ErrExists = errors.New("already exists")
	// ErrInUse means the record is still needed, for example a product
	// that has devices.
	ErrInUse = errors.New("in use")
	// ErrStageChange means a production product was asked to go back to
	// development.
	ErrStageChange = errors.New("a production product stays in production")
	// ErrPurchaseOrderInvalid means the purchase order is unknown or
	// belongs to another product.
	ErrPurchaseOrderInvalid = errors.New("purchase order is not valid for this product")
	// ErrPurchaseOrderFilled means every device of the purchase order is
	// already registered.
	ErrPurchaseOrderFilled = errors.New("purchase order is filled")
	// ErrNotActivated means the device has not been activated to the
	// product named.
	ErrNotActivated = errors.New("device is not activated to this product")
)

// failure is a domain error: a full sentence for people, a sentinel for
// programs, and optionally the typed error behind it (a
// *jobs.InvalidError, for one).
type failure struct {
	msg   string
	kind  error
	cause error
}

func (f *failure) Error() string { return f.msg }

func (f *failure) Unwrap() []error {
	if f.cause == nil {
		return []error{f.kind}
	}
	return []error{f.kind, f.cause}
}

// fail returns a failure of kind kind whose message is the formatted
// text. The text says what happened and what to do; it never holds a
// secret.
func fail(kind error, format string, args ...any) error {
	return &failure{msg: fmt.Sprintf(format, args...), kind: kind}
}

// failWith is fail with the typed error behind the failure; its text is
// the message.
func failWith(kind, cause error) error {
	return &failure{msg: cause.Error(), kind: kind, cause: cause}
}

// isFailure reports whether err is a domain failure (a rule said no), as
// opposed to a database or context error.
func isFailure(err error) bool {
	var f *failure
	return errors.As(err, &f)
}
