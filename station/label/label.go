// Package label renders device labels and sends them to printers.
//
// A label is rendered as ZPL II for Zebra-compatible printers. Every field
// value goes through ^FH hex escaping, so a value can never inject ZPL
// commands (a serial number holding "^XZ" prints as text).
//
// In the pipeline it serves the label step: the station prints one label
// per device once the device is activated and locked.
//
// Reference: ZPL II Programming Guide (^XA, ^FO, ^A0, ^FH, ^FD, ^FS, ^BC,
// ^BQ, ^XZ).
package label

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/station-dev/station/jobs"
)

// Escape returns s for use after ^FH: the escape character '_' and the
// ZPL command prefixes '^' and '~', and every control or non-ASCII byte, are
// written as _XX hex.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == '^' || c == '~' || c < 0x20 || c >= 0x7F {
			fmt.Fprintf(&b, "_%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ZPL renders the default label: product, part number, serial as Code 128,
// hardware id, firmware version and work order, and a QR code holding the
// serial and the hardware id.
func ZPL(l jobs.Label) []byte {
	field := func(x, y, h int, text string) string {
		return fmt.Sprintf("^FO%d,%d^A0N,%d,%d^FH^FD%s^FS\n", x, y, h, h, Escape(text))
	}
	var b strings.Builder
	b.WriteString("^XA\n^CI28\n^PW812\n^LL406\n")
	b.WriteString(field(30, 20, 38, l.ProductName))
	b.WriteString(field(30, 64, 26, "P/N "+l.PartNumber))
	fmt.Fprintf(&b, "^FO30,100^BY2^BCN,80,Y,N,N^FH^FD%s^FS\n", Escape(l.Serial))
	b.WriteString(field(30, 230, 26, "ID "+string(l.HardwareID)))
	b.WriteString(field(30, 264, 26, "FW "+l.FirmwareVersion+"   WO "+l.WorkOrder))
	b.WriteString(field(30, 298, 22, l.Date.Format("2006-01-02")+"  "+l.Station+"/"+l.Slot))
	fmt.Fprintf(&b, "^FO560,40^BQN,2,6^FH^FDLA,%s^FS\n", Escape(l.Serial+" "+string(l.HardwareID)))
	if l.Copies > 1 {
		fmt.Fprintf(&b, "^PQ%d\n", l.Copies)
	}
	b.WriteString("^XZ\n")
	return []byte(b.String())
}

// DirSink "prints" labels as files in a folder: one ZPL file per device,
// named by serial number. It stands in for a printer in the demo and serves
// lines that print from a spooler watching the folder.
type DirSink struct {
	Dir string
}

var _ jobs.Printer = (*DirSink)(nil)

// Print writes the label's ZPL to Dir/<serial>.zpl, replacing an earlier
// print of the same device (a reprint).
func (s *DirSink) Print(ctx context.Context, l jobs.Label) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("label folder: %w", err)
	}
	name := fileName(l.Serial) + ".zpl"
	tmp := filepath.Join(s.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, ZPL(l), 0o644); err != nil {
		return fmt.Errorf("write label %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, name)); err != nil {
		return fmt.Errorf("write label %s: %w", name, err)
	}
	return nil
}

// fileName keeps letters, digits, '-', '_' and '.'.
func fileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "label" + string(b)
	}
	return string(b)
}
