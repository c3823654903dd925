package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// httpError is an answer decided by the server itself: a status, a code
// and a message for people.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func apiError(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// conflicts maps the DMS's refusals to their 409 codes, in the order they
// are tested.
var conflicts = []struct {
	err  error
	code string
}{
	{jobs.ErrTokenSpent, dmsapi.CodeTokenSpent},
	{jobs.ErrTokenExpired, dmsapi.CodeTokenExpired},
	{jobs.ErrTokenRevoked, dmsapi.CodeTokenRevoked},
	{jobs.ErrTokenInvalid, dmsapi.CodeTokenInvalid},
	{jobs.ErrLockedElsewhere, dmsapi.CodeLockedElsewhere},
	{jobs.ErrArchived, dmsapi.CodeArchived},
	{dms.ErrPurchaseOrderInvalid, dmsapi.CodePurchaseOrder},
	{dms.ErrPurchaseOrderFilled, dmsapi.CodePurchaseOrder},
	{dms.ErrNotActivated, dmsapi.CodeNotActivated},
	{dms.ErrStageChange, dmsapi.CodeStageChange},
	{dms.ErrInUse, dmsapi.CodeInUse},
	{dms.ErrExists, dmsapi.CodeExists},
}

// classify returns the status and code of err, and whether its message
// may be shown as it is. The messages of the DMS's refusals say what
// happened and what to do and never hold a secret; any other error
// (storage, bug) is shown in general words and logged.
func classify(err error) (status int, code string, show bool) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.code, true
	}
	for _, c := range conflicts {
		if errors.Is(err, c.err) {
			return http.StatusConflict, c.code, true
		}
	}
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return http.StatusNotFound, dmsapi.CodeNotFound, true
	case errors.Is(err, dms.ErrInvalid):
		return http.StatusUnprocessableEntity, dmsapi.CodeInvalid, true
	case errors.Is(err, dms.ErrUnauthenticated):
		return http.StatusUnauthorized, dmsapi.CodeUnauthenticated, true
	case errors.Is(err, errInternal):
		return http.StatusInternalServerError, dmsapi.CodeInternal, false
	}
	// What is left comes from below the rules: the database failing or
	// busy, a request cut short. The client may retry.
	return http.StatusServiceUnavailable, dmsapi.CodeUnavailable, false
}

// errInternal marks the server's own failures (a bug), answered 500.
var errInternal = errors.New("internal error")

// writeError answers err as dmsapi.Error.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errWritten) {
		return
	}
	status, code, show := classify(err)
	msg := err.Error()
	if !show {
		switch {
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			s.log.Info("request abandoned by the client", "method", r.Method, "path", r.URL.Path)
		default:
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		}
		if status == http.StatusServiceUnavailable {
			msg = "the DMS cannot reach its storage right now: retry in a moment, and tell its administrator if it lasts"
		} else {
			msg = "the DMS failed to answer this call: its administrator will find the cause in its log"
		}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dms"`)
	}
	body := dmsapi.ErrorBody{Code: code, Message: printable(msg)}
	var fe *dms.FieldError
	if show && errors.As(err, &fe) {
		body.Field, body.Seq = fe.Field, fe.Seq
	}
	_ = writeJSON(w, status, dmsapi.Error{Error: body})
}

// printable escapes what a message must not carry to a terminal or a
// log: control characters (a NUL, an escape sequence) and bytes that are
// not UTF-8, which a refused value named in a message may hold.
func printable(msg string) string {
	if !strings.ContainsFunc(msg, isControl) && utf8.ValidString(msg) {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); {
		r, size := utf8.DecodeRuneInString(msg[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, msg[i])
		case isControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(msg[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isControl reports whether r is a C0 or C1 control character or DEL.
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }
