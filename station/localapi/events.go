package localapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Event types of the stream (Event.Type, and the "event:" field of the
// server-sent events).
const (
	// EventState carries a whole State: the first event of every stream,
	// so a client redraws from scratch after it (re)connects.
	EventState = "state"
	// EventSlot carries one Slot that changed, with the counts and run
	// state of the moment.
	EventSlot = "slot"
	// EventAlert carries the current alerts, counts, run state and
	// station commands (Can), whenever one of them changes.
	EventAlert = "alert"
	// EventDisconnected is made by Client.Watch, never sent by the server:
	// the stream broke (the daemon is restarting or stopped) and the client
	// is reconnecting. A "state" event follows once it is back.
	EventDisconnected = "disconnected"
)

// ErrDaemonDown is wrapped by the client's errors when it cannot reach the
// station daemon at all (no socket, connection refused or broken).
var ErrDaemonDown = errors.New("the station daemon is not running or cannot be reached")

// APIError is an error answer of the local API, as the client sees it. It
// matches the package's sentinels with errors.Is: an APIError of code
// "sign_in" is ErrSignIn, and so on.
type APIError struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is the error code (CodeInvalid ...).
	Code string
	// Message says what happened and what to do, for the operator.
	Message string
	// RetryAfter is how long to wait before trying again (code "wait").
	RetryAfter time.Duration
}

// Error returns the message, written for the operator.
func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("the station daemon answered %d %s", e.Status, http.StatusText(e.Status))
}

// Is reports whether target is the sentinel of e's code.
func (e *APIError) Is(target error) bool {
	for _, m := range errorCodes {
		if m.code == e.Code {
			return m.err == target
		}
	}
	return false
}

// errorCode ties a sentinel to its code and HTTP status.
type errorCode struct {
	err    error
	code   string
	status int
}

// errorCodes maps the sentinels to codes and statuses, both ways. The
// handler tries them in this order.
var errorCodes = [...]errorCode{
	{ErrInvalid, CodeInvalid, http.StatusBadRequest},
	{ErrUnauthorized, CodeUnauthorized, http.StatusUnauthorized},
	{ErrSignIn, CodeSignIn, http.StatusForbidden},
	{ErrSupervisor, CodeSupervisor, http.StatusForbidden},
	{ErrWrongPIN, CodeWrongPIN, http.StatusForbidden},
	{ErrWait, CodeWait, http.StatusTooManyRequests},
	{ErrLockedOut, CodeLockedOut, http.StatusForbidden},
	{ErrNotFound, CodeNotFound, http.StatusNotFound},
	{ErrState, CodeState, http.StatusConflict},
	{ErrNoWorkOrder, CodeNoWorkOrder, http.StatusConflict},
	{ErrAlreadyRuns, CodeAlreadyLoaded, http.StatusConflict},
	{ErrNothingToDo, CodeNothingToDo, http.StatusConflict},
	{ErrWorkOrder, CodeWorkOrder, http.StatusUnprocessableEntity},
	{ErrUnavailable, CodeUnavailable, http.StatusServiceUnavailable},
}

// codeOf returns the code and status of a Controller's error; ok is false
// for an error that wraps none of the sentinels (an internal error).
func codeOf(err error) (code string, status int, ok bool) {
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			return m.code, m.status, true
		}
	}
	return CodeInternal, http.StatusInternalServerError, false
}

// codeForStatus guesses the code of an answer that carries no JSON error
// (a proxy, a daemon of another version).
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
		return CodeInvalid
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeState
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	case http.StatusTooManyRequests:
		return CodeWait
	}
	return CodeInternal
}
