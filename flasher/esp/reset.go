package esp

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp/packet"
)

// setDTR drives DTR and notes it in the trace. On the usual auto-reset
// circuit DTR asserted with RTS released pulls IO0 low, and RTS asserted
// with DTR released pulls EN low.
func (b *Backend) setDTR(on bool) error {
	b.link.tracef("* DTR %s", onOff(on))
	if err := b.port.SetDTR(on); err != nil {
		return fmt.Errorf("set DTR: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

// setRTS drives RTS and notes it in the trace.
func (b *Backend) setRTS(on bool) error {
	b.link.tracef("* RTS %s", onOff(on))
	if err := b.port.SetRTS(on); err != nil {
		return fmt.Errorf("set RTS: %w: %w", err, flasher.ErrLinkLost)
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "asserted"
	}
	return "released"
}

// enterBootloader is esptool's ClassicReset: IO0 high, EN low; wait;
// IO0 low, EN high; wait delay; IO0 high.
func (b *Backend) enterBootloader(ctx context.Context, delay time.Duration) error {
	b.link.tracef("* reset into the bootloader: EN low %v, IO0 low %v after", b.cfg.ResetHold, delay)
	steps := []func() error{
		func() error { return b.setDTR(false) }, // IO0 high
		func() error { return b.setRTS(true) },  // EN low: chip in reset
		func() error { return flasher.Sleep(ctx, b.cfg.ResetHold) },
		func() error { return b.setDTR(true) },  // IO0 low
		func() error { return b.setRTS(false) }, // EN high: chip out of reset, samples IO0
		func() error { return flasher.Sleep(ctx, delay) },
		func() error { return b.setDTR(false) }, // IO0 high: done
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// hardReset is esptool's HardReset: EN low with IO0 released, wait, EN
// high, so the chip boots from flash.
func (b *Backend) hardReset(ctx context.Context) error {
	b.link.tracef("* hard reset: EN low %v", b.cfg.ResetHold)
	if err := b.setDTR(false); err != nil {
		return err
	}
	if err := b.setRTS(true); err != nil {
		return err
	}
	if err := flasher.Sleep(ctx, b.cfg.ResetHold); err != nil {
		return err
	}
	return b.setRTS(false)
}

// runUserCode asks the ROM to leave the loader and run the application,
// for jigs that hold the chip in download mode: esptool's run() sends
// FLASH_BEGIN for 0 bytes at 0 and FLASH_END with 1 ("run user code").
// The answer to FLASH_END is not waited for: the application starts
// printing at its own rate at once.
func (b *Backend) runUserCode(ctx context.Context) error {
	if _, _, err := b.link.check(ctx, packet.FlashBegin, b.beginParams(0, 0, 0), 0, 0, defaultTimeout); err != nil {
		return err
	}
	return b.link.send(packet.FlashEnd, packet.Words(1), 0)
}

// appVersionRE finds the version in the ESP-IDF application's boot log,
// for example "I (312) app_init: App version:      2.3.1" (older
// releases log it from cpu_start).
var appVersionRE = regexp.MustCompile(`App version:\s*(\S.*)$`)

// ansiRE matches the colour sequences ESP-IDF puts around log lines.
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// Reset restarts the device into its application (a hard reset through
// RTS with IO0 released, or with reset mode none the ROM's "run user
// code"), then reads the console at Config.ConsoleBaud for up to
// Config.BannerWait and returns the application version from the ESP-IDF
// boot log's "App version:" line, or "" if none was printed.
func (b *Backend) Reset(ctx context.Context) (string, error) {
	if b.cfg.Reset == ResetNone {
		if b.chip == nil || b.noLink {
			return "", b.fail(flasher.ErrUnsupported, "reset: reset mode none and no bootloader link to ask")
		}
		if err := b.runUserCode(ctx); err != nil {
			return "", b.fail(classify(err), "reset: run the application")
		}
	}
	b.chip = nil // the device leaves the bootloader: identify again before more
	if err := b.setBaud(b.cfg.ConsoleBaud); err != nil {
		return "", b.fail(err, "reset")
	}
	if b.cfg.Reset != ResetNone {
		if err := b.link.flush(); err != nil {
			return "", b.fail(err, "reset")
		}
		if err := b.hardReset(ctx); err != nil {
			return "", b.fail(err, "reset")
		}
	}
	version, err := b.readBanner(ctx)
	if err != nil {
		return "", b.fail(err, "reset: read the boot log")
	}
	b.log.Info("esp device reset", "app_version", version)
	return version, nil
}

// readBanner reads console lines until the app version shows up or the
// wait is over.
func (b *Backend) readBanner(ctx context.Context) (string, error) {
	deadline := time.Now().Add(b.cfg.BannerWait)
	var line []byte
	buf := make([]byte, 256)
	lines := 0
	for time.Now().Before(deadline) {
		if err := flasher.CtxErr(ctx); err != nil {
			return "", err
		}
		n, err := b.port.Read(buf)
		for _, c := range buf[:n] {
			if c != '\n' {
				if len(line) < 512 {
					line = append(line, c)
				}
				continue
			}
			text := strings.TrimSpace(ansiRE.ReplaceAllString(string(bytes.ToValidUTF8(line, nil)), ""))
			line = line[:0]
			if lines < 100 && text != "" {
				b.link.tracef("| %s", text)
				lines++
			}
			if m := appVersionRE.FindStringSubmatch(text); m != nil {
				return strings.TrimSpace(m[1]), nil
			}
		}
		if err != nil {
			return "", fmt.Errorf("read the console: %w: %w", err, flasher.ErrLinkLost)
		}
	}
	return "", nil
}
