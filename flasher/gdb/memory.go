package gdb

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/gdb/rsp"
)

// chunkAlign keeps memory packets on 16-byte boundaries of their size.
const chunkAlign = 16

// payloadRoom is how many bytes of packet data fit in one packet: GDB
// counts PacketSize over the whole packet, "$" to checksum
// (gdb/remote.c remote_write_bytes_aux), and QEMU's line buffer is
// exactly PacketSize long.
func (b *Backend) payloadRoom() int { return b.packetSize - 4 }

// readChunk is the most bytes one m request asks for: the hex reply must
// fit in a packet.
func (b *Backend) readChunk() int {
	return max(b.payloadRoom()/2/chunkAlign*chunkAlign, chunkAlign)
}

// readMemory reads n bytes at addr with m requests, pipelined.
func (b *Backend) readMemory(ctx context.Context, addr uint64, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	err := b.readEach(ctx, addr, n, func(at uint64, data []byte) error {
		out = append(out, data...)
		return nil
	})
	return out, err
}

// readEach reads n bytes at addr and hands each chunk to fn in order.
func (b *Backend) readEach(ctx context.Context, addr uint64, n int, fn func(at uint64, data []byte) error) error {
	chunk := b.readChunk()
	var reqs []uint64 // start of each request, by request number
	var lens []int
	off := 0
	next := func() []byte {
		if off >= n {
			return nil
		}
		k := min(chunk, n-off)
		reqs, lens = append(reqs, addr+uint64(off)), append(lens, k)
		off += k
		return fmt.Appendf(nil, "m%x,%x", reqs[len(reqs)-1], k)
	}
	var buf []byte
	return b.link.pipeline(ctx, b.pipeline, b.cfg.Timeout, next, func(i int, r []byte) error {
		at, want := reqs[i], lens[i]
		if se := rsp.ParseError(r); se != nil {
			return fmt.Errorf("read %d bytes at %#x: %w", want, at, se)
		}
		var err error
		buf, err = rsp.ParseHex(buf[:0], r)
		if err != nil {
			return fmt.Errorf("read %d bytes at %#x: %w", want, at, err)
		}
		if len(buf) == 0 {
			return fmt.Errorf("read %d bytes at %#x: the server returned nothing", want, at)
		}
		if len(buf) != want {
			// The manual lets a server return fewer bytes than asked;
			// the chunks are sized to fit its packet, so none of the
			// servers here does, and a pipeline cannot ask again in
			// order.
			return fmt.Errorf("read %d bytes at %#x: the server returned %d", want, at, len(buf))
		}
		return fn(at, buf)
	})
}

// writeKind is how bytes reach the target.
type writeKind int

const (
	writeHex   writeKind = iota // M addr,len:hex
	writeBin                    // X addr,len:binary
	writeFlash                  // vFlashWrite:addr:binary
)

func (k writeKind) String() string {
	switch k {
	case writeBin:
		return "X"
	case writeFlash:
		return "vFlashWrite"
	}
	return "M"
}

// writeMemory writes data at addr, pipelined, reporting each byte the
// server accepted to done.
func (b *Backend) writeMemory(ctx context.Context, kind writeKind, addr uint64, data []byte, done func(n int)) error {
	room := b.payloadRoom()
	type req struct {
		at uint64
		n  int
	}
	var reqs []req
	off := 0
	next := func() []byte {
		if off >= len(data) {
			return nil
		}
		at := addr + uint64(off)
		var p []byte
		var n int
		switch kind {
		case writeHex:
			head := fmt.Sprintf("M%x,%x:", at, len(data)-off)
			n = min((room-len(head))/2/chunkAlign*chunkAlign, len(data)-off)
			p = fmt.Appendf(nil, "M%x,%x:", at, n)
			p = hex.AppendEncode(p, data[off:off+n])
		case writeBin, writeFlash:
			var head []byte
			if kind == writeBin {
				head = fmt.Appendf(nil, "X%x,%x:", at, len(data)-off)
			} else {
				head = fmt.Appendf(nil, "vFlashWrite:%x:", at)
			}
			n = rsp.EscapedPrefix(data[off:], room-len(head))
			if n > chunkAlign && off+n < len(data) {
				n = n / chunkAlign * chunkAlign
			}
			if kind == writeBin {
				head = fmt.Appendf(head[:0], "X%x,%x:", at, n)
			}
			p = rsp.AppendEscaped(head, data[off:off+n])
		}
		if n <= 0 {
			panic("gdb: packet size too small for a memory write")
		}
		reqs = append(reqs, req{at, n})
		off += n
		return p
	}
	return b.link.pipeline(ctx, b.pipeline, b.cfg.Timeout, next, func(i int, r []byte) error {
		q := reqs[i]
		switch {
		case string(r) == "OK":
			done(q.n)
			return nil
		case len(r) == 0:
			return fmt.Errorf("%s of %d bytes at %#x: the server does not support it: %w", kind, q.n, q.at, flasher.ErrUnsupported)
		case rsp.ParseError(r) != nil:
			return fmt.Errorf("%s of %d bytes at %#x: %w: %w", kind, q.n, q.at, rsp.ParseError(r), flasher.ErrWrite)
		}
		return fmt.Errorf("%s of %d bytes at %#x: unexpected reply %q: %w", kind, q.n, q.at, describe(r), flasher.ErrWrite)
	})
}

// probeBinary asks whether the server takes X, as GDB does: an empty X
// at addr; an empty reply means no (gdb/remote.c check_binary_download).
func (b *Backend) probeBinary(ctx context.Context, addr uint64) error {
	if b.binary != unknown {
		return nil
	}
	r, err := b.link.roundTrip(ctx, fmt.Appendf(nil, "X%x,0:", addr), b.cfg.Timeout)
	if err != nil {
		return fmt.Errorf("probe for binary writes: %w", err)
	}
	if len(r) == 0 {
		b.binary = no
		b.log.Info("gdb server has no binary writes (X); writing with M")
	} else {
		b.binary = yes
	}
	return nil
}

// part is the piece of a segment that falls into one memory region.
type part struct {
	seg    string
	addr   uint64
	data   []byte
	region *rsp.Region // nil when there is no memory map
}

// split cuts a segment at region boundaries, refusing bytes outside the
// map and in ROM. No packet crosses a region border, which may separate
// two flash banks.
func (b *Backend) split(seg flasher.Segment) ([]part, error) {
	if len(b.regions) == 0 {
		return []part{{seg: seg.Name, addr: seg.Addr, data: seg.Data}}, nil
	}
	var parts []part
	addr, data := seg.Addr, seg.Data
	for len(data) > 0 {
		var reg *rsp.Region
		for i := range b.regions {
			if b.regions[i].Contains(addr) {
				reg = &b.regions[i]
				break
			}
		}
		if reg == nil {
			return nil, fmt.Errorf("segment %s: %#x is outside the target's memory map (%s): %w", seg.Name, addr, b.mapFrom, flasher.ErrUnsupported)
		}
		if reg.Type == rsp.MemROM {
			return nil, fmt.Errorf("segment %s: %#x is read-only memory: %w", seg.Name, addr, flasher.ErrUnsupported)
		}
		n := min(uint64(len(data)), reg.End()-addr)
		parts = append(parts, part{seg: seg.Name, addr: addr, data: data[:n], region: reg})
		addr += n
		data = data[n:]
	}
	return parts, nil
}

// eraseRange is a block-aligned range to erase within one region.
type eraseRange struct{ region, start, end uint64 }

// eraseRanges returns the blocks the flash parts touch, merged within
// each region: a block shared by two segments is erased once, before
// either is written. Ranges never cross regions, which may belong to
// different flash banks.
func (b *Backend) eraseRanges(parts []part) []eraseRange {
	var out []eraseRange
	for _, p := range parts {
		for addr := p.addr; addr < p.addr+uint64(len(p.data)); {
			var reg rsp.Region
			for _, r := range b.regions {
				if r.Contains(addr) {
					reg = r
					break
				}
			}
			end := min(p.addr+uint64(len(p.data)), reg.End())
			lo := reg.Start + (addr-reg.Start)/reg.BlockSize*reg.BlockSize
			hi := reg.Start + (end-reg.Start+reg.BlockSize-1)/reg.BlockSize*reg.BlockSize
			hi = min(hi, reg.End())
			if k := len(out); k > 0 && out[k-1].region == reg.Start && lo <= out[k-1].end {
				out[k-1].end = max(out[k-1].end, hi)
			} else {
				out = append(out, eraseRange{reg.Start, lo, hi})
			}
			addr = end
		}
	}
	return out
}

// scaled is the wait for an operation over n bytes.
func (b *Backend) scaled(secondsPerMB float64, n uint64) time.Duration {
	return b.cfg.Timeout + time.Duration(secondsPerMB*float64(n)/(1<<20)*float64(time.Second))
}

// Flash writes img. Bytes in flash regions go through vFlashErase (whole
// blocks: bytes of an erased block outside the image read back as the
// erased value, as with GDB's load), vFlashWrite and vFlashDone; when the
// server has no vFlash packets (QEMU) or there is no memory map, they go
// through X, or M when the server has no X. Progress counts image bytes
// the server accepted.
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
	var flashParts, memParts []part
	for _, seg := range img.Segments {
		parts, err := b.split(seg)
		if err != nil {
			return fmt.Errorf("flash: %w", err)
		}
		for _, p := range parts {
			if p.region != nil && p.region.Type == rsp.MemFlash && b.vflash != no {
				flashParts = append(flashParts, p)
			} else {
				memParts = append(memParts, p)
			}
		}
	}
	total := img.Size()
	var done int64
	report := func(n int) {
		done += int64(n)
		progress(done, total)
	}
	progress(0, total)
	start := time.Now()
	if len(flashParts) > 0 {
		ok, err := b.flashWrite(ctx, flashParts, report)
		if err != nil {
			return err
		}
		if !ok {
			b.log.Warn("gdb server has no vFlash packets: writing flash with memory writes, which only emulators and some servers (J-Link) accept")
			memParts = append(flashParts, memParts...)
		}
	}
	for _, p := range memParts {
		if err := b.probeBinary(ctx, p.addr); err != nil {
			return fmt.Errorf("flash segment %s at %#x: %w", p.seg, p.addr, err)
		}
		kind := writeHex
		if b.binary == yes {
			kind = writeBin
		}
		if err := b.writeMemory(ctx, kind, p.addr, p.data, report); err != nil {
			return fmt.Errorf("flash segment %s: %w", p.seg, err)
		}
	}
	el := time.Since(start)
	b.log.Info("gdb image written", "bytes", total, "segments", len(img.Segments), "seconds", el.Seconds(),
		"bytes_per_second", float64(total)/max(el.Seconds(), 1e-9))
	return nil
}

// flashWrite erases and programs the flash parts. It returns false, with
// nothing done, when the server answers vFlashErase with an empty reply.
func (b *Backend) flashWrite(ctx context.Context, parts []part, report func(int)) (bool, error) {
	for _, er := range b.eraseRanges(parts) {
		req := fmt.Appendf(nil, "vFlashErase:%x,%x", er.start, er.end-er.start)
		r, err := b.link.roundTrip(ctx, req, b.scaled(eraseSecondsPerMB, er.end-er.start))
		if err != nil {
			return false, fmt.Errorf("flash: erase %#x–%#x: %w", er.start, er.end, err)
		}
		switch {
		case len(r) == 0 && b.vflash == unknown:
			b.vflash = no
			return false, nil
		case string(r) == "OK":
			b.vflash = yes
		case rsp.ParseError(r) != nil:
			return false, fmt.Errorf("flash: erase %#x–%#x: %w: %w", er.start, er.end, rsp.ParseError(r), flasher.ErrWrite)
		default:
			return false, fmt.Errorf("flash: erase %#x–%#x: unexpected reply %q: %w", er.start, er.end, describe(r), flasher.ErrWrite)
		}
	}
	var n uint64
	for _, p := range parts {
		if err := b.writeMemory(ctx, writeFlash, p.addr, p.data, report); err != nil {
			return true, fmt.Errorf("flash segment %s: %w", p.seg, err)
		}
		n += uint64(len(p.data))
	}
	r, err := b.link.roundTrip(ctx, []byte("vFlashDone"), b.scaled(doneSecondsPerMB, n))
	if err != nil {
		return true, fmt.Errorf("flash: finish programming: %w", err)
	}
	if string(r) != "OK" {
		if se := rsp.ParseError(r); se != nil {
			return true, fmt.Errorf("flash: finish programming: %w: %w", se, flasher.ErrWrite)
		}
		return true, fmt.Errorf("flash: finish programming: unexpected reply %q: %w", describe(r), flasher.ErrWrite)
	}
	return true, nil
}

// Verify checks every segment with qCRC, computed by the server, or by
// reading it back when the server has no qCRC or answers it with an
// error.
func (b *Backend) Verify(ctx context.Context, img flasher.Image) error {
	if err := b.ready("verify"); err != nil {
		return err
	}
	if err := img.Validate(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for _, seg := range img.Segments {
		if b.crc != no {
			ok, err := b.verifyCRC(ctx, seg)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		}
		if err := b.verifyReadback(ctx, seg); err != nil {
			return err
		}
	}
	return nil
}

// verifyCRC compares the segment's qCRC; false means the server could
// not say and the caller reads back.
func (b *Backend) verifyCRC(ctx context.Context, seg flasher.Segment) (bool, error) {
	req := fmt.Appendf(nil, "qCRC:%x,%x", seg.Addr, len(seg.Data))
	r, err := b.link.roundTrip(ctx, req, b.scaled(crcSecondsPerMB, uint64(len(seg.Data))))
	if err != nil {
		return false, fmt.Errorf("verify segment %s at %#x: %w", seg.Name, seg.Addr, err)
	}
	if len(r) == 0 {
		b.crc = no
		b.log.Info("gdb server has no qCRC: verifying by reading back")
		return false, nil
	}
	if se := rsp.ParseError(r); se != nil {
		b.log.Warn("gdb qCRC failed: reading back", "segment", seg.Name, "addr", fmt.Sprintf("%#x", seg.Addr), "error", se.Error())
		return false, nil
	}
	got, err := rsp.ParseCRC(r)
	if err != nil {
		return false, fmt.Errorf("verify segment %s at %#x: %w", seg.Name, seg.Addr, err)
	}
	b.crc = yes
	if want := rsp.CRC(seg.Data); got != want {
		return false, fmt.Errorf("verify segment %s at %#x (%d bytes): the target's CRC is %08x, the image's %08x: %w",
			seg.Name, seg.Addr, len(seg.Data), got, want, flasher.ErrVerify)
	}
	return true, nil
}

// verifyReadback reads the segment and compares it byte by byte.
func (b *Backend) verifyReadback(ctx context.Context, seg flasher.Segment) error {
	errDiffer := errors.New("differs")
	var bad uint64
	err := b.readEach(ctx, seg.Addr, len(seg.Data), func(at uint64, data []byte) error {
		want := seg.Data[at-seg.Addr : at-seg.Addr+uint64(len(data))]
		if !bytes.Equal(data, want) {
			for i := range data {
				if data[i] != want[i] {
					bad = at + uint64(i)
					break
				}
			}
			return errDiffer
		}
		return nil
	})
	if errors.Is(err, errDiffer) {
		return fmt.Errorf("verify segment %s: the target differs from the image at %#x: %w", seg.Name, bad, flasher.ErrVerify)
	}
	if err != nil {
		return fmt.Errorf("verify segment %s at %#x by reading back: %w", seg.Name, seg.Addr, err)
	}
	return nil
}
