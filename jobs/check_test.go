package jobs_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/label"
)

// checkFixture has one slot of each kind whose device the fixture tells
// enough about to check a work order against it before any device is
// touched.
const checkFixture = `slots:
  - {name: E1, protocol: esp, port: /dev/null-e1, chip: esp32s3, flash_size: 4MiB}
  - {name: S1, protocol: stm32, port: /dev/null-s1, chip: f1-md}
  - {name: G1, protocol: gdb, gdb: {server: openocd, target: stm32f4}}
  - {name: Q1, protocol: gdb, gdb: {server: qemu, target: netduinoplus2}}
`

// TestCheckRefusesBeforeAnyDevice: a work order that cannot finish on
// the fixture is refused by Runner.Check, naming the field, before a
// device is opened (Check never connects: the fixture's ports do not
// exist).
func TestCheckRefusesBeforeAnyDevice(t *testing.T) {
	fx, err := fixtures.Parse([]byte(checkFixture))
	if err != nil {
		t.Fatal(err)
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()

	seg := func(name string, addr uint64, n int) flasher.Segment {
		return flasher.Segment{Name: name, Addr: addr, Data: make([]byte, n)}
	}
	tests := []struct {
		name    string
		images  map[string]flasher.Image
		change  func(wo *jobs.WorkOrder)
		printer func(dir string) jobs.Printer
		want    []string // substrings of the error; none: accepted
		is      error
	}{
		{name: "fits and locks", images: map[string]flasher.Image{
			"esp":   {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1<<20)}},
			"stm32": {Segments: []flasher.Segment{seg("app.bin", 0x08000000, 64<<10)}},
			"gdb":   {Segments: []flasher.Segment{seg("app.bin", 0x08000000, 600<<10)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = nil }},
		{name: "esp lock of the named chip", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1<<20)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = []string{"DIS_PAD_JTAG", "ENABLE_SECURITY_DOWNLOAD"} }},
		{name: "esp32 lock on an esp32s3 slot", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1<<20)}},
		}, want: []string{`lock.device[0]: slot E1: "JTAG_DISABLE" is not a lock ESP32-S3 has`}, is: flasher.ErrUnsupported},
		{name: "image larger than the esp flash", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 4<<20)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = nil },
			want: []string{"bundle.artifacts[0]: slot E1: app.bin (0x10000-0x410000", "does not fit the flash of ESP32-S3 (0x0-0x400000)"}},
		{name: "image past the stm32 family's flash", images: map[string]flasher.Image{
			"stm32": {Segments: []flasher.Segment{seg("app.bin", 0x08000000, 256<<10)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = []string{"rdp"} },
			want: []string{"bundle.artifacts[0]: slot S1: app.bin", "STM32F10xxx Medium-density (0x8000000-0x8020000)"}},
		{name: "gdb lock where the target has none", images: map[string]flasher.Image{
			"gdb": {Segments: []flasher.Segment{seg("app.bin", 0x08000000, 1024)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = []string{"readout"} },
			want: []string{`lock.device[0]: slot Q1: "readout" is not a lock target netduinoplus2 has (it has no lock at all)`}},
		{name: "no slot for the bundle", images: map[string]flasher.Image{
			"dfu": {Segments: []flasher.Segment{seg("app.bin", 0x08000000, 1024)}},
		}, want: []string{"bundle.artifacts: bundle 2.3.1 flashes dfu, and the fixture has no slot of that protocol"}},
		{name: "unknown label template", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1024)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = nil; wo.Label.Template = "fancy" },
			want: []string{`label: unknown label template "fancy"`}},
		{name: "gs1 label without a GTIN", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1024)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = nil; wo.Label.Template = "gs1" },
			want: []string{`label: gs1 label for THERMO-000001: part number "TH-1" is not a 14-digit GTIN`}},
		{name: "gs1 label with a serial AI (21) cannot carry", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1024)}},
		}, change: func(wo *jobs.WorkOrder) {
			wo.Lock.Device = nil
			wo.Label.Template = "gs1"
			wo.Product.Code, wo.Product.PartNumber = "THERMO_2", "09506000134352"
		}, want: []string{`label: gs1 label: serial "THERMO_2-000001" cannot go in AI (21)`}},
		{name: "printer does not answer", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1024)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = nil },
			printer: func(string) jobs.Printer { return &label.TCPPrinter{Addr: deadAddr} },
			want:    []string{"label: The label printer at " + deadAddr + " does not answer"}, is: jobs.ErrPrinterUnavailable},
		{name: "label folder not writable", images: map[string]flasher.Image{
			"esp": {Segments: []flasher.Segment{seg("app.bin", 0x10000, 1024)}},
		}, change: func(wo *jobs.WorkOrder) { wo.Lock.Device = nil },
			printer: func(dir string) jobs.Printer { return &label.DirSink{Dir: "/dev/null/labels"} },
			want:    []string{"label: label folder /dev/null/labels cannot be made"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wo := jobs.WorkOrder{
				ID:      "WO-1",
				Product: jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageProduction},
				Bundle: jobs.Bundle{Version: "2.3.1", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{
					{Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Size: 1, Format: "bin", URL: "app.bin"}}},
				Quantity: 1,
				Lock:     jobs.LockPolicy{DMS: true, Device: []string{"JTAG_DISABLE"}},
			}
			if tc.change != nil {
				tc.change(&wo)
			}
			dir := t.TempDir()
			var p jobs.Printer = &label.DirSink{Dir: filepath.Join(dir, "labels")}
			if tc.printer != nil {
				p = tc.printer(dir)
			}
			var specs []jobs.SlotSpec
			for _, s := range fx.Slots {
				specs = append(specs, jobs.SlotSpec{Name: s.Name, Protocol: s.Protocol})
			}
			r := &jobs.Runner{WorkOrder: wo, Images: tc.images, Slots: specs, Connector: fx.Connector(nil), Printer: p}
			err := r.Check(context.Background())
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = nil, want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %q\nwant it to contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "cannot run on this station; nothing was touched") {
				t.Errorf("Check = %q, want it to say nothing was touched", err)
			}
			var inv *jobs.InvalidError
			if !errors.As(err, &inv) {
				t.Errorf("Check = %T, want an *InvalidError through errors.As", err)
			}
			is := tc.is
			if is == nil {
				is = flasher.ErrUnsupported
			}
			if !errors.Is(err, is) {
				t.Errorf("Check = %v, want errors.Is %v", err, is)
			}
		})
	}
}
