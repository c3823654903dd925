package gdb

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/gdb/rsp"
)

// Config says how a Backend talks to one GDB server about one target.
// Check says whether it can work: TargetName names an entry of the
// target table that knows Server, or the memory map and the reset (and,
// to lock, the lock and its protection register) are given here.
type Config struct {
	// TargetName selects the target table's entry: "stm32f4", or
	// "netduinoplus2" (QEMU). See TargetNames. Another name, or "",
	// needs MemoryMap and Reset.
	TargetName string
	// Server is the kind of GDB server the backend talks to: KindOpenOCD,
	// KindPyOCD, KindProbeRS, KindJLink or KindQEMU. It says how the
	// server answers monitor commands and, with the target, how to lock
	// and reset. "" is allowed where the table knows one server for the
	// target (netduinoplus2: QEMU), or where Reset is given; answers are
	// then judged on all the server prints.
	Server string
	// Chip is the name Identify reports; "" takes the target's.
	Chip string
	// HardwareIDFrom says where the hardware id comes from:
	// "mem:ADDR,LEN" reads LEN bytes at ADDR (the STM32F4 UID is
	// "mem:0x1FFF7A10,12") and reports them as hex in memory order;
	// HardwareIDNone uses HardwareID; "" takes the target's default.
	HardwareIDFrom string
	// HardwareID is the id used when HardwareIDFrom is HardwareIDNone,
	// or when the target's id cannot be read (an error reply, all zeros
	// or all ones, as QEMU gives): the probe's serial, or a slot name for
	// an emulator.
	HardwareID flasher.HardwareID
	// MemoryMap is used when the server sends none; nil takes the
	// target's. It must hold a flash region.
	MemoryMap []rsp.Region
	// Reset are the monitor commands that restart the target so that it
	// runs, e.g. OpenOCD's "reset run"; nil takes the target's for
	// Server. The first resets (a lock is read back after it); any after
	// it let the core run, as J-Link's "go" after its halting "reset".
	Reset []Command
	// Lock is the monitor command that sets the device's protection,
	// e.g. OpenOCD's "stm32f2x lock 0"; nil takes the target's for Server:
	// its command, or the option registers written over RSP where the
	// server has none. A target without either cannot be locked.
	Lock *Command
	// Protection is the register a lock is read back from after a
	// reset; nil takes the target's. A lock needs one.
	Protection *Protection
	// LockName is the lock option Lock applies; "" means
	// DefaultLockName.
	LockName string
	// ScanCommand is a monitor command run before attaching, e.g.
	// "swdp_scan" on a Black Magic Probe; when set Identify then sends
	// vAttach;1 to attach to the first target found.
	ScanCommand string
	// Pipeline is how many memory or flash packets may be in flight; 0
	// means DefaultPipeline once the server accepts no-ack mode, the
	// target's value otherwise (1 unless the server is known never to
	// wait for acks).
	Pipeline int
	// DisableNoAck keeps acknowledgments on even when the server offers
	// QStartNoAckMode.
	DisableNoAck bool
	// Timeout is the wait for a reply; 0 means DefaultTimeout. Erase,
	// vFlashDone and qCRC waits scale with their size from it.
	Timeout time.Duration
	// ConnectTimeout is the wait for the first reply; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Logger receives the backend's log; nil discards it.
	Logger *slog.Logger
	// Trace, if set, receives a protocol transcript: one line per packet
	// with the command and its arguments, never bulk data.
	Trace io.Writer
}

// ServerKinds are the kinds of GDB server Config.Server names.
var ServerKinds = []string{KindOpenOCD, KindPyOCD, KindProbeRS, KindJLink, KindQEMU}

// ConfigError is a Config that cannot work. Field names the setting as a
// fixture file spells it: "target", "server", "memory_map", "reset",
// "lock" or "protection".
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// resolved is a Config with the target table's entries filled in.
type resolved struct {
	server         string
	dialect        dialect
	chip           string
	hardwareIDFrom string
	memoryMap      []rsp.Region
	reset          []Command
	lock           *Command
	optionLock     *optionLock
	protection     *Protection
	noLock         string // why the target cannot be locked
	pipeline       int    // the target's, with acks on
}

// Check reports whether the configuration can work, as a *ConfigError
// naming the first setting that cannot: a target neither in the table
// nor given in full, a server the target's entry does not know, a memory
// map without flash, no reset, or a lock that could not be read back. A
// fixture's validation, station config check and New all use it.
func (c Config) Check() error {
	_, err := c.resolve()
	return err
}

// Summary says in one line how the backend resets and locks the target,
// for station config check; "" when Check fails.
func (c Config) Summary() string {
	r, err := c.resolve()
	if err != nil {
		return ""
	}
	server := r.server
	if server == "" {
		server = "a GDB server of unnamed kind"
	}
	resets := make([]string, len(r.reset))
	for i, cmd := range r.reset {
		resets[i] = fmt.Sprintf("%q", cmd.Command)
	}
	var lock string
	switch p := r.protection; {
	case r.lock != nil:
		lock = fmt.Sprintf("locks with %q, read back from %s at %#x after a reset", r.lock.Command, p.Name, p.Addr)
	case r.optionLock != nil:
		lock = fmt.Sprintf("locks through %s over RSP, read back from %s at %#x after a reset", r.optionLock.ControlName, p.Name, p.Addr)
	case r.noLock != "":
		lock = "no device lock: " + r.noLock
	default:
		lock = "no device lock"
	}
	return fmt.Sprintf("target %s on %s: resets with %s; %s", cmp.Or(c.TargetName, "(unnamed)"), server, strings.Join(resets, " then "), lock)
}

func (c Config) resolve() (resolved, error) {
	bad := func(field, format string, args ...any) (resolved, error) {
		return resolved{}, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Server != "" && !slices.Contains(ServerKinds, c.Server) {
		return bad("server", "%q is not a GDB server the station knows (%s)", c.Server, strings.Join(ServerKinds, ", "))
	}
	t, known := targetByName(c.TargetName)
	if !known && (len(c.MemoryMap) == 0 || len(c.Reset) == 0) {
		what := "is missing"
		if c.TargetName != "" {
			what = fmt.Sprintf("%q is not a target the station knows", c.TargetName)
		}
		return bad("target", "%s (it knows %s): name one of them, or give the target's memory_map and reset commands (and, to lock it, lock and protection)",
			what, strings.Join(TargetNames(), ", "))
	}
	server := c.Server
	if server == "" && known {
		switch kinds := t.servers(); {
		case len(kinds) == 1:
			server = kinds[0]
		case len(c.Reset) == 0:
			return bad("server", "is missing: target %s is known for %s; name the GDB server that serves the slot", t.Name, strings.Join(kinds, ", "))
		}
	}
	ops, ok := t.Servers[server]
	if known && !ok && len(c.Reset) == 0 {
		return bad("server", "target %s has no commands for %s (it has them for %s): use one of those, or give the reset commands (and lock) for %s",
			t.Name, server, strings.Join(t.servers(), ", "), server)
	}
	// The table's lock and protection hold only for the servers it knows
	// for the target: under another (QEMU's STM32 reads its flash
	// interface as 0) the register may not mean what the table says.
	tableLock := ok
	r := resolved{server: server, dialect: dialects[server], chip: c.Chip, hardwareIDFrom: c.HardwareIDFrom,
		memoryMap: c.MemoryMap, reset: c.Reset, lock: c.Lock, protection: c.Protection, noLock: t.NoLock, pipeline: t.Pipeline}
	if r.memoryMap == nil {
		r.memoryMap = t.MemoryMap
	}
	r.memoryMap = slices.Clone(r.memoryMap)
	if err := rsp.CheckRegions(r.memoryMap); err != nil {
		return bad("memory_map", "%v", err)
	}
	if !slices.ContainsFunc(r.memoryMap, func(g rsp.Region) bool { return g.Type == rsp.MemFlash }) {
		return bad("memory_map", "has no flash region: the station could not check that an image fits")
	}
	if r.reset == nil {
		r.reset = ops.Reset
	}
	if len(r.reset) == 0 {
		return bad("reset", "is missing: give the monitor commands that restart the target so that it runs")
	}
	for i, cmd := range r.reset {
		if strings.TrimSpace(cmd.Command) == "" {
			return bad("reset", "command %d is empty", i+1)
		}
	}
	if t.NoLock != "" && (c.Lock != nil || c.Protection != nil) {
		return bad("lock", "target %s cannot be locked: %s", t.Name, t.NoLock)
	}
	if r.protection == nil && tableLock {
		r.protection = t.Protection
	}
	if p := r.protection; p != nil {
		switch {
		case p.Name == "":
			return bad("protection", "needs the register's name, for the operator's messages")
		case p.Mask == 0:
			return bad("protection", "%s: the mask selects no bit", p.Name)
		case p.Addr%4 != 0:
			return bad("protection", "%s: address %#x is not a 32-bit register's", p.Name, p.Addr)
		case len(p.NotLocked) == 0:
			return bad("protection", "%s: give the values that are not locked (an unprotected device's)", p.Name)
		}
	}
	switch {
	case r.lock != nil:
		if strings.TrimSpace(r.lock.Command) == "" {
			return bad("lock", "the command is empty")
		}
	case ops.Lock != nil:
		r.lock = ops.Lock
	case t.OptionLock != nil && tableLock:
		r.optionLock = t.OptionLock
	}
	if (r.lock != nil || r.optionLock != nil) && r.protection == nil {
		return bad("protection", "is missing: a lock is read back from the device after a reset; give the register (name, address, mask, and the values of an unprotected device)")
	}
	if r.chip == "" {
		r.chip = t.Chip
	}
	if r.chip == "" {
		r.chip = "GDB target"
	}
	if r.hardwareIDFrom == "" {
		r.hardwareIDFrom = t.HardwareIDFrom
	}
	if r.hardwareIDFrom == "" {
		r.hardwareIDFrom = HardwareIDNone
	}
	return r, nil
}

// withDefaults fills the Config fields left zero that need no target.
func (c Config) withDefaults() Config {
	if c.LockName == "" {
		c.LockName = DefaultLockName
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Plan is what the slot offers before the target is reached: the lock
// (Config.LockName) where the target and server have one the station can
// read back, and the flash regions of the target's memory map (the
// server's own map, read at Identify, is checked again then).
func (c Config) Plan() (flasher.Plan, error) {
	r, err := c.resolve()
	if err != nil {
		return flasher.Plan{}, err
	}
	c = c.withDefaults()
	p := flasher.Plan{Device: fmt.Sprintf("target %s", cmp.Or(c.TargetName, r.chip))}
	if r.lock != nil || r.optionLock != nil {
		p.Locks = []string{c.LockName}
	}
	for _, g := range r.memoryMap {
		if g.Type == rsp.MemFlash {
			p.Flash = append(p.Flash, flasher.Range{Start: g.Start, End: g.End()})
		}
	}
	return p, nil
}
