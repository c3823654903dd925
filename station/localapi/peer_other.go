//go:build !linux

package localapi

import "net"

// peerUID is not available here: every unix-socket caller is "unix".
func peerUID(c *net.UnixConn) (string, bool) { return "", false }

// tcpPeerUID is not available here: every loopback caller is named by its
// address ("tcp 127.0.0.1").
func tcpPeerUID(local, remote *net.TCPAddr) (string, bool) { return "", false }
