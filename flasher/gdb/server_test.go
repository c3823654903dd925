package gdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/flasher"
)

func TestServerCommand(t *testing.T) {
	ports := [3]int{3333, 4444, 5555}
	tests := []struct {
		cfg      ServerConfig
		prog     string
		args     string
		wantFail bool
	}{
		{cfg: ServerConfig{Kind: KindOpenOCD, Interface: "interface/stlink.cfg", Target: "target/stm32f4x.cfg", Serial: "066DFF"},
			prog: "openocd", args: "-f interface/stlink.cfg -c adapter serial 066DFF -f target/stm32f4x.cfg -c bindto 127.0.0.1 -c gdb_port 3333 -c telnet_port disabled -c tcl_port disabled"},
		{cfg: ServerConfig{Kind: KindPyOCD, Serial: "0669FF", Target: "stm32f405rg"},
			prog: "pyocd", args: "gdbserver --port 3333 --telnet-port 4444 --persist --uid 0669FF --target stm32f405rg"},
		{cfg: ServerConfig{Kind: KindProbeRS, Target: "STM32F405RGTx", Serial: "0483:374b:0669FF"},
			prog: "probe-rs", args: "gdb --chip STM32F405RGTx --gdb-connection-string 127.0.0.1:3333 --probe 0483:374b:0669FF"},
		{cfg: ServerConfig{Kind: KindJLink, Target: "STM32F405RG", Serial: "50123"},
			prog: "JLinkGDBServerCLExe", args: "-device STM32F405RG -if SWD -port 3333 -swoport 4444 -telnetport 5555 -nogui -select USB=50123"},
		{cfg: ServerConfig{Kind: KindQEMU},
			prog: "qemu-system-arm", args: "-M netduinoplus2 -S -gdb tcp:127.0.0.1:3333 -nographic -monitor none -serial null"},
		{cfg: ServerConfig{Kind: KindGeneric, Program: "my-gdbserver", Args: []string{"--serial={serial}", "--listen={host}:{port}"}, Serial: "S1"},
			prog: "my-gdbserver", args: "--serial=S1 --listen=127.0.0.1:3333"},
		{cfg: ServerConfig{Kind: KindOpenOCD}, wantFail: true},
		{cfg: ServerConfig{Kind: KindGeneric}, wantFail: true},
		{cfg: ServerConfig{Kind: "stlink"}, wantFail: true},
	}
	for _, tt := range tests {
		prog, args, err := tt.cfg.Command(ports)
		if tt.wantFail {
			if err == nil {
				t.Errorf("Command(%+v) = nil error", tt.cfg)
			}
			continue
		}
		if err != nil || prog != tt.prog || strings.Join(args, " ") != tt.args {
			t.Errorf("Command(%s) = %s %q, %v, want %s %q", tt.cfg.Kind, prog, strings.Join(args, " "), err, tt.prog, tt.args)
		}
	}
}

func TestStartServerFails(t *testing.T) {
	_, err := StartServer(context.Background(), ServerConfig{Kind: KindGeneric, Program: "sh", Args: []string{"-c", "echo no probe found; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "no probe found") {
		t.Fatalf("StartServer(exits) = %v, want the server's output", err)
	}
	_, err = StartServer(context.Background(), ServerConfig{Kind: KindGeneric, Program: "/nonexistent/gdbserver", Args: []string{"{port}"}})
	if err == nil {
		t.Fatal("StartServer(missing program) = nil error")
	}
}

// TestFakeTargetWithGdbMultiarch checks the in-test server against the
// real GDB: what the backend wrote with vFlash* and X, gdb-multiarch
// reads back (through the memory map, m and run-length replies), and
// what gdb-multiarch restores into RAM (X), the backend verifies.
func TestFakeTargetWithGdbMultiarch(t *testing.T) {
	needTools(t, "gdb-multiarch")
	t.Parallel()
	f := &fakeTarget{UID: fakeUID}
	addr := f.listen(t)
	ctx := context.Background()
	data := payload(0x6000, 4)
	img := flasher.Image{Segments: []flasher.Segment{{Name: "app", Addr: 0x08000000, Data: data}}}
	b := New(dial(t, addr), fakeConfig(Config{HardwareIDFrom: "mem:0x1FFF7A10,12"}))
	if _, err := b.Identify(ctx); err != nil {
		t.Fatalf("Identify = %v", err)
	}
	if err := b.Flash(ctx, img, nil); err != nil {
		t.Fatalf("Flash = %v", err)
	}
	b.Close()
	if got := gdbDump(t, addr, 0x08000000, 0x08006000); !bytes.Equal(got, data) {
		t.Fatalf("gdb-multiarch read back %d bytes that differ from what was flashed", len(got))
	}
	ram := payload(0x1800, 8)
	file := filepath.Join(t.TempDir(), "ram.bin")
	if err := os.WriteFile(file, ram, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := proctest.Output(exec.CommandContext(t.Context(), "gdb-multiarch", "-nx", "-batch", "-ex", "set architecture arm",
		"-ex", "target remote "+addr, "-ex", fmt.Sprintf("restore %s binary 0x20000000", file), "-ex", "detach"))
	if err != nil {
		t.Fatalf("gdb-multiarch restore: %v\n%s", err, out)
	}
	if !slices.Contains(f.commands(), "X") {
		t.Errorf("gdb-multiarch did not write with X: %v", f.commands())
	}
	b = New(dial(t, addr), fakeConfig(Config{HardwareIDFrom: "mem:0x1FFF7A10,12"}))
	defer b.Close()
	if _, err := b.Identify(ctx); err != nil {
		t.Fatalf("Identify = %v", err)
	}
	if err := b.Verify(ctx, flasher.Image{Segments: []flasher.Segment{{Name: "ram", Addr: 0x20000000, Data: ram}}}); err != nil {
		t.Fatalf("Verify(what gdb-multiarch restored) = %v", err)
	}
}

func dial(t *testing.T, addr string) io.ReadWriteCloser {
	t.Helper()
	c, err := Attach(addr).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStartServerPortTaken gives QEMU a port that another program took
// after freePorts found it free: start must not take that program's
// listener for QEMU's, but report QEMU's "address in use", on which
// StartServer tries other ports.
func TestStartServerPortTaken(t *testing.T) {
	needTools(t, "qemu-system-arm")
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	prog, args, err := ServerConfig{Kind: KindQEMU}.Command([3]int{port, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	s, err := start(t.Context(), prog, args, ln.Addr().String(), port, DefaultStartTimeout, slog.New(slog.DiscardHandler))
	if err == nil {
		s.Close()
		t.Fatal("start on a port another program listens on = nil error, want QEMU's address in use")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "in use") {
		t.Fatalf("start on a port another program listens on = %v, want QEMU's address in use", err)
	}
}

// TestStartServerGroup starts QEMU under a shell: the server listens from
// a child of the process StartServer started, and Close ends both.
func TestStartServerGroup(t *testing.T) {
	needTools(t, "qemu-system-arm")
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), DefaultStartTimeout)
	defer cancel()
	// "; exit" keeps the shell from exec'ing QEMU in its place.
	s, err := StartServer(ctx, ServerConfig{Kind: KindGeneric, Program: "sh", Args: []string{"-c",
		"qemu-system-arm -M netduinoplus2 -S -gdb tcp:{host}:{port} -nographic -monitor none -serial null; exit"}})
	if err != nil {
		t.Fatalf("StartServer(sh -c qemu) = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	var pidfds []int
	for _, pid := range groupMembers(s.Pid()) {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open(%d): %v", pid, err)
		}
		defer unix.Close(fd)
		pidfds = append(pidfds, fd)
	}
	if len(pidfds) != 2 {
		t.Fatalf("group %d has %d processes, want the shell and QEMU", s.Pid(), len(pidfds))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	// A pidfd turns readable when its process ends, child or not.
	for _, fd := range pidfds {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(pfd, int(stopGrace.Milliseconds())*5)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n == 0 {
				t.Fatalf("a process of the server's group still runs after Close (%v)", err)
			}
			break
		}
	}
}
