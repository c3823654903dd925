package block

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
)

// Reference: bmap-tools (bmaptool) docs/README, "Bmap file format"
// versions 1.x (sha1 attributes) and 2.0 (ChecksumType, chksum attributes,
// BmapFileChecksum computed with its own value replaced by zeros).

// Bmap is a parsed block map: which blocks of an image hold data.
type Bmap struct {
	// Version is the format version, for example "2.0".
	Version string
	// ImageSize is the image's size in bytes.
	ImageSize int64
	// BlockSize is the size of one block in bytes.
	BlockSize int64
	// BlocksCount is the number of blocks in the image.
	BlocksCount int64
	// MappedBlocksCount is the number of blocks holding data.
	MappedBlocksCount int64
	// ChecksumType is "sha256", "sha1" or "" when ranges carry none.
	ChecksumType string
	// Ranges are the mapped block ranges in increasing order.
	Ranges []Range
}

// Range is a run of mapped blocks, First..Last inclusive.
type Range struct {
	First, Last int64
	// Checksum is the hex digest of the range's bytes, "" if none.
	Checksum string
}

// Span returns the byte offset and length of r in an image described by bm.
func (bm *Bmap) Span(r Range) (off, n int64) {
	off = r.First * bm.BlockSize
	end := min((r.Last+1)*bm.BlockSize, bm.ImageSize)
	return off, end - off
}

// MappedBytes returns the number of image bytes in mapped ranges.
func (bm *Bmap) MappedBytes() int64 {
	var n int64
	for _, r := range bm.Ranges {
		_, l := bm.Span(r)
		n += l
	}
	return n
}

// NewHash returns a hash of the bmap's checksum type, nil if it has none.
func (bm *Bmap) NewHash() hash.Hash {
	switch bm.ChecksumType {
	case "sha256":
		return sha256.New()
	case "sha1":
		return sha1.New()
	}
	return nil
}

type xmlRange struct {
	Chksum string `xml:"chksum,attr"`
	SHA1   string `xml:"sha1,attr"`
	SHA256 string `xml:"sha256,attr"`
	Text   string `xml:",chardata"`
}

type xmlBmap struct {
	XMLName           xml.Name   `xml:"bmap"`
	Version           string     `xml:"version,attr"`
	ImageSize         string     `xml:"ImageSize"`
	BlockSize         string     `xml:"BlockSize"`
	BlocksCount       string     `xml:"BlocksCount"`
	MappedBlocksCount string     `xml:"MappedBlocksCount"`
	ChecksumType      string     `xml:"ChecksumType"`
	BmapFileChecksum  string     `xml:"BmapFileChecksum"`
	BmapFileSHA1      string     `xml:"BmapFileSHA1"`
	Ranges            []xmlRange `xml:"BlockMap>Range"`
}

// ParseBmap reads a bmap file, checks its own checksum when it carries one,
// and checks that ranges are ordered, inside the image and add up to
// MappedBlocksCount.
func ParseBmap(r io.Reader) (*Bmap, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read bmap: %w", err)
	}
	var x xmlBmap
	if err := xml.Unmarshal(raw, &x); err != nil {
		return nil, fmt.Errorf("parse bmap XML: %w", err)
	}
	major, _, _ := strings.Cut(strings.TrimSpace(x.Version), ".")
	if major != "1" && major != "2" {
		return nil, fmt.Errorf("bmap version %q is not supported (1.x and 2.x are)", x.Version)
	}
	bm := &Bmap{Version: strings.TrimSpace(x.Version), ChecksumType: strings.ToLower(strings.TrimSpace(x.ChecksumType))}
	if major == "1" && bm.ChecksumType == "" {
		bm.ChecksumType = "sha1"
	}
	for _, f := range []struct {
		name string
		s    string
		v    *int64
	}{
		{"ImageSize", x.ImageSize, &bm.ImageSize},
		{"BlockSize", x.BlockSize, &bm.BlockSize},
		{"BlocksCount", x.BlocksCount, &bm.BlocksCount},
		{"MappedBlocksCount", x.MappedBlocksCount, &bm.MappedBlocksCount},
	} {
		v, err := strconv.ParseInt(strings.TrimSpace(f.s), 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("bmap %s %q is not a number", f.name, strings.TrimSpace(f.s))
		}
		*f.v = v
	}
	if bm.BlockSize <= 0 || bm.BlockSize > 1<<30 || bm.ImageSize > 1<<60 {
		return nil, fmt.Errorf("bmap block size %d is invalid", bm.BlockSize)
	}
	if want := (bm.ImageSize + bm.BlockSize - 1) / bm.BlockSize; bm.BlocksCount != want {
		return nil, fmt.Errorf("bmap says %d blocks but an image of %d bytes has %d", bm.BlocksCount, bm.ImageSize, want)
	}
	if bm.ChecksumType != "" && bm.ChecksumType != "sha256" && bm.ChecksumType != "sha1" {
		return nil, fmt.Errorf("bmap checksum type %q is not supported (sha256 and sha1 are)", bm.ChecksumType)
	}
	if err := checkFileChecksum(raw, bm.ChecksumType, strings.TrimSpace(x.BmapFileChecksum+x.BmapFileSHA1)); err != nil {
		return nil, err
	}
	var mapped int64
	next := int64(0)
	for i, xr := range x.Ranges {
		text := strings.TrimSpace(xr.Text)
		a, b, isRange := strings.Cut(text, "-")
		first, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		}
		if err1 != nil || err2 != nil || first < 0 || last < first {
			return nil, fmt.Errorf("bmap range %d %q is invalid", i, text)
		}
		if first < next || last >= bm.BlocksCount {
			return nil, fmt.Errorf("bmap range %d %q overlaps the previous range or lies past block %d", i, text, bm.BlocksCount-1)
		}
		sum := strings.ToLower(strings.TrimSpace(xr.Chksum + xr.SHA1 + xr.SHA256))
		if sum != "" {
			if _, err := hex.DecodeString(sum); err != nil {
				return nil, fmt.Errorf("bmap range %d %q has a checksum that is not hex", i, text)
			}
		}
		bm.Ranges = append(bm.Ranges, Range{First: first, Last: last, Checksum: sum})
		mapped += last - first + 1
		next = last + 1
	}
	if mapped != bm.MappedBlocksCount {
		return nil, fmt.Errorf("bmap ranges hold %d blocks but MappedBlocksCount says %d: the bmap is corrupt", mapped, bm.MappedBlocksCount)
	}
	return bm, nil
}

// checkFileChecksum checks the bmap's checksum of itself: the digest of the
// file with the digest's own text replaced by as many '0's.
func checkFileChecksum(raw []byte, typ, sum string) error {
	if sum == "" {
		return nil
	}
	if typ == "" {
		typ = "sha1"
	}
	zeroed := bytes.Replace(raw, []byte(sum), bytes.Repeat([]byte("0"), len(sum)), 1)
	var h hash.Hash = sha256.New()
	if typ == "sha1" {
		h = sha1.New()
	}
	h.Write(zeroed)
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, sum) {
		return fmt.Errorf("bmap file checksum is %s but the file says %s: the bmap is corrupt or was edited", got, sum)
	}
	return nil
}
