package stm32

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
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
// progress in image bytes after each block. It writes whole program
// units of the family's flash (see writeRuns), so that no half-word or
// double word is programmed twice between erases. A NACKed block fails
// with flasher.ErrWrite and its address; a device that stops answering
// with flasher.ErrLinkLost. Each call erases again every page it writes,
// so a Flash retried after a failed one (which may have left a block
// partly programmed) never programs flash that is not erased.
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
	runs := writeRuns(img, b.fam.ProgramUnit)
	start := time.Now()
	if err := b.erase(ctx, runs); err != nil {
		return err
	}
	erased := time.Since(start)
	total, done := img.Size(), int64(0)
	progress(0, total)
	for _, r := range runs {
		for off := 0; off < len(r.Data); off += BlockSize {
			addr := uint32(r.Addr) + uint32(off)
			chunk := r.Data[off:min(off+BlockSize, len(r.Data))]
			if err := b.writeBlock(ctx, addr, chunk); err != nil {
				return err
			}
			done += imageBytes(img, uint64(addr), uint64(addr)+uint64(len(chunk)))
			progress(done, total)
		}
	}
	b.log.Info("stm32 flash written", "bytes", total, "erase", erased, "took", time.Since(start))
	return nil
}

// writeRuns returns what Flash erases and writes for img: each segment
// widened to whole program units of unit bytes (at least 4, the
// alignment WRITE MEMORY wants), segments that share a unit merged into
// one run, and the widening and the gaps filled with 0xFF, the erased
// value. Written in 256-byte blocks from their starts, two blocks never
// share a unit: F0/F1 flash refuses to program a half-word that is not
// erased (PGERR) and L4/G0 flash a double word (PROGERR), even with the
// bytes it holds, so a double word split over two WRITE MEMORY commands
// fails on the second.
func writeRuns(img flasher.Image, unit uint32) []flasher.Segment {
	u := uint64(max(unit, 4))
	var runs []flasher.Segment
	for _, s := range img.Segments {
		lo, hi := s.Addr-s.Addr%u, s.End()+(u-s.End()%u)%u
		n := len(runs)
		if n == 0 || lo >= runs[n-1].End() {
			runs = append(runs, flasher.Segment{Name: s.Name, Addr: lo})
			n++
		}
		r := &runs[n-1]
		for r.End() < hi {
			r.Data = append(r.Data, 0xFF)
		}
		copy(r.Data[s.Addr-r.Addr:], s.Data)
	}
	return runs
}

// imageBytes counts the bytes of img in [from, to).
func imageBytes(img flasher.Image, from, to uint64) int64 {
	var n int64
	for _, s := range img.Segments {
		if lo, hi := max(s.Addr, from), min(s.End(), to); lo < hi {
			n += int64(hi - lo)
		}
	}
	return n
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

// erase erases the pages the runs cover, or all of flash.
func (b *Backend) erase(ctx context.Context, runs []flasher.Segment) error {
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
	for _, s := range runs {
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

// Lock applies read-out protection (RDP level 1) with READOUT PROTECT
// and reads it back from the device; LockReport returns what was read.
// The bootloader programs the option bytes and resets the chip. The
// read-back is a fresh bootloader handshake after that reset (the jig
// pulses NRST with BOOT0 high where it drives the lines; with
// ResetSequence none the backend waits for the chip to come back): the
// init byte, GET, GET VERSION, GET ID, then READ MEMORY of the unique id,
// which a protected chip refuses with NACK (AN3155 "Read Memory
// command"). A chip that still answers it fails with
// flasher.ErrLockNotSet naming the command, the read protection option
// byte and the values read and wanted.
//
// Protection already in place is not an error, but it is read back too,
// never assumed: whether Identify found it or READOUT PROTECT was
// refused with NACK (AN3155: the answer of a chip already protected,
// and of one that refuses for another reason).
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	b.report = flasher.LockReport{State: map[string]bool{}}
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
	if !want {
		return nil
	}
	b.report.State[LockRDP] = false
	stage, selfReset := "after READOUT PROTECT and the chip's reset", true
	switch {
	case b.locked:
		stage, selfReset = "already protected", false
	case !b.has(CmdReadoutProtect):
		return b.fail(flasher.ErrUnsupported, "lock: the bootloader does not list READOUT PROTECT")
	default:
		l := b.link
		err := l.command(ctx, CmdReadoutProtect)
		switch {
		case isNack(err):
			b.reading("lock", "READOUT PROTECT answer", 0, hexByte(NACK), "")
			stage, selfReset = "after READOUT PROTECT was refused", false
		case err != nil:
			return b.fail(err, "lock: READOUT PROTECT")
		default:
			if err := l.ack(ctx, CmdReadoutProtect, "completion", protectTimeout); err != nil {
				return b.fail(err, "lock: READOUT PROTECT")
			}
			b.reading("lock", "READOUT PROTECT answer", 0, hexByte(ACK)+" "+hexByte(ACK), "")
		}
	}
	if err := b.readBack(ctx, stage, selfReset); err != nil {
		return err
	}
	b.log.Info("stm32 read-out protection read back", "stage", stage)
	return nil
}

// readBack starts a fresh bootloader session and reads the protection
// back (see Lock); selfReset says that the chip is resetting itself.
func (b *Backend) readBack(ctx context.Context, stage string, selfReset bool) error {
	l := b.link
	var answer byte
	var err error
	switch {
	case b.cfg.ResetSequence != ResetNone:
		answer, err = b.connect(ctx)
	case selfReset:
		answer, err = b.resync(ctx)
	default:
		// BOOT0 strapped and nothing resets the chip: the session it
		// has is the only one.
		if err = l.flush(); err == nil {
			answer, err = b.sync(ctx)
		}
	}
	if err != nil {
		return b.fail(err, "lock: read back: synchronise")
	}
	b.reading(stage, "init 0x7F answer", 0, hexByte(answer), "")
	pid, err := b.info(ctx)
	if err != nil {
		return b.fail(err, "lock: read back")
	}
	b.reading(stage, "GET bootloader version", 0, hexByte(b.version), "")
	if b.has(CmdGetVersion) {
		v, err := b.getVersion(ctx)
		if err != nil {
			return b.fail(err, "lock: read back")
		}
		b.reading(stage, "GET VERSION version and option bytes", 0, fmt.Sprintf("% #x", v), "")
	}
	b.reading(stage, "GET ID product id", 0, fmt.Sprintf("%#03x", pid), fmt.Sprintf("%#03x", b.fam.PID))
	if pid != b.fam.PID {
		return b.fail(flasher.ErrUnsupported, "lock: read back: the device answers with product id %#03x, not the %s's %#03x that was identified", pid, b.fam.Name, b.fam.PID)
	}
	const refused = "0x1f (NACK: read-out protection refuses the read)"
	uid, err := b.readMemory(ctx, b.fam.UIDAddr, 12)
	var nack *NackError
	switch {
	case errors.As(err, &nack) && nack.Stage == "command":
		b.reading(stage, "READ MEMORY of the unique id", b.fam.UIDAddr, hexByte(NACK), refused)
		b.report.State[LockRDP] = true
		b.locked = true
		return nil
	case err != nil && !isNack(err):
		return b.fail(err, "lock: read back: READ MEMORY of the unique id at %#08x", b.fam.UIDAddr)
	}
	b.locked = false
	got := hexByte(ACK)
	if err == nil {
		got += " then " + hex.EncodeToString(uid)
	} else {
		got += " then " + hexByte(NACK) + " to the " + nack.Stage
	}
	b.reading(stage, "READ MEMORY of the unique id", b.fam.UIDAddr, got, refused)
	// An unprotected chip also shows its option bytes: the level byte
	// names what did not take.
	rdp := "cannot be read"
	if v, err := b.readMemory(ctx, b.fam.RDPAddr, 1); err == nil {
		rdp = fmt.Sprintf("reads %s", hexByte(v[0]))
		b.reading(stage, "option byte RDP", b.fam.RDPAddr, hexByte(v[0]), "any value but "+hexByte(b.fam.RDPLevel0))
	} else if !isNack(err) {
		return b.fail(err, "lock: read back: READ MEMORY of the option byte RDP at %#08x", b.fam.RDPAddr)
	}
	return b.fail(flasher.ErrLockNotSet, "lock %s: in a fresh bootloader session (%s), READ MEMORY of the unique id at %#08x is answered %s, want %s; option byte RDP at %#08x %s, want any value but %s (level 0)",
		LockRDP, stage, b.fam.UIDAddr, got, refused, b.fam.RDPAddr, rdp, hexByte(b.fam.RDPLevel0))
}

// reading appends one value read back to the lock report; addr is 0 for
// a command's answer.
func (b *Backend) reading(stage, register string, addr uint32, value, want string) {
	r := flasher.Reading{Stage: stage, Register: register, Value: value, Want: want}
	if addr != 0 {
		r.Addr = fmt.Sprintf("%#08x", addr)
	}
	b.report.ReadBack = append(b.report.ReadBack, r)
}

// hexByte formats a byte read back: 0x79.
func hexByte(v byte) string { return fmt.Sprintf("%#02x", v) }

// LockReport returns what the last Lock read back from the device: the
// answer to READOUT PROTECT, the fresh handshake after it (init byte,
// GET, GET VERSION, GET ID) and the answer to READ MEMORY of the unique
// id, with the read protection option byte where the chip let it be
// read. State says whether read-out protection is in effect.
func (b *Backend) LockReport() flasher.LockReport {
	return flasher.LockReport{State: maps.Clone(b.report.State), ReadBack: slices.Clone(b.report.ReadBack)}
}

var _ flasher.LockReporter = (*Backend)(nil)

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
	if _, err := b.resync(ctx); err != nil {
		return b.fail(err, "unprotect: after READOUT UNPROTECT")
	}
	if _, err := b.info(ctx); err != nil {
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
