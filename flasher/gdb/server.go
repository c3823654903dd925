package gdb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
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
	// DefaultStartTimeout is how long StartServer waits for the port.
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
	addr string // host:port, or a serial device path
	cmd  *exec.Cmd
	log  *slog.Logger

	exited  chan struct{} // closed when the process has ended
	mu      sync.Mutex
	tail    []string // the last lines it printed
	waitErr error
	closed  bool
}

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
	// binds it: try again on new ports when the server says so.
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
	}
	return nil, lastErr
}

func start(ctx context.Context, prog string, args []string, addr string, port int, timeout time.Duration, log *slog.Logger) (*Server, error) {
	cmd := exec.Command(prog, args...)
	// Its own process group, so that Close ends whatever it spawned.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", prog, err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the GDB server %s: %w", prog, err)
	}
	s := &Server{addr: addr, cmd: cmd, log: log.With("gdb_server", addr), exited: make(chan struct{})}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.tail = append(s.tail, line)
			if len(s.tail) > 20 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
			s.log.Debug("gdb server output", "line", line)
		}
	}()
	go func() {
		<-lines
		err := cmd.Wait()
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
		if listening(port, addr) {
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

// listening reports whether something listens on the port, read from
// /proc/net/tcp so that no connection is made: QEMU halts and pyOCD
// without --persist exits when a client leaves. Without /proc it dials.
func listening(port int, addr string) bool {
	found, ok := procListening(port)
	if ok {
		return found
	}
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func procListening(port int) (found, ok bool) {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		want := fmt.Sprintf(":%04X", port)
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local_address rem_address st …; st 0A is LISTEN.
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				return true, true
			}
		}
	}
	return false, ok
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

func (s *Server) outputTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tail) == 0 {
		return "it printed nothing"
	}
	return "it printed: " + strings.Join(s.tail, " | ")
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
// group, SIGKILL after two seconds. An attached server is left alone.
func (s *Server) Close() error {
	if s.cmd == nil {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.exited
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	pgid := -s.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-s.exited
	}
	s.log.Info("gdb server stopped")
	return nil
}

// Exited is closed when the server's process has ended; nil for an
// attached server.
func (s *Server) Exited() <-chan struct{} {
	if s.cmd == nil {
		return nil
	}
	return s.exited
}
