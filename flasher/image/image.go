// Package image turns artifact files into the segments a flasher writes.
// It does no I/O: it parses bytes already fetched and checked.
//
// Formats: "bin", a raw binary written at the artifact's address.
package image

import (
	"fmt"

	"github.com/station-dev/station/flasher"
)

// Formats lists the formats Segments reads.
var Formats = []string{"bin"}

// Segments parses data, stored in format, into segments. addr is the
// artifact's address, used by formats that carry none of their own.
func Segments(name, format string, addr uint64, data []byte) ([]flasher.Segment, error) {
	switch format {
	case "bin":
		if len(data) == 0 {
			return nil, fmt.Errorf("%s: the file is empty", name)
		}
		return []flasher.Segment{{Name: name, Addr: addr, Data: data}}, nil
	}
	return nil, fmt.Errorf("%s: format %q cannot be read by this station (it reads %v)", name, format, Formats)
}
