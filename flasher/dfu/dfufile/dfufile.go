// Package dfufile reads and writes DFU files: a firmware payload followed
// by the 16-byte DFU suffix (DFU 1.1 appendix B), where the payload of a
// DfuSe file (bcdDFU 0x011a) is a DfuSe image of targets and elements.
// It does no I/O.
//
// Reference: USB DFU 1.1 appendix B "DFU File Suffix"; ST UM0391 "DfuSe
// File Format Specification".
package dfufile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"

	"github.com/station-dev/station/flasher"
)

// Sizes of the fixed parts (UM0391 sections 2 to 4, DFU 1.1 table B.1).
const (
	SuffixLen       = 16
	prefixLen       = 11  // "DfuSe", bVersion, DFUImageSize, bTargets
	targetPrefixLen = 274 // "Target", bAlternateSetting, bTargetNamed, szTargetName[255], dwTargetSize, dwNbElements
	elementHdrLen   = 8   // dwElementAddress, dwElementSize
	// VersionDfuSe is bcdDFU of a DfuSe file; plain files say 0x0100.
	VersionDfuSe = 0x011a
)

// ErrNoSuffix means the data carries no DFU suffix: it is a raw binary.
var ErrNoSuffix = errors.New("no DFU suffix")

// Suffix is the DFU file suffix.
type Suffix struct {
	// Device is bcdDevice, 0xFFFF for any.
	Device uint16
	// Product and Vendor are idProduct and idVendor, 0xFFFF for any.
	Product, Vendor uint16
	// DFU is bcdDFU: 0x0100 plain, 0x011a DfuSe.
	DFU uint16
}

// Element is one contiguous run of bytes at Addr.
type Element struct {
	Addr uint32
	Data []byte
}

// Target is the image for one alternate setting.
type Target struct {
	Alt      uint8
	Name     string
	Elements []Element
}

// File is a parsed DFU file.
type File struct {
	Suffix Suffix
	// Payload is the firmware of a plain DFU file.
	Payload []byte
	// Targets are the images of a DfuSe file.
	Targets []Target
}

// CRC returns dwCRC of data: CRC-32 (IEEE, reflected) started at
// 0xFFFFFFFF and not inverted at the end, as dfu-util computes it.
func CRC(data []byte) uint32 { return ^crc32.ChecksumIEEE(data) }

// Parse parses a DFU file, checking the suffix CRC. It returns an error
// wrapping ErrNoSuffix when there is no "UFD" signature.
func Parse(b []byte) (*File, error) {
	if len(b) < SuffixLen || string(b[len(b)-8:len(b)-5]) != "UFD" {
		return nil, fmt.Errorf("parse dfu file: %w", ErrNoSuffix)
	}
	s := b[len(b)-SuffixLen:]
	if l := int(s[11]); l < SuffixLen || l > len(b) {
		return nil, fmt.Errorf("parse dfu file: suffix length %d is invalid", l)
	}
	want := binary.LittleEndian.Uint32(s[12:])
	if got := CRC(b[:len(b)-4]); got != want {
		return nil, fmt.Errorf("parse dfu file: CRC is %#08x, suffix says %#08x: the file is damaged, download it again", got, want)
	}
	f := &File{Suffix: Suffix{
		Device:  binary.LittleEndian.Uint16(s[0:]),
		Product: binary.LittleEndian.Uint16(s[2:]),
		Vendor:  binary.LittleEndian.Uint16(s[4:]),
		DFU:     binary.LittleEndian.Uint16(s[6:]),
	}}
	payload := b[:len(b)-int(s[11])]
	if f.Suffix.DFU != VersionDfuSe && !bytes.HasPrefix(payload, []byte("DfuSe")) {
		f.Payload = payload
		return f, nil
	}
	if err := f.parseDfuSe(payload); err != nil {
		return nil, fmt.Errorf("parse dfuse file: %w", err)
	}
	return f, nil
}

func (f *File) parseDfuSe(p []byte) error {
	if len(p) < prefixLen || string(p[:5]) != "DfuSe" {
		return errors.New("no DfuSe prefix")
	}
	if p[5] != 1 {
		return fmt.Errorf("DfuSe version %d, want 1", p[5])
	}
	if size := binary.LittleEndian.Uint32(p[6:]); int64(size) != int64(len(p)) {
		return fmt.Errorf("image size says %d bytes, file has %d", size, len(p))
	}
	n := int(p[10])
	off := prefixLen
	for t := 0; t < n; t++ {
		if len(p)-off < targetPrefixLen || string(p[off:off+6]) != "Target" {
			return fmt.Errorf("target %d: missing or short target prefix", t)
		}
		h := p[off : off+targetPrefixLen]
		tg := Target{Alt: h[6]}
		if binary.LittleEndian.Uint32(h[7:]) != 0 {
			name := h[11 : 11+255]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			tg.Name = string(name)
		}
		size := int64(binary.LittleEndian.Uint32(h[266:]))
		elems := binary.LittleEndian.Uint32(h[270:])
		off += targetPrefixLen
		if size > int64(len(p)-off) {
			return fmt.Errorf("target %d: size %d runs past the end of the file", t, size)
		}
		end := off + int(size)
		for e := uint32(0); e < elems; e++ {
			if end-off < elementHdrLen {
				return fmt.Errorf("target %d element %d: short header", t, e)
			}
			addr := binary.LittleEndian.Uint32(p[off:])
			esz := int64(binary.LittleEndian.Uint32(p[off+4:]))
			off += elementHdrLen
			if esz > int64(end-off) {
				return fmt.Errorf("target %d element %d: size %d runs past the target", t, e, esz)
			}
			tg.Elements = append(tg.Elements, Element{Addr: addr, Data: p[off : off+int(esz)]})
			off += int(esz)
		}
		if off != end {
			return fmt.Errorf("target %d: %d bytes after the last element", t, end-off)
		}
		f.Targets = append(f.Targets, tg)
	}
	if off != len(p) {
		return fmt.Errorf("%d bytes after the last target", len(p)-off)
	}
	return nil
}

// Encode returns f as a DFU file with a fresh CRC. A file with Targets is
// written as DfuSe.
func Encode(f *File) []byte {
	var b []byte
	if len(f.Targets) == 0 {
		b = append(b, f.Payload...)
	} else {
		b = append(b, "DfuSe"...)
		b = append(b, 1, 0, 0, 0, 0, byte(len(f.Targets)))
		for _, t := range f.Targets {
			b = append(b, "Target"...)
			b = append(b, t.Alt)
			named := uint32(0)
			if t.Name != "" {
				named = 1
			}
			b = binary.LittleEndian.AppendUint32(b, named)
			var name [255]byte
			copy(name[:], t.Name)
			b = append(b, name[:]...)
			size := 0
			for _, e := range t.Elements {
				size += elementHdrLen + len(e.Data)
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(size))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Elements)))
			for _, e := range t.Elements {
				b = binary.LittleEndian.AppendUint32(b, e.Addr)
				b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
				b = append(b, e.Data...)
			}
		}
		binary.LittleEndian.PutUint32(b[6:], uint32(len(b)))
	}
	s := f.Suffix
	b = binary.LittleEndian.AppendUint16(b, s.Device)
	b = binary.LittleEndian.AppendUint16(b, s.Product)
	b = binary.LittleEndian.AppendUint16(b, s.Vendor)
	b = binary.LittleEndian.AppendUint16(b, s.DFU)
	b = append(b, 'U', 'F', 'D', SuffixLen)
	return binary.LittleEndian.AppendUint32(b, CRC(b))
}

// Image turns data (a DFU file, or a raw binary written at base) into a
// flasher image for alternate setting alt.
func Image(name string, data []byte, alt uint8, base uint64) (flasher.Image, error) {
	f, err := Parse(data)
	if errors.Is(err, ErrNoSuffix) {
		return flasher.Image{Segments: []flasher.Segment{{Name: name, Addr: base, Data: data}}}, nil
	}
	if err != nil {
		return flasher.Image{}, fmt.Errorf("%s: %w", name, err)
	}
	if len(f.Targets) == 0 {
		return flasher.Image{Segments: []flasher.Segment{{Name: name, Addr: base, Data: f.Payload}}}, nil
	}
	var img flasher.Image
	var alts []string
	for _, t := range f.Targets {
		alts = append(alts, fmt.Sprint(t.Alt))
		if t.Alt != alt {
			continue
		}
		for i, e := range t.Elements {
			if len(e.Data) == 0 {
				continue
			}
			img.Segments = append(img.Segments, flasher.Segment{
				Name: fmt.Sprintf("%s[%d/%d]", name, t.Alt, i), Addr: uint64(e.Addr), Data: e.Data})
		}
	}
	if len(img.Segments) == 0 {
		return flasher.Image{}, fmt.Errorf("%s: no data for alternate setting %d (file has %s)", name, alt, strings.Join(alts, ", "))
	}
	sort.Slice(img.Segments, func(i, j int) bool { return img.Segments[i].Addr < img.Segments[j].Addr })
	if err := img.Validate(); err != nil {
		return flasher.Image{}, fmt.Errorf("%s: %w", name, err)
	}
	return img, nil
}
