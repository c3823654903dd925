package dfu_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/dfu"
	"github.com/station-dev/station/flasher/dfu/dfufile"
	"github.com/station-dev/station/flasher/dfu/dfusim"
)

const (
	stVID = 0x0483
	stPID = 0xdf11
)

var (
	dfuseFn = dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload | dfu.AttrManifestationTolerant | dfu.AttrWillDetach,
		DetachTimeout: 255, TransferSize: 2048, Version: dfu.VersionDfuSe}
	plainFn = dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload | dfu.AttrManifestationTolerant,
		DetachTimeout: 100, TransferSize: 1024, Version: 0x0110}
	layout = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,03*128Kg"
)

func stm32(port, serial string) dfusim.Spec {
	return dfusim.Spec{Port: port, VID: stVID, PID: stPID, Serial: serial, Functional: dfuseFn, Layout: layout, PollTimeout: 1,
		Extra: map[uint32][]byte{0x1FFF7A10: {0x30, 0x00, 0x2b, 0x00, 0x0f, 0x51, 0x34, 0x35, 0x31, 0x36, 0x37, 0x38}}}
}

func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// dfuImage builds a DfuSe .dfu file with two elements and turns it into
// an image, as a fixture would.
func dfuImage() flasher.Image {
	b := dfufile.Encode(&dfufile.File{
		Suffix: dfufile.Suffix{Device: 0xffff, Product: stPID, Vendor: stVID, DFU: dfufile.VersionDfuSe},
		Targets: []dfufile.Target{{Alt: 0, Name: "Internal Flash", Elements: []dfufile.Element{
			{Addr: 0x08020000, Data: payload(9000, 31)},
			{Addr: 0x08000000, Data: payload(1000, 32)},
		}}},
	})
	img, err := dfufile.Image("fw.dfu", b, 0, 0)
	if err != nil {
		panic(err)
	}
	return img
}

func TestBackendFlashVerify(t *testing.T) {
	twoSeg := flasher.Image{Segments: []flasher.Segment{
		{Name: "boot", Addr: 0x08000000, Data: payload(5000, 1)},
		{Name: "app", Addr: 0x08010000, Data: payload(70000, 2)},
	}}
	tests := []struct {
		name    string
		spec    dfusim.Spec
		cfg     dfu.Config
		img     flasher.Image
		wantID  flasher.HardwareID
		wantErr error
	}{
		{name: "dfuse page erase", spec: stm32("1-1.2", "3754346A3233"), cfg: dfu.Config{VID: stVID, PID: stPID, Port: "1-1.2"},
			img: twoSeg, wantID: "3754346A3233"},
		{name: "dfuse mass erase relative addresses", spec: stm32("1-1.2", "X"),
			cfg: dfu.Config{VID: stVID, PID: stPID, MassErase: true, Address: 0x08000000},
			img: flasher.Image{Segments: []flasher.Segment{{Name: "app", Addr: 0x4000, Data: payload(3000, 3)}}}, wantID: "X"},
		{name: "dfuse uid as hardware id", spec: stm32("1-1.2", "X"),
			cfg: dfu.Config{VID: stVID, PID: stPID, UIDAddress: 0x1FFF7A10},
			img: twoSeg, wantID: "30002b000f51343531363738"},
		{name: "dfuse small transfer override", spec: stm32("1-1.2", "S"), cfg: dfu.Config{TransferSize: 256},
			img: twoSeg, wantID: "S"},
		{name: "dfuse segments sharing a page", spec: stm32("1-1.2", "SP"),
			img: flasher.Image{Segments: []flasher.Segment{
				{Name: "boot", Addr: 0x08000000, Data: payload(5000, 21)},
				{Name: "app", Addr: 0x08003f00, Data: payload(700, 22)},
			}}, wantID: "SP"},
		{name: "dfuse from .dfu file", spec: stm32("1-1.2", "F"), img: dfuImage(), wantID: "F"},
		{name: "plain dfu", spec: dfusim.Spec{Port: "2-3", VID: 0x1209, PID: 0x0001, Serial: "P1", Functional: plainFn, Memory: 64 << 10, PollTimeout: 2},
			cfg: dfu.Config{VID: 0x1209, PID: 0x0001},
			img: flasher.Image{Segments: []flasher.Segment{{Name: "fw", Data: payload(10_000, 4)}}}, wantID: "P1"},
		{name: "runtime detach by itself", spec: func() dfusim.Spec {
			s := dfusim.Spec{Port: "1-4", VID: 0x1209, PID: 0x0002, RuntimePID: 0x0003, RuntimeVID: 0x1209, Serial: "R", Runtime: true,
				Functional: plainFn, Memory: 8192, ReenumerateDelay: 30 * time.Millisecond}
			s.Functional.Attributes |= dfu.AttrWillDetach
			return s
		}(), cfg: dfu.Config{VID: 0x1209, PID: 0x0003, DFUVID: 0x1209, DFUPID: 0x0002, Port: "1-4"},
			img: flasher.Image{Segments: []flasher.Segment{{Name: "fw", Data: payload(3000, 5)}}}, wantID: "R"},
		{name: "runtime detach with usb reset", spec: dfusim.Spec{Port: "1-5", VID: 0x1209, PID: 0x0002, Serial: "R2", Runtime: true,
			Functional: plainFn, Memory: 8192, ReenumerateDelay: 20 * time.Millisecond},
			cfg: dfu.Config{Port: "1-5"},
			img: flasher.Image{Segments: []flasher.Segment{{Name: "fw", Data: payload(3000, 6)}}}, wantID: "R2"},
		{name: "errWRITE at block 3", spec: func() dfusim.Spec { s := stm32("1-1.2", "W"); s.Fault, s.FaultBlock = dfusim.FaultWrite, 3; return s }(),
			img: twoSeg, wantID: "W", wantErr: flasher.ErrWrite},
		{name: "errVERIFY at block 2", spec: func() dfusim.Spec { s := stm32("1-1.2", "V"); s.Fault, s.FaultBlock = dfusim.FaultVerify, 2; return s }(),
			img: twoSeg, wantID: "V", wantErr: flasher.ErrVerify},
		{name: "disappears mid-download", spec: func() dfusim.Spec {
			s := stm32("1-1.2", "G")
			s.Fault, s.FaultBlock = dfusim.FaultDisappear, 5
			return s
		}(), img: twoSeg, wantID: "G", wantErr: flasher.ErrLinkLost},
		{name: "stall mid-download", spec: func() dfusim.Spec { s := stm32("1-1.2", "T"); s.Fault, s.FaultBlock = dfusim.FaultStall, 2; return s }(),
			img: twoSeg, wantID: "T", wantErr: dfu.ErrStall},
		{name: "silent corruption caught by readback", spec: func() dfusim.Spec {
			s := stm32("1-1.2", "C")
			s.Fault, s.FaultBlock = dfusim.FaultCorrupt, 4
			return s
		}(), img: twoSeg, wantID: "C", wantErr: flasher.ErrVerify},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			bus := dfusim.NewBus(tt.spec)
			b := dfu.NewBackend(bus, tt.cfg)
			defer b.Close()
			dev, err := b.Identify(ctx)
			if err != nil {
				t.Fatalf("Identify: %v", err)
			}
			if dev.HardwareID != tt.wantID {
				t.Errorf("HardwareID = %q, want %q", dev.HardwareID, tt.wantID)
			}
			var last int64
			err = b.Flash(ctx, tt.img, func(done, total int64) { last = done })
			if err == nil {
				err = b.Verify(ctx, tt.img)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Flash/Verify error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Flash/Verify: %v", err)
			}
			if last != tt.img.Size() {
				t.Errorf("progress ended at %d, want %d", last, tt.img.Size())
			}
			sim := bus.Device(tt.spec.Port)
			if sim.PollViolations != 0 {
				t.Errorf("%d requests came before bwPollTimeout elapsed", sim.PollViolations)
			}
			if tt.spec.Functional.Version == dfu.VersionDfuSe {
				for _, s := range tt.img.Segments {
					addr := uint32(s.Addr)
					if addr < tt.cfg.Address {
						addr += tt.cfg.Address
					}
					if got := sim.Flash(addr, len(s.Data)); !bytes.Equal(got, s.Data) {
						t.Errorf("simulated flash at %#x differs from %s", addr, s.Name)
					}
				}
				if _, err := b.Reset(ctx); err != nil {
					t.Fatalf("Reset: %v", err)
				}
				if sim.Left != 1 {
					t.Errorf("device left DFU mode %d times, want 1", sim.Left)
				}
			} else if sim.Manifested != 1 {
				t.Errorf("device manifested %d times, want 1", sim.Manifested)
			}
		})
	}
}

// TestSlotsByPort binds two identical devices with identical serials to
// slots by their port paths.
func TestSlotsByPort(t *testing.T) {
	ctx := context.Background()
	bus := dfusim.NewBus(stm32("1-1.2", "SAME"), stm32("1-1.3", "SAME"))
	found, err := dfu.Find(ctx, bus, stVID, stPID)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[0].Port != "1-1.2" || found[1].Port != "1-1.3" {
		t.Fatalf("Find = %+v, want devices on 1-1.2 and 1-1.3", found)
	}
	imgs := map[string]flasher.Image{}
	for i, port := range []string{"1-1.2", "1-1.3"} {
		img := flasher.Image{Segments: []flasher.Segment{{Name: port, Addr: 0x08000000, Data: payload(4096, uint64(10+i))}}}
		imgs[port] = img
		b := dfu.NewBackend(bus, dfu.Config{VID: stVID, PID: stPID, Port: port})
		if _, err := b.Identify(ctx); err != nil {
			t.Fatalf("slot %s: Identify: %v", port, err)
		}
		if err := b.Flash(ctx, img, nil); err != nil {
			t.Fatalf("slot %s: Flash: %v", port, err)
		}
		b.Close()
	}
	for port, img := range imgs {
		if got := bus.Device(port).Flash(0x08000000, 4096); !bytes.Equal(got, img.Segments[0].Data) {
			t.Errorf("device on %s does not hold the image of its slot", port)
		}
	}
	// Without a port the choice is ambiguous and refused.
	b := dfu.NewBackend(bus, dfu.Config{VID: stVID, PID: stPID})
	if _, err := b.Identify(ctx); !errors.Is(err, flasher.ErrNoResponse) {
		t.Errorf("Identify without port on two devices: %v, want ErrNoResponse", err)
	}
}

func TestIdentifyErrors(t *testing.T) {
	tests := []struct {
		name    string
		specs   []dfusim.Spec
		cfg     dfu.Config
		wantErr error
	}{
		{name: "none found", cfg: dfu.Config{VID: stVID, PID: stPID}, wantErr: flasher.ErrNoResponse},
		{name: "wrong port", specs: []dfusim.Spec{stm32("1-1.2", "A")}, cfg: dfu.Config{Port: "1-1.9"}, wantErr: flasher.ErrNoResponse},
		{name: "never re-enumerates", specs: []dfusim.Spec{{Port: "1-5", VID: 1, PID: 2, Serial: "R", Runtime: true,
			Functional: plainFn, Memory: 1024, ReenumerateDelay: time.Hour}},
			cfg: dfu.Config{Port: "1-5", EnumerateTimeout: 200 * time.Millisecond}, wantErr: flasher.ErrNoResponse},
		{name: "no download support", specs: []dfusim.Spec{{Port: "1-5", VID: 1, PID: 2, Serial: "R",
			Functional: dfu.Functional{Attributes: dfu.AttrCanUpload, TransferSize: 64}, Memory: 1024}},
			cfg: dfu.Config{Port: "1-5"}, wantErr: flasher.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			b := dfu.NewBackend(dfusim.NewBus(tt.specs...), tt.cfg)
			defer b.Close()
			_, err := b.Identify(ctx)
			if err == nil {
				err = b.Flash(ctx, flasher.Image{Segments: []flasher.Segment{{Name: "x", Data: []byte{1}}}}, nil)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestClearsErrorState checks that a device left in dfuERROR is brought
// back with CLRSTATUS and flashes on the second try.
func TestClearsErrorState(t *testing.T) {
	ctx := context.Background()
	s := stm32("1-1.2", "E")
	s.Fault, s.FaultBlock = dfusim.FaultWrite, 1
	bus := dfusim.NewBus(s)
	b := dfu.NewBackend(bus, dfu.Config{})
	defer b.Close()
	img := flasher.Image{Segments: []flasher.Segment{{Name: "a", Addr: 0x08000000, Data: payload(6000, 9)}}}
	if _, err := b.Identify(ctx); err != nil {
		t.Fatal(err)
	}
	err := b.Flash(ctx, img, nil)
	var se *dfu.StatusError
	if !errors.As(err, &se) || se.Status != dfu.ErrWrite || se.State != dfu.DfuError {
		t.Fatalf("first Flash = %v, want errWRITE in dfuERROR", err)
	}
	if got := bus.Device("1-1.2").State(); got != dfu.DfuError {
		t.Fatalf("device state = %s, want dfuERROR", got)
	}
	if err := b.Flash(ctx, img, nil); err != nil {
		t.Fatalf("second Flash: %v", err)
	}
	if err := b.Verify(ctx, img); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if n := bus.Device("1-1.2").Requests[dfu.ReqClrStatus]; n != 1 {
		t.Errorf("CLRSTATUS sent %d times, want 1", n)
	}
}

// TestPollTimeoutHonoured checks that the backend waits bwPollTimeout
// between GETSTATUS requests: the simulator stalls early requests.
func TestPollTimeoutHonoured(t *testing.T) {
	for _, poll := range []uint32{0, 3, 20} {
		s := stm32("1-1.2", "P")
		s.PollTimeout = poll
		bus := dfusim.NewBus(s)
		b := dfu.NewBackend(bus, dfu.Config{})
		img := flasher.Image{Segments: []flasher.Segment{{Name: "a", Addr: 0x08000000, Data: payload(5000, 7)}}}
		ctx := context.Background()
		if _, err := b.Identify(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Flash(ctx, img, nil); err != nil {
			t.Fatalf("poll %d ms: Flash: %v", poll, err)
		}
		if v := bus.Device("1-1.2").PollViolations; v != 0 {
			t.Errorf("poll %d ms: %d early requests", poll, v)
		}
		b.Close()
	}
}

func TestCancel(t *testing.T) {
	s := stm32("1-1.2", "P")
	s.PollTimeout = 1000
	bus := dfusim.NewBus(s)
	b := dfu.NewBackend(bus, dfu.Config{})
	defer b.Close()
	if _, err := b.Identify(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := b.Flash(ctx, flasher.Image{Segments: []flasher.Segment{{Name: "a", Addr: 0x08000000, Data: payload(5000, 7)}}}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flash = %v, want deadline exceeded", err)
	}
}

// BenchmarkDFUSim downloads 1 MiB with 2048-byte transfers to a simulated
// DfuSe device that asks for 1 ms polls.
func BenchmarkDFUSim(b *testing.B) {
	data := payload(1<<20, 1)
	img := flasher.Image{Segments: []flasher.Segment{{Name: "bench", Addr: 0x08000000, Data: data}}}
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		s := stm32("1-1.2", "B")
		s.Layout = "@Internal Flash  /0x08000000/512*02Kg"
		bus := dfusim.NewBus(s)
		be := dfu.NewBackend(bus, dfu.Config{MassErase: true})
		if _, err := be.Identify(ctx); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := be.Flash(ctx, img, nil); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		be.Close()
	}
	b.ReportMetric(float64(b.N)*1024/total.Seconds(), "dfu_kib_per_s")
}
