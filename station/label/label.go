// Package label renders device labels and sends them to printers.
//
// A label is laid out once (layout.go: every line of text, the Code 128
// with its code sets, the 2D code, in dots) and that layout is rendered as
// ZPL II for Zebra-compatible printers and as PNG for the preview, so the
// preview is the print; the printers' fit check reads the same layout.
// Every field value goes through ^FH hex escaping, so a value can never
// inject ZPL commands (a serial number holding "^XZ" prints as text).
//
// In the pipeline it serves the label step: the station prints one label
// per device once the device is activated and locked.
//
// Reference: ZPL II Programming Guide (^XA, ^CI, ^FO, ^A0, ^FB, ^FH, ^FD,
// ^FS, ^BY, ^BC mode N and its invocation codes, ^BQ, ^BX, ^PQ, ^XZ, ~HS).
package label

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

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

// ZPL renders l as ZPL II with the zero Renderer. For a label it cannot
// render (unknown template, no serial, gs1 without a GTIN) it returns nil;
// use Renderer.ZPL to get the reason.
func ZPL(l jobs.Label) []byte {
	b, err := Renderer{}.ZPL(l)
	if err != nil {
		return nil
	}
	return b
}

// PNG renders l as a PNG image with the zero Renderer.
func PNG(l jobs.Label) ([]byte, error) {
	return Renderer{}.PNG(l)
}

// DirSink "prints" labels as files in a folder: one ZPL file per device,
// named by serial number, and beside it a PNG preview of the label. It
// stands in for a printer in the demo and serves lines that print from a
// spooler watching the folder.
//
// The ZPL is the print and is written by Print. The preview is drawn
// after Print has returned, on a goroutine of its own, so that drawing
// it never holds up a device; Flush waits for the previews.
type DirSink struct {
	Dir string
	// Renderer renders the labels; the zero value serves every template
	// except gs1 without a GTIN part number.
	Renderer Renderer

	mu       sync.Mutex
	previews []jobs.Label  // printed, their preview not yet drawn
	drawing  chan struct{} // closed when the previews are drawn; nil when idle
	failed   []error       // previews that could not be drawn, for Flush
}

var _ jobs.Printer = (*DirSink)(nil)

// Status reports whether labels can be written: the folder exists (or
// can be made) and is writable.
func (s *DirSink) Status(ctx context.Context) error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("label folder %s cannot be made: %w", s.Dir, err)
	}
	f, err := os.CreateTemp(s.Dir, ".check-*")
	if err != nil {
		return fmt.Errorf("label folder %s is not writable: %w", s.Dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Reachable reports whether labels can be written (Status).
func (s *DirSink) Reachable(ctx context.Context) error { return s.Status(ctx) }

// Check reports whether l can be rendered (it fits the label), without
// writing it.
func (s *DirSink) Check(l jobs.Label) error {
	_, err := s.Renderer.layout(l)
	return err
}

// Print writes the label's ZPL to Dir/<serial>.zpl, replacing an earlier
// print of the same device (a reprint), and queues its preview, drawn to
// Dir/<serial>.png after Print returns (see Flush).
func (s *DirSink) Print(ctx context.Context, l jobs.Label) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lo, err := s.Renderer.layout(l)
	if err != nil {
		return err
	}
	z := lo.zpl()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("label folder: %w", err)
	}
	if err := writeFile(s.Dir, fileName(l.Serial)+".zpl", z); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.previews = append(s.previews, l)
	if s.drawing == nil {
		s.drawing = make(chan struct{})
		go s.draw(s.drawing)
	}
	return nil
}

// draw draws the queued previews, oldest first, until none is left.
func (s *DirSink) draw(done chan struct{}) {
	for {
		s.mu.Lock()
		if len(s.previews) == 0 {
			s.drawing = nil
			s.mu.Unlock()
			close(done)
			return
		}
		l := s.previews[0]
		s.previews = s.previews[1:]
		s.mu.Unlock()
		img, err := s.Renderer.PNG(l)
		if err == nil {
			err = writeFile(s.Dir, fileName(l.Serial)+".png", img)
		}
		if err != nil {
			s.mu.Lock()
			s.failed = append(s.failed, fmt.Errorf("label preview of %s: %w", l.Serial, err))
			s.mu.Unlock()
		}
	}
}

// Flush returns once the preview of every label printed before it is
// drawn, with the previews that could not be drawn since the last Flush.
// The labels themselves (the ZPL) were printed: a preview never fails a
// print.
func (s *DirSink) Flush() error {
	s.mu.Lock()
	drawing := s.drawing
	s.mu.Unlock()
	if drawing != nil {
		<-drawing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := errors.Join(s.failed...)
	s.failed = nil
	return err
}

// writeFile replaces dir/name atomically.
func writeFile(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write label %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
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
