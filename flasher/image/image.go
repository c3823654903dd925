// Package image turns artifact files into the segments a flasher writes.
// It does no I/O: it parses bytes already fetched and checked.
//
// Formats: "bin", a raw binary written at the artifact's address; "img",
// a raw disk image written at its offset (the artifact's address) on a
// block device; "img.gz", "img.xz" and "img.zst", the same compressed.
package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/station-dev/station/flasher"
)

// Formats lists the formats Segments reads.
var Formats = []string{"bin", "img", "img.gz", "img.xz", "img.zst"}

// Segments parses data, stored in format, into segments. addr is the
// artifact's address, used by formats that carry none of their own.
func Segments(name, format string, addr uint64, data []byte) ([]flasher.Segment, error) {
	switch format {
	case "img.gz", "img.xz", "img.zst":
		raw, err := decompress(format, data)
		if err != nil {
			return nil, fmt.Errorf("%s: the %s image cannot be decompressed (is the file damaged?): %w", name, format, err)
		}
		return Segments(name, "img", addr, raw)
	case "bin", "img":
		if len(data) == 0 {
			return nil, fmt.Errorf("%s: the file is empty", name)
		}
		return []flasher.Segment{{Name: name, Addr: addr, Data: data}}, nil
	}
	return nil, fmt.Errorf("%s: format %q cannot be read by this station (it reads %v)", name, format, Formats)
}

// decompress expands a compressed disk image in memory.
func decompress(format string, data []byte) ([]byte, error) {
	var r io.Reader
	switch format {
	case "img.gz":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		r = zr
	case "img.xz":
		xr, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		r = xr
	case "img.zst":
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	return io.ReadAll(r)
}
