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
	// DefaultLockName is the lock option Lock applies.
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
	cfg    Config
	res    resolved
	resErr error // why cfg cannot work (Config.Check)
	log    *slog.Logger
	link   *link

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

	// readback is what the last Lock read from the device; nil when it
	// read nothing.
	readback *lockRead
}

var _ flasher.Backend = (*Backend)(nil)

// New returns a backend that speaks RSP over conn: a TCP connection to a
// GDB server or a Black Magic Probe's serial port. A goroutine reads conn
// until it ends; Close closes conn, which stops it. A cfg that cannot
// work (Config.Check) makes Identify fail.
func New(conn io.ReadWriteCloser, cfg Config) *Backend {
	cfg = cfg.withDefaults()
	res, err := cfg.resolve()
	return &Backend{cfg: cfg, res: res, resErr: err, log: cfg.Logger, link: newLink(conn, 0, cfg.Trace, cfg.Logger)}
}

// Identify greets the server (qSupported, no-ack mode), asks why the
// target stopped, reads the memory map and the hardware id.
func (b *Backend) Identify(ctx context.Context) (flasher.Device, error) {
	if b.detached {
		return flasher.Device{}, fmt.Errorf("identify: %w", errDetached)
	}
	if b.resErr != nil {
		return flasher.Device{}, fmt.Errorf("identify: the slot's GDB settings cannot work: %w: %w", b.resErr, flasher.ErrUnsupported)
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
		case b.res.pipeline > 0:
			b.pipeline = b.res.pipeline
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
	dev := flasher.Device{Chip: b.res.chip}
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
	if p := b.res.protection; p != nil {
		v, err := b.readProtection(ctx, *p)
		if err != nil {
			return dev, fmt.Errorf("identify: %w", err)
		}
		dev.Locked = p.locked(v)
		dev.LockState = map[string]bool{b.cfg.LockName: dev.Locked}
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
	if len(b.res.memoryMap) > 0 {
		b.regions, b.mapFrom = b.res.memoryMap, "configuration"
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
	from := b.res.hardwareIDFrom
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
