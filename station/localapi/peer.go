package localapi

import (
	"context"
	"net"
	"net/http"
)

// peerKey is the context key of the caller's identity.
type peerKey struct{}

// ConnContext records who is at the other end of c in the context of the
// requests it carries: set it as the http.Server's ConnContext. On a unix
// socket the caller is its user (the kernel's peer credentials, "uid
// 1000"); on loopback TCP too, the user that owns the client's socket
// (Linux: /proc/net/tcp), so that one user is one caller whichever way it
// connects; a TCP caller whose user cannot be told is its address ("tcp
// 127.0.0.1"). Limits on wrong PINs count per caller (PeerOf).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerName(c))
}

// PeerOf returns the caller of the request whose context ctx is, as
// ConnContext recorded it; "" when none did.
func PeerOf(ctx context.Context) string {
	p, _ := ctx.Value(peerKey{}).(string)
	return p
}

// withPeer makes sure every request's context names its caller, from its
// remote address when the server has no ConnContext.
func withPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if PeerOf(r.Context()) == "" {
			p := "remote " + r.RemoteAddr
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				p = "tcp " + host
			}
			r = r.WithContext(context.WithValue(r.Context(), peerKey{}, p))
		}
		next.ServeHTTP(w, r)
	})
}

// peerName names the caller at the other end of c.
func peerName(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		// Only a real socket is in the kernel's tables: a wrapped or
		// fake connection is named by its address.
		if tc, ok := c.(*net.TCPConn); ok && a.IP.IsLoopback() {
			if l, ok := tc.LocalAddr().(*net.TCPAddr); ok {
				if uid, ok := tcpPeerUID(l, a); ok {
					return "uid " + uid
				}
			}
		}
		return "tcp " + a.IP.String()
	}
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, ok := peerUID(uc); ok {
			return "uid " + uid
		}
		return "unix"
	}
	return "remote " + c.RemoteAddr().String()
}
