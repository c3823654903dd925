package rsp

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// ServerError is an error reply: "E NN" with a two-digit hex code, or
// "E.text" with a message (the manual's "Standard Replies"; OpenOCD sends
// "E.memtype" to vFlash* outside flash).
type ServerError struct {
	// Code is the number of an "E NN" reply, -1 for "E.text".
	Code int
	// Text is the message of an "E.text" reply.
	Text string
}

func (e *ServerError) Error() string {
	if e.Code < 0 {
		return "server replied error " + strconv.Quote(e.Text)
	}
	return fmt.Sprintf("server replied error E%02X", e.Code)
}

// ParseError returns the error a reply stands for, or nil when the reply
// is not an error reply. A reply that only starts with 'E' (hex memory
// such as "E0...", which has an even length of more than two digits) is
// not an error.
func ParseError(reply []byte) *ServerError {
	if len(reply) < 2 || reply[0] != 'E' {
		return nil
	}
	if reply[1] == '.' {
		return &ServerError{Code: -1, Text: string(reply[2:])}
	}
	if len(reply) != 3 {
		return nil
	}
	n, err := strconv.ParseUint(string(reply[1:]), 16, 8)
	if err != nil {
		return nil
	}
	return &ServerError{Code: int(n)}
}

// IsOutput reports whether a packet is console output, "O" followed by
// hex text, which a server sends before the final reply of qRcmd or while
// the target runs. "OK" is not output: 'K' is not a hex digit.
func IsOutput(data []byte) bool {
	if len(data) < 3 || data[0] != 'O' || (len(data)-1)%2 != 0 {
		return false
	}
	for _, c := range data[1:] {
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Features is what a server announced in its qSupported reply.
type Features struct {
	// PacketSize is the largest packet the server accepts, 0 when not
	// announced.
	PacketSize int
	// Supported lists the "name+" features; Values the "name=value"
	// ones. A "name-" feature is in neither.
	Supported map[string]bool
	Values    map[string]string
}

// Has reports whether the server announced name+.
func (f Features) Has(name string) bool { return f.Supported[name] }

// ParseFeatures parses a qSupported reply: features separated by ';',
// each "name+", "name-", "name?" or "name=value"; PacketSize is hex.
func ParseFeatures(reply []byte) (Features, error) {
	f := Features{Supported: map[string]bool{}, Values: map[string]string{}}
	for _, item := range strings.Split(string(reply), ";") {
		switch {
		case item == "":
		case strings.HasSuffix(item, "+"):
			f.Supported[strings.TrimSuffix(item, "+")] = true
		case strings.HasSuffix(item, "-"), strings.HasSuffix(item, "?"):
		default:
			name, value, ok := strings.Cut(item, "=")
			if !ok {
				return f, fmt.Errorf("qSupported reply item %q is not name+, name- or name=value", item)
			}
			f.Values[name] = value
			if name == "PacketSize" {
				n, err := strconv.ParseUint(value, 16, 32)
				if err != nil {
					return f, fmt.Errorf("qSupported PacketSize %q is not hex", value)
				}
				f.PacketSize = int(n)
			}
		}
	}
	return f, nil
}

// ParseHex decodes a hex reply (the answer to m, the text of an O packet).
func ParseHex(dst, reply []byte) ([]byte, error) {
	if len(reply)%2 != 0 {
		return dst, fmt.Errorf("hex reply has an odd length %d", len(reply))
	}
	n := len(dst)
	dst = append(dst, make([]byte, len(reply)/2)...)
	if _, err := hex.Decode(dst[n:], reply); err != nil {
		return dst[:n], fmt.Errorf("hex reply: %w", err)
	}
	return dst, nil
}

// ParseCRC parses a qCRC reply "Cxxxxxxxx".
func ParseCRC(reply []byte) (uint32, error) {
	if len(reply) < 2 || reply[0] != 'C' {
		return 0, fmt.Errorf("qCRC reply %q does not start with C", truncate(reply))
	}
	n, err := strconv.ParseUint(string(reply[1:]), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("qCRC reply %q is not C and a 32-bit hex number", truncate(reply))
	}
	return uint32(n), nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// Memory types of the memory map ("Memory Map Format").
const (
	MemRAM   = "ram"
	MemROM   = "rom"
	MemFlash = "flash"
)

// Region is one <memory> element of a memory map.
type Region struct {
	// Type is MemRAM, MemROM or MemFlash.
	Type string `json:"type" yaml:"type"`
	// Start is the address of the first byte.
	Start uint64 `json:"start" yaml:"start"`
	// Length is the size in bytes.
	Length uint64 `json:"length" yaml:"length"`
	// BlockSize is the erase unit of a flash region, 0 elsewhere.
	BlockSize uint64 `json:"blocksize,omitempty" yaml:"blocksize,omitempty"`
}

// End returns the address just past the region.
func (r Region) End() uint64 { return r.Start + r.Length }

// Contains reports whether addr lies in the region.
func (r Region) Contains(addr uint64) bool { return addr >= r.Start && addr < r.End() }

type xmlMap struct {
	XMLName xml.Name `xml:"memory-map"`
	Memory  []struct {
		Type     string `xml:"type,attr"`
		Start    string `xml:"start,attr"`
		Length   string `xml:"length,attr"`
		Property []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:",chardata"`
		} `xml:"property"`
	} `xml:"memory"`
}

// ParseMemoryMap parses the XML a server returns for
// qXfer:memory-map:read. Numbers are C literals (0x… hex, or decimal),
// as the DTD allows. A flash region must carry a blocksize property.
// Regions come back sorted by start address.
func ParseMemoryMap(doc []byte) ([]Region, error) {
	var m xmlMap
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = false
	// The map names a DTD (<!DOCTYPE memory-map PUBLIC …>); nothing needs
	// to be fetched for it.
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("memory map XML: %w", err)
	}
	var out []Region
	for i, mem := range m.Memory {
		r := Region{Type: strings.TrimSpace(mem.Type)}
		var err error
		if r.Start, err = parseNumber(mem.Start); err != nil {
			return nil, fmt.Errorf("memory map region %d: start: %w", i, err)
		}
		if r.Length, err = parseNumber(mem.Length); err != nil {
			return nil, fmt.Errorf("memory map region %d: length: %w", i, err)
		}
		for _, p := range mem.Property {
			if p.Name == "blocksize" {
				if r.BlockSize, err = parseNumber(p.Value); err != nil {
					return nil, fmt.Errorf("memory map region %d: blocksize: %w", i, err)
				}
			}
		}
		out = append(out, r)
	}
	if err := CheckRegions(out); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckRegions checks a memory map, from a server or from a
// configuration: every region of a known type, flash with
// a block size, no two overlapping. It sorts the regions by start
// address.
func CheckRegions(rs []Region) error {
	for i, r := range rs {
		switch r.Type {
		case MemRAM, MemROM:
		case MemFlash:
			if r.BlockSize == 0 {
				return fmt.Errorf("memory map flash region %d at %#x has no blocksize", i, r.Start)
			}
		default:
			return fmt.Errorf("memory map region %d at %#x has unknown type %q (want %s, %s or %s)", i, r.Start, r.Type, MemFlash, MemRAM, MemROM)
		}
	}
	sortRegions(rs)
	for i := 1; i < len(rs); i++ {
		if rs[i].Start < rs[i-1].End() {
			return fmt.Errorf("memory map regions at %#x and %#x overlap", rs[i-1].Start, rs[i].Start)
		}
	}
	return nil
}

func sortRegions(rs []Region) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Start < rs[j-1].Start; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

func parseNumber(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return n, nil
}

// AppendMemoryMap appends the XML of a memory map, as a server sends it.
func AppendMemoryMap(dst []byte, regions []Region) []byte {
	dst = append(dst, `<?xml version="1.0"?>`+"\n"+
		`<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">`+"\n"+
		"<memory-map>\n"...)
	for _, r := range regions {
		if r.Type == MemFlash {
			dst = fmt.Appendf(dst, "<memory type=%q start=\"%#x\" length=\"%#x\"><property name=\"blocksize\">%#x</property></memory>\n",
				r.Type, r.Start, r.Length, r.BlockSize)
		} else {
			dst = fmt.Appendf(dst, "<memory type=%q start=\"%#x\" length=\"%#x\"/>\n", r.Type, r.Start, r.Length)
		}
	}
	return append(dst, "</memory-map>\n"...)
}

// crcTable is the MSB-first table of the CRC-32 polynomial 0x04C11DB7,
// as libiberty's crc32.c builds it.
var crcTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRCInit is the starting value GDB gives the CRC (gdb/remote.c calls
// xcrc32 with 0xffffffff) and the one stubs use for qCRC.
const CRCInit = 0xFFFFFFFF

// UpdateCRC continues the qCRC checksum crc over data: libiberty's
// xcrc32, polynomial 0x04C11DB7, bits not reflected, no final XOR. Start
// with CRCInit.
func UpdateCRC(crc uint32, data []byte) uint32 {
	for _, b := range data {
		crc = crc<<8 ^ crcTable[byte(crc>>24)^b]
	}
	return crc
}

// CRC returns the qCRC checksum of data.
func CRC(data []byte) uint32 { return UpdateCRC(CRCInit, data) }
