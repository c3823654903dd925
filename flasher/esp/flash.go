package esp

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp/packet"
)

// sectorSize is the flash erase unit (loader.py FLASH_SECTOR_SIZE). The ROM
// writes only from sector boundaries.
const sectorSize = 0x1000

// region is a segment as the ROM receives it: esptool's write_flash moves
// an unaligned start down to its sector, filling the gap with 0xFF, and
// pads the length to 4 bytes with 0xFF.
type region struct {
	seg   flasher.Segment
	addr  uint32
	data  []byte
	front int // 0xFF bytes added before the segment's data
}

func (b *Backend) region(seg flasher.Segment) (region, error) {
	if seg.End() > uint64(b.cfg.FlashSize) {
		return region{}, fmt.Errorf("segment %s at %#x ends at %#x, past the end of the %d KiB flash: %w",
			seg.Name, seg.Addr, seg.End(), b.cfg.FlashSize>>10, flasher.ErrUnsupported)
	}
	front := int(seg.Addr % sectorSize)
	tail := (4 - (front+len(seg.Data))%4) % 4
	r := region{seg: seg, addr: uint32(seg.Addr) - uint32(front), data: seg.Data, front: front}
	if front != 0 || tail != 0 {
		d := make([]byte, 0, front+len(seg.Data)+tail)
		d = append(d, bytes.Repeat([]byte{0xFF}, front)...)
		d = append(d, seg.Data...)
		d = append(d, bytes.Repeat([]byte{0xFF}, tail)...)
		r.data = d
	}
	return r, nil
}

// Flash writes every segment of img: compressed with FLASH_DEFL_* unless
// Config.NoCompress is set or the ROM is in Secure Download Mode, which
// allows only FLASH_BEGIN/FLASH_DATA. Progress counts image bytes.
//
// As esptool does with the ROM loader, Flash sends no FLASH_END or
// FLASH_DEFL_END: the ROM writes each block before it answers, and the
// end command makes it leave the loader, which Verify still needs.
func (b *Backend) Flash(ctx context.Context, img flasher.Image, progress flasher.Progress) error {
	if err := b.ready("flash"); err != nil {
		return err
	}
	if err := img.Validate(); err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	compress := !b.cfg.NoCompress && !b.sdm
	total := img.Size()
	var done int64
	progress(0, total)
	for _, seg := range img.Segments {
		start := time.Now()
		r, err := b.region(seg)
		if err != nil {
			return b.fail(err, "flash")
		}
		report := func(n int) {
			n = min(max(n-r.front, 0), len(seg.Data))
			progress(done+int64(n), total)
		}
		if compress {
			err = b.writeCompressed(ctx, r, report)
		} else {
			err = b.writePlain(ctx, r, report)
		}
		if err != nil {
			return err
		}
		done += int64(len(seg.Data))
		progress(done, total)
		el := time.Since(start)
		b.log.Info("esp segment written", "segment", seg.Name, "addr", fmt.Sprintf("%#x", seg.Addr),
			"bytes", len(seg.Data), "compressed", compress, "seconds", el.Seconds())
	}
	return nil
}

// beginParams builds the FLASH_BEGIN / FLASH_DEFL_BEGIN words: size,
// block count, block size, offset, and on ROMs after the ESP32 the
// encrypted-write flag (0).
func (b *Backend) beginParams(size, blocks int, addr uint32) []byte {
	ws := []uint32{uint32(size), uint32(blocks), blockSize, addr}
	if b.chip.BeginEncryptFlag {
		ws = append(ws, 0)
	}
	return packet.Words(ws...)
}

// writeCompressed sends one region with FLASH_DEFL_BEGIN and
// FLASH_DEFL_DATA (loader.py flash_defl_begin, flash_defl_block; cmds.py
// write_flash).
func (b *Backend) writeCompressed(ctx context.Context, r region, report func(int)) error {
	where := fmt.Sprintf("flash segment %s at %#x", r.seg.Name, r.seg.Addr)
	z, err := b.cfg.Cache.get(r.data)
	if err != nil {
		return b.fail(err, "%s", where)
	}
	blocks := z.blocks()
	// The ROM wants the size rounded up to whole blocks and erases it
	// all before it answers, so the wait scales with it.
	writeSize := (len(r.data) + blockSize - 1) / blockSize * blockSize
	b.log.Debug("esp compressed segment", "segment", r.seg.Name, "bytes", len(r.data), "compressed", len(z.data))
	if _, _, err := b.link.check(ctx, packet.FlashDeflBegin, b.beginParams(writeSize, blocks, r.addr), 0, 0,
		timeoutPerMB(eraseRegionPerMB, writeSize)); err != nil {
		return b.fail(classify(err), "%s: %s (%d bytes, %d blocks)", where, packet.FlashDeflBegin, writeSize, blocks)
	}
	prev := 0
	for i := range blocks {
		chunk := z.data[i*blockSize : min((i+1)*blockSize, len(z.data))]
		// cmds.py _get_flash_defl_block_timeout: the ROM writes what
		// the block inflates to before it answers.
		timeout := timeoutPerMB(eraseWritePerMB, z.ends[i]-prev)
		prev = z.ends[i]
		if err := b.sendBlock(ctx, packet.FlashDeflData, i, chunk, timeout); err != nil {
			return b.fail(err, "%s: %s block %d of %d", where, packet.FlashDeflData, i+1, blocks)
		}
		report(z.ends[i])
	}
	return nil
}

// writePlain sends one region with FLASH_BEGIN and FLASH_DATA, the last
// block padded with 0xFF (loader.py flash_begin, flash_block).
func (b *Backend) writePlain(ctx context.Context, r region, report func(int)) error {
	where := fmt.Sprintf("flash segment %s at %#x", r.seg.Name, r.seg.Addr)
	blocks := (len(r.data) + blockSize - 1) / blockSize
	// ESP32ROM.get_erase_size returns the size as it is.
	if _, _, err := b.link.check(ctx, packet.FlashBegin, b.beginParams(len(r.data), blocks, r.addr), 0, 0,
		timeoutPerMB(eraseRegionPerMB, len(r.data))); err != nil {
		return b.fail(classify(err), "%s: %s (%d bytes, %d blocks)", where, packet.FlashBegin, len(r.data), blocks)
	}
	block := make([]byte, blockSize)
	for i := range blocks {
		n := copy(block, r.data[i*blockSize:min((i+1)*blockSize, len(r.data))])
		for j := n; j < blockSize; j++ {
			block[j] = 0xFF
		}
		if err := b.sendBlock(ctx, packet.FlashData, i, block, defaultTimeout); err != nil {
			return b.fail(err, "%s: %s block %d of %d", where, packet.FlashData, i+1, blocks)
		}
		report((i + 1) * blockSize)
	}
	return nil
}

// sendBlock sends one data block, again when its answer is lost or says
// the checksum was wrong, at most writeBlockAttempts times (loader.py
// flash_block, flash_defl_block). A flash write error fails at once.
func (b *Backend) sendBlock(ctx context.Context, op packet.Op, seq int, data []byte, timeout time.Duration) error {
	req := packet.DataBlock(op, uint32(seq), data)
	var last error
	for attempt := 1; attempt <= writeBlockAttempts; attempt++ {
		_, _, err := b.link.check(ctx, op, req.Data, req.Checksum, 0, timeout)
		if err == nil {
			return nil
		}
		var rom *packet.ROMError
		var na *noAnswerError
		switch {
		case errors.As(err, &rom) && rom.Code == packet.ErrCodeInvalidCRC:
		case errors.As(err, &na):
		default:
			return classify(err)
		}
		last = err
		b.link.tracef("* %s block %d: attempt %d of %d failed: %v", op, seq, attempt, writeBlockAttempts, err)
		b.log.Warn("esp data block failed", "op", op.String(), "seq", seq, "attempt", attempt, "err", err)
		// A late answer to the failed attempt must not be taken for
		// the answer to the next.
		if err := b.link.flush(); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w (after %d attempts): %w", last, writeBlockAttempts, flasher.ErrLinkLost)
}

// classify adds the sentinel a ROM error stands for.
func classify(err error) error {
	var rom *packet.ROMError
	if !errors.As(err, &rom) {
		return err
	}
	if rom.Code == packet.ErrCodeFlashWrite || rom.Code == packet.ErrCodeFlashRead {
		return fmt.Errorf("%w: %w", err, flasher.ErrWrite)
	}
	return err
}

// Verify asks the ROM for the MD5 of each segment's flash region
// (SPI_FLASH_MD5, 32 hex digits from the ROM) and compares it with the
// image's.
func (b *Backend) Verify(ctx context.Context, img flasher.Image) error {
	if err := b.ready("verify"); err != nil {
		return err
	}
	if b.sdm {
		return b.fail(flasher.ErrLocked, "verify: the ROM refuses SPI_FLASH_MD5 in Secure Download Mode")
	}
	for _, seg := range img.Segments {
		r, err := b.region(seg)
		if err != nil {
			return b.fail(err, "verify")
		}
		sum := md5.Sum(r.data)
		want := hex.EncodeToString(sum[:])
		_, p, err := b.link.check(ctx, packet.SPIFlashMD5, packet.Words(r.addr, uint32(len(r.data)), 0, 0), 0, 32,
			timeoutPerMB(md5PerMB, len(r.data)))
		if err != nil {
			return b.fail(classify(err), "verify segment %s at %#x: %s", seg.Name, seg.Addr, packet.SPIFlashMD5)
		}
		got := strings.ToLower(string(p))
		if got != want {
			return b.fail(flasher.ErrVerify, "verify segment %s at %#x (%d bytes): flash MD5 %s, image MD5 %s",
				seg.Name, seg.Addr, len(r.data), got, want)
		}
		b.link.tracef("* %s at %#x verified, MD5 %s", seg.Name, seg.Addr, got)
	}
	return nil
}
