//go:build !linux

package localapi

import "net"

// peerUID is not available here: every unix-socket caller is "unix".
func peerUID(c *net.UnixConn) (string, bool) { return "", false }
