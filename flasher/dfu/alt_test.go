package dfu_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/dfu"
	"github.com/station-dev/station/flasher/dfu/dfusim"
)

// f4OptionBytes is alternate setting 1 of an STM32F4's DfuSe bootloader,
// as dfu-util -l lists it (AN3156: one alternate setting per memory).
const f4OptionBytes = "@Option Bytes  /0x1FFFC000/01*016 e"

// TestAltSetting flashes the slot's alternate setting and checks that
// only that setting's memory changed. Before, no SET_INTERFACE was sent
// and the device wrote alt 0's memory (plain DFU) or refused the
// address (DfuSe).
func TestAltSetting(t *testing.T) {
	tests := []struct {
		name    string
		spec    dfusim.Spec
		alt     uint8
		img     flasher.Image
		addr    uint32 // where the image lands in the alt's memory
		wantErr error
	}{
		{name: "plain dfu alt 1",
			spec: dfusim.Spec{Port: "3-1", VID: 0x1209, PID: 0x0001, Serial: "A", Functional: plainFn, Memory: 8192,
				Alts: []dfusim.Alt{{Memory: 8192}}, PollTimeout: 1},
			alt: 1, img: flasher.Image{Segments: []flasher.Segment{{Name: "fw", Data: payload(3000, 51)}}}},
		{name: "plain dfu alt 2 of 3",
			spec: dfusim.Spec{Port: "3-1", VID: 0x1209, PID: 0x0001, Serial: "A", Functional: plainFn, Memory: 8192,
				Alts: []dfusim.Alt{{Memory: 4096}, {Memory: 4096}}},
			alt: 2, img: flasher.Image{Segments: []flasher.Segment{{Name: "cal", Data: payload(1000, 52)}}}},
		{name: "dfuse option bytes on alt 1",
			spec: func() dfusim.Spec {
				s := stm32("3-1", "O")
				s.Alts = []dfusim.Alt{{Layout: f4OptionBytes}}
				return s
			}(),
			alt: 1, addr: 0x1FFFC000,
			img: flasher.Image{Segments: []flasher.Segment{{Name: "opt", Addr: 0x1FFFC000,
				Data: []byte{0xaa, 0xc0, 0x55, 0x3f, 0xff, 0x0f, 0x00, 0xf0, 0xff, 0x0f, 0x00, 0xf0, 0xff, 0x0f, 0x00, 0xf0}}}}},
		{name: "alt the device lacks", spec: dfusim.Spec{Port: "3-1", VID: 0x1209, PID: 0x0001, Serial: "A", Functional: plainFn, Memory: 8192},
			alt: 1, img: flasher.Image{Segments: []flasher.Segment{{Name: "fw", Data: []byte{1}}}}, wantErr: flasher.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			bus := dfusim.NewBus(tt.spec)
			b := dfu.NewBackend(bus, dfu.Config{Alt: tt.alt})
			defer b.Close()
			_, err := b.Identify(ctx)
			if err == nil {
				err = b.Flash(ctx, tt.img, nil)
			}
			if err == nil {
				err = b.Verify(ctx, tt.img)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Identify/Flash/Verify = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Identify/Flash/Verify: %v", err)
			}
			sim := bus.Device(tt.spec.Port)
			if got := sim.Alt(); got != int(tt.alt) {
				t.Errorf("device is on alt %d, want %d", got, tt.alt)
			}
			data := tt.img.Segments[0].Data
			if got := sim.Memory(int(tt.alt), tt.addr, len(data)); !bytes.Equal(got, data) {
				t.Errorf("alt %d's memory does not hold the image", tt.alt)
			}
			if tt.spec.Functional.Version != dfu.VersionDfuSe {
				if got := sim.Memory(0, 0, len(data)); !bytes.Equal(got, bytes.Repeat([]byte{0xff}, len(data))) {
					t.Errorf("alt 0's memory was written, want it erased")
				}
			} else if got := sim.Flash(0x08000000, 16); !bytes.Equal(got, bytes.Repeat([]byte{0xff}, 16)) {
				t.Errorf("alt 0's flash was written, want it erased")
			}
		})
	}
}

// TestDFUModeIDs finds a device whose VID:PID changes when it leaves
// run-time mode (an STM32 application 0483:5740 that detaches to the
// bootloader 0483:df11) on its port with the DFU-mode ids, and one that
// is already in DFU mode when the slot is connected. Without DFU-mode
// ids the detached device is not found again.
func TestDFUModeIDs(t *testing.T) {
	runtime := func(port string) dfusim.Spec {
		s := stm32(port, "3754346A3233")
		s.Runtime, s.RuntimeVID, s.RuntimePID = true, 0x0483, 0x5740
		s.Functional.Attributes &^= dfu.AttrWillDetach // the host resets it after DFU_DETACH
		s.ReenumerateDelay = 20 * time.Millisecond
		return s
	}
	inDFU := runtime("1-1.4")
	inDFU.Runtime = false
	img := flasher.Image{Segments: []flasher.Segment{{Name: "app", Addr: 0x08000000, Data: payload(4000, 61)}}}
	tests := []struct {
		name    string
		specs   []dfusim.Spec
		cfg     dfu.Config
		wantErr error
	}{
		{name: "detaches to other ids", specs: []dfusim.Spec{runtime("1-1.4"), stm32("1-1.5", "other")},
			cfg: dfu.Config{VID: 0x0483, PID: 0x5740, DFUVID: 0x0483, DFUPID: 0xdf11, Port: "1-1.4"}},
		{name: "already in DFU mode", specs: []dfusim.Spec{inDFU, stm32("1-1.5", "other")},
			cfg: dfu.Config{VID: 0x0483, PID: 0x5740, DFUVID: 0x0483, DFUPID: 0xdf11, Port: "1-1.4"}},
		{name: "without DFU-mode ids it is lost", specs: []dfusim.Spec{runtime("1-1.4")},
			cfg:     dfu.Config{VID: 0x0483, PID: 0x5740, Port: "1-1.4", EnumerateTimeout: 200 * time.Millisecond},
			wantErr: flasher.ErrNoResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			bus := dfusim.NewBus(tt.specs...)
			b := dfu.NewBackend(bus, tt.cfg)
			defer b.Close()
			_, err := b.Identify(ctx)
			if err == nil {
				err = b.Flash(ctx, img, nil)
			}
			if err == nil {
				err = b.Verify(ctx, img)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Identify/Flash/Verify = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Identify/Flash/Verify: %v", err)
			}
			if got := bus.Device("1-1.4").Flash(0x08000000, 4000); !bytes.Equal(got, img.Segments[0].Data) {
				t.Errorf("device on 1-1.4 does not hold the image")
			}
			if got := bus.Device("1-1.5").Flash(0x08000000, 16); !bytes.Equal(got, bytes.Repeat([]byte{0xff}, 16)) {
				t.Errorf("device on 1-1.5 was written")
			}
		})
	}
}
