package localapi

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// peerUID returns the user id of the process at the other end of a unix
// socket connection (SO_PEERCRED).
func peerUID(c *net.UnixConn) (string, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return "", false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return "", false
	}
	return strconv.FormatUint(uint64(cred.Uid), 10), true
}

// procNetTCP are the kernel's tables of TCP sockets in this network
// namespace: both, since an IPv6 socket may talk to an IPv4 peer through a
// v4-mapped address.
var procNetTCP = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// tcpPeerUID returns the user id that owns the client's end of the
// loopback connection whose server end is local and whose client end is
// remote: the socket the kernel lists with local address remote and remote
// address local. TCP carries no credentials; on loopback both ends are in
// this kernel's tables.
//
// Reference: Documentation/networking/proc_net_tcp.rst in the Linux
// sources.
func tcpPeerUID(local, remote *net.TCPAddr) (string, bool) {
	for _, name := range procNetTCP {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		uid, ok := findTCPOwner(f, remote, local)
		f.Close()
		if ok {
			return uid, true
		}
	}
	return "", false
}

// tcpTimeWait is the st column of a socket in TIME_WAIT: a closed
// connection the kernel lists with uid 0, whatever user owned it.
const tcpTimeWait = "06"

// findTCPOwner reads a /proc/net/tcp or /proc/net/tcp6 table and returns
// the uid column of the socket with local address local and remote address
// remote, skipping sockets in TIME_WAIT.
//
// A line is "sl local_address rem_address st tx:rx tr:when retrnsmt uid
// timeout inode …". An address is HEXIP:HEXPORT: the port is its number
// in hex; the IP is its bytes as one (IPv4) or four (IPv6) 32-bit words,
// each printed as a number in hex in the machine's byte order (so
// 127.0.0.1 is 0100007F on a little-endian machine).
func findTCPOwner(r io.Reader, local, remote *net.TCPAddr) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[3] == tcpTimeWait {
			continue
		}
		if !procAddrIs(f[1], local) || !procAddrIs(f[2], remote) {
			continue
		}
		if _, err := strconv.ParseUint(f[7], 10, 32); err != nil {
			continue
		}
		return f[7], true
	}
	return "", false
}

// procAddrIs says whether s, an address in a /proc/net/tcp table, is a.
func procAddrIs(s string, a *net.TCPAddr) bool {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil || int(port) != a.Port {
		return false
	}
	ip, ok := procIP(hexIP)
	return ok && ip.Equal(a.IP)
}

// procIP decodes the IP of an address in a /proc/net/tcp table.
func procIP(s string) (net.IP, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != net.IPv4len && len(b) != net.IPv6len) {
		return nil, false
	}
	// Each word was printed as a number: its bytes in memory are the
	// number in the machine's byte order.
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(b[i:]))
	}
	return ip, true
}
