package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// pinDaemon is a daemon with an operator and a supervisor, a real journal
// and a clock the test moves; nothing else runs.
type pinDaemon struct {
	d   *Daemon
	j   *journal.Journal
	now time.Time
}

func newPINDaemon(t *testing.T) *pinDaemon {
	t.Helper()
	j, err := journal.Open(t.Context(), filepath.Join(t.TempDir(), "journal.db"), "ST-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	p := &pinDaemon{j: j, now: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
	p.d = &Daemon{
		log: slog.New(slog.DiscardHandler), journal: j, metrics: newDaemonMetrics("test", &fixtures.Fixture{}),
		operators: []Operator{
			{Name: "Olga", PINSHA256: HashSecret("4711")},
			{Name: "Sam", PINSHA256: HashSecret("9999"), BadgeSHA256: HashSecret("BADGE-7"), Supervisor: true},
		},
		slots: map[string]*slotState{},
	}
	p.d.pins.now = func() time.Time { return p.now }
	return p
}

// peerConn is a connection from a loopback address, for ConnContext.
type peerConn struct {
	net.Conn
	ip net.IP
}

func (c peerConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: c.ip, Port: 40000} }

// from makes the context of a request from the local API client at ip,
// as the daemon's server makes it (localapi.ConnContext).
func from(ip string) context.Context {
	return localapi.ConnContext(context.Background(), peerConn{ip: net.ParseIP(ip)})
}

// steps returns the steps of the journal's operator events.
func (p *pinDaemon) steps(t *testing.T) []string {
	t.Helper()
	evs, err := p.j.Events(t.Context(), journal.Filter{Kind: journal.KindOperator})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Step)
	}
	return out
}

// TestSixthWrongPINWaits: five wrong PINs are refused, the sixth try is
// answered with how long to wait and is not checked (the right PIN too),
// and once that time has passed the right PIN signs in.
func TestSixthWrongPINWaits(t *testing.T) {
	p := newPINDaemon(t)
	kiosk := from("127.0.0.1")
	for i := range pinFreeTries {
		if _, err := p.d.SignIn(kiosk, localapi.SignInRequest{PIN: "0000"}); !errors.Is(err, localapi.ErrWrongPIN) {
			t.Fatalf("wrong PIN %d: SignIn() = %v, want ErrWrongPIN", i+1, err)
		}
	}
	for _, pin := range []string{"0000", "4711"} {
		_, err := p.d.SignIn(kiosk, localapi.SignInRequest{PIN: pin})
		var we *localapi.WaitError
		if !errors.As(err, &we) || !errors.Is(err, localapi.ErrWait) || we.Delay != pinFirstDelay || we.RetryAfter() != 1 || !strings.Contains(err.Error(), "wait 1 s") {
			t.Fatalf("6th try (PIN %s): SignIn() = %v, want ErrWait saying to wait %v", pin, err, pinFirstDelay)
		}
	}
	// Another client is not held up by this one.
	if op, err := p.d.SignIn(from("127.0.0.2"), localapi.SignInRequest{PIN: "4711"}); err != nil || op.Name != "Olga" {
		t.Fatalf("SignIn() from another client = %+v, %v; want Olga", op, err)
	}
	p.now = p.now.Add(pinFirstDelay)
	if op, err := p.d.SignIn(kiosk, localapi.SignInRequest{PIN: "4711"}); err != nil || op.Name != "Olga" {
		t.Fatalf("SignIn() after the wait = %+v, %v; want Olga", op, err)
	}
	refused := 0
	for _, s := range p.steps(t) {
		if s == "sign_in_refused" {
			refused++
		}
	}
	if refused != pinFreeTries {
		t.Errorf("journal holds %d refusals, want %d: the tries answered \"wait\" are not journaled", refused, pinFreeTries)
	}
}

// TestPINDelaysGrow checks the wait after each wrong try in a row.
func TestPINDelaysGrow(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{5, time.Second}, {6, 2 * time.Second}, {7, 4 * time.Second}, {9, 16 * time.Second},
		{10, 32 * time.Second}, {14, pinMaxDelay}, {40, pinMaxDelay},
	} {
		if got := pinDelay(tc.n); got != tc.want {
			t.Errorf("pinDelay(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestLockoutAndSupervisorClear: wrong PINs past pinLockAfter lock the
// client; the lock is journaled once however many tries follow; while
// locked the operator's right PIN is refused like a wrong one, and a
// supervisor's badge signs in and clears the lock.
func TestLockoutAndSupervisorClear(t *testing.T) {
	p := newPINDaemon(t)
	kiosk := from("127.0.0.1")
	try := func(req localapi.SignInRequest) error {
		_, err := p.d.SignIn(kiosk, req)
		var we *localapi.WaitError
		if errors.As(err, &we) {
			p.now = p.now.Add(we.Delay)
			_, err = p.d.SignIn(kiosk, req)
		}
		return err
	}
	for i := range pinLockAfter - 1 {
		if err := try(localapi.SignInRequest{PIN: "0000"}); !errors.Is(err, localapi.ErrWrongPIN) {
			t.Fatalf("wrong PIN %d: %v, want ErrWrongPIN", i+1, err)
		}
	}
	for i := range 5 {
		if err := try(localapi.SignInRequest{PIN: "0000"}); !errors.Is(err, localapi.ErrLockedOut) {
			t.Fatalf("wrong PIN %d: %v, want ErrLockedOut", pinLockAfter+i, err)
		}
	}
	if err := try(localapi.SignInRequest{PIN: "4711"}); !errors.Is(err, localapi.ErrLockedOut) {
		t.Fatalf("the operator's PIN while locked: %v, want ErrLockedOut", err)
	}
	if n := count(p.steps(t), "locked_out"); n != 1 {
		t.Errorf("journal holds %d lockouts, want 1 for one lockout", n)
	}
	op, err := p.d.SignIn(kiosk, localapi.SignInRequest{Badge: "BADGE-7"})
	if err != nil {
		var we *localapi.WaitError
		if errors.As(err, &we) {
			p.now = p.now.Add(we.Delay)
			op, err = p.d.SignIn(kiosk, localapi.SignInRequest{Badge: "BADGE-7"})
		}
	}
	if err != nil || op.Name != "Sam" {
		t.Fatalf("supervisor's badge while locked: %+v, %v; want Sam signed in", op, err)
	}
	if op, err := p.d.SignIn(kiosk, localapi.SignInRequest{PIN: "4711"}); err != nil || op.Name != "Olga" {
		t.Fatalf("the operator's PIN after the supervisor cleared the lock: %+v, %v; want Olga", op, err)
	}
	if got := p.steps(t); count(got, "lockout_cleared") != 1 {
		t.Errorf("journal %q does not hold one lockout_cleared", got)
	}
}

// TestOperatorLockout: wrong PINs for a named operator lock that operator
// whichever client they come from.
func TestOperatorLockout(t *testing.T) {
	p := newPINDaemon(t)
	for i := range pinLockAfter {
		p.now = p.now.Add(pinMaxDelay)
		ctx := from(fmt.Sprintf("127.0.1.%d", i+1))
		if _, err := p.d.SignIn(ctx, localapi.SignInRequest{Operator: "Olga", PIN: "0000"}); err == nil {
			t.Fatalf("wrong PIN %d for Olga signed in", i+1)
		}
	}
	p.now = p.now.Add(pinMaxDelay)
	if _, err := p.d.SignIn(from("127.0.0.99"), localapi.SignInRequest{Operator: "Olga", PIN: "4711"}); !errors.Is(err, localapi.ErrLockedOut) {
		t.Fatalf("Olga's PIN from a fresh client once Olga is locked: %v, want ErrLockedOut", err)
	}
	if op, err := p.d.SignIn(from("127.0.0.99"), localapi.SignInRequest{PIN: "9999"}); err != nil || !op.Supervisor {
		t.Fatalf("supervisor sign-in = %+v, %v", op, err)
	}
	if _, err := p.d.SignIn(from("127.0.0.99"), localapi.SignInRequest{Operator: "Olga", PIN: "4711"}); err != nil {
		t.Fatalf("Olga's PIN after the supervisor signed in: %v", err)
	}
}

// TestSupervisorCredential: a supervisor action needs the supervisor's
// own credential in the request; being signed in as one is not enough,
// and an operator's credential is refused.
func TestSupervisorCredential(t *testing.T) {
	p := newPINDaemon(t)
	ctx := from("127.0.0.1")
	if _, err := p.d.SignIn(ctx, localapi.SignInRequest{PIN: "9999"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cred localapi.Credential
		want error
	}{
		{"none, supervisor signed in", localapi.Credential{}, localapi.ErrSupervisor},
		{"an operator's PIN", localapi.Credential{PIN: "4711"}, localapi.ErrSupervisor},
		{"a wrong PIN", localapi.Credential{PIN: "1234"}, localapi.ErrWrongPIN},
		{"the supervisor's PIN", localapi.Credential{PIN: "9999"}, nil},
		{"the supervisor's badge", localapi.Credential{Badge: "BADGE-7"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := p.d.requireSupervisor(ctx, tc.cred, "stop")
			if !errors.Is(err, tc.want) || (err == nil && op.Name != "Sam") {
				t.Fatalf("requireSupervisor(%s) = %+v, %v; want %v", tc.name, op, err, tc.want)
			}
		})
	}
	// Stop and Override check the credential before anything else.
	if err := p.d.Stop(ctx, localapi.Credential{}); !errors.Is(err, localapi.ErrSupervisor) {
		t.Errorf("Stop(no credential) = %v, want ErrSupervisor", err)
	}
	if err := p.d.Override(ctx, "S01", "ok", localapi.Credential{PIN: "4711"}); !errors.Is(err, localapi.ErrSupervisor) {
		t.Errorf("Override(operator's PIN) = %v, want ErrSupervisor", err)
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
