package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/station-dev/station/station/localapi"
)

// realPeer connects to a new listener on network and address and returns
// the context of a request on it, as the daemon's server makes it.
func realPeer(t *testing.T, network, address string) context.Context {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return localapi.ConnContext(t.Context(), s)
}

// TestPINCountPerUser: wrong PINs count per client key, and a user is one
// client whether it calls over the unix socket or loopback TCP (each
// connection here is the test's own user): a program guessing over TCP
// cannot start a fresh count beside its socket's, and another user's
// count is its own.
func TestPINCountPerUser(t *testing.T) {
	t.Run("keys count separately", func(t *testing.T) {
		now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
		g := pinGuard{now: func() time.Time { return now }}
		for range pinFreeTries {
			g.fail([]string{"client uid 1000"})
		}
		if wait, _ := g.admit([]string{"client uid 1000"}); wait != pinFirstDelay {
			t.Errorf("admit(uid 1000) after %d wrong tries: wait %v, want %v", pinFreeTries, wait, pinFirstDelay)
		}
		if wait, locked := g.admit([]string{"client uid 1001"}); wait != 0 || locked {
			t.Errorf("admit(uid 1001) = %v, %v; want no wait: its count is its own", wait, locked)
		}
	})
	t.Run("one user over unix socket and TCP", func(t *testing.T) {
		p := newPINDaemon(t)
		unix := realPeer(t, "unix", filepath.Join(t.TempDir(), "api.sock"))
		tcp := realPeer(t, "tcp", "127.0.0.1:0")
		want := "client uid " + strconv.Itoa(os.Getuid())
		if clientKey(unix) != want || clientKey(tcp) != want {
			t.Fatalf("clientKey(unix socket), clientKey(loopback) = %q, %q; want %q for both", clientKey(unix), clientKey(tcp), want)
		}
		for i := range pinFreeTries {
			ctx := unix
			if i%2 == 1 {
				ctx = tcp
			}
			if _, err := p.d.SignIn(ctx, localapi.SignInRequest{PIN: "0000"}); !errors.Is(err, localapi.ErrWrongPIN) {
				t.Fatalf("wrong PIN %d: SignIn() = %v, want ErrWrongPIN", i+1, err)
			}
		}
		for name, ctx := range map[string]context.Context{"unix socket": unix, "loopback": tcp} {
			if _, err := p.d.SignIn(ctx, localapi.SignInRequest{PIN: "4711"}); !errors.Is(err, localapi.ErrWait) {
				t.Errorf("SignIn() over the %s after %d wrong tries over both = %v, want ErrWait", name, pinFreeTries, err)
			}
		}
		if op, err := p.d.SignIn(from("127.0.0.2"), localapi.SignInRequest{PIN: "4711"}); err != nil || op.Name != "Olga" {
			t.Errorf("SignIn() from another client = %+v, %v; want Olga", op, err)
		}
	})
}
