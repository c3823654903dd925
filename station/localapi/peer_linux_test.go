package localapi

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// connPair connects to a new listener on network and address and returns
// the server's end of the connection.
func connPair(t *testing.T, network, address string) net.Conn {
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
	return s
}

// TestPeer names the callers of the unix socket and of loopback TCP by
// their user: here, the test's own; a connection that is no real socket
// is named by its address.
func TestPeer(t *testing.T) {
	me := "uid " + strconv.Itoa(os.Getuid())
	for _, tc := range []struct {
		name string
		conn func(t *testing.T) net.Conn
		want string
	}{
		{"unix socket", func(t *testing.T) net.Conn { return connPair(t, "unix", filepath.Join(t.TempDir(), "s.sock")) }, me},
		{"loopback IPv4", func(t *testing.T) net.Conn { return connPair(t, "tcp", "127.0.0.1:0") }, me},
		{"loopback IPv6", func(t *testing.T) net.Conn {
			if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
				t.Skipf("no IPv6 loopback on this machine: %v", err)
			} else {
				ln.Close()
			}
			return connPair(t, "tcp", "[::1]:0")
		}, me},
		{"not a socket, loopback", func(*testing.T) net.Conn { return addrConn{ip: net.ParseIP("127.0.0.1")} }, "tcp 127.0.0.1"},
		{"not a socket, not loopback", func(*testing.T) net.Conn { return addrConn{ip: net.ParseIP("192.0.2.7")} }, "tcp 192.0.2.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PeerOf(ConnContext(t.Context(), tc.conn(t))); got != tc.want {
				t.Errorf("PeerOf(%s) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

// addrConn is a connection that only has addresses.
type addrConn struct {
	net.Conn
	ip net.IP
}

func (c addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: c.ip, Port: 40000} }
func (c addrConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: c.ip, Port: 8080} }

// procAddr writes ip:port as the kernel writes it in /proc/net/tcp: each
// 32-bit word of the IP printed as a number in the machine's byte order.
func procAddr(ip string, port int) string {
	b := net.ParseIP(ip)
	if v4 := b.To4(); v4 != nil {
		b = v4
	}
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%08X", binary.NativeEndian.Uint32(b[i:]))
	}
	return fmt.Sprintf("%s:%04X", s.String(), port)
}

// procLine is one socket's line of /proc/net/tcp.
func procLine(local, remote, st string, uid int) string {
	return fmt.Sprintf("   3: %s %s %s 00000000:00000000 00:00000000 00000000  %d        0 51234 1 0000000000000000 20 4 30 10 -1", local, remote, st, uid)
}

// TestFindTCPOwner reads tables of sockets: the client's end is the line
// whose local address is the client's, not the server's own end, nor a
// closed connection in TIME_WAIT, nor the listener.
func TestFindTCPOwner(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
	srv4, cli4 := procAddr("127.0.0.1", 7070), procAddr("127.0.0.1", 40001)
	srv6, cli6 := procAddr("::1", 7070), procAddr("::1", 40001)
	for _, tc := range []struct {
		name          string
		lines         []string
		local, remote *net.TCPAddr
		want          string
		ok            bool
	}{
		{"IPv4", []string{
			header,
			procLine(procAddr("0.0.0.0", 7070), procAddr("0.0.0.0", 0), "0A", 0),
			procLine(srv4, cli4, "01", 0),
			procLine(cli4, srv4, "01", 1000),
		}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7070}, "1000", true},
		{"IPv6", []string{
			header,
			procLine(srv6, cli6, "01", 0),
			procLine(cli6, srv6, "01", 1001),
		}, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 7070}, "1001", true},
		{"v4-mapped", []string{
			procLine(procAddr("::ffff:127.0.0.1", 40001), procAddr("::ffff:127.0.0.1", 7070), "01", 1002),
		}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7070}, "1002", true},
		{"TIME_WAIT skipped", []string{
			procLine(cli4, srv4, "06", 0),
			procLine(cli4, srv4, "01", 1000),
		}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7070}, "1000", true},
		{"other port", []string{
			procLine(procAddr("127.0.0.1", 40002), srv4, "01", 1000),
		}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7070}, "", false},
		{"only TIME_WAIT", []string{
			procLine(cli4, srv4, "06", 0),
		}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7070}, "", false},
		{"malformed", []string{
			"   3: 0100007G:9C41 " + srv4 + " 01 0 0 0 1000",
			"   3: " + cli4 + " " + srv4 + " 01 0 0 0 x1000",
			"   3: " + cli4 + " " + srv4,
			"",
		}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7070}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, ok := findTCPOwner(strings.NewReader(strings.Join(tc.lines, "\n")+"\n"), tc.local, tc.remote)
			if uid != tc.want || ok != tc.ok {
				t.Errorf("findTCPOwner(%s, %v, %v) = %q, %v; want %q, %v", tc.name, tc.local, tc.remote, uid, ok, tc.want, tc.ok)
			}
		})
	}
}
