package daemon

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// SignIn signs an operator in by PIN or badge. The PIN and badge are
// compared by their SHA-256 in constant time, against every operator (or
// the one the request names), and never journaled or logged: a refusal is
// journaled without them.
//
// Wrong tries are limited per client and per named operator (pinGuard):
// after pinFreeTries the answer says how long to wait (ErrWait, the PIN
// not checked), and at pinLockAfter the client or operator is locked
// (ErrLockedOut, journaled once) until a supervisor signs in, which the
// lock lets through and which clears every lock.
func (d *Daemon) SignIn(ctx context.Context, req localapi.SignInRequest) (localapi.Operator, error) {
	o, err := d.checkCredential(ctx, req, "sign_in")
	if err != nil {
		return localapi.Operator{}, err
	}
	op := localapi.Operator{Name: o.Name, Supervisor: o.Supervisor, Since: time.Now().UTC()}
	d.mu.Lock()
	prev := d.operator
	d.operator = &op
	d.mu.Unlock()
	if prev != nil && prev.Name != op.Name {
		d.note(ctx, journal.Event{Kind: journal.KindOperator, Operator: prev.Name, Step: "signed_out", Status: journal.StatusInfo,
			Data: mustJSON(map[string]any{"by": op.Name})})
	}
	d.note(ctx, journal.Event{Kind: journal.KindOperator, Operator: op.Name, Step: "signed_in", Status: journal.StatusInfo,
		Data: mustJSON(map[string]any{"method": method(req), "supervisor": op.Supervisor})})
	if op.Supervisor {
		d.pins.forget(clientKey(ctx))
		if cleared := d.pins.clearLocks(); len(cleared) > 0 {
			d.note(ctx, journal.Event{Kind: journal.KindOperator, Operator: op.Name, Step: "lockout_cleared", Status: journal.StatusInfo,
				Data: mustJSON(map[string]any{"locked": cleared})})
			d.log.Info("PIN lockouts cleared", "by", op.Name, "locked", cleared)
		}
	}
	d.changes.notify()
	return op, nil
}

// requireSupervisor checks the supervisor's own credential carried by a
// supervisor action's request; who is signed in does not count. action
// names the action for the journal ("stop", "override").
func (d *Daemon) requireSupervisor(ctx context.Context, cred localapi.Credential, action string) (localapi.Operator, error) {
	if strings.TrimSpace(cred.PIN) == "" && strings.TrimSpace(cred.Badge) == "" {
		return localapi.Operator{}, opErr(localapi.ErrSupervisor, "a supervisor must type their own PIN or scan their badge for this")
	}
	o, err := d.checkCredential(ctx, cred, action)
	if err != nil {
		return localapi.Operator{}, err
	}
	if !o.Supervisor {
		return localapi.Operator{}, opErr(localapi.ErrSupervisor, "%s is not a supervisor: a supervisor must type their own PIN or scan their badge for this", o.Name)
	}
	return localapi.Operator{Name: o.Name, Supervisor: true, Since: time.Now().UTC()}, nil
}

// method says how a credential was given: "pin" or "badge".
func method(c localapi.Credential) string {
	if strings.TrimSpace(c.PIN) == "" {
		return "badge"
	}
	return "pin"
}

// clientKey is the pinGuard key of the request's caller.
func clientKey(ctx context.Context) string {
	p := localapi.PeerOf(ctx)
	if p == "" {
		p = "in process"
	}
	return "client " + p
}

// checkCredential finds the operator whose PIN or badge cred carries,
// within the limits on wrong tries. purpose says what for, in the journal.
func (d *Daemon) checkCredential(ctx context.Context, cred localapi.Credential, purpose string) (Operator, error) {
	how := method(cred)
	secret := strings.TrimSpace(cred.PIN)
	if how == "badge" {
		secret = strings.TrimSpace(cred.Badge)
	}
	if secret == "" {
		return Operator{}, opErr(localapi.ErrInvalid, "type your PIN or scan your badge")
	}
	name := strings.TrimSpace(cred.Operator)
	keys := []string{clientKey(ctx)}
	if name != "" {
		keys = append(keys, "operator "+name)
	}
	wait, locked := d.pins.admit(keys)
	if wait > 0 {
		d.log.Debug("PIN try refused: too soon after wrong ones", "purpose", purpose, "keys", keys, "wait", wait)
		return Operator{}, waitError(wait)
	}
	match := d.match(how, secret, name)
	if match >= 0 && (!locked || d.operators[match].Supervisor) {
		d.pins.forget("operator " + d.operators[match].Name)
		return d.operators[match], nil
	}
	// A wrong PIN, or, while locked, any but a supervisor's: the same
	// answer, so that a lock is no oracle for the PINs behind it.
	lockedNow, next := d.pins.fail(keys)
	for _, k := range lockedNow {
		d.note(ctx, journal.Event{Kind: journal.KindOperator, Step: "locked_out", Status: journal.StatusInfo,
			Data: mustJSON(map[string]any{"method": how, "purpose": purpose, "locked": k, "after": pinLockAfter})})
		d.log.Warn("PIN lockout: a supervisor must sign in to clear it", "locked", k, "purpose", purpose)
	}
	switch {
	case locked || len(lockedNow) > 0:
		return Operator{}, opErr(localapi.ErrLockedOut, "too many wrong PINs or badges: this station is locked until a supervisor signs in here")
	case next > 0:
		d.note(ctx, refusedEvent(how, purpose))
		d.log.Warn("PIN or badge refused", "method", how, "purpose", purpose, "wait", next)
		return Operator{}, opErr(localapi.ErrWrongPIN, "this %s is not known, and there were too many wrong ones: wait %d s before the next try, or ask your supervisor", how, waitSeconds(next))
	}
	d.note(ctx, refusedEvent(how, purpose))
	d.log.Warn("PIN or badge refused", "method", how, "purpose", purpose)
	return Operator{}, opErr(localapi.ErrWrongPIN, "this %s is not known: try again, or ask your supervisor", how)
}

// refusedEvent journals a wrong PIN or badge, without it. Only tries the
// limits let through are journaled: a flood is answered "wait" unchecked.
func refusedEvent(how, purpose string) journal.Event {
	step := "sign_in_refused"
	if purpose != "sign_in" {
		step = purpose + "_refused"
	}
	return journal.Event{Kind: journal.KindOperator, Step: step, Status: journal.StatusInfo,
		Data: mustJSON(map[string]any{"method": how})}
}

// waitError answers a try made too soon.
func waitError(wait time.Duration) error {
	return &localapi.WaitError{Delay: wait, Message: fmt.Sprintf(
		"too many wrong PINs or badges: wait %d s before the next try, or ask your supervisor", waitSeconds(wait))}
}

func waitSeconds(d time.Duration) int { return (&localapi.WaitError{Delay: d}).RetryAfter() }

// match returns the index of the operator whose PIN (how "pin") or badge
// hashes to secret's SHA-256, among every operator or the one named; -1
// if none. Every candidate is compared, so that the time taken says
// nothing of which one matched.
func (d *Daemon) match(how, secret, name string) int {
	sum := sha256Sum([]byte(secret))
	match := -1
	for i, o := range d.operators {
		if name != "" && o.Name != name {
			continue
		}
		want := o.PINSHA256
		if how == "badge" {
			want = o.BadgeSHA256
		}
		w, err := hex.DecodeString(want)
		if err != nil || len(w) != len(sum) {
			continue
		}
		if subtle.ConstantTimeCompare(w, sum[:]) == 1 && match < 0 {
			match = i
		}
	}
	return match
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

// signedIn returns the name of who is signed in, "" if nobody is.
func (d *Daemon) signedIn() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.operator == nil {
		return ""
	}
	return d.operator.Name
}

// requireOperator returns who is signed in, or ErrSignIn.
func (d *Daemon) requireOperator() (localapi.Operator, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.operator == nil {
		return localapi.Operator{}, opErr(localapi.ErrSignIn, "sign in first: type your PIN or scan your badge")
	}
	return *d.operator, nil
}
