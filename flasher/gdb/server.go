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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.bug.st/serial"
)

// Kinds of GDB server a Server starts.
const (
	// KindOpenOCD runs OpenOCD with an interface and a target script.
	KindOpenOCD = "openocd"
	// KindPyOCD runs "pyocd gdbserver".
	KindPyOCD = "pyocd"
	// KindProbeRS runs "probe-rs gdb".
	KindProbeRS = "probe-rs"
	// KindJLink runs SEGGER's JLinkGDBServerCLExe.
	KindJLink = "jlink"
	// KindQEMU runs qemu-system-arm halted with its gdbstub, for tests.
	KindQEMU = "qemu"
	// KindGeneric runs ServerConfig.Program with ServerConfig.Args.
	KindGeneric = "generic"
)

// Defaults for ServerConfig fields left zero.
const (
	// DefaultStartTimeout is how long StartServer waits for the server
	// to listen.
	DefaultStartTimeout = 15 * time.Second
	// DefaultQEMUMachine is the machine KindQEMU emulates.
	DefaultQEMUMachine = "netduinoplus2"
)

// ServerConfig says which GDB server to start for one slot.
type ServerConfig struct {
	// Kind is one of the Kind constants.
	Kind string
	// Program is the executable; "" takes the kind's usual name.
	Program string
	// Serial selects the probe: OpenOCD "adapter serial", pyOCD --uid,
	// probe-rs --probe (VID:PID:serial), J-Link -select USB=.
	Serial string
	// Target is the chip: an OpenOCD target script
	// ("target/stm32f4x.cfg"), a pyOCD target ("stm32f405rg"), a probe-rs
	// chip, a J-Link device, or a QEMU machine (default
	// DefaultQEMUMachine).
	Target string
	// Interface is OpenOCD's interface script
	// ("interface/stlink.cfg").
	Interface string
	// Args are the whole argument list of KindGeneric, or arguments
	// added after the kind's own. "{port}", "{port2}", "{port3}",
	// "{host}", "{serial}" and "{target}" are replaced; port2 and port3
	// are further free ports for servers that open more than one.
	Args []string
	// Host is the address the server listens on; "" means 127.0.0.1.
	Host string
	// StartTimeout bounds the wait for the server's port; 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives the server's output lines at debug level and its
	// start and stop; nil discards them.
	Logger *slog.Logger
}

// Command returns the program and arguments that start the server on
// the given ports.
func (c ServerConfig) Command(ports [3]int) (string, []string, error) {
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	var prog string
	var args []string
	switch c.Kind {
	case KindOpenOCD:
		prog = "openocd"
		if c.Interface == "" || c.Target == "" {
			return "", nil, errors.New("an OpenOCD server needs an interface and a target script")
		}
		args = []string{"-f", c.Interface}
		if c.Serial != "" {
			args = append(args, "-c", "adapter serial "+c.Serial)
		}
		args = append(args, "-f", c.Target, "-c", "bindto {host}", "-c", "gdb_port {port}",
			"-c", "telnet_port disabled", "-c", "tcl_port disabled")
	case KindPyOCD:
		// --persist: without it pyOCD exits when its first client
		// disconnects. Each slot needs its own telnet port too.
		prog = "pyocd"
		args = []string{"gdbserver", "--port", "{port}", "--telnet-port", "{port2}", "--persist"}
		if c.Serial != "" {
			args = append(args, "--uid", "{serial}")
		}
		if c.Target != "" {
			args = append(args, "--target", "{target}")
		}
	case KindProbeRS:
		prog = "probe-rs"
		if c.Target == "" {
			return "", nil, errors.New("a probe-rs server needs the chip as its target")
		}
		args = []string{"gdb", "--chip", "{target}", "--gdb-connection-string", "{host}:{port}"}
		if c.Serial != "" {
			args = append(args, "--probe", "{serial}")
		}
	case KindJLink:
		prog = "JLinkGDBServerCLExe"
		if c.Target == "" {
			return "", nil, errors.New("a J-Link server needs the device as its target")
		}
		args = []string{"-device", "{target}", "-if", "SWD", "-port", "{port}", "-swoport", "{port2}",
			"-telnetport", "{port3}", "-nogui"}
		if c.Serial != "" {
			args = append(args, "-select", "USB={serial}")
		}
	case KindQEMU:
		prog = "qemu-system-arm"
		if c.Target == "" {
			c.Target = DefaultQEMUMachine
		}
		args = []string{"-M", "{target}", "-S", "-gdb", "tcp:{host}:{port}", "-nographic",
			"-monitor", "none", "-serial", "null"}
	case KindGeneric:
		if c.Program == "" || len(c.Args) == 0 {
			return "", nil, errors.New("a generic GDB server needs a program and its arguments")
		}
	default:
		return "", nil, fmt.Errorf("GDB server kind %q is not one of %s, %s, %s, %s, %s, %s",
			c.Kind, KindOpenOCD, KindPyOCD, KindProbeRS, KindJLink, KindQEMU, KindGeneric)
	}
	if c.Program != "" {
		prog = c.Program
	}
	args = append(args, c.Args...)
	r := strings.NewReplacer("{port}", strconv.Itoa(ports[0]), "{port2}", strconv.Itoa(ports[1]),
		"{port3}", strconv.Itoa(ports[2]), "{host}", host, "{serial}", c.Serial, "{target}", c.Target)
	for i, a := range args {
		args[i] = r.Replace(a)
	}
	return prog, args, nil
}

// Server is the GDB server of one slot: a process the Server started and
// owns, or one running already (Attach).
type Server struct {
	addr   string // host:port, or a serial device path
	cmd    *exec.Cmd
	stop   context.CancelFunc // ends the process and its group
	log    *slog.Logger
	output *serverOutput

	exited  chan struct{} // closed when the process has ended and its group was killed
	mu      sync.Mutex
	waitErr error
	closed  bool
}

// stopGrace is how long a server has to end after SIGTERM, and its
// output pipe to close after it ended, before its group is killed.
const stopGrace = 2 * time.Second

// StartServer starts the server cfg describes on free ports, waits until
// it listens and returns it. ctx bounds the start only; the process runs
// until Close.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	var lastErr error
	// A port picked free can be taken by someone else before the server
	// binds it: the server then fails to bind it (start does not mistake
	// the other listener for it), and StartServer tries new ports.
	for range 3 {
		ports, err := freePorts(host)
		if err != nil {
			return nil, err
		}
		prog, args, err := cfg.Command(ports)
		if err != nil {
			return nil, fmt.Errorf("start GDB server: %w", err)
		}
		s, err := start(ctx, prog, args, net.JoinHostPort(host, strconv.Itoa(ports[0])), ports[0], timeout, log)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(strings.ToLower(err.Error()), "in use") {
			break
		}
		log.Debug("gdb server port taken meanwhile, trying others", "err", err)
	}
	return nil, lastErr
}

// start starts prog in a process group of its own and waits until that
// group, not merely anyone, listens on port.
func start(ctx context.Context, prog string, args []string, addr string, port int, timeout time.Duration, log *slog.Logger) (*Server, error) {
	// The process outlives ctx, which bounds the start only; Close
	// cancels runCtx.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(runCtx, prog, args...)
	// Its own process group, so that Close ends whatever it spawned, and
	// the parent-death signal, so that a station killed hard takes it
	// along (see serverProcAttr).
	cmd.SysProcAttr = serverProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd, syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	s := &Server{addr: addr, cmd: cmd, stop: stop, log: log.With("gdb_server", addr), exited: make(chan struct{})}
	s.output = &serverOutput{log: s.log}
	cmd.Stdout = s.output
	cmd.Stderr = s.output
	if err := startProcess(cmd); err != nil {
		stop()
		return nil, fmt.Errorf("start the GDB server %s: %w", prog, err)
	}
	go func() {
		err := cmd.Wait()
		// The leader is gone (ended by Close's SIGTERM, by WaitDelay's
		// SIGKILL, or by itself): whatever it left in its group goes too.
		_ = killGroup(cmd, syscall.SIGKILL)
		stop()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(s.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if listening(cmd.Process.Pid, port, addr) {
			s.log.Info("gdb server started", "program", prog, "args", strings.Join(args, " "), "pid", cmd.Process.Pid)
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("the GDB server %s exited before it listened on %s (%v): %s", prog, addr, s.waitErr, s.outputTail())
		case <-ctx.Done():
			_ = s.Close()
			return nil, fmt.Errorf("the GDB server %s did not listen on %s within %v: %s", prog, addr, timeout, s.outputTail())
		case <-tick.C:
		}
	}
}

// killGroup sends sig to the process group cmd leads.
func killGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	err := syscall.Kill(-cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// The spawner: see startProcess.
var (
	spawnOnce sync.Once
	spawns    chan spawn
)

type spawn struct {
	cmd  *exec.Cmd
	done chan<- error
}

// startProcess starts cmd from an OS thread that never ends. The kernel
// sends the parent-death signal when the thread that forked the child
// ends, not the process, and Go ends a thread when a goroutine that
// locked it returns still locked: a server started from such a thread
// would be killed long before the station ends.
func startProcess(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			// Never unlocked: the thread lives as long as the process.
			runtime.LockOSThread()
			for sp := range spawns {
				sp.done <- sp.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawns <- spawn{cmd: cmd, done: done}
	return <-done
}

// listening reports whether the process group pgid listens on the port.
// It reads /proc (the sockets listening on the port, against the group's
// open files) rather than dialling: QEMU halts and pyOCD without
// --persist exits when a client leaves. Another program listening on the
// port does not count: that one took the port between freePorts and the
// server's bind, and the server is about to fail with "address in use".
// Without /proc it dials, and cannot tell who answers.
func listening(pgid, port int, addr string) bool {
	switch procListening(pgid, port) {
	case listenOurs:
		return true
	case listenUnknown:
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	return false
}

// Answers of procListening.
const (
	listenNone    = iota // nobody listens on the port
	listenOurs           // the group listens on it
	listenOther          // someone else does
	listenUnknown        // /proc cannot tell
)

func procListening(pgid, port int) int {
	sockets, ok := listenSockets(port)
	if !ok {
		return listenUnknown
	}
	if len(sockets) == 0 {
		return listenNone
	}
	// The leader first; the rest of its group (a wrapper's child) only
	// when the leader does not hold the socket itself.
	switch holds(pgid, sockets) {
	case listenOurs:
		return listenOurs
	case listenUnknown:
		return listenUnknown
	}
	for _, pid := range groupMembers(pgid) {
		if pid != pgid && holds(pid, sockets) == listenOurs {
			return listenOurs
		}
	}
	return listenOther
}

// listenSockets returns the sockets in LISTEN state on the port, as the
// targets of the links in /proc/PID/fd ("socket:[inode]"); ok is false
// without /proc/net/tcp.
func listenSockets(port int) (sockets map[string]bool, ok bool) {
	sockets = make(map[string]bool)
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local_address rem_address st tx_queue:rx_queue
			// tr:tm->when retrnsmt uid timeout inode …; st 0A is LISTEN.
			if len(fields) > 9 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				sockets["socket:["+fields[9]+"]"] = true
			}
		}
	}
	return sockets, ok
}

// holds reports listenOurs when process pid has one of sockets open,
// listenUnknown when its open files cannot be read (another user's
// process), listenOther otherwise.
func holds(pid int, sockets map[string]bool) int {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrPermission) {
		return listenUnknown
	}
	for _, fd := range fds {
		if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && sockets[target] {
			return listenOurs
		}
	}
	return listenOther
}

// groupMembers returns the processes of group pgid, from /proc/PID/stat.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and ")".
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(stat[i+1:])); len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// freePorts asks the kernel for three free ports.
func freePorts(host string) ([3]int, error) {
	var ports [3]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return ports, fmt.Errorf("find a free port on %s: %w", host, err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// serverOutput logs what a server prints, line by line, and keeps the
// last lines for error messages.
type serverOutput struct {
	log     *slog.Logger
	mu      sync.Mutex
	partial []byte   // the start of a line not ended yet
	tail    []string // the last lines
}

// maxLine is where serverOutput cuts a line that does not end.
const maxLine = 4096

func (o *serverOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		switch {
		case i >= 0:
			o.add(strings.TrimSuffix(string(o.partial[:i]), "\r"))
			o.partial = o.partial[i+1:]
		case len(o.partial) >= maxLine:
			o.add(string(o.partial[:maxLine]))
			o.partial = o.partial[maxLine:]
		default:
			return len(p), nil
		}
	}
}

func (o *serverOutput) add(line string) {
	o.tail = append(o.tail, line)
	if len(o.tail) > 20 {
		o.tail = o.tail[1:]
	}
	o.log.Debug("gdb server output", "line", line)
}

func (s *Server) outputTail() string {
	o := s.output
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := o.tail
	if len(o.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(o.partial))
	}
	if len(lines) == 0 {
		return "it printed nothing"
	}
	return "it printed: " + strings.Join(lines, " | ")
}

// Attach returns a Server for a GDB server that runs already: addr is
// host:port (a J-Link GDB server, OpenOCD started by hand) or the path of
// a Black Magic Probe's GDB serial port (/dev/ttyACM0, or a
// /dev/serial/by-id link). Close leaves it running.
func Attach(addr string) *Server {
	return &Server{addr: addr, log: slog.New(slog.DiscardHandler)}
}

// Addr returns host:port or the serial device path.
func (s *Server) Addr() string { return s.addr }

// Pid returns the server's process id, 0 for an attached server.
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Dial opens a connection to the server for New.
func (s *Server) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	if strings.HasPrefix(s.addr, "/") {
		p, err := serial.Open(s.addr, &serial.Mode{BaudRate: 115200})
		if err != nil {
			return nil, fmt.Errorf("open the GDB serial port %s: %w", s.addr, err)
		}
		return p, nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the GDB server at %s: %w", s.addr, err)
	}
	return c, nil
}

// Close stops a server the Server started: SIGTERM to its process
// group, SIGKILL to the group after two seconds, or at once to what
// remains of the group when the leader ends. An attached server is left
// alone.
func (s *Server) Close() error {
	if s.cmd == nil {
		return nil
	}
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	s.stop()
	<-s.exited
	if !closed {
		s.log.Info("gdb server stopped")
	}
	return nil
}

// Exited is closed when the server's process has ended and the rest of
// its group has been sent SIGKILL; nil for an
// attached server.
func (s *Server) Exited() <-chan struct{} {
	if s.cmd == nil {
		return nil
	}
	return s.exited
}
