package localapi

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestListen(t *testing.T) {
	t.Run("mode and group", func(t *testing.T) {
		me, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(me.Gid)
		if err != nil {
			t.Fatal(err)
		}
		for _, group := range []string{g.Name, g.Gid, ""} {
			path := filepath.Join(t.TempDir(), "run", "api.sock")
			ln, err := Listen(path, group)
			if err != nil {
				t.Fatalf("Listen(%q, %q) = %v", path, group, err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
				t.Errorf("Listen(%q, %q) made %v, want a socket of mode 0660", path, group, fi.Mode())
			}
			if gid := fi.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != me.Gid {
				t.Errorf("Listen(%q, %q) made a socket of group %d, want %s", path, group, gid, me.Gid)
			}
			ln.Close()
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the socket file is still there after Close: %v", err)
			}
		}
	})

	t.Run("unknown group", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "api.sock")
		_, err := Listen(path, "no-such-group-station")
		if err == nil || !strings.Contains(err.Error(), `group "no-such-group-station" does not exist`) {
			t.Fatalf("Listen with an unknown group = %v, want a does-not-exist error", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Listen with an unknown group left a file: %v", err)
		}
	})

	t.Run("another daemon listens", func(t *testing.T) {
		f := newFake("S1")
		s := serveUnix(t, t.TempDir(), f, HandlerOptions{})
		path := strings.TrimPrefix(s.addr, "unix:")
		ln, err := Listen(path, "")
		if err == nil {
			ln.Close()
			t.Fatalf("Listen(%q) while a daemon listens = nil error", path)
		}
		if !strings.Contains(err.Error(), "another station daemon is already listening") {
			t.Errorf("Listen(%q) while a daemon listens = %v", path, err)
		}
		if _, err := newClient(t, s.addr, "").State(t.Context()); err != nil {
			t.Errorf("the first daemon no longer answers: %v", err)
		}
	})

	t.Run("stale socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "api.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false) // as a daemon that crashed
		old.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("the stale socket is not there: %v", err)
		}
		ln, err := Listen(path, "")
		if err != nil {
			t.Fatalf("Listen(%q) over a stale socket = %v", path, err)
		}
		s := serve(t, ln, NewHandler(newFake("S1"), HandlerOptions{}), "unix:"+path)
		if _, err := newClient(t, s.addr, "").State(t.Context()); err != nil {
			t.Errorf("State() over the new socket = %v", err)
		}
	})

	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "api.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Listen over a regular file = %v, want a not-a-socket error", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
			t.Errorf("Listen touched the regular file: %q, %v", b, err)
		}
	})
}

func TestListenLoopback(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr string
	}{
		{"127.0.0.1:0", ""},
		{"localhost:0", ""},
		{"127.0.0.2:0", ""},
		{"0.0.0.0:0", "not a loopback address"},
		{":0", "not a loopback address"},
		{"192.0.2.1:8080", "not a loopback address"},
		{"[::]:0", "not a loopback address"},
		{"station.example:8080", "not a loopback address"},
		{"127.0.0.1", "not host:port"},
	}
	for _, tt := range tests {
		ln, err := ListenLoopback(tt.addr)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ListenLoopback(%q) = %v", tt.addr, err)
				continue
			}
			if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
				t.Errorf("ListenLoopback(%q) listens on %v", tt.addr, ip)
			}
			ln.Close()
			continue
		}
		if err == nil {
			ln.Close()
			t.Errorf("ListenLoopback(%q) = nil error, want %q", tt.addr, tt.wantErr)
		} else if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ListenLoopback(%q) = %v, want %q", tt.addr, err, tt.wantErr)
		}
	}
}
