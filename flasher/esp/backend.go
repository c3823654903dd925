package esp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp/packet"
)

// Reset modes: how the backend puts the chip into its ROM bootloader.
const (
	// ResetClassic drives esptool's ClassicReset through DTR and RTS on
	// the usual auto-reset circuit: RTS asserted with DTR released pulls
	// EN low (chip in reset), DTR asserted with RTS released pulls IO0
	// low (download mode strap).
	ResetClassic = "classic"
	// ResetNone leaves the lines alone: the jig holds the chip in
	// download mode.
	ResetNone = "none"
)

// Defaults for Config fields left zero.
const (
	// DefaultBaud is the working line speed after the handshake; 921600
	// fails on some CH341 bridges while 460800 works (esptool#435).
	DefaultBaud = 460800
	// DefaultFlashSize is the flash size given to SPI_SET_PARAMS.
	DefaultFlashSize = 4 << 20
	// DefaultResetHold is how long EN is held low (esptool ClassicReset
	// and HardReset sleep 0.1 s).
	DefaultResetHold = 100 * time.Millisecond
	// DefaultResetDelay is how long IO0 stays low after EN is released
	// (esptool DEFAULT_RESET_DELAY, 0.05 s).
	DefaultResetDelay = 50 * time.Millisecond
	// DefaultConnectAttempts is esptool's DEFAULT_CONNECT_ATTEMPTS.
	DefaultConnectAttempts = 7
	// DefaultConsoleBaud is the rate ESP-IDF applications print at.
	DefaultConsoleBaud = 115200
	// DefaultBannerWait is how long Reset reads the console.
	DefaultBannerWait = 2 * time.Second
)

// Config says how a Backend drives its device. The zero value is ready:
// every zero field takes its default.
type Config struct {
	// Baud is the line speed after the handshake, which is always at
	// 115200; 0 means DefaultBaud.
	Baud int
	// NoCompress writes with FLASH_BEGIN/FLASH_DATA instead of the
	// compressed FLASH_DEFL_* commands.
	NoCompress bool
	// Reset is ResetClassic (the default) or ResetNone.
	Reset string
	// ResetHold is how long EN is held low; 0 means DefaultResetHold.
	ResetHold time.Duration
	// ResetDelay is how long IO0 stays low after EN is released; 0 means
	// DefaultResetDelay. As esptool does, every other connect attempt
	// waits 0.5 s longer.
	ResetDelay time.Duration
	// ConnectAttempts is how many resets Identify tries, each followed
	// by up to five SYNCs; 0 means DefaultConnectAttempts.
	ConnectAttempts int
	// FlashSize is the device's flash size in bytes; 0 means
	// DefaultFlashSize. The ROM cannot measure it in Secure Download
	// Mode, so it is configured, not detected.
	FlashSize int64
	// Chip is "" to detect the chip, or the chip the slot must hold:
	// "esp32" or "esp32s3".
	Chip string
	// ConsoleBaud is the rate Reset reads the application's boot log at;
	// 0 means DefaultConsoleBaud.
	ConsoleBaud int
	// BannerWait is how long Reset reads the console for the
	// application's version; 0 means DefaultBannerWait.
	BannerWait time.Duration
	// Cache holds compressed segments; share one between the backends of
	// a station so that an image is compressed once. Nil means a cache
	// of the backend's own.
	Cache *Cache
	// Logger receives the backend's log; nil discards it.
	Logger *slog.Logger
	// Trace, if set, receives a protocol transcript: one line per
	// command and response with opcode, sizes and status, never bulk
	// payload.
	Trace io.Writer
}

func (c Config) withDefaults() Config {
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	if c.Reset == "" {
		c.Reset = ResetClassic
	}
	if c.ResetHold == 0 {
		c.ResetHold = DefaultResetHold
	}
	if c.ResetDelay == 0 {
		c.ResetDelay = DefaultResetDelay
	}
	if c.ConnectAttempts == 0 {
		c.ConnectAttempts = DefaultConnectAttempts
	}
	if c.FlashSize == 0 {
		c.FlashSize = DefaultFlashSize
	}
	if c.ConsoleBaud == 0 {
		c.ConsoleBaud = DefaultConsoleBaud
	}
	if c.BannerWait == 0 {
		c.BannerWait = DefaultBannerWait
	}
	if c.Cache == nil {
		c.Cache = &Cache{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Backend flashes one ESP32 or ESP32-S3 through its ROM serial
// bootloader. It serves one device at a time and is not safe for
// concurrent use.
type Backend struct {
	cfg  Config
	port Port
	log  *slog.Logger
	link *link

	chip     *chip
	mac      string
	sdm      bool   // the ROM runs in Secure Download Mode
	sdmFlags uint32 // its GET_SECURITY_INFO flags
	sdmState map[string]bool
	report   flasher.LockReport // what the last Lock read back
	noLink   bool               // download mode was disabled: the ROM will not answer again
	baud     int                // the host side's current line speed
}

var _ flasher.Backend = (*Backend)(nil)

// New returns a backend that drives port. The port stays its owner's to
// close.
func New(port Port, cfg Config) *Backend {
	cfg = cfg.withDefaults()
	return &Backend{cfg: cfg, port: port, log: cfg.Logger, link: newLink(port, cfg.Trace, cfg.Logger)}
}

// Identify resets the chip into its ROM bootloader, synchronises, detects
// the chip, reads its MAC and lock eFuses, attaches the SPI flash and
// moves to the working baud rate. On an ESP32-S3 in Secure Download Mode
// the ROM hides the MAC: Identify then returns a Device with Chip and
// Locked set and an error wrapping flasher.ErrLocked.
func (b *Backend) Identify(ctx context.Context) (flasher.Device, error) {
	b.chip, b.mac, b.sdm, b.sdmFlags, b.sdmState, b.noLink = nil, "", false, 0, nil, false
	var want *chip
	if b.cfg.Chip != "" {
		c, err := chipByKey(b.cfg.Chip)
		if err != nil {
			return flasher.Device{}, fmt.Errorf("identify: %w: %w", err, flasher.ErrUnsupported)
		}
		want = c
	}
	if err := b.port.SetReadTimeout(pollInterval); err != nil {
		return flasher.Device{}, fmt.Errorf("set the port's read timeout: %w: %w", err, flasher.ErrLinkLost)
	}
	if err := b.setBaud(romBaud); err != nil {
		return flasher.Device{}, err
	}
	if err := b.connect(ctx); err != nil {
		return flasher.Device{}, err
	}
	c, err := b.detect(ctx)
	if err != nil {
		return flasher.Device{}, err
	}
	if want != nil && want != c {
		return flasher.Device{Chip: c.Name}, fmt.Errorf("identify: the slot expects an %s but the device is an %s: %w", want.Name, c.Name, flasher.ErrUnsupported)
	}
	b.chip = c
	dev := flasher.Device{Chip: c.Name, FlashSize: b.cfg.FlashSize}
	if b.sdm {
		dev.Locked = true
		dev.LockState = b.sdmState
		if err := b.prepareFlash(ctx); err != nil {
			return dev, err
		}
		b.log.Info("esp chip in secure download mode", "chip", c.Name)
		return dev, fmt.Errorf("identify: the %s runs its ROM in Secure Download Mode, which does not reveal the MAC: %w", c.Name, flasher.ErrLocked)
	}
	mac, err := b.readMAC(ctx)
	if err != nil {
		return dev, err
	}
	b.mac = mac
	dev.HardwareID = flasher.HardwareID(mac)
	if c.describe != nil {
		name, err := c.describe(func(addr uint32) (uint32, error) { return b.link.readReg(ctx, addr) })
		if err != nil {
			return dev, b.fail(err, "identify: read the chip package")
		}
		dev.Chip = name
	}
	state, err := b.readLocks(ctx, c.lockNames())
	if err != nil {
		return dev, b.fail(err, "identify: read the lock eFuses")
	}
	dev.LockState = state
	for _, on := range state {
		dev.Locked = dev.Locked || on
	}
	if err := b.prepareFlash(ctx); err != nil {
		return dev, err
	}
	b.log.Info("esp device identified", "chip", dev.Chip, "mac", mac, "locked", dev.Locked, "baud", b.baud)
	return dev, nil
}

// connect resets the chip into its bootloader and synchronises, as
// esptool's connect does: up to ConnectAttempts resets, each followed by
// up to five SYNCs 50 ms apart.
func (b *Backend) connect(ctx context.Context) error {
	l := b.link
	for attempt := range b.cfg.ConnectAttempts {
		l.tail.reset()
		if b.cfg.Reset == ResetClassic {
			delay := b.cfg.ResetDelay
			if attempt%2 == 1 {
				// esptool alternates DEFAULT_RESET_DELAY with
				// DEFAULT_RESET_DELAY + 0.5 s for slow boards.
				delay += 500 * time.Millisecond
			}
			if err := l.flush(); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			if err := b.enterBootloader(ctx, delay); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			// Read what the ROM printed at boot: it says which boot
			// mode the straps selected.
			if err := b.readBootLog(ctx); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
		} else if b.cfg.Reset != ResetNone {
			return fmt.Errorf("connect: reset mode %q is not %q or %q: %w", b.cfg.Reset, ResetClassic, ResetNone, flasher.ErrUnsupported)
		}
		for range 5 {
			if err := l.flush(); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			err := b.sync(ctx)
			if err == nil {
				b.log.Debug("esp synchronised", "attempt", attempt+1)
				return nil
			}
			var na *noAnswerError
			if !errors.As(err, &na) {
				return fmt.Errorf("connect: %w", err)
			}
			if err := flasher.Sleep(ctx, 50*time.Millisecond); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
		}
	}
	return fmt.Errorf("connect: no answer to SYNC after %d attempts%s: %w",
		b.cfg.ConnectAttempts, bootHint(b.link.tail.bytes(), b.cfg.Reset), flasher.ErrNoResponse)
}

// sync sends one SYNC and reads away the further answers the ROM sends
// to it (esptool loader.py sync reads seven more).
func (b *Backend) sync(ctx context.Context) error {
	if _, err := b.link.command(ctx, packet.Sync, packet.SyncData, 0, syncTimeout); err != nil {
		return err
	}
	for range 7 {
		if _, err := b.link.await(ctx, packet.Sync, syncTimeout); err != nil {
			var na *noAnswerError
			if errors.As(err, &na) {
				break
			}
			return err
		}
	}
	return b.link.flush()
}

// readBootLog reads what arrived during the reset, for bootHint.
func (b *Backend) readBootLog(ctx context.Context) error {
	buf := make([]byte, 512)
	for range 4 {
		if err := flasher.CtxErr(ctx); err != nil {
			return err
		}
		n, err := b.link.tail.Read(buf)
		if err != nil {
			return fmt.Errorf("read the boot log: %w: %w", err, flasher.ErrLinkLost)
		}
		if n == 0 {
			return nil
		}
	}
	return nil
}

var bootModeRE = regexp.MustCompile(`(?s)boot:(0x[0-9a-fA-F]+)(.*waiting for download)?`)

// bootHint explains a failed connect from the ROM's boot message, as
// esptool's _connect_attempt does.
func bootHint(log []byte, reset string) string {
	m := bootModeRE.FindSubmatch(log)
	switch {
	case m == nil && reset == ResetNone:
		return " (reset mode none: the jig must hold the chip in download mode)"
	case m == nil:
		return ""
	case len(m[2]) > 0:
		return fmt.Sprintf(" (the chip is waiting for download, boot mode %s, but its answers do not arrive: check the serial TX line)", m[1])
	}
	return fmt.Sprintf(" (the chip booted in mode %s, not download mode: check that IO0 is pulled low at reset)", m[1])
}

// Secure-download flags in GET_SECURITY_INFO (esptool loader.py
// get_security_info, SECURITY_INFO_FLAG_MAP).
const (
	secFlagSecureDownload = 1 << 2
	secFlagHardDisJTAG    = 1 << 7
)

// securityInfo is the answer to GET_SECURITY_INFO: 32-bit flags, 1 byte
// flash_crypt_cnt, 7 key purposes, 32-bit chip id, 32-bit API version.
type securityInfo struct {
	flags  uint32
	chipID uint32
}

func (b *Backend) securityInfo(ctx context.Context) (securityInfo, error) {
	_, p, err := b.link.check(ctx, packet.GetSecurityInfo, nil, 0, 20, defaultTimeout)
	if err != nil {
		return securityInfo{}, err
	}
	return securityInfo{flags: binary.LittleEndian.Uint32(p[0:]), chipID: binary.LittleEndian.Uint32(p[12:])}, nil
}

// detect reads the magic register; if the ROM refuses to read registers
// it asks GET_SECURITY_INFO, which works in Secure Download Mode.
func (b *Backend) detect(ctx context.Context) (*chip, error) {
	magic, err := b.link.readReg(ctx, chipDetectMagicReg)
	if err == nil {
		for _, c := range chips {
			if c.Magic == magic {
				return c, nil
			}
		}
		return nil, fmt.Errorf("identify: the chip's magic value %#08x is not one this backend knows (%s): %w", magic, chipKeys(), flasher.ErrUnsupported)
	}
	var refused *refusedError
	var rom *packet.ROMError
	if !errors.As(err, &refused) && !errors.As(err, &rom) {
		return nil, fmt.Errorf("identify: detect the chip: %w", err)
	}
	si, serr := b.securityInfo(ctx)
	if serr != nil {
		return nil, fmt.Errorf("identify: the ROM refuses register reads (%v) and GET_SECURITY_INFO: %w", err, serr)
	}
	for _, c := range chips {
		if !c.SecurityInfo || c.ChipID != si.chipID {
			continue
		}
		if si.flags&secFlagSecureDownload == 0 {
			return nil, fmt.Errorf("identify: the %s refuses register reads but is not in Secure Download Mode (%v): %w", c.Name, err, flasher.ErrUnsupported)
		}
		b.enterSDM(c, si.flags)
		return c, nil
	}
	return nil, fmt.Errorf("identify: chip id %d is not one this backend knows (%s): %w", si.chipID, chipKeys(), flasher.ErrUnsupported)
}

// enterSDM records that the ROM of chip c runs in Secure Download Mode
// and what its GET_SECURITY_INFO flags tell about the locks.
func (b *Backend) enterSDM(c *chip, flags uint32) {
	b.sdm, b.sdmFlags = true, flags
	b.sdmState = map[string]bool{"ENABLE_SECURITY_DOWNLOAD": true, "DIS_DOWNLOAD_MODE": false}
	if _, ok := c.lock("DIS_PAD_JTAG"); ok {
		b.sdmState["DIS_PAD_JTAG"] = flags&secFlagHardDisJTAG != 0
	}
}

// readMAC reads the factory MAC from eFuse.
func (b *Backend) readMAC(ctx context.Context) (string, error) {
	var w [2]uint32
	for i, addr := range b.chip.MACRegs {
		v, err := b.link.readReg(ctx, addr)
		if err != nil {
			return "", fmt.Errorf("identify: read the MAC: %w", err)
		}
		w[i] = v
	}
	m := b.chip.mac(w[0], w[1])
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]), nil
}

// prepareFlash attaches the SPI flash, gives its size and moves to the
// working baud rate. All three are allowed in Secure Download Mode.
func (b *Backend) prepareFlash(ctx context.Context) error {
	l := b.link
	// SPI_ATTACH: 0 = default pins; the ROM takes a second word, "is
	// legacy", 0 (loader.py flash_spi_attach).
	if _, _, err := l.check(ctx, packet.SPIAttach, packet.Words(0, 0), 0, 0, defaultTimeout); err != nil {
		return b.fail(err, "identify: attach the SPI flash")
	}
	// SPI_SET_PARAMS: id, total size, block 64 KiB, sector 4 KiB, page
	// 256, status mask 0xFFFF (loader.py flash_set_parameters).
	params := packet.Words(0, uint32(b.cfg.FlashSize), 64<<10, 4<<10, 256, 0xFFFF)
	if _, _, err := l.check(ctx, packet.SPISetParams, params, 0, 0, defaultTimeout); err != nil {
		return b.fail(err, "identify: set the flash parameters")
	}
	if err := b.changeBaud(ctx, b.cfg.Baud); err != nil {
		return b.fail(err, "identify: change the baud rate to %d", b.cfg.Baud)
	}
	return nil
}

// changeBaud asks the ROM for a new line speed, then follows it (loader.py
// change_baud: CHANGE_BAUDRATE new, 0; set the port; wait 50 ms; flush).
func (b *Backend) changeBaud(ctx context.Context, baud int) error {
	if baud == b.baud {
		return nil
	}
	ask := baud
	if fix := b.chip.BaudFix; fix != nil && !b.sdm {
		var err error
		if ask, err = b.compensateBaud(ctx, fix, baud); err != nil {
			return err
		}
	}
	// esptool sends it with command(), not check_command: the answer
	// comes at the old rate and its status is not looked at.
	if _, err := b.link.command(ctx, packet.ChangeBaudrate, packet.Words(uint32(ask), 0), 0, defaultTimeout); err != nil {
		return err
	}
	if err := b.setBaud(baud); err != nil {
		return err
	}
	if err := flasher.Sleep(ctx, 50*time.Millisecond); err != nil {
		return err
	}
	return b.link.flush()
}

// compensateBaud applies esptool's ESP32 workaround for the drift of the
// 8 MHz clock the ROM sets its UART from: it asks for
// baud * measured / nominal so that the ROM's rate comes out right.
func (b *Backend) compensateBaud(ctx context.Context, fix *baudFix, baud int) (int, error) {
	cali, err := b.link.readReg(ctx, fix.CaliReg)
	if err != nil {
		return 0, err
	}
	ck8m, err := b.link.readReg(ctx, fix.CK8MReg)
	if err != nil {
		return 0, err
	}
	freq := float64((cali>>fix.CaliShift)&fix.CaliMask) * 15625 * float64(ck8m&0xFF) / 40
	if freq < 13e6 || freq > 60e6 {
		// No plausible measure (registers not set up): ask for the
		// rate itself rather than for nonsense.
		b.log.Warn("esp rom clock measure implausible, baud rate not compensated", "hz", freq)
		return baud, nil
	}
	valid := 26e6
	if freq > 33e6 {
		valid = 40e6
	}
	return int(float64(baud) * freq / valid), nil
}

// setBaud changes the host side's line speed.
func (b *Backend) setBaud(baud int) error {
	if err := b.port.SetBaud(baud); err != nil {
		return fmt.Errorf("set the port to %d baud: %w: %w", baud, err, flasher.ErrLinkLost)
	}
	b.link.tracef("* port at %d baud", baud)
	b.baud = baud
	return nil
}

// ready checks that Identify has found a chip that still answers.
func (b *Backend) ready(op string) error {
	switch {
	case b.chip == nil:
		return fmt.Errorf("%s: the device has not been identified", op)
	case b.noLink:
		return b.fail(flasher.ErrLocked, "%s: download mode was disabled on this device", op)
	}
	return nil
}

// fail wraps err with what was being done and, once known, the device's
// MAC.
func (b *Backend) fail(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if b.mac != "" {
		msg = "esp " + b.mac + ": " + msg
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// Close forgets the device. The port is closed by its owner.
func (b *Backend) Close() error {
	b.chip = nil
	return nil
}
