package daemon

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"time"

	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// SignIn signs an operator in by PIN or badge. The PIN and badge are
// compared by their SHA-256 in constant time, against every operator, and
// never journaled or logged: a refusal is journaled without them.
func (d *Daemon) SignIn(ctx context.Context, req localapi.SignInRequest) (localapi.Operator, error) {
	pin, badge := strings.TrimSpace(req.PIN), strings.TrimSpace(req.Badge)
	method := "pin"
	secret := pin
	if pin == "" {
		method, secret = "badge", badge
	}
	if secret == "" {
		return localapi.Operator{}, opErr(localapi.ErrInvalid, "type your PIN or scan your badge")
	}
	sum := sha256Sum([]byte(secret))
	match := -1
	for i, o := range d.operators {
		want := o.PINSHA256
		if method == "badge" {
			want = o.BadgeSHA256
		}
		w, err := hex.DecodeString(want)
		if err != nil || len(w) != len(sum) {
			continue
		}
		// Every operator is compared, so that the time taken says
		// nothing of which one matched.
		if subtle.ConstantTimeCompare(w, sum[:]) == 1 && match < 0 {
			match = i
		}
	}
	if match < 0 {
		d.mu.Lock()
		d.failures++
		n := d.failures
		d.mu.Unlock()
		d.note(ctx, journal.Event{Kind: journal.KindOperator, Step: "sign_in_refused", Status: journal.StatusInfo,
			Data: mustJSON(map[string]any{"method": method, "in_a_row": n})})
		d.log.Warn("sign-in refused", "method", method, "in_a_row", n)
		return localapi.Operator{}, opErr(localapi.ErrWrongPIN, "this %s is not known: try again, or ask your supervisor", method)
	}
	o := d.operators[match]
	op := localapi.Operator{Name: o.Name, Supervisor: o.Supervisor, Since: time.Now().UTC()}
	d.mu.Lock()
	prev := d.operator
	d.operator = &op
	d.failures = 0
	d.mu.Unlock()
	if prev != nil && prev.Name != op.Name {
		d.note(ctx, journal.Event{Kind: journal.KindOperator, Operator: prev.Name, Step: "signed_out", Status: journal.StatusInfo,
			Data: mustJSON(map[string]any{"by": op.Name})})
	}
	d.note(ctx, journal.Event{Kind: journal.KindOperator, Operator: op.Name, Step: "signed_in", Status: journal.StatusInfo,
		Data: mustJSON(map[string]any{"method": method, "supervisor": op.Supervisor})})
	d.changes.notify()
	return op, nil
}

// SignOut signs the operator out.
func (d *Daemon) SignOut(ctx context.Context) error {
	d.mu.Lock()
	prev := d.operator
	d.operator = nil
	d.mu.Unlock()
	if prev != nil {
		d.note(ctx, journal.Event{Kind: journal.KindOperator, Operator: prev.Name, Step: "signed_out", Status: journal.StatusInfo})
		d.changes.notify()
	}
	return nil
}

// requireOperator returns who is signed in, or ErrSignIn (ErrSupervisor
// when supervisor is asked and the operator is not one).
func (d *Daemon) requireOperator(supervisor bool) (localapi.Operator, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.operator == nil:
		return localapi.Operator{}, opErr(localapi.ErrSignIn, "sign in first: type your PIN or scan your badge")
	case supervisor && !d.operator.Supervisor:
		return localapi.Operator{}, opErr(localapi.ErrSupervisor, "%s is not a supervisor: a supervisor must sign in for this", d.operator.Name)
	}
	return *d.operator, nil
}
