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

// nonTolerantFn is a plain DFU device that must see a bus reset after
// manifestation (bmAttributes bitManifestationTolerant clear, DFU 1.1
// section 4.1.3).
var nonTolerantFn = dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload,
	DetachTimeout: 100, TransferSize: 1024, Version: 0x0110}

// TestManifestation flashes and verifies plain DFU devices through
// manifestation: a tolerant one goes back to dfuIDLE, one that is not
// must be reset and re-enumerates, in DFU or run-time mode, and is found
// again on its port, whatever libusb says while it resets. Before, the
// backend gave up on the unanswered GETSTATUS, or (a device that
// answered dfuMANIFEST-WAIT-RESET) recursed in toIdle until the stack
// overflowed.
func TestManifestation(t *testing.T) {
	img := flasher.Image{Segments: []flasher.Segment{{Name: "fw", Data: payload(5000, 41)}}}
	plain := func(mod func(*dfusim.Spec)) dfusim.Spec {
		s := dfusim.Spec{Port: "2-1", VID: 0x1209, PID: 0x0001, Serial: "M", Functional: nonTolerantFn, Memory: 16 << 10, PollTimeout: 3}
		mod(&s)
		return s
	}
	tests := []struct {
		name       string
		spec       dfusim.Spec
		cfg        dfu.Config
		wantErr    error
		wantResets int
	}{
		{name: "tolerant: no reset", spec: plain(func(s *dfusim.Spec) { s.Functional = plainFn }), wantResets: 0},
		{name: "not tolerant, silent until reset, reset reports not found",
			spec: plain(func(s *dfusim.Spec) {}), wantResets: 1},
		{name: "not tolerant, reset fails with an i/o error",
			spec: plain(func(s *dfusim.Spec) { s.ResetError = dfu.ErrIO }), wantResets: 1},
		{name: "not tolerant, reset fails with a stall",
			spec: plain(func(s *dfusim.Spec) { s.ResetError = dfu.ErrStall }), wantResets: 1},
		{name: "not tolerant, answers dfuMANIFEST-WAIT-RESET",
			spec: plain(func(s *dfusim.Spec) { s.WaitResetAnswers = true }), wantResets: 1},
		{name: "not tolerant, slow to re-enumerate",
			spec: plain(func(s *dfusim.Spec) { s.ReenumerateDelay = 120 * time.Millisecond }), wantResets: 1},
		{name: "not tolerant, comes back in run-time mode with other ids and is detached again",
			spec: plain(func(s *dfusim.Spec) {
				s.Runtime, s.RuntimeVID, s.RuntimePID = true, 0x1209, 0x0003
				s.ReenumerateDelay = 20 * time.Millisecond
			}),
			cfg: dfu.Config{VID: 0x1209, PID: 0x0003, DFUVID: 0x1209, DFUPID: 0x0001, Port: "2-1"},
			// detach, manifestation, detach again
			wantResets: 3},
		{name: "not tolerant, never comes back",
			spec: plain(func(s *dfusim.Spec) { s.ReenumerateDelay = time.Hour }),
			cfg:  dfu.Config{EnumerateTimeout: 200 * time.Millisecond}, wantErr: flasher.ErrNoResponse, wantResets: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			bus := dfusim.NewBus(tt.spec)
			b := dfu.NewBackend(bus, tt.cfg)
			defer b.Close()
			if _, err := b.Identify(ctx); err != nil {
				t.Fatalf("Identify: %v", err)
			}
			err := b.Flash(ctx, img, nil)
			if err == nil {
				err = b.Verify(ctx, img)
			}
			sim := bus.Device(tt.spec.Port)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Flash/Verify = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Flash/Verify: %v", err)
			}
			if sim.Manifested != 1 {
				t.Errorf("device manifested %d times, want 1", sim.Manifested)
			}
			if sim.Resets != tt.wantResets {
				t.Errorf("device saw %d USB resets, want %d", sim.Resets, tt.wantResets)
			}
			if sim.PollViolations != 0 {
				t.Errorf("%d requests (or resets) came before bwPollTimeout elapsed", sim.PollViolations)
			}
			if got := sim.Flash(0, len(img.Segments[0].Data)); !bytes.Equal(got, img.Segments[0].Data) {
				t.Errorf("device memory differs from the image")
			}
		})
	}
}

// TestToIdleInWaitReset checks that a device found in
// dfuMANIFEST-WAIT-RESET, which only a USB reset leaves, is reported
// instead of polled for ever.
func TestToIdleInWaitReset(t *testing.T) {
	ctx := context.Background()
	spec := dfusim.Spec{Port: "2-1", VID: 0x1209, PID: 0x0001, Serial: "W", Functional: nonTolerantFn, Memory: 4096, WaitResetAnswers: true}
	bus := dfusim.NewBus(spec)
	dev, err := bus.Open(ctx, "2-1")
	if err != nil {
		t.Fatal(err)
	}
	var st [6]byte
	for _, r := range []struct {
		rType, req uint8
		val        uint16
		data       []byte
	}{
		{dfu.RTypeClassOut, dfu.ReqDnload, 0, []byte{1, 2, 3}},
		{dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]},
		{dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]},
		{dfu.RTypeClassOut, dfu.ReqDnload, 1, nil},
		{dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]},
		{dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]},
	} {
		if _, err := dev.Control(ctx, r.rType, r.req, r.val, 0, r.data); err != nil {
			t.Fatalf("request %d: %v", r.req, err)
		}
	}
	if s := bus.Device("2-1").State(); s != dfu.DfuManifestWaitReset {
		t.Fatalf("device state = %s, want dfuMANIFEST-WAIT-RESET", s)
	}
	b := dfu.NewBackend(bus, dfu.Config{})
	defer b.Close()
	if _, err := b.Identify(ctx); !errors.Is(err, flasher.ErrNoResponse) {
		t.Fatalf("Identify = %v, want ErrNoResponse naming the reset it waits for", err)
	}
}
