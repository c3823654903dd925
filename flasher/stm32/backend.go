package stm32

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
)

// Reset sequences: how DTR and RTS drive the chip's BOOT0 and NRST pins.
// "Asserted" is the termios sense (TIOCM_DTR set); the jig's transistors
// or inverters turn it into BOOT0 high and NRST low.
const (
	// ResetDTRBoot0RTSReset: DTR asserted drives BOOT0 high, RTS
	// asserted holds NRST low. The default.
	ResetDTRBoot0RTSReset = "dtr-boot0-rts-reset"
	// ResetRTSBoot0DTRReset: the other way round.
	ResetRTSBoot0DTRReset = "rts-boot0-dtr-reset"
	// ResetNone leaves the lines alone: the jig straps BOOT0 high and
	// the device is power-cycled into its bootloader.
	ResetNone = "none"
)

// Serial framings. The bootloader's USART runs 8 data bits, even parity,
// one stop bit (AN3155 section 1); a pseudo-terminal cannot carry parity,
// so simulators and stm32flash on one use 8N1.
const (
	Mode8E1 = "8e1"
	Mode8N1 = "8n1"
	// DefaultMode is the framing hardware wants.
	DefaultMode = Mode8E1
)

// Defaults for Config fields left zero.
const (
	// DefaultBaud is the line speed the port is assumed to run at, for
	// timeouts; AN2662 tests the bootloader up to 115200.
	DefaultBaud = 115200
	// DefaultResetHold is how long NRST is held low.
	DefaultResetHold = 20 * time.Millisecond
	// DefaultBootDelay is how long the backend waits after NRST rises
	// before it sends the init byte; bootloaders start in a few
	// milliseconds (AN2606 "Bootloader startup timings").
	DefaultBootDelay = 20 * time.Millisecond
	// DefaultConnectAttempts is how many resets Identify tries.
	DefaultConnectAttempts = 3
	// DefaultSyncTimeout is the wait for the answer to the init byte.
	DefaultSyncTimeout = 200 * time.Millisecond
)

// LockRDP names read-out protection level 1, the lock this backend sets.
const LockRDP = "rdp"

// Config says how a Backend drives its device. The zero value is ready:
// every zero field takes its default.
type Config struct {
	// Family is "" to take the family from the product id, or the family
	// the slot must hold: a key ("f0", "f1-md", "f1-hd", "f4", "f42",
	// "l4", "g0") or a product id ("0x410").
	Family string
	// ResetSequence is ResetDTRBoot0RTSReset (the default),
	// ResetRTSBoot0DTRReset or ResetNone.
	ResetSequence string
	// Mode is the framing the connector opened the port with: Mode8E1
	// (the default, what hardware wants) or Mode8N1 (pseudo-terminals).
	// The backend uses it for timeouts only.
	Mode string
	// Baud is the port's line speed, for timeouts; 0 means DefaultBaud.
	Baud int
	// ResetHold is how long NRST is held low; 0 means DefaultResetHold.
	ResetHold time.Duration
	// BootDelay is the wait after reset before the init byte; 0 means
	// DefaultBootDelay.
	BootDelay time.Duration
	// ConnectAttempts is how many resets Identify tries; 0 means
	// DefaultConnectAttempts.
	ConnectAttempts int
	// SyncTimeout is the wait for the answer to the init byte; 0 means
	// DefaultSyncTimeout.
	SyncTimeout time.Duration
	// MassErase erases all of flash before writing instead of the pages
	// the image covers.
	MassErase bool
	// NoCRC verifies by readback even when the bootloader lists GET
	// CHECKSUM.
	NoCRC bool
	// BannerWait is how long Reset reads the application's first line;
	// 0 does not read.
	BannerWait time.Duration
	// Logger receives the backend's log; nil discards it.
	Logger *slog.Logger
	// Trace, if set, receives a protocol transcript: one line per
	// command and answer, never bulk data.
	Trace io.Writer
}

func (c Config) withDefaults() Config {
	if c.ResetSequence == "" {
		c.ResetSequence = ResetDTRBoot0RTSReset
	}
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	if c.ResetHold == 0 {
		c.ResetHold = DefaultResetHold
	}
	if c.BootDelay == 0 {
		c.BootDelay = DefaultBootDelay
	}
	if c.ConnectAttempts == 0 {
		c.ConnectAttempts = DefaultConnectAttempts
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// BitsPerByte is the line time of one byte in bits under mode: 11 for
// 8E1 (start, 8 data, parity, stop), 10 for 8N1.
func BitsPerByte(mode string) int {
	if strings.EqualFold(mode, Mode8N1) {
		return 10
	}
	return 11
}

// Backend flashes one STM32 through its USART bootloader. It serves one
// device at a time and is not safe for concurrent use.
type Backend struct {
	cfg  Config
	port Port
	log  *slog.Logger
	link *link

	fam       *Family
	flashSize uint32
	version   byte
	cmds      []Command
	uid       string
	locked    bool
	report    flasher.LockReport // what the last Lock read back
}

var _ flasher.Backend = (*Backend)(nil)

// New returns a backend that drives port. The port stays its owner's to
// close.
func New(port Port, cfg Config) *Backend {
	cfg = cfg.withDefaults()
	return &Backend{
		cfg: cfg, port: port, log: cfg.Logger,
		link: newLink(port, cfg.Trace, cfg.Logger, cfg.Baud, BitsPerByte(cfg.Mode)),
	}
}

// FormatUID turns the 12 bytes of the unique id, as READ MEMORY returns
// them from the UID base upwards, into the hardware id: 24 upper-case hex
// digits in address order.
func FormatUID(uid []byte) flasher.HardwareID {
	return flasher.HardwareID(strings.ToUpper(hex.EncodeToString(uid)))
}

// Identify resets the chip into its bootloader (BOOT0 high, NRST
// pulsed; BOOT0 stays high until Reset, so the resets the bootloader
// does itself land in it again), synchronises, asks GET and GET ID, and
// reads the unique id and the flash size register. A read-protected chip
// refuses READ MEMORY: Identify then returns the Device with Locked set
// and no hardware id, and an error wrapping flasher.ErrLocked.
func (b *Backend) Identify(ctx context.Context) (flasher.Device, error) {
	b.fam, b.uid, b.locked, b.cmds = nil, "", false, nil
	var want *Family
	if b.cfg.Family != "" {
		f, err := familyByKey(b.cfg.Family)
		if err != nil {
			return flasher.Device{}, fmt.Errorf("identify: %w: %w", err, flasher.ErrUnsupported)
		}
		want = f
	}
	switch b.cfg.ResetSequence {
	case ResetDTRBoot0RTSReset, ResetRTSBoot0DTRReset, ResetNone:
	default:
		return flasher.Device{}, fmt.Errorf("identify: reset sequence %q is not %q, %q or %q: %w",
			b.cfg.ResetSequence, ResetDTRBoot0RTSReset, ResetRTSBoot0DTRReset, ResetNone, flasher.ErrUnsupported)
	}
	if err := b.port.SetReadTimeout(pollInterval); err != nil {
		return flasher.Device{}, fmt.Errorf("identify: set the port's read timeout: %w: %w", err, flasher.ErrLinkLost)
	}
	if _, err := b.connect(ctx); err != nil {
		return flasher.Device{}, fmt.Errorf("identify: %w", err)
	}
	pid, err := b.info(ctx)
	if err != nil {
		return flasher.Device{}, fmt.Errorf("identify: %w", err)
	}
	fam := want
	if f, ok := FamilyByPID(pid); ok {
		fam = &f
	}
	switch {
	case fam == nil:
		return flasher.Device{Chip: fmt.Sprintf("STM32 PID %#03x", pid)}, fmt.Errorf(
			"identify: product id %#03x is not a family this backend knows: %w", pid, flasher.ErrUnsupported)
	case want != nil && want.PID != pid:
		return flasher.Device{Chip: fam.Name}, fmt.Errorf("identify: the slot expects an %s (PID %#03x) but the device is PID %#03x: %w",
			want.Name, want.PID, pid, flasher.ErrUnsupported)
	}
	b.fam, b.flashSize = fam, fam.FlashSize
	dev := flasher.Device{Chip: fam.Name, FlashSize: int64(fam.FlashSize), FlashBase: uint64(fam.FlashBase), LockState: map[string]bool{LockRDP: false}}
	uid, err := b.readMemory(ctx, fam.UIDAddr, 12)
	var nack *NackError
	if errors.As(err, &nack) && nack.Stage == "command" {
		b.locked = true
		dev.Locked, dev.LockState[LockRDP] = true, true
		b.log.Info("stm32 device is read-protected", "chip", fam.Name)
		return dev, fmt.Errorf("identify: the %s is read-protected (RDP): its bootloader refuses READ MEMORY, so its unique id cannot be read: %w", fam.Name, flasher.ErrLocked)
	}
	if err != nil {
		return dev, fmt.Errorf("identify: read the unique id at %#08x: %w", fam.UIDAddr, err)
	}
	b.uid = string(FormatUID(uid))
	dev.HardwareID = flasher.HardwareID(b.uid)
	if fs, err := b.readMemory(ctx, fam.FlashSizeAddr, 2); err == nil {
		kb := uint32(binary.LittleEndian.Uint16(fs))
		if kb > 0 && kb*kib <= fam.FlashSize {
			b.flashSize = kb * kib
			dev.FlashSize = int64(b.flashSize)
		}
	} else if !isNack(err) {
		return dev, b.fail(err, "identify: read the flash size register at %#08x", fam.FlashSizeAddr)
	}
	b.log.Info("stm32 device identified", "chip", fam.Name, "uid", b.uid, "flash_size", b.flashSize,
		"bootloader", fmt.Sprintf("%d.%d", b.version>>4, b.version&0xF))
	return dev, nil
}

// connect resets the chip into its bootloader and synchronises, up to
// ConnectAttempts times. It returns the answer to the init byte (see
// sync).
func (b *Backend) connect(ctx context.Context) (byte, error) {
	for attempt := range b.cfg.ConnectAttempts {
		if b.cfg.ResetSequence != ResetNone {
			if err := b.enterBootloader(ctx); err != nil {
				return 0, fmt.Errorf("connect: %w", err)
			}
		}
		if err := b.link.flush(); err != nil {
			return 0, fmt.Errorf("connect: %w", err)
		}
		answer, err := b.sync(ctx)
		if err == nil {
			b.log.Debug("stm32 synchronised", "attempt", attempt+1)
			return answer, nil
		}
		var na *noAnswerError
		if !errors.As(err, &na) {
			return 0, fmt.Errorf("connect: %w", err)
		}
	}
	hint := " (check that BOOT0 is high at reset and that the reset sequence matches the jig's wiring)"
	if b.cfg.ResetSequence == ResetNone {
		hint = " (reset sequence none: the jig must hold BOOT0 high and power the chip up into its bootloader)"
	}
	return 0, fmt.Errorf("connect: no answer to the init byte 0x7F after %d attempts%s: %w",
		b.cfg.ConnectAttempts, hint, flasher.ErrNoResponse)
}

// sync sends the init byte. ACK: the bootloader measured the baud rate.
// NACK: a session was already open and took 0x7F for a bad command.
// Silence: an open session may have taken 0x7F as the first byte of a
// command; a second 0x7F then makes it answer NACK (stm32flash's
// stm32_send_init_seq). It returns the answer, ACK or NACK.
func (b *Backend) sync(ctx context.Context) (byte, error) {
	l := b.link
	for i := range 2 {
		l.tracef("> init 0x7F")
		if err := l.write([]byte{Init}); err != nil {
			return 0, err
		}
		c, err := l.readFull(ctx, 1, "init", b.cfg.SyncTimeout)
		var na *noAnswerError
		switch {
		case errors.As(err, &na) && i == 0:
			continue
		case err != nil:
			return 0, err
		case c[0] == ACK:
			l.tracef("< init: ACK")
			return ACK, nil
		case c[0] == NACK:
			l.tracef("< init: NACK (a session was open)")
			return NACK, nil
		}
		l.tracef("< init: unexpected byte %#02x", c[0])
		_ = l.flush()
		return 0, &noAnswerError{what: "init", wait: b.cfg.SyncTimeout}
	}
	return 0, &noAnswerError{what: "init", wait: b.cfg.SyncTimeout}
}

// info runs GET and GET ID and returns the product id.
func (b *Backend) info(ctx context.Context) (uint16, error) {
	l := b.link
	if err := l.command(ctx, CmdGet); err != nil {
		return 0, fmt.Errorf("GET: %w", err)
	}
	n, err := l.readFull(ctx, 1, "GET", ackTimeout)
	if err != nil {
		return 0, fmt.Errorf("GET: %w", err)
	}
	p, err := l.readFull(ctx, int(n[0])+1, "GET", ackTimeout)
	if err != nil {
		return 0, fmt.Errorf("GET: %w", err)
	}
	if err := l.ack(ctx, CmdGet, "end", ackTimeout); err != nil {
		return 0, fmt.Errorf("GET: %w", err)
	}
	b.version = p[0]
	b.cmds = b.cmds[:0]
	for _, c := range p[1:] {
		b.cmds = append(b.cmds, Command(c))
	}
	l.tracef("< GET: bootloader %d.%d, commands % x", b.version>>4, b.version&0xF, p[1:])
	if err := l.command(ctx, CmdGetID); err != nil {
		return 0, fmt.Errorf("GET ID: %w", err)
	}
	n, err = l.readFull(ctx, 1, "GET ID", ackTimeout)
	if err != nil {
		return 0, fmt.Errorf("GET ID: %w", err)
	}
	p, err = l.readFull(ctx, int(n[0])+1, "GET ID", ackTimeout)
	if err != nil {
		return 0, fmt.Errorf("GET ID: %w", err)
	}
	if err := l.ack(ctx, CmdGetID, "end", ackTimeout); err != nil {
		return 0, fmt.Errorf("GET ID: %w", err)
	}
	if len(p) < 2 {
		return 0, fmt.Errorf("GET ID: %d byte product id, want 2: %w", len(p), flasher.ErrUnsupported)
	}
	pid := binary.BigEndian.Uint16(p)
	l.tracef("< GET ID: PID %#03x", pid)
	return pid, nil
}

// getVersion runs GET VERSION & READ PROTECTION STATUS: the bootloader
// version and two option bytes, which AN3155 gives as 0x00 0x00, kept
// for compatibility with the generic protocol: the answer does not tell
// the read protection state, READ MEMORY does.
func (b *Backend) getVersion(ctx context.Context) ([]byte, error) {
	l := b.link
	if err := l.command(ctx, CmdGetVersion); err != nil {
		return nil, fmt.Errorf("GET VERSION: %w", err)
	}
	p, err := l.readFull(ctx, 3, "GET VERSION", ackTimeout)
	if err != nil {
		return nil, fmt.Errorf("GET VERSION: %w", err)
	}
	if err := l.ack(ctx, CmdGetVersion, "end", ackTimeout); err != nil {
		return nil, fmt.Errorf("GET VERSION: %w", err)
	}
	l.tracef("< GET VERSION: % #x", p)
	return p, nil
}

// has reports whether GET listed cmd.
func (b *Backend) has(cmd Command) bool { return slices.Contains(b.cmds, cmd) }

// readMemory reads n (1-256) bytes at addr.
func (b *Backend) readMemory(ctx context.Context, addr uint32, n int) ([]byte, error) {
	l := b.link
	if err := l.command(ctx, CmdReadMemory); err != nil {
		return nil, err
	}
	if err := l.send(ctx, CmdReadMemory, "address", AddressFrame(addr), ackTimeout); err != nil {
		return nil, err
	}
	if err := l.send(ctx, CmdReadMemory, "length", []byte{byte(n - 1), ^byte(n - 1)}, ackTimeout); err != nil {
		return nil, err
	}
	return l.readFull(ctx, n, "READ MEMORY data", ackTimeout+l.lineTime(n))
}

// ready checks that Identify found a chip.
func (b *Backend) ready(op string) error {
	if b.fam == nil {
		return fmt.Errorf("%s: the device has not been identified", op)
	}
	return nil
}

// fail wraps err with what was being done and, once known, the unique id.
func (b *Backend) fail(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if b.uid != "" {
		msg = "stm32 " + b.uid + ": " + msg
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// Close forgets the device. The port is closed by its owner.
func (b *Backend) Close() error {
	b.fam = nil
	return nil
}

// lines maps the reset sequence to the setters of BOOT0 and NRST.
func (b *Backend) lines() (boot0, nrst func(bool) error) {
	if b.cfg.ResetSequence == ResetRTSBoot0DTRReset {
		return b.port.SetRTS, b.port.SetDTR
	}
	return b.port.SetDTR, b.port.SetRTS
}

func (b *Backend) setLine(name string, set func(bool) error, on bool) error {
	state := "released"
	if on {
		state = "asserted"
	}
	b.link.tracef("* %s %s", name, state)
	if err := set(on); err != nil {
		return fmt.Errorf("drive %s: %w: %w", name, err, flasher.ErrLinkLost)
	}
	return nil
}

// enterBootloader: BOOT0 high, NRST low, wait, NRST high, wait for the
// bootloader to start. BOOT0 stays high.
func (b *Backend) enterBootloader(ctx context.Context) error {
	boot0, nrst := b.lines()
	steps := []func() error{
		func() error { return b.setLine("BOOT0 (high)", boot0, true) },
		func() error { return b.setLine("NRST (low)", nrst, true) },
		func() error { return flasher.Sleep(ctx, b.cfg.ResetHold) },
		func() error { return b.setLine("NRST (low)", nrst, false) },
		func() error { return flasher.Sleep(ctx, b.cfg.BootDelay) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// resync waits for the chip to come back from a reset it did itself
// (after READOUT PROTECT or UNPROTECT) and synchronises again; it
// returns the answer to the init byte. GET and GET ID are the caller's.
func (b *Backend) resync(ctx context.Context) (byte, error) {
	var err error
	for range b.cfg.ConnectAttempts + 2 {
		if err = flasher.Sleep(ctx, b.cfg.BootDelay); err != nil {
			return 0, err
		}
		if err = b.link.flush(); err != nil {
			return 0, err
		}
		var answer byte
		if answer, err = b.sync(ctx); err == nil {
			return answer, nil
		}
		var na *noAnswerError
		if !errors.As(err, &na) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("the device did not come back into its bootloader after resetting itself (BOOT0 must stay high): %w", err)
}

// Reset restarts the device into its application: with a reset sequence,
// BOOT0 low and a pulse on NRST; with ResetNone, GO to the start of flash
// (refused under read protection). With BannerWait set it returns the
// first line the application prints, else "".
func (b *Backend) Reset(ctx context.Context) (string, error) {
	if b.cfg.ResetSequence == ResetNone {
		if b.fam == nil {
			return "", fmt.Errorf("reset: reset sequence none and no bootloader session to send GO: %w", flasher.ErrUnsupported)
		}
		if err := b.link.command(ctx, CmdGo); err != nil {
			if isNack(err) {
				return "", b.fail(flasher.ErrLocked, "reset: the bootloader refuses GO (read protection)")
			}
			return "", b.fail(err, "reset: GO")
		}
		if err := b.link.flush(); err != nil {
			return "", b.fail(err, "reset")
		}
		if err := b.link.send(ctx, CmdGo, "address", AddressFrame(b.fam.FlashBase), ackTimeout); err != nil {
			return "", b.fail(err, "reset: GO %#08x", b.fam.FlashBase)
		}
	} else {
		boot0, nrst := b.lines()
		if err := b.setLine("BOOT0 (high)", boot0, false); err != nil {
			return "", b.fail(err, "reset")
		}
		if err := b.setLine("NRST (low)", nrst, true); err != nil {
			return "", b.fail(err, "reset")
		}
		if err := b.link.flush(); err != nil {
			return "", b.fail(err, "reset")
		}
		if err := flasher.Sleep(ctx, b.cfg.ResetHold); err != nil {
			return "", err
		}
		if err := b.setLine("NRST (low)", nrst, false); err != nil {
			return "", b.fail(err, "reset")
		}
	}
	b.fam = nil // the device left the bootloader: identify again before more
	if b.cfg.BannerWait <= 0 {
		return "", nil
	}
	line, err := b.readLine(ctx, b.cfg.BannerWait)
	if err != nil {
		return "", b.fail(err, "reset: read the application's banner")
	}
	b.log.Info("stm32 device reset", "banner", line)
	return line, nil
}

// readLine reads up to the first non-empty line within wait.
func (b *Backend) readLine(ctx context.Context, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	l := b.link
	for time.Now().Before(deadline) {
		if i := bytes.IndexByte(l.pending, '\n'); i >= 0 {
			line := strings.TrimSpace(string(bytes.ToValidUTF8(l.pending[:i], nil)))
			l.pending = append(l.pending[:0], l.pending[i+1:]...)
			if line != "" {
				l.tracef("| %s", line)
				return line, nil
			}
			continue
		}
		if err := flasher.CtxErr(ctx); err != nil {
			return "", err
		}
		if err := l.fill(); err != nil {
			return "", err
		}
	}
	return strings.TrimSpace(string(bytes.ToValidUTF8(l.pending, nil))), nil
}
