package dms

import (
	"errors"
	"fmt"

	"github.com/station-dev/station/jobs"
)

// FieldError is a value the DMS refuses: which field holds it and, for an
// event of a batch, which event. Its message never quotes the value. It
// matches ErrInvalid.
type FieldError struct {
	// Field is the value's JSON path in the request ("name",
	// "artifacts[0].url"), or within its event for an event ("error",
	// "data.banner").
	Field string
	// Seq is the sequence number of the event at fault; 0 when the value
	// is not an event's.
	Seq int64
	// Problem says what is wrong and what is allowed.
	Problem string
}

func (e *FieldError) Error() string {
	if e.Seq > 0 {
		return fmt.Sprintf("event seq %d: field %q %s: the DMS stores no event of this batch; send the batch without this event", e.Seq, e.Field, e.Problem)
	}
	return fmt.Sprintf("field %q %s", e.Field, e.Problem)
}

// Unwrap makes a FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// checkName refuses a one-line name that is not UTF-8, holds a control
// character or is longer than max bytes (jobs.CheckName).
func checkName(field, s string, max int) error {
	if err := jobs.CheckName(s, max); err != nil {
		return &FieldError{Field: field, Problem: err.Error()}
	}
	return nil
}

// CheckJSONText walks a JSON document and returns a *FieldError naming
// the first string, key or value, that is not valid UTF-8 or holds a NUL
// (written as is or as \u0000), or nil (see jobs.CheckJSONText).
// encoding/json would turn bad UTF-8 into U+FFFD without a word and
// PostgreSQL refuses NUL in text, so every body is walked before it is
// decoded.
func CheckJSONText(doc []byte) error {
	var fe *jobs.FieldError
	if errors.As(jobs.CheckJSONText(doc), &fe) {
		return &FieldError{Field: fe.Field, Problem: fe.Problem}
	}
	return nil
}
