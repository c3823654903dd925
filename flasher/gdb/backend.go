package gdb

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/gdb/rsp"
)

// Defaults for Config fields left zero.
const (
	// DefaultTimeout is how long the backend waits for most replies.
	DefaultTimeout = 5 * time.Second
	// DefaultConnectTimeout is how long Identify waits for the first
	// reply before it calls the server silent.
	DefaultConnectTimeout = 3 * time.Second
	// DefaultPipeline is how many memory or flash packets are in flight
	// once no-ack mode is on.
	DefaultPipeline = 8
	// DefaultLockName is the lock option a LockCommand applies.
	DefaultLockName = "readout"
	// defaultPacketSize is what GDB assumes of a server that announces
	// no PacketSize (gdb/remote.c DEFAULT_MAX_MEMORY_PACKET_SIZE_FIXED).
	defaultPacketSize = 400
	// eraseSecondsPerMB scales the wait for vFlashErase: an STM32F4
	// erases a 128 KiB sector in up to 2 s (datasheet t_ERASE128KB).
	eraseSecondsPerMB = 16
	// doneSecondsPerMB scales the wait for vFlashDone, when pyOCD and
	// OpenOCD program everything they buffered.
	doneSecondsPerMB = 20
	// crcSecondsPerMB scales the wait for qCRC, which the server computes
	// by reading the target over SWD.
	crcSecondsPerMB = 30
)

// HardwareIDNone as Config.HardwareIDFrom makes Identify use
// Config.HardwareID without reading the target.
const HardwareIDNone = "none"

// Config says how a Backend talks to one GDB server. The zero value
// works against any server that sends a memory map; TargetName fills the
// rest for the chips in the target table.
type Config struct {
	// TargetName selects defaults from the target table: "stm32f4" or
	// "netduinoplus2" (QEMU); "" for none. See TargetNames.
	TargetName string
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
	// target's. With no map at all every address is written as RAM.
	MemoryMap []rsp.Region
	// LockCommand is the monitor command that sets the device's
	// protection, e.g. OpenOCD's "stm32f4x lock 0"; "" takes the
	// target's, and with none Lock returns flasher.ErrUnsupported.
	LockCommand string
	// LockName is the lock option LockCommand applies; "" means
	// DefaultLockName.
	LockName string
	// ResetCommand is the monitor command Reset sends before it
	// detaches, e.g. "reset" or "reset run" (OpenOCD), "system_reset"
	// (QEMU). "" takes the target's; with none a Cortex-M target is reset
	// through SCB->AIRCR and any other only detached, which lets it run.
	ResetCommand string
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

func (c Config) withDefaults() (Config, target) {
	t, _ := targetByName(c.TargetName)
	if c.Chip == "" {
		c.Chip = t.Chip
	}
	if c.Chip == "" {
		c.Chip = "GDB target"
	}
	if c.HardwareIDFrom == "" {
		c.HardwareIDFrom = t.HardwareIDFrom
	}
	if c.HardwareIDFrom == "" {
		c.HardwareIDFrom = HardwareIDNone
	}
	if c.MemoryMap == nil {
		c.MemoryMap = t.MemoryMap
	}
	if c.LockCommand == "" {
		c.LockCommand = t.LockCommand
	}
	if c.LockName == "" {
		c.LockName = DefaultLockName
	}
	if c.ResetCommand == "" {
		c.ResetCommand = t.ResetCommand
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
	return c, t
}

// support is what the backend learnt of an optional packet.
type support int

const (
	unknown support = iota
	yes
	no
)

// Backend flashes one target through a GDB server. It serves one device
// at a time and is not safe for concurrent use.
type Backend struct {
	cfg  Config
	tgt  target
	log  *slog.Logger
	link *link

	identified bool
	detached   bool
	features   rsp.Features
	packetSize int
	regions    []rsp.Region
	mapFrom    string // "server", "configuration" or "" (no map)
	pipeline   int

	binary support // X
	vflash support // vFlashErase / vFlashWrite / vFlashDone
	crc    support // qCRC
}

var _ flasher.Backend = (*Backend)(nil)

// New returns a backend that speaks RSP over conn: a TCP connection to a
// GDB server or a Black Magic Probe's serial port. A goroutine reads conn
// until it ends; Close closes conn, which stops it.
func New(conn io.ReadWriteCloser, cfg Config) *Backend {
	cfg, t := cfg.withDefaults()
	return &Backend{cfg: cfg, tgt: t, log: cfg.Logger, link: newLink(conn, 0, cfg.Trace, cfg.Logger)}
}

// Identify greets the server (qSupported, no-ack mode), asks why the
// target stopped, reads the memory map and the hardware id.
func (b *Backend) Identify(ctx context.Context) (flasher.Device, error) {
	if b.detached {
		return flasher.Device{}, fmt.Errorf("identify: %w", errDetached)
	}
	l := b.link
	// GDB acknowledges whatever the server may have sent before it
	// starts (gdb/remote.c remote_start_remote).
	if !l.noAck {
		if err := l.sendRaw([]byte{rsp.Ack}); err != nil {
			return flasher.Device{}, fmt.Errorf("identify: %w", err)
		}
	}
	const hello = "qSupported:multiprocess-;swbreak+;hwbreak+"
	reply, err := l.roundTrip(ctx, []byte(hello), b.cfg.ConnectTimeout)
	// A server that halts a running target when a client connects may
	// say so first with a stop reply of its own (QEMU sends
	// "T02thread:01;"): the answer to qSupported follows it.
	for err == nil && isStopReply(reply) {
		b.log.Debug("gdb server reported a stop on connect", "reply", string(reply))
		reply, err = l.reply(ctx, hello, b.cfg.ConnectTimeout, true)
	}
	if err != nil {
		var na *noAnswerError
		if errors.As(err, &na) {
			return flasher.Device{}, fmt.Errorf("identify: the GDB server sent nothing within %v: is it a GDB server, and is the probe attached? %w", na.wait, flasher.ErrNoResponse)
		}
		return flasher.Device{}, fmt.Errorf("identify: %w", err)
	}
	f, err := rsp.ParseFeatures(reply)
	if err != nil {
		return flasher.Device{}, fmt.Errorf("identify: %w: %w", err, flasher.ErrNoResponse)
	}
	b.features = f
	b.packetSize = f.PacketSize
	if b.packetSize < 64 {
		b.packetSize = defaultPacketSize
	}
	if f.Has("QStartNoAckMode") && !b.cfg.DisableNoAck && !l.noAck {
		r, err := l.roundTrip(ctx, []byte("QStartNoAckMode"), b.cfg.Timeout)
		if err != nil {
			return flasher.Device{}, fmt.Errorf("identify: %w", err)
		}
		if string(r) == "OK" {
			l.noAck = true
		}
	}
	b.pipeline = b.cfg.Pipeline
	if b.pipeline == 0 {
		switch {
		case l.noAck:
			b.pipeline = DefaultPipeline
		case b.tgt.Pipeline > 0:
			b.pipeline = b.tgt.Pipeline
		default:
			b.pipeline = 1
		}
	}
	if b.cfg.ScanCommand != "" {
		out, err := b.Monitor(ctx, b.cfg.ScanCommand)
		if err != nil {
			return flasher.Device{}, fmt.Errorf("identify: scan for targets: %w", err)
		}
		b.log.Info("gdb target scan", "command", b.cfg.ScanCommand, "output", strings.TrimSpace(out))
		r, err := l.roundTrip(ctx, []byte("vAttach;1"), b.cfg.Timeout)
		if err != nil {
			return flasher.Device{}, fmt.Errorf("identify: attach to target 1: %w", err)
		}
		if se := rsp.ParseError(r); se != nil || len(r) == 0 {
			return flasher.Device{}, fmt.Errorf("identify: attach to target 1 after %q found %q: %w", b.cfg.ScanCommand, strings.TrimSpace(out), flasher.ErrNoResponse)
		}
	}
	halt, err := l.roundTrip(ctx, []byte("?"), b.cfg.Timeout)
	if err != nil {
		return flasher.Device{}, fmt.Errorf("identify: ask why the target stopped: %w", err)
	}
	if err := b.readMemoryMap(ctx); err != nil {
		return flasher.Device{}, err
	}
	dev := flasher.Device{Chip: b.cfg.Chip}
	for _, r := range b.regions {
		if r.Type == rsp.MemFlash {
			if dev.FlashSize == 0 || r.Start < dev.FlashBase {
				dev.FlashBase = r.Start
			}
			dev.FlashSize += int64(r.Length)
		}
	}
	id, note, err := b.hardwareID(ctx)
	if err != nil {
		return dev, err
	}
	dev.HardwareID = id
	if note != "" {
		dev.Chip += " (" + note + ")"
	}
	b.identified = true
	b.log.Info("gdb target identified", "chip", dev.Chip, "hardware_id", string(id), "packet_size", b.packetSize,
		"no_ack", l.noAck, "pipeline", b.pipeline, "memory_map", b.mapFrom, "flash_bytes", dev.FlashSize, "halt", string(halt))
	return dev, nil
}

// isStopReply reports whether a reply is a stop reply: S or T and a
// signal number in hex (the manual's "Stop Reply Packets").
func isStopReply(r []byte) bool {
	return len(r) >= 3 && (r[0] == 'S' || r[0] == 'T') && isHexByte(r[1]) && isHexByte(r[2])
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

var errDetached = errors.New("the backend detached from the target at reset; connect again")

// readMemoryMap fetches qXfer:memory-map:read in chunks, or takes the
// configured map.
func (b *Backend) readMemoryMap(ctx context.Context) error {
	b.regions, b.mapFrom = nil, ""
	if b.features.Has("qXfer:memory-map:read") {
		doc, err := b.xfer(ctx, "memory-map", "")
		if err != nil {
			return fmt.Errorf("identify: read the memory map: %w", err)
		}
		regions, err := rsp.ParseMemoryMap(doc)
		if err != nil {
			return fmt.Errorf("identify: %w", err)
		}
		if len(regions) > 0 {
			b.regions, b.mapFrom = regions, "server"
			return nil
		}
	}
	if len(b.cfg.MemoryMap) > 0 {
		b.regions, b.mapFrom = b.cfg.MemoryMap, "configuration"
	}
	return nil
}

// xfer reads a qXfer object: chunks "m…" (more follows) until "l…".
func (b *Backend) xfer(ctx context.Context, object, annex string) ([]byte, error) {
	var doc []byte
	chunk := b.packetSize - 8
	for {
		req := fmt.Sprintf("qXfer:%s:read:%s:%x,%x", object, annex, len(doc), chunk)
		r, err := b.link.roundTrip(ctx, []byte(req), b.cfg.Timeout)
		if err != nil {
			return nil, err
		}
		if se := rsp.ParseError(r); se != nil {
			return nil, fmt.Errorf("%s at offset %d: %w", req, len(doc), se)
		}
		if len(r) == 0 {
			return nil, fmt.Errorf("%s: empty reply although the server announced it: %w", req, flasher.ErrUnsupported)
		}
		doc = append(doc, r[1:]...)
		switch r[0] {
		case 'l':
			return doc, nil
		case 'm':
			if len(r) == 1 {
				return nil, fmt.Errorf("%s: the server sent an empty chunk and said more follows", req)
			}
		default:
			return nil, fmt.Errorf("%s: reply starts with %q, not m or l", req, r[0])
		}
	}
}

// hardwareID reads the id HardwareIDFrom names, falling back to
// Config.HardwareID; note says when the fallback was taken.
func (b *Backend) hardwareID(ctx context.Context) (flasher.HardwareID, string, error) {
	from := b.cfg.HardwareIDFrom
	if from == HardwareIDNone {
		if b.cfg.HardwareID == "" {
			return "", "", fmt.Errorf("identify: the slot reads no hardware id from the target and configures none: set its hardware id (the probe serial): %w", flasher.ErrUnsupported)
		}
		return b.cfg.HardwareID, "hardware id from the slot's configuration", nil
	}
	addr, n, err := parseMemSpec(from)
	if err != nil {
		return "", "", fmt.Errorf("identify: %w: %w", err, flasher.ErrUnsupported)
	}
	data, err := b.readMemory(ctx, addr, n)
	why := ""
	switch {
	case err != nil && errors.Is(err, flasher.ErrLinkLost):
		return "", "", fmt.Errorf("identify: read the unique id: %w", err)
	case err != nil:
		why = "cannot be read"
		var se *rsp.ServerError
		if errors.As(err, &se) {
			why += " (" + se.Error() + ")"
		}
	case allBytes(data, 0x00):
		why = "reads as zeros"
	case allBytes(data, 0xFF):
		why = "reads as ones"
	default:
		return flasher.HardwareID(hex.EncodeToString(data)), "", nil
	}
	if b.cfg.HardwareID == "" {
		return "", "", fmt.Errorf("identify: the target's unique id at %#x %s and the slot configures no hardware id: %w", addr, why, flasher.ErrUnsupported)
	}
	b.log.Warn("gdb target unique id unusable, using the configured id", "addr", fmt.Sprintf("%#x", addr), "reason", why)
	return b.cfg.HardwareID, fmt.Sprintf("hardware id from the slot's configuration: the unique id at %#x %s", addr, why), nil
}

func allBytes(data []byte, v byte) bool {
	for _, c := range data {
		if c != v {
			return false
		}
	}
	return true
}

// parseMemSpec parses "mem:ADDR,LEN".
func parseMemSpec(s string) (uint64, int, error) {
	rest, ok := strings.CutPrefix(s, "mem:")
	as, ls, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("hardware id source %q is not %q or mem:ADDR,LEN", s, HardwareIDNone)
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(as), 0, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("hardware id source %q: address %q is not a number", s, as)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(ls), 0, 16)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("hardware id source %q: length %q is not a number from 1 to 65535", s, ls)
	}
	return addr, int(n), nil
}

// ready refuses operations before Identify or after the detach at reset.
func (b *Backend) ready(op string) error {
	if b.detached {
		return fmt.Errorf("%s: %w", op, errDetached)
	}
	if !b.identified {
		return fmt.Errorf("%s: call Identify first", op)
	}
	return nil
}

// Monitor runs a monitor command (qRcmd) and returns what the server
// printed. A server without monitor commands gives flasher.ErrUnsupported.
func (b *Backend) Monitor(ctx context.Context, cmd string) (string, error) {
	l := b.link
	l.takeOutput()
	req := "qRcmd," + hex.EncodeToString([]byte(cmd))
	r, err := l.roundTrip(ctx, []byte(req), b.cfg.Timeout)
	if err != nil {
		return l.takeOutput(), fmt.Errorf("monitor %q: %w", cmd, err)
	}
	out := l.takeOutput()
	switch {
	case string(r) == "OK":
	case len(r) == 0:
		return out, fmt.Errorf("monitor %q: the GDB server has no monitor commands: %w", cmd, flasher.ErrUnsupported)
	case rsp.ParseError(r) != nil:
		return out, fmt.Errorf("monitor %q: %w (output %q)", cmd, rsp.ParseError(r), strings.TrimSpace(out))
	default:
		// The final reply may itself be hex output (the manual's qRcmd
		// "OUTPUT" reply).
		text, err := rsp.ParseHex(nil, r)
		if err != nil {
			return out, fmt.Errorf("monitor %q: reply %q is neither OK nor hex output", cmd, describe(r))
		}
		out += string(text)
	}
	b.log.Debug("gdb monitor command", "command", cmd, "output", strings.TrimSpace(out))
	return out, nil
}

// monitorFailed reports whether monitor output says the command did not
// work: servers answer OK to a command they do not know (QEMU prints
// "unknown command", OpenOCD "invalid command name") or that failed.
func monitorFailed(out string) (failed, unknown bool) {
	o := strings.ToLower(out)
	for _, s := range []string{"unknown command", "invalid command", "not supported", "unrecognized command"} {
		if strings.Contains(o, s) {
			return true, true
		}
	}
	for _, s := range []string{"error", "failed", "failure"} {
		if strings.Contains(o, s) {
			return true, false
		}
	}
	return false, false
}

// LockOptions lists the one protection a configured LockCommand sets,
// or nothing.
func (b *Backend) LockOptions() []string {
	if b.cfg.LockCommand == "" {
		return nil
	}
	return []string{b.cfg.LockName}
}

// Lock runs LockCommand when opts names its option. Whether the
// protection was already set cannot be asked of every server, so the
// command runs each time: the commands the backend knows are idempotent.
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	if err := b.ready("lock"); err != nil {
		return err
	}
	if b.cfg.LockCommand == "" {
		return fmt.Errorf("lock: the slot configures no lock command for this GDB server: %w", flasher.ErrUnsupported)
	}
	run := false
	for _, o := range opts {
		if o != b.cfg.LockName {
			return fmt.Errorf("lock: %q is not a lock this slot has (it has %s): %w", o, b.cfg.LockName, flasher.ErrUnsupported)
		}
		run = true
	}
	if !run {
		return nil
	}
	out, err := b.Monitor(ctx, b.cfg.LockCommand)
	if err != nil {
		return fmt.Errorf("lock %s: %w", b.cfg.LockName, err)
	}
	if failed, unknown := monitorFailed(out); failed {
		if unknown {
			return fmt.Errorf("lock %s: the GDB server does not know %q: %s: %w", b.cfg.LockName, b.cfg.LockCommand, strings.TrimSpace(out), flasher.ErrUnsupported)
		}
		return fmt.Errorf("lock %s: %q failed: %s", b.cfg.LockName, b.cfg.LockCommand, strings.TrimSpace(out))
	}
	b.log.Info("gdb target locked", "lock", b.cfg.LockName, "command", b.cfg.LockCommand, "output", strings.TrimSpace(out))
	return nil
}

// aircrReset is SCB->AIRCR with VECTKEY 0x05FA and SYSRESETREQ (ARMv7-M
// ARM, B3.2.6), little-endian.
var aircrReset = [4]byte{0x04, 0x00, 0xFA, 0x05}

const aircrAddr = 0xE000ED0C

// Reset restarts the target: ResetCommand if configured, SYSRESETREQ on
// a Cortex-M target otherwise, then detaches (D), which lets the target
// run, and closes the connection. The link cannot see the application's
// output, so the banner is always "". The backend is unusable afterwards.
func (b *Backend) Reset(ctx context.Context) (string, error) {
	if err := b.ready("reset"); err != nil {
		return "", err
	}
	switch {
	case b.cfg.ResetCommand != "":
		out, err := b.Monitor(ctx, b.cfg.ResetCommand)
		if err != nil {
			return "", fmt.Errorf("reset: %w", err)
		}
		if failed, unknown := monitorFailed(out); failed {
			err := fmt.Errorf("reset: %q failed: %s", b.cfg.ResetCommand, strings.TrimSpace(out))
			if unknown {
				err = fmt.Errorf("reset: the GDB server does not know %q: %s: %w", b.cfg.ResetCommand, strings.TrimSpace(out), flasher.ErrUnsupported)
			}
			return "", err
		}
	case b.tgt.CortexM:
		req := fmt.Appendf(nil, "M%x,4:%s", aircrAddr, hex.EncodeToString(aircrReset[:]))
		if r, err := b.link.roundTrip(ctx, req, b.cfg.Timeout); err != nil {
			return "", fmt.Errorf("reset through AIRCR: %w", err)
		} else if se := rsp.ParseError(r); se != nil {
			return "", fmt.Errorf("reset through AIRCR at %#x: %w", aircrAddr, se)
		}
	}
	r, err := b.link.roundTrip(ctx, []byte("D"), b.cfg.Timeout)
	b.detached = true
	// As GDB does after a detach: the server serves the next client only
	// once this one has gone (QEMU takes one connection at a time).
	_ = b.link.close()
	if err != nil {
		return "", fmt.Errorf("reset: detach: %w", err)
	}
	if se := rsp.ParseError(r); se != nil {
		return "", fmt.Errorf("reset: detach: %w", se)
	}
	b.log.Info("gdb target reset and detached", "command", b.cfg.ResetCommand)
	return "", nil
}

// Close closes the connection, which ends the reader goroutine. It does
// not detach: a target left halted stays halted until Reset or the next
// session.
func (b *Backend) Close() error {
	err := b.link.close()
	<-b.link.done
	if err != nil {
		return fmt.Errorf("close the GDB connection: %w", err)
	}
	return nil
}
