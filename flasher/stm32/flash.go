package stm32

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/station-dev/station/flasher"
)

// checkImage validates img against the chip's flash: every segment
// inside it and 4-byte aligned, as WRITE MEMORY wants.
func (b *Backend) checkImage(img flasher.Image) error {
	if err := img.Validate(); err != nil {
		return err
	}
	lo, hi := uint64(b.fam.FlashBase), uint64(b.fam.FlashBase)+uint64(b.flashSize)
	for _, s := range img.Segments {
		if s.Addr < lo || s.End() > hi {
			return fmt.Errorf("segment %s at %#x-%#x lies outside the %s's flash %#x-%#x: %w",
				s.Name, s.Addr, s.End(), b.fam.Name, lo, hi, flasher.ErrUnsupported)
		}
		if s.Addr%4 != 0 {
			return fmt.Errorf("segment %s starts at %#x, which is not 4-byte aligned as WRITE MEMORY requires: %w",
				s.Name, s.Addr, flasher.ErrUnsupported)
		}
	}
	return nil
}

// Flash erases the pages img covers (or all of flash with
// Config.MassErase) and writes img in 256-byte blocks, reporting
// progress after each block. A NACKed block fails with flasher.ErrWrite
// and its address; a device that stops answering with
// flasher.ErrLinkLost.
func (b *Backend) Flash(ctx context.Context, img flasher.Image, progress flasher.Progress) error {
	if err := b.ready("flash"); err != nil {
		return err
	}
	if b.locked {
		return b.fail(flasher.ErrLocked, "flash: the device is read-protected; its bootloader refuses writes")
	}
	if err := b.checkImage(img); err != nil {
		return b.fail(err, "flash")
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	start := time.Now()
	if err := b.erase(ctx, img); err != nil {
		return err
	}
	erased := time.Since(start)
	total, done := img.Size(), int64(0)
	progress(0, total)
	for _, s := range img.Segments {
		for off := 0; off < len(s.Data); off += BlockSize {
			addr := uint32(s.Addr) + uint32(off)
			chunk := s.Data[off:min(off+BlockSize, len(s.Data))]
			if err := b.writeBlock(ctx, addr, chunk); err != nil {
				return err
			}
			done += int64(len(chunk))
			progress(done, total)
		}
	}
	b.log.Info("stm32 flash written", "bytes", total, "erase", erased, "took", time.Since(start))
	return nil
}

// writeBlock runs one WRITE MEMORY.
func (b *Backend) writeBlock(ctx context.Context, addr uint32, data []byte) error {
	l := b.link
	err := l.command(ctx, CmdWriteMemory)
	if err == nil {
		err = l.send(ctx, CmdWriteMemory, "address", AddressFrame(addr), ackTimeout)
	}
	if err == nil {
		err = l.send(ctx, CmdWriteMemory, "data", WriteFrame(data), writeTimeout)
	}
	if err == nil {
		return nil
	}
	if isNack(err) {
		err = fmt.Errorf("%w: %w", err, flasher.ErrWrite)
	}
	return b.fail(err, "flash: write %d bytes at %#08x", len(data), addr)
}

// erase erases the pages the image covers, or all of flash.
func (b *Backend) erase(ctx context.Context, img flasher.Image) error {
	ext := b.has(CmdExtendedErase)
	if !ext && !b.has(CmdErase) {
		return b.fail(flasher.ErrUnsupported, "flash: the bootloader lists neither ERASE nor EXTENDED ERASE")
	}
	cmd := CmdErase
	if ext {
		cmd = CmdExtendedErase
	}
	l := b.link
	if b.cfg.MassErase {
		frame := []byte{0xFF, 0x00} // ERASE: 0xFF then checksum 0x00, "global erase"
		if ext {
			frame = []byte{0xFF, 0xFF, 0x00} // EXTENDED ERASE: 0xFFFF, checksum
		}
		l.tracef("> %s mass erase", cmd)
		err := l.command(ctx, cmd)
		if err == nil {
			err = l.send(ctx, cmd, "mass erase", frame, massEraseTimeout)
		}
		if err != nil {
			if isNack(err) {
				err = fmt.Errorf("%w: %w", err, flasher.ErrWrite)
			}
			return b.fail(err, "flash: mass erase")
		}
		return nil
	}
	var pages []uint16
	for _, s := range img.Segments {
		for _, p := range b.fam.pagesCovering(b.flashSize, uint32(s.Addr), uint32(s.End())) {
			if !slices.Contains(pages, uint16(p.index)) {
				pages = append(pages, uint16(p.index))
			}
		}
	}
	slices.Sort(pages)
	per := maxErasePages
	if !ext {
		per = 255
		if len(pages) > 0 && pages[len(pages)-1] > 0xFF {
			return b.fail(flasher.ErrUnsupported, "flash: page %d needs EXTENDED ERASE, which the bootloader does not list; use mass erase", pages[len(pages)-1])
		}
	}
	for len(pages) > 0 {
		n := min(per, len(pages))
		batch := pages[:n]
		pages = pages[n:]
		frame := ExtendedEraseFrame(batch)
		if !ext {
			frame = EraseFrame(batch)
		}
		l.tracef("> %s pages %d-%d (%d)", cmd, batch[0], batch[len(batch)-1], len(batch))
		err := l.command(ctx, cmd)
		if err == nil {
			err = l.send(ctx, cmd, "pages", frame, time.Duration(len(batch))*pageEraseTimeout)
		}
		if err != nil {
			if isNack(err) {
				err = fmt.Errorf("%w: %w", err, flasher.ErrWrite)
			}
			return b.fail(err, "flash: erase pages %d-%d", batch[0], batch[len(batch)-1])
		}
	}
	return nil
}

// Verify checks that the device holds img: with GET CHECKSUM where the
// bootloader lists it (the CRC computed here the same way), else by
// reading back in 256-byte blocks. A difference fails with
// flasher.ErrVerify and the first differing address.
func (b *Backend) Verify(ctx context.Context, img flasher.Image) error {
	if err := b.ready("verify"); err != nil {
		return err
	}
	if b.locked {
		return b.fail(flasher.ErrLocked, "verify: the device is read-protected; its bootloader refuses reads")
	}
	if err := b.checkImage(img); err != nil {
		return b.fail(err, "verify")
	}
	useCRC := b.has(CmdGetChecksum) && !b.cfg.NoCRC
	for _, s := range img.Segments {
		if useCRC {
			n := (len(s.Data) + 3) &^ 3
			got, err := b.deviceCRC(ctx, uint32(s.Addr), uint32(n))
			if err != nil {
				return b.fail(err, "verify: CRC of %#08x+%#x", s.Addr, n)
			}
			want := CRC(s.Data)
			b.link.tracef("< CRC %#08x+%#x: device %#08x, image %#08x", s.Addr, n, got, want)
			if got == want {
				continue
			}
		}
		if err := b.compare(ctx, s); err != nil {
			return err
		}
		if useCRC {
			return b.fail(flasher.ErrVerify, "verify: segment %s at %#x: the device's CRC differs from the image's but a readback matches; the link or the bootloader's CRC is unreliable", s.Name, s.Addr)
		}
	}
	return nil
}

// compare reads a segment back and fails at the first difference.
func (b *Backend) compare(ctx context.Context, s flasher.Segment) error {
	for off := 0; off < len(s.Data); off += BlockSize {
		addr := uint32(s.Addr) + uint32(off)
		want := s.Data[off:min(off+BlockSize, len(s.Data))]
		got, err := b.readMemory(ctx, addr, len(want))
		if err != nil {
			if isNack(err) {
				err = fmt.Errorf("%w: %w", err, flasher.ErrLocked)
			}
			return b.fail(err, "verify: read %d bytes at %#08x", len(want), addr)
		}
		if i := firstDiff(got, want); i >= 0 {
			return b.fail(flasher.ErrVerify, "verify: segment %s differs at %#08x: device has %#02x, image %#02x",
				s.Name, addr+uint32(i), got[i], want[i])
		}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// deviceCRC runs GET CHECKSUM over n bytes (a multiple of 4) at addr.
// Wire format as stm32flash's stm32_crc_memory sends it: the command,
// the address frame (ACK), the length in bytes as 4 bytes big-endian and
// their XOR (ACK), a second ACK once the CRC is computed, then the CRC as
// 4 bytes big-endian and their XOR.
func (b *Backend) deviceCRC(ctx context.Context, addr, n uint32) (uint32, error) {
	l := b.link
	if err := l.command(ctx, CmdGetChecksum); err != nil {
		return 0, err
	}
	if err := l.send(ctx, CmdGetChecksum, "address", AddressFrame(addr), ackTimeout); err != nil {
		return 0, err
	}
	if err := l.send(ctx, CmdGetChecksum, "length", AddressFrame(n), ackTimeout); err != nil {
		return 0, err
	}
	wait := ackTimeout + time.Duration(float64(crcTimeoutPerMiB)*float64(n)/(1<<20))
	if err := l.ack(ctx, CmdGetChecksum, "computation", wait); err != nil {
		return 0, err
	}
	p, err := l.readFull(ctx, 5, "GET CHECKSUM result", ackTimeout)
	if err != nil {
		return 0, err
	}
	if xorSum(p[:4]) != p[4] {
		return 0, fmt.Errorf("GET CHECKSUM: the result's checksum is wrong: %w", flasher.ErrLinkLost)
	}
	return binary.BigEndian.Uint32(p), nil
}

// LockOptions lists the locks Lock accepts: "rdp", read-out protection
// level 1.
func (b *Backend) LockOptions() []string { return []string{LockRDP} }

// Lock applies read-out protection with READOUT PROTECT. The bootloader
// programs the option bytes and resets the chip; the backend then
// synchronises again (BOOT0 is still high) and checks that READ MEMORY is
// refused. Protection already in place is not an error.
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	if err := b.ready("lock"); err != nil {
		return err
	}
	want := false
	for _, o := range opts {
		if o != LockRDP {
			return b.fail(flasher.ErrUnsupported, "lock: %q is not a lock this backend knows (it has %q)", o, LockRDP)
		}
		want = true
	}
	if !want || b.locked {
		return nil
	}
	if !b.has(CmdReadoutProtect) {
		return b.fail(flasher.ErrUnsupported, "lock: the bootloader does not list READOUT PROTECT")
	}
	l := b.link
	if err := l.command(ctx, CmdReadoutProtect); err != nil {
		if isNack(err) {
			// AN3155: NACK when protection is already active.
			b.locked = true
			return nil
		}
		return b.fail(err, "lock: READOUT PROTECT")
	}
	if err := l.ack(ctx, CmdReadoutProtect, "completion", protectTimeout); err != nil {
		return b.fail(err, "lock: READOUT PROTECT")
	}
	b.locked = true
	if err := b.resync(ctx); err != nil {
		return b.fail(err, "lock: after READOUT PROTECT")
	}
	_, err := b.readMemory(ctx, b.fam.UIDAddr, 12)
	switch {
	case err == nil:
		return b.fail(flasher.ErrWrite, "lock: READOUT PROTECT was acknowledged but READ MEMORY still works")
	case !isNack(err):
		return b.fail(err, "lock: check the protection")
	}
	b.log.Info("stm32 read-out protection set")
	return nil
}

// Unprotect removes read-out protection with READOUT UNPROTECT, which
// mass-erases the flash first; the chip resets and the backend
// synchronises again. Identify again to read the unique id.
func (b *Backend) Unprotect(ctx context.Context) error {
	if err := b.ready("unprotect"); err != nil {
		return err
	}
	l := b.link
	err := l.command(ctx, CmdReadoutUnprotect)
	if err == nil {
		err = l.ack(ctx, CmdReadoutUnprotect, "completion", massEraseTimeout)
	}
	if err != nil {
		return b.fail(err, "unprotect: READOUT UNPROTECT")
	}
	b.locked = false
	if err := b.resync(ctx); err != nil {
		return b.fail(err, "unprotect: after READOUT UNPROTECT")
	}
	return nil
}

// Locked reports whether Identify or Lock found read-out protection.
func (b *Backend) Locked() bool { return b.locked }

var errNotIdentified = errors.New("the device has not been identified")

// Commands returns the commands GET listed, for diagnostics.
func (b *Backend) Commands() ([]Command, error) {
	if b.fam == nil {
		return nil, errNotIdentified
	}
	return slices.Clone(b.cmds), nil
}
