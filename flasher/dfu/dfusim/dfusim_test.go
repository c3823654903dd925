package dfusim_test

import (
	"context"
	"errors"
	"testing"

	"github.com/station-dev/station/flasher/dfu"
	"github.com/station-dev/station/flasher/dfu/dfusim"
)

// TestStateMachine drives the simulated device request by request
// through DFU 1.1 appendix A transitions.
func TestStateMachine(t *testing.T) {
	ctx := context.Background()
	fn := dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload, TransferSize: 64, Version: 0x0110}
	bus := dfusim.NewBus(dfusim.Spec{Port: "1-1", VID: 1, PID: 2, Functional: fn, Memory: 256})
	dev, err := bus.Open(ctx, "1-1")
	if err != nil {
		t.Fatal(err)
	}
	status := func() (dfu.Status, dfu.State) {
		var b [6]byte
		if _, err := dev.Control(ctx, dfu.RTypeClassIn, dfu.ReqGetStatus, 0, 0, b[:]); err != nil {
			t.Fatalf("GETSTATUS: %v", err)
		}
		return dfu.Status(b[0]), dfu.State(b[4])
	}
	steps := []struct {
		name      string
		req       uint8
		data      []byte
		wantStall bool
		wantState dfu.State
		wantStat  dfu.Status
	}{
		{name: "clrstatus in idle stalls", req: dfu.ReqClrStatus, wantStall: true, wantState: dfu.DfuError, wantStat: dfu.ErrStalledPkt},
		{name: "clrstatus leaves error", req: dfu.ReqClrStatus, wantState: dfu.DfuIdle},
		{name: "zero-length dnload in idle stalls", req: dfu.ReqDnload, wantStall: true, wantState: dfu.DfuError, wantStat: dfu.ErrStalledPkt},
		{name: "clear", req: dfu.ReqClrStatus, wantState: dfu.DfuIdle},
		{name: "too long dnload stalls", req: dfu.ReqDnload, data: make([]byte, 65), wantStall: true, wantState: dfu.DfuError, wantStat: dfu.ErrStalledPkt},
		{name: "clear again", req: dfu.ReqClrStatus, wantState: dfu.DfuIdle},
		{name: "dnload enters sync", req: dfu.ReqDnload, data: []byte{1, 2, 3}, wantState: dfu.DfuDnloadSync},
		{name: "abort from sync", req: dfu.ReqAbort, wantState: dfu.DfuIdle},
	}
	for _, s := range steps {
		buf := s.data
		_, err := dev.Control(ctx, dfu.RTypeClassOut, s.req, 0, 0, buf)
		if s.wantStall != errors.Is(err, dfu.ErrStall) {
			t.Fatalf("%s: err = %v, want stall %v", s.name, err, s.wantStall)
		}
		if got := bus.Device("1-1").State(); got != s.wantState {
			t.Fatalf("%s: state %s, want %s", s.name, got, s.wantState)
		}
		if s.wantStat != dfu.StatusOK {
			if st, _ := status(); st != s.wantStat {
				t.Fatalf("%s: status %s, want %s", s.name, st, s.wantStat)
			}
		}
	}
	// DNLOAD → GETSTATUS (dfuDNBUSY) → GETSTATUS (dfuDNLOAD-IDLE).
	if _, err := dev.Control(ctx, dfu.RTypeClassOut, dfu.ReqDnload, 0, 0, []byte{9}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []dfu.State{dfu.DfuDnBusy, dfu.DfuDnloadIdle} {
		if _, st := status(); st != want {
			t.Fatalf("after GETSTATUS: %s, want %s", st, want)
		}
	}
	bus.Device("1-1").Unplug()
	if _, err := dev.Control(ctx, dfu.RTypeClassIn, dfu.ReqGetState, 0, 0, make([]byte, 1)); !errors.Is(err, dfu.ErrGone) {
		t.Fatalf("after unplug: %v, want ErrGone", err)
	}
}
