package localapi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// socketMode is the mode of the API socket: the daemon's user and the
// members of its group may connect, nobody else.
const socketMode = 0o660

// Listen creates the API's unix socket at socketPath, mode 0660, owned by
// group when group is not empty (a name or a numeric id). A socket file
// that nothing answers on (left by a daemon that crashed) is removed
// first; Listen refuses when another daemon is listening on it, and never
// removes a file that is not a socket. Closing the listener removes the
// socket file.
func Listen(socketPath, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, err
		}
		gid = g
	}
	if err := removeStale(socketPath); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return nil, fmt.Errorf("create the directory of the API socket: %w", err)
	}
	ln, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("listen on the API socket %s: %w", socketPath, err)
	}
	if err := os.Chmod(socketPath, socketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set the mode of the API socket %s: %w", socketPath, err)
	}
	if gid >= 0 {
		if err := os.Chown(socketPath, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("give the API socket %s to group %s: %w (the daemon's user must be a member of it, or run as root)", socketPath, group, err)
		}
	}
	return ln, nil
}

// lookupGroup returns the id of a group given by name or number.
func lookupGroup(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			if _, nerr := strconv.Atoi(group); nerr == nil {
				g, err = user.LookupGroupId(group)
			}
		}
	}
	if err != nil {
		var unknown user.UnknownGroupError
		var unknownID user.UnknownGroupIdError
		if errors.As(err, &unknown) || errors.As(err, &unknownID) {
			return 0, fmt.Errorf("the API socket's group %q does not exist: create it (groupadd %s) or set another group in the station's configuration", group, group)
		}
		return 0, fmt.Errorf("look up the API socket's group %q: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has the id %q, which is not a number", group, g.Gid)
	}
	return gid, nil
}

// removeStale removes a socket file at path when nothing answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the API socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s is in the way of the API socket and is not a socket: move it away or choose another socket path", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another station daemon is already listening on %s: stop it first (systemctl stop station) or give this one another socket path", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether another station daemon listens on %s (%w): stop it, or remove the file if none runs", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale API socket %s: %w", path, err)
	}
	return nil
}

// ListenLoopback listens on addr ("127.0.0.1:PORT", "[::1]:PORT" or
// "localhost:PORT"; port 0 picks a free one) and refuses any address that
// is not a loopback one: the API's key is no protection against the
// network. Serve it with a Key (HandlerOptions).
func ListenLoopback(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("the local API address %q is not host:port: write it as 127.0.0.1:PORT", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("the local API address %q is not a loopback address: the API must not be reachable from the network; use 127.0.0.1:PORT, or the unix socket", addr)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the local API: %w", addr, err)
	}
	return ln, nil
}
