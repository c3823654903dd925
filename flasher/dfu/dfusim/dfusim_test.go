package dfusim_test

import (
	"bytes"
	"context"
	"encoding/binary"
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

// f4Layout is an STM32F405's flash as its DfuSe bootloader names it:
// sectors 0-3 of 16 KiB, 4 of 64 KiB and 5-11 of 128 KiB (RM0090 table 5).
const (
	f4Layout = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg"
	f4Base   = 0x08000000
	f4Size   = 1 << 20
	f4Xfer   = 2048
)

// dfuse drives a simulated DfuSe device request by request.
type dfuse struct {
	t   *testing.T
	ctx context.Context
	dev dfu.Device
	sim *dfusim.Device
}

func newF4(t *testing.T) *dfuse {
	t.Helper()
	ctx := context.Background()
	fn := dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload | dfu.AttrManifestationTolerant,
		TransferSize: f4Xfer, Version: dfu.VersionDfuSe}
	bus := dfusim.NewBus(dfusim.Spec{Port: "1-1", VID: 0x0483, PID: 0xdf11, Functional: fn, Layout: f4Layout})
	dev, err := bus.Open(ctx, "1-1")
	if err != nil {
		t.Fatal(err)
	}
	return &dfuse{t: t, ctx: ctx, dev: dev, sim: bus.Device("1-1")}
}

// dnload sends one DNLOAD and the two GETSTATUS that get it processed,
// and returns the status; an error is cleared back to dfuIDLE.
func (c *dfuse) dnload(block uint16, data []byte) dfu.Status {
	c.t.Helper()
	if _, err := c.dev.Control(c.ctx, dfu.RTypeClassOut, dfu.ReqDnload, block, 0, data); err != nil {
		c.t.Fatalf("DNLOAD block %d: %v", block, err)
	}
	var b [6]byte
	for range 2 {
		if _, err := c.dev.Control(c.ctx, dfu.RTypeClassIn, dfu.ReqGetStatus, 0, 0, b[:]); err != nil {
			c.t.Fatalf("GETSTATUS: %v", err)
		}
	}
	if st := dfu.Status(b[0]); st != dfu.StatusOK {
		if _, err := c.dev.Control(c.ctx, dfu.RTypeClassOut, dfu.ReqClrStatus, 0, 0, nil); err != nil {
			c.t.Fatalf("CLRSTATUS: %v", err)
		}
		return st
	}
	if s := dfu.State(b[4]); s != dfu.DfuDnloadIdle {
		c.t.Fatalf("DNLOAD block %d: state %s, want %s", block, s, dfu.DfuDnloadIdle)
	}
	return dfu.StatusOK
}

func eraseCmd(addr uint32) []byte { return binary.LittleEndian.AppendUint32([]byte{0x41}, addr) }

var massEraseCmd = []byte{0x41}

// write sets the address pointer to addr and downloads data from block 2.
func (c *dfuse) write(addr uint32, data []byte) dfu.Status {
	c.t.Helper()
	if st := c.dnload(0, binary.LittleEndian.AppendUint32([]byte{0x21}, addr)); st != dfu.StatusOK {
		return st
	}
	for blk, off := uint16(2), 0; off < len(data); blk, off = blk+1, off+f4Xfer {
		if st := c.dnload(blk, data[off:min(off+f4Xfer, len(data))]); st != dfu.StatusOK {
			return st
		}
	}
	return dfu.StatusOK
}

// pattern is n bytes without 0xff, so that erased bytes stand out.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i + int(seed)) % 0xff)
	}
	return b
}

// TestDfuSeEraseSector erases one F4 sector of each size, by an address
// anywhere in it, and checks that exactly its bytes are erased: the
// neighbours keep their data and stay programmed.
func TestDfuSeEraseSector(t *testing.T) {
	const margin = 16 << 10 // programmed on each side of the sector
	tests := []struct {
		name        string
		addr        uint32
		start, size uint32
	}{
		{name: "16 KiB sector 0 by its first byte", addr: 0x08000000, start: 0x08000000, size: 16 << 10},
		{name: "16 KiB sector 1 by a byte inside", addr: 0x08004123, start: 0x08004000, size: 16 << 10},
		{name: "16 KiB sector 3 by its last byte", addr: 0x0800ffff, start: 0x0800c000, size: 16 << 10},
		{name: "64 KiB sector 4 by a byte inside", addr: 0x0801a5a5, start: 0x08010000, size: 64 << 10},
		{name: "128 KiB sector 5 by its first byte", addr: 0x08020000, start: 0x08020000, size: 128 << 10},
		{name: "128 KiB sector 11, the last, by its last byte", addr: 0x080fffff, start: 0x080e0000, size: 128 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newF4(t)
			end := tt.start + tt.size
			lo, hi := max(tt.start-margin, f4Base), min(end+margin, f4Base+f4Size)
			data := pattern(int(hi-lo), 7)
			if st := c.write(lo, data); st != dfu.StatusOK {
				t.Fatalf("program %#x-%#x: %s", lo, hi, st)
			}
			if st := c.dnload(0, eraseCmd(tt.addr)); st != dfu.StatusOK {
				t.Fatalf("erase %#x: %s", tt.addr, st)
			}
			want := bytes.Repeat([]byte{0xff}, f4Size)
			copy(want[lo-f4Base:], data)
			copy(want[tt.start-f4Base:end-f4Base], bytes.Repeat([]byte{0xff}, int(tt.size)))
			got := c.sim.Flash(f4Base, f4Size)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("after erase at %#x: byte at %#x is %#02x, want %#02x (sector %#x-%#x)",
						tt.addr, f4Base+i, got[i], want[i], tt.start, end)
				}
			}
			// The neighbours' bytes are still programmed.
			if lo < tt.start {
				if st := c.write(tt.start-1, []byte{0}); st != dfu.ErrCheckErased {
					t.Errorf("write at %#x, before the erased sector: %s, want %s", tt.start-1, st, dfu.ErrCheckErased)
				}
			}
			if end < hi {
				if st := c.write(end, []byte{0}); st != dfu.ErrCheckErased {
					t.Errorf("write at %#x, after the erased sector: %s, want %s", end, st, dfu.ErrCheckErased)
				}
			}
			// The whole sector takes a write again.
			again := pattern(int(tt.size), 99)
			if st := c.write(tt.start, again); st != dfu.StatusOK {
				t.Fatalf("program erased sector %#x: %s", tt.start, st)
			}
			if got := c.sim.Flash(tt.start, int(tt.size)); !bytes.Equal(got, again) {
				t.Errorf("sector %#x does not hold what was written", tt.start)
			}
		})
	}
}

// TestDfuSeEraseBeforeWrite runs one device through a sequence of writes
// and erases: a byte is programmed once after an erase (or from the
// factory), and programming it again fails with errCHECK_ERASED even
// with the same value, until a sector or mass erase.
func TestDfuSeEraseBeforeWrite(t *testing.T) {
	const last = 0x080e0000 // sector 11, 128 KiB
	ff := func(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }
	steps := []struct {
		name string
		cmd  []byte // a DfuSe command; nil writes data at addr
		addr uint32
		data []byte
		want dfu.Status
		// wantAt, when wantMem is set, is where the flash must then
		// hold wantMem.
		wantAt  uint32
		wantMem []byte
	}{
		{name: "fresh flash takes a write", addr: 0x08000000, data: []byte{1, 2, 3},
			wantAt: 0x08000000, wantMem: []byte{1, 2, 3, 0xff}},
		{name: "identical rewrite without erase", addr: 0x08000000, data: []byte{1, 2, 3}, want: dfu.ErrCheckErased,
			wantAt: 0x08000000, wantMem: []byte{1, 2, 3, 0xff}},
		{name: "block overlapping one programmed byte writes nothing", addr: 0x08000002, data: []byte{3, 4}, want: dfu.ErrCheckErased,
			wantAt: 0x08000000, wantMem: []byte{1, 2, 3, 0xff}},
		{name: "erased byte next to programmed ones", addr: 0x08000003, data: []byte{4},
			wantAt: 0x08000000, wantMem: []byte{1, 2, 3, 4}},
		{name: "0xff programs a byte", addr: 0x08000010, data: []byte{0xff}},
		{name: "0xff again over 0xff", addr: 0x08000010, data: []byte{0xff}, want: dfu.ErrCheckErased},
		{name: "erase sector 0", cmd: eraseCmd(0x08000000), wantAt: 0x08000000, wantMem: ff(16 << 10)},
		{name: "rewrite after erase", addr: 0x08000000, data: []byte{1, 2, 3},
			wantAt: 0x08000000, wantMem: []byte{1, 2, 3, 0xff}},
		{name: "second identical write after one erase", addr: 0x08000000, data: []byte{1, 2, 3}, want: dfu.ErrCheckErased},
		{name: "0xff after erase", addr: 0x08000010, data: []byte{0xff}},
		{name: "last sector fresh", addr: last, data: pattern(128<<10, 1), wantAt: last, wantMem: pattern(128<<10, 1)},
		{name: "last sector rewrite", addr: 0x080fff00, data: pattern(256, 1), want: dfu.ErrCheckErased},
		{name: "erase the last sector", cmd: eraseCmd(0x080fffff), wantAt: last, wantMem: ff(128 << 10)},
		{name: "last sector after erase", addr: last, data: pattern(128<<10, 2), wantAt: last, wantMem: pattern(128<<10, 2)},
		{name: "sector 0 still programmed", addr: 0x08000000, data: []byte{1}, want: dfu.ErrCheckErased},
		{name: "write past the end", addr: 0x080fffff, data: []byte{1, 2}, want: dfu.ErrAddress},
		{name: "erase past the end", cmd: eraseCmd(0x08100000), want: dfu.ErrAddress},
		{name: "mass erase", cmd: massEraseCmd, wantAt: f4Base, wantMem: ff(f4Size)},
		{name: "sector 0 after mass erase", addr: 0x08000000, data: []byte{1, 2, 3}},
		{name: "0xff after mass erase", addr: 0x08000010, data: []byte{0xff}},
		{name: "last sector after mass erase", addr: last, data: pattern(128<<10, 3), wantAt: last, wantMem: pattern(128<<10, 3)},
	}
	c := newF4(t)
	for _, s := range steps {
		var st dfu.Status
		if s.cmd != nil {
			st = c.dnload(0, s.cmd)
		} else {
			st = c.write(s.addr, s.data)
		}
		if st != s.want {
			t.Fatalf("%s: status %s, want %s", s.name, st, s.want)
		}
		if s.wantMem != nil {
			if got := c.sim.Flash(s.wantAt, len(s.wantMem)); !bytes.Equal(got, s.wantMem) {
				i := 0
				for got[i] == s.wantMem[i] {
					i++
				}
				t.Fatalf("%s: byte at %#x is %#02x, want %#02x", s.name, s.wantAt+uint32(i), got[i], s.wantMem[i])
			}
		}
	}
}

// TestNotTolerantManifestation drives a device with
// bitManifestationTolerant clear through manifestation request by
// request: after the GETSTATUS that starts dfuMANIFEST it answers
// nothing, or only its status (WaitResetAnswers), until a USB reset,
// which fails as libusb's does when the device re-enumerates; then it is
// in DFU mode again (run-time mode for a device that has one) with the
// firmware in its memory.
func TestNotTolerantManifestation(t *testing.T) {
	fn := dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload, TransferSize: 64, Version: 0x0110}
	tests := []struct {
		name        string
		spec        dfusim.Spec
		wantStatus  error // from GETSTATUS after manifestation
		wantOther   error // from any other request then
		wantReset   error
		wantRuntime bool
	}{
		{name: "silent", spec: dfusim.Spec{Functional: fn},
			wantStatus: dfu.ErrTimeout, wantOther: dfu.ErrTimeout, wantReset: dfu.ErrGone},
		{name: "answers its status", spec: dfusim.Spec{Functional: fn, WaitResetAnswers: true},
			wantOther: dfu.ErrStall, wantReset: dfu.ErrGone},
		{name: "reset reports an i/o error", spec: dfusim.Spec{Functional: fn, ResetError: dfu.ErrIO},
			wantStatus: dfu.ErrTimeout, wantOther: dfu.ErrTimeout, wantReset: dfu.ErrIO},
		{name: "comes back in run-time mode", spec: dfusim.Spec{Functional: fn, Runtime: true},
			wantStatus: dfu.ErrTimeout, wantOther: dfu.ErrTimeout, wantReset: dfu.ErrGone, wantRuntime: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			tt.spec.Port, tt.spec.VID, tt.spec.PID, tt.spec.Memory = "1-1", 1, 2, 256
			bus := dfusim.NewBus(tt.spec)
			sim := bus.Device("1-1")
			dev, err := bus.Open(ctx, "1-1")
			if err != nil {
				t.Fatal(err)
			}
			var st [6]byte
			do := func(rType, req uint8, val uint16, data []byte) error {
				_, err := dev.Control(ctx, rType, req, val, 0, data)
				return err
			}
			if tt.spec.Runtime {
				// Into DFU mode: DFU_DETACH and a reset (DFU 1.1 section 5.1).
				if err := do(dfu.RTypeClassOut, dfu.ReqDetach, 100, nil); err != nil {
					t.Fatal(err)
				}
				if err := dev.Reset(ctx); !errors.Is(err, dfu.ErrGone) {
					t.Fatalf("reset after detach = %v, want ErrGone", err)
				}
				if dev, err = bus.Open(ctx, "1-1"); err != nil {
					t.Fatal(err)
				}
			}
			fw := pattern(100, 7)
			for i, blk := range [][]byte{fw[:64], fw[64:]} {
				if err := do(dfu.RTypeClassOut, dfu.ReqDnload, uint16(i), blk); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if err := do(dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := do(dfu.RTypeClassOut, dfu.ReqDnload, 2, nil); err != nil {
				t.Fatal(err)
			}
			if err := do(dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]); err != nil || dfu.State(st[4]) != dfu.DfuManifest {
				t.Fatalf("GETSTATUS after the zero-length DNLOAD = %v, state %s, want dfuMANIFEST", err, dfu.State(st[4]))
			}
			err = do(dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:])
			if tt.wantStatus != nil {
				if !errors.Is(err, tt.wantStatus) {
					t.Fatalf("GETSTATUS after manifestation = %v, want %v", err, tt.wantStatus)
				}
			} else if err != nil || dfu.State(st[4]) != dfu.DfuManifestWaitReset {
				t.Fatalf("GETSTATUS after manifestation = %v, state %s, want dfuMANIFEST-WAIT-RESET", err, dfu.State(st[4]))
			}
			if err := do(dfu.RTypeClassIn, dfu.ReqUpload, 0, make([]byte, 64)); !errors.Is(err, tt.wantOther) {
				t.Fatalf("UPLOAD after manifestation = %v, want %v", err, tt.wantOther)
			}
			if err := do(dfu.RTypeClassOut, dfu.ReqAbort, 0, nil); !errors.Is(err, tt.wantOther) {
				t.Fatalf("ABORT after manifestation = %v, want %v", err, tt.wantOther)
			}
			if sim.State() != dfu.DfuManifestWaitReset || sim.Manifested != 1 {
				t.Fatalf("state %s, manifested %d; want dfuMANIFEST-WAIT-RESET, 1", sim.State(), sim.Manifested)
			}
			if err := dev.Reset(ctx); !errors.Is(err, tt.wantReset) {
				t.Fatalf("Reset = %v, want %v", err, tt.wantReset)
			}
			if err := do(dfu.RTypeClassIn, dfu.ReqGetStatus, 0, st[:]); !errors.Is(err, dfu.ErrGone) {
				t.Fatalf("GETSTATUS on the handle from before the reset = %v, want ErrGone", err)
			}
			if dev, err = bus.Open(ctx, "1-1"); err != nil {
				t.Fatal(err)
			}
			want := dfu.DfuIdle
			if tt.wantRuntime {
				want = dfu.AppIdle
			}
			if got := sim.State(); got != want {
				t.Fatalf("state after reset %s, want %s", got, want)
			}
			if got := sim.Flash(0, len(fw)); !bytes.Equal(got, fw) {
				t.Errorf("memory after reset differs from the firmware")
			}
		})
	}
}

// TestAltSettings checks that each alternate setting is its own memory,
// that the device starts on alt 0 after every enumeration, and that
// SET_INTERFACE to a setting the interface lacks stalls (USB 2.0 section
// 9.4.10).
func TestAltSettings(t *testing.T) {
	ctx := context.Background()
	fn := dfu.Functional{Attributes: dfu.AttrCanDnload | dfu.AttrCanUpload | dfu.AttrManifestationTolerant, TransferSize: 64, Version: 0x0110}
	bus := dfusim.NewBus(dfusim.Spec{Port: "1-1", VID: 1, PID: 2, Functional: fn, Memory: 128, Alts: []dfusim.Alt{{Memory: 128}}})
	sim := bus.Device("1-1")
	dev, err := bus.Open(ctx, "1-1")
	if err != nil {
		t.Fatal(err)
	}
	setAlt := func(alt uint16) error {
		_, err := dev.Control(ctx, dfu.RTypeStdOutIntf, dfu.ReqSetInterface, alt, 0, nil)
		return err
	}
	if err := setAlt(2); !errors.Is(err, dfu.ErrStall) {
		t.Fatalf("SET_INTERFACE alt 2 of 2 settings = %v, want a stall", err)
	}
	if err := setAlt(1); err != nil {
		t.Fatalf("SET_INTERFACE alt 1: %v", err)
	}
	var st [6]byte
	for _, r := range []struct {
		req  uint8
		val  uint16
		data []byte
	}{{dfu.ReqDnload, 0, []byte{1, 2, 3}}, {dfu.ReqGetStatus, 0, st[:]}, {dfu.ReqGetStatus, 0, st[:]}} {
		rType := uint8(dfu.RTypeClassOut)
		if r.req == dfu.ReqGetStatus {
			rType = dfu.RTypeClassIn
		}
		if _, err := dev.Control(ctx, rType, r.req, r.val, 0, r.data); err != nil {
			t.Fatal(err)
		}
	}
	if got := sim.Memory(1, 0, 3); !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("alt 1 memory = % x, want 01 02 03", got)
	}
	if got := sim.Memory(0, 0, 3); !bytes.Equal(got, []byte{0xff, 0xff, 0xff}) {
		t.Errorf("alt 0 memory = % x, want it erased", got)
	}
	if err := dev.Reset(ctx); !errors.Is(err, dfu.ErrGone) {
		t.Fatalf("Reset = %v, want ErrGone", err)
	}
	if got := sim.Alt(); got != 0 {
		t.Errorf("alt after re-enumeration = %d, want 0", got)
	}
}
