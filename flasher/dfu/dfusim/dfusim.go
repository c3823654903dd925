// Package dfusim simulates USB DFU 1.1 and DfuSe devices on a simulated
// bus behind the dfu.Bus and dfu.Device interfaces, for tests.
//
// The device follows the state diagram of DFU 1.1 appendix A.1 and the
// DfuSe commands of ST AN3156: GETSTATUS moves dfuDNLOAD-SYNC to dfuDNBUSY
// (answering bwPollTimeout) and the next GETSTATUS to dfuDNLOAD-IDLE;
// requests not allowed in a state stall and enter dfuERROR with
// errSTALLEDPKT.
//
// Each alternate setting of the DFU interface is its own memory (DFU 1.1
// section 4.2.3: alternate settings give access to further memory
// segments, each named by its string; AN3156: the STM32 bootloader has
// one per memory, Internal Flash, Option Bytes, OTP, Device Feature). A
// device enumerates on alternate setting 0 (USB 2.0 section 9.1.1.5) and
// stays there until SET_INTERFACE selects another, so a host that never
// sends it reads and writes alt 0's memory whatever it meant to.
//
// A device whose functional descriptor clears bitManifestationTolerant
// ends a plain download as DFU 1.1 section 7 and 6.1.2 allow at their
// strictest: after the zero-length DNLOAD and the GETSTATUS that starts
// dfuMANIFEST it answers nothing (every request times out) until a USB
// reset, which re-enumerates it in run-time or DFU mode.
//
// Every USB reset re-enumerates the device, and the reset itself fails as
// libusb's does then (LIBUSB_ERROR_NOT_FOUND: "the device has been
// disconnected", or Spec.ResetError).
//
// DfuSe flash is modelled per byte over the sectors of the Spec's Layout:
// an "Erase" command erases the sector containing its address, a mass
// erase all of them, and a byte can be programmed once after an erase
// (factory-fresh flash is erased); programming it again fails the
// download with errCHECK_ERASED.
//
// Reference: USB Device Firmware Upgrade Specification, Revision 1.1;
// ST AN3156 "USB DFU protocol used in the STM32 bootloader".
package dfusim

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/station-dev/station/flasher/dfu"
)

// Fault is an injected failure.
type Fault int

// Faults.
const (
	// FaultNone injects nothing.
	FaultNone Fault = iota
	// FaultWrite makes the FaultBlock-th data DNLOAD fail with errWRITE.
	FaultWrite
	// FaultStall makes the FaultBlock-th data DNLOAD stall without
	// changing state, as a broken transfer would.
	FaultStall
	// FaultDisappear removes the device from the bus at the
	// FaultBlock-th data DNLOAD.
	FaultDisappear
	// FaultVerify makes the device report errVERIFY after the
	// FaultBlock-th data DNLOAD.
	FaultVerify
	// FaultCorrupt flips a bit in the FaultBlock-th data block as it is
	// written, silently.
	FaultCorrupt
)

// Spec describes a simulated device.
type Spec struct {
	// Port is the physical port path ("1-1.2").
	Port string
	// VID, PID and Serial are what the device enumerates with.
	VID, PID uint16
	Serial   string
	// RuntimeVID/PID, when set, are the IDs in run-time mode.
	RuntimeVID, RuntimePID uint16
	// Runtime starts the device in run-time mode (appIDLE, protocol 1).
	Runtime bool
	// Functional is the functional descriptor; Version 0x011a makes the
	// device speak DfuSe.
	Functional dfu.Functional
	// Layout is the DfuSe interface string, for example
	// "@Internal Flash  /0x08000000/64*02Kg". Its sectors must follow
	// one another; they are the units the erase command erases.
	Layout string
	// Memory is the plain DFU firmware capacity in bytes.
	Memory int
	// Alts are the alternate settings after the first (1, 2, …) in DFU
	// mode, each with a memory of its own; Layout and Memory are alt 0.
	Alts []Alt
	// WaitResetAnswers makes a device that is not manifestation-tolerant
	// answer GETSTATUS and GETSTATE in dfuMANIFEST-WAIT-RESET (and stall
	// every other request there) instead of answering nothing, as the
	// Maple/STM32duino bootloader does: dfu-util prints its
	// "state(8) = dfuMANIFEST-WAIT-RESET" after a download.
	WaitResetAnswers bool
	// ResetError is what a USB reset returns, as the device
	// re-enumerates during it; nil means an error wrapping dfu.ErrGone
	// (libusb's LIBUSB_ERROR_NOT_FOUND). Other devices and hosts give
	// dfu.ErrIO or dfu.ErrStall.
	ResetError error
	// PollTimeout is the bwPollTimeout (ms) reported in dfuDNBUSY.
	PollTimeout uint32
	// ReenumerateDelay is how long the device is absent after a detach
	// or a reset.
	ReenumerateDelay time.Duration
	// Extra is memory outside the flash readable by upload (an STM32
	// UID), by address.
	Extra map[uint32][]byte
	// Fault and FaultBlock inject a failure at the FaultBlock-th data
	// download (counting from 1).
	Fault      Fault
	FaultBlock int
}

// Alt is an alternate setting of a simulated device's DFU interface.
type Alt struct {
	// Layout is the setting's DfuSe memory, for example an STM32F4's
	// option bytes "@Option Bytes  /0x1FFFC000/01*016 e".
	Layout string
	// Memory is the setting's plain DFU capacity in bytes.
	Memory int
}

// Bus is a simulated USB bus. Its zero value is not ready; use NewBus.
type Bus struct {
	mu   sync.Mutex
	devs map[string]*Device
	now  func() time.Time
}

// NewBus returns a bus with one device per spec.
func NewBus(specs ...Spec) *Bus {
	b := &Bus{devs: map[string]*Device{}, now: time.Now}
	for _, s := range specs {
		b.devs[s.Port] = newDevice(b, s)
	}
	return b
}

// Device returns the simulated device at port, for assertions.
func (b *Bus) Device(port string) *Device {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.devs[port]
}

// List implements dfu.Bus.
func (b *Bus) List(ctx context.Context) ([]dfu.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []dfu.Info
	for _, d := range b.devs {
		if !d.presentLocked() {
			continue
		}
		vid, pid := d.ids()
		out = append(out, dfu.Info{VID: vid, PID: pid, Serial: d.spec.Serial, Port: d.spec.Port})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out, nil
}

// Open implements dfu.Bus.
func (b *Bus) Open(ctx context.Context, port string) (dfu.Device, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.devs[port]
	if d == nil || !d.presentLocked() {
		return nil, fmt.Errorf("open %s: %w", port, dfu.ErrNotFound)
	}
	return &handle{d: d, gen: d.gen}, nil
}

// Device is one simulated device. Its state is guarded by the bus lock.
type Device struct {
	bus  *Bus
	spec Spec

	runtime   bool
	state     dfu.State
	status    dfu.Status
	gen       int // enumeration generation; handles of older ones are gone
	absentTil time.Time
	gone      bool

	mems      []*memory // one per alternate setting
	alt       int       // the alternate setting SET_INTERFACE selected
	pointer   uint32
	pending   []byte // DNLOAD data awaiting the GETSTATUS that processes it
	pendBlock uint16
	image     []byte // plain DFU download buffer
	dataCount int
	leaving   bool

	// Requests counts control requests by bRequest, for assertions.
	Requests map[uint8]int
	// LastPoll is when the last GETSTATUS arrived, PollViolations counts
	// requests that came before the announced bwPollTimeout elapsed.
	lastBusy       time.Time
	busyFor        time.Duration
	PollViolations int
	// Manifested counts completed manifestations (plain DFU).
	Manifested int
	// Left counts DfuSe leave requests.
	Left int
	// SetInterfaces counts SET_INTERFACE requests.
	SetInterfaces int
	// Resets counts USB resets.
	Resets int
}

// memory is what one alternate setting reads and writes.
type memory struct {
	flash   []byte
	base    uint32
	sectors []int  // DfuSe: offsets of the sectors' first bytes, ascending
	erased  []bool // DfuSe: per byte, erased and so programmable
}

func newMemory(dfuse bool, layout string, size int) *memory {
	m := &memory{}
	if dfuse {
		l, err := dfu.ParseLayout(layout)
		if err != nil {
			panic(fmt.Sprintf("dfusim: bad layout: %v", err))
		}
		base, size := l.Size()
		// The sector map is the layout's own: on an STM32F4
		// "04*016Kg,01*064Kg,07*128Kg" is sectors 0-3 of 16 KiB, 4 of
		// 64 KiB and 5-11 of 128 KiB (RM0090 section 3.3, table 5
		// "Flash module organization").
		pages, err := l.Pages(base, uint32(size))
		if err != nil {
			panic(fmt.Sprintf("dfusim: layout %q is not one run of sectors: %v", layout, err))
		}
		m.base = base
		m.flash = make([]byte, size)
		m.sectors = make([]int, len(pages))
		for i, p := range pages {
			m.sectors[i] = int(p - base)
		}
		// Factory-fresh flash is erased.
		m.erased = make([]bool, size)
		for i := range m.erased {
			m.erased[i] = true
		}
	} else {
		m.flash = make([]byte, size)
	}
	for i := range m.flash {
		m.flash[i] = 0xff
	}
	return m
}

func newDevice(b *Bus, s Spec) *Device {
	d := &Device{bus: b, spec: s, runtime: s.Runtime, Requests: map[uint8]int{}}
	if s.Functional.TransferSize == 0 {
		d.spec.Functional.TransferSize = 2048
	}
	d.mems = append(d.mems, newMemory(d.dfuse(), s.Layout, s.Memory))
	for _, a := range s.Alts {
		d.mems = append(d.mems, newMemory(d.dfuse(), a.Layout, a.Memory))
	}
	d.reset()
	return d
}

// mem is the memory of the selected alternate setting.
func (d *Device) mem() *memory { return d.mems[d.alt] }

func (d *Device) dfuse() bool { return d.spec.Functional.Version == dfu.VersionDfuSe }

func (d *Device) ids() (uint16, uint16) {
	if d.runtime && (d.spec.RuntimeVID != 0 || d.spec.RuntimePID != 0) {
		return d.spec.RuntimeVID, d.spec.RuntimePID
	}
	return d.spec.VID, d.spec.PID
}

func (d *Device) presentLocked() bool {
	return !d.gone && !d.bus.now().Before(d.absentTil)
}

func (d *Device) reset() {
	// A device that enumerates is on alternate setting 0 until the
	// host selects another (USB 2.0 section 9.1.1.5).
	d.alt = 0
	if d.runtime {
		d.state = dfu.AppIdle
	} else {
		d.state = dfu.DfuIdle
	}
	d.status = dfu.StatusOK
	d.pending, d.image, d.leaving = nil, nil, false
}

// reenumerate takes the device off the bus for ReenumerateDelay.
func (d *Device) reenumerate() {
	d.gen++
	d.absentTil = d.bus.now().Add(d.spec.ReenumerateDelay)
	d.reset()
}

// Flash returns a copy of alternate setting 0's memory from addr
// (DfuSe) or 0.
func (d *Device) Flash(addr uint32, n int) []byte { return d.Memory(0, addr, n) }

// Memory returns a copy of alternate setting alt's memory from addr
// (DfuSe) or 0.
func (d *Device) Memory(alt int, addr uint32, n int) []byte {
	d.bus.mu.Lock()
	defer d.bus.mu.Unlock()
	m := d.mems[alt]
	off := int(addr - m.base)
	return append([]byte(nil), m.flash[off:off+n]...)
}

// Alt returns the alternate setting the device has selected.
func (d *Device) Alt() int {
	d.bus.mu.Lock()
	defer d.bus.mu.Unlock()
	return d.alt
}

// State returns the device's state.
func (d *Device) State() dfu.State {
	d.bus.mu.Lock()
	defer d.bus.mu.Unlock()
	return d.state
}

// Unplug removes the device from the bus for good.
func (d *Device) Unplug() {
	d.bus.mu.Lock()
	defer d.bus.mu.Unlock()
	d.gone = true
	d.gen++
}

type handle struct {
	d      *Device
	gen    int
	closed bool
}

func (h *handle) Close() error { h.closed = true; return nil }

// Reset is a USB reset. The device re-enumerates: a detached run-time
// device in DFU mode (DFU 1.1 section 5.1), a DFU-mode device with valid
// firmware in run-time mode (appendix A.1, "USB reset" from dfuIDLE,
// dfuERROR and dfuMANIFEST-WAIT-RESET), and the reset fails as libusb's
// does for a device that re-enumerates.
func (h *handle) Reset(ctx context.Context) error {
	d := h.d
	d.bus.mu.Lock()
	defer d.bus.mu.Unlock()
	if err := h.alive(); err != nil {
		return err
	}
	d.Resets++
	d.quiet() // a manifestation whose bwPollTimeout has passed is done
	if d.state == dfu.DfuManifest {
		// A reset before bwPollTimeout let manifestation finish.
		d.PollViolations++
		d.state = dfu.DfuManifestWaitReset
	}
	if d.state == dfu.AppDetach {
		d.runtime = false
	} else if d.state == dfu.DfuManifestWaitReset || d.state == dfu.DfuIdle || d.state == dfu.DfuError {
		d.runtime = d.spec.Runtime
	}
	d.reenumerate()
	if d.spec.ResetError != nil {
		return fmt.Errorf("reset device at %s: %w", d.spec.Port, d.spec.ResetError)
	}
	return fmt.Errorf("reset device at %s: it re-enumerated: %w", d.spec.Port, dfu.ErrGone)
}

// quiet reports whether the device has stopped answering: a device
// that is not manifestation-tolerant, once bwPollTimeout of dfuMANIFEST
// has passed, has programmed its memory and is in
// dfuMANIFEST-WAIT-RESET (DFU 1.1 section 6.1.2), where only a USB reset
// moves it and it answers no request (unless Spec.WaitResetAnswers).
// Not all devices answer GETSTATUS in dfuMANIFEST either (section
// 6.1.2); the simulator takes that strictest reading.
func (d *Device) quiet() bool {
	if d.state == dfu.DfuManifest && !d.tolerant() && !d.bus.now().Before(d.lastBusy.Add(d.busyFor)) {
		d.state = dfu.DfuManifestWaitReset
		d.Manifested++
	}
	return d.state == dfu.DfuManifestWaitReset && !d.spec.WaitResetAnswers
}

func (d *Device) tolerant() bool {
	return d.spec.Functional.Attributes&dfu.AttrManifestationTolerant != 0
}

// setInterface is SET_INTERFACE (USB 2.0 section 9.4.10): a setting the
// interface does not have is a Request Error, a stall; the run-time
// interface has alternate setting 0 only.
func (d *Device) setInterface(alt, intf uint16) (int, error) {
	d.SetInterfaces++
	n := len(d.mems)
	if d.runtime {
		n = 1
	}
	if intf != 0 || int(alt) >= n {
		return 0, fmt.Errorf("SET_INTERFACE interface %d alt %d: no such setting: %w", intf, alt, dfu.ErrStall)
	}
	d.alt = int(alt)
	return 0, nil
}

func (h *handle) alive() error {
	if h.closed {
		return fmt.Errorf("device handle closed: %w", dfu.ErrGone)
	}
	if h.gen != h.d.gen || !h.d.presentLocked() {
		return fmt.Errorf("device at %s: %w", h.d.spec.Port, dfu.ErrGone)
	}
	return nil
}

func (h *handle) Control(ctx context.Context, rType, req uint8, val, idx uint16, data []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d := h.d
	d.bus.mu.Lock()
	defer d.bus.mu.Unlock()
	if err := h.alive(); err != nil {
		return 0, err
	}
	if d.quiet() {
		return 0, fmt.Errorf("request %d in %s: no answer: %w", req, d.state, dfu.ErrTimeout)
	}
	if rType == dfu.RTypeStdIn && req == dfu.ReqGetDesc {
		return d.descriptor(val, data)
	}
	if rType == dfu.RTypeStdOutIntf && req == dfu.ReqSetInterface {
		return d.setInterface(val, idx)
	}
	if rType != dfu.RTypeClassIn && rType != dfu.RTypeClassOut {
		return 0, dfu.ErrStall
	}
	d.Requests[req]++
	if d.state == dfu.DfuDnBusy || d.state == dfu.DfuManifest {
		if d.bus.now().Sub(d.lastBusy) < d.busyFor {
			d.PollViolations++
			return 0, dfu.ErrStall
		}
	}
	return d.class(req, val, data)
}

func (d *Device) stall(st dfu.Status) (int, error) {
	d.state, d.status = dfu.DfuError, st
	return 0, fmt.Errorf("request in %s: %w", d.state, dfu.ErrStall)
}

func (d *Device) class(req uint8, val uint16, data []byte) (int, error) {
	if d.runtime {
		switch req {
		case dfu.ReqDetach:
			if d.state != dfu.AppIdle {
				return 0, dfu.ErrStall
			}
			d.state = dfu.AppDetach
			if d.spec.Functional.Attributes&dfu.AttrWillDetach != 0 {
				d.runtime = false
				d.reenumerate()
			}
			return 0, nil
		case dfu.ReqGetStatus:
			return d.statusReply(data, 0), nil
		case dfu.ReqGetState:
			data[0] = byte(d.state)
			return 1, nil
		}
		return 0, dfu.ErrStall
	}
	if d.state == dfu.DfuManifestWaitReset && req != dfu.ReqGetStatus && req != dfu.ReqGetState {
		// Spec.WaitResetAnswers: only the status requests are answered.
		return 0, fmt.Errorf("request %d in %s: %w", req, d.state, dfu.ErrStall)
	}
	switch req {
	case dfu.ReqGetStatus:
		return d.getStatus(data)
	case dfu.ReqGetState:
		if len(data) < 1 {
			return 0, dfu.ErrStall
		}
		data[0] = byte(d.state)
		return 1, nil
	case dfu.ReqClrStatus:
		if d.state != dfu.DfuError {
			return d.stall(dfu.ErrStalledPkt)
		}
		d.state, d.status = dfu.DfuIdle, dfu.StatusOK
		return 0, nil
	case dfu.ReqAbort:
		switch d.state {
		case dfu.DfuIdle, dfu.DfuDnloadSync, dfu.DfuDnloadIdle, dfu.DfuManifestSync, dfu.DfuUploadIdle:
			d.state, d.image, d.pending = dfu.DfuIdle, nil, nil
			return 0, nil
		}
		return d.stall(dfu.ErrStalledPkt)
	case dfu.ReqDnload:
		return d.dnload(val, data)
	case dfu.ReqUpload:
		return d.upload(val, data)
	}
	return d.stall(dfu.ErrStalledPkt)
}

func (d *Device) statusReply(data []byte, poll uint32) int {
	if len(data) < 6 {
		return 0
	}
	data[0] = byte(d.status)
	data[1], data[2], data[3] = byte(poll), byte(poll>>8), byte(poll>>16)
	data[4] = byte(d.state)
	data[5] = 0
	return 6
}

func (d *Device) busy(state dfu.State) uint32 {
	d.state = state
	d.lastBusy = d.bus.now()
	d.busyFor = time.Duration(d.spec.PollTimeout) * time.Millisecond
	return d.spec.PollTimeout
}

func (d *Device) getStatus(data []byte) (int, error) {
	switch d.state {
	case dfu.DfuDnloadSync:
		// Report busy; the block is programmed "during" bwPollTimeout.
		poll := d.busy(dfu.DfuDnBusy)
		return d.statusReply(data, poll), nil
	case dfu.DfuDnBusy:
		d.process()
		return d.statusReply(data, 0), nil
	case dfu.DfuManifestSync:
		if d.leaving {
			d.Left++
			n := d.statusReply(data, 0)
			d.runtime = d.spec.Runtime
			d.reenumerate()
			return n, nil
		}
		poll := d.busy(dfu.DfuManifest)
		return d.statusReply(data, poll), nil
	case dfu.DfuManifest:
		// Only a manifestation-tolerant device gets here: another is
		// quiet by now (see quiet).
		d.Manifested++
		d.state = dfu.DfuIdle
		return d.statusReply(data, 0), nil
	}
	return d.statusReply(data, 0), nil
}

func (d *Device) dnload(block uint16, data []byte) (int, error) {
	if d.spec.Functional.Attributes&dfu.AttrCanDnload == 0 {
		return d.stall(dfu.ErrStalledPkt)
	}
	if d.state != dfu.DfuIdle && d.state != dfu.DfuDnloadIdle {
		return d.stall(dfu.ErrStalledPkt)
	}
	if len(data) > int(d.spec.Functional.TransferSize) {
		return d.stall(dfu.ErrStalledPkt)
	}
	if len(data) == 0 {
		if d.state != dfu.DfuDnloadIdle && !d.dfuse() {
			return d.stall(dfu.ErrStalledPkt)
		}
		if d.dfuse() {
			d.leaving = true
		}
		d.state = dfu.DfuManifestSync
		return 0, nil
	}
	isData := !d.dfuse() || block >= 2
	if isData {
		d.dataCount++
		if d.dataCount == d.spec.FaultBlock {
			switch d.spec.Fault {
			case FaultStall:
				d.dataCount--
				d.spec.Fault = FaultNone
				return 0, fmt.Errorf("injected stall: %w", dfu.ErrStall)
			case FaultDisappear:
				d.gone = true
				d.gen++
				return 0, fmt.Errorf("injected unplug: %w", dfu.ErrGone)
			}
		}
	}
	d.pending = append([]byte(nil), data...)
	d.pendBlock = block
	d.state = dfu.DfuDnloadSync
	return len(data), nil
}

// process carries out the pending DNLOAD, as the device would during
// dfuDNBUSY.
func (d *Device) process() {
	data, block := d.pending, d.pendBlock
	d.pending = nil
	d.state = dfu.DfuDnloadIdle
	fail := func(st dfu.Status) { d.state, d.status = dfu.DfuError, st }
	if !d.dfuse() {
		if d.injected(fail) {
			return
		}
		m := d.mem()
		if len(d.image)+len(data) > len(m.flash) {
			fail(dfu.ErrAddress)
			return
		}
		d.image = append(d.image, data...)
		copy(m.flash, d.image)
		return
	}
	if block == 0 {
		d.command(data, fail)
		return
	}
	if block == 1 {
		fail(dfu.ErrStalledPkt)
		return
	}
	if d.injected(fail) {
		return
	}
	m := d.mem()
	addr := uint64(d.pointer) + uint64(block-2)*uint64(d.spec.Functional.TransferSize)
	if addr < uint64(m.base) || addr+uint64(len(data)) > uint64(m.base)+uint64(len(m.flash)) {
		fail(dfu.ErrAddress)
		return
	}
	off := int(addr - uint64(m.base))
	// A flash location must be erased before it is programmed (RM0090,
	// embedded flash memory interface, "Programming": writing a 1 takes
	// an erase). The simulator is stricter than the silicon, which lets
	// bits go from 1 to 0 again: a programmed byte fails until a sector
	// or mass erase, even when rewritten with the same value or with
	// 0xff, so that a flasher that writes without erasing, or writes a
	// byte twice, is caught. The block is checked whole before any byte
	// of it is programmed.
	for i := off; i < off+len(data); i++ {
		if !m.erased[i] {
			fail(dfu.ErrCheckErased)
			return
		}
	}
	copy(m.flash[off:], data)
	for i := off; i < off+len(data); i++ {
		m.erased[i] = false
	}
	if d.spec.Fault == FaultCorrupt && d.dataCount == d.spec.FaultBlock {
		m.flash[off] ^= 0x01
	}
}

func (d *Device) injected(fail func(dfu.Status)) bool {
	if d.dataCount != d.spec.FaultBlock {
		return false
	}
	switch d.spec.Fault {
	case FaultWrite:
		fail(dfu.ErrWrite)
		return true
	case FaultVerify:
		fail(dfu.ErrVerify)
		return true
	}
	return false
}

// command carries out a DfuSe command (DNLOAD block 0, AN3156): 0x21 and
// an address sets the address pointer; 0x41 alone is a mass erase; 0x41
// and an address is "Erase", which erases the page (sector) containing
// that address, whatever its size.
func (d *Device) command(data []byte, fail func(dfu.Status)) {
	m := d.mem()
	switch {
	case len(data) == 5 && data[0] == 0x21:
		d.pointer = binary.LittleEndian.Uint32(data[1:])
	case len(data) == 1 && data[0] == 0x41:
		m.erase(0, len(m.flash))
	case len(data) == 5 && data[0] == 0x41:
		a := binary.LittleEndian.Uint32(data[1:])
		if a < m.base || uint64(a) >= uint64(m.base)+uint64(len(m.flash)) {
			fail(dfu.ErrAddress)
			return
		}
		m.erase(m.sector(int(a - m.base)))
	default:
		fail(dfu.ErrStalledPkt)
	}
}

// sector returns the flash offsets [start, end) of the sector holding the
// byte at offset off, from the layout's sector map.
func (m *memory) sector(off int) (start, end int) {
	i := sort.Search(len(m.sectors), func(i int) bool { return m.sectors[i] > off }) - 1
	end = len(m.flash)
	if i+1 < len(m.sectors) {
		end = m.sectors[i+1]
	}
	return m.sectors[i], end
}

// erase erases flash offsets [start, end): the bytes read 0xff and may be
// programmed once each.
func (m *memory) erase(start, end int) {
	for i := start; i < end; i++ {
		m.flash[i], m.erased[i] = 0xff, true
	}
}

func (d *Device) upload(block uint16, data []byte) (int, error) {
	if d.spec.Functional.Attributes&dfu.AttrCanUpload == 0 {
		return d.stall(dfu.ErrStalledPkt)
	}
	if d.state != dfu.DfuIdle && d.state != dfu.DfuUploadIdle {
		return d.stall(dfu.ErrStalledPkt)
	}
	d.state = dfu.DfuUploadIdle
	m := d.mem()
	if !d.dfuse() {
		// Plain DFU uploads the selected setting's memory from its
		// start; a short block ends the upload (DFU 1.1 section 6.2).
		off := int(block) * int(d.spec.Functional.TransferSize)
		if off >= len(m.flash) {
			d.state = dfu.DfuIdle
			return 0, nil
		}
		n := copy(data, m.flash[off:])
		if n < int(d.spec.Functional.TransferSize) {
			d.state = dfu.DfuIdle
		}
		return n, nil
	}
	switch {
	case block == 0:
		return copy(data, []byte{0x00, 0x21, 0x41, 0x92}), nil
	case block == 1:
		return d.stall(dfu.ErrStalledPkt)
	}
	addr := uint64(d.pointer) + uint64(block-2)*uint64(d.spec.Functional.TransferSize)
	for a, b := range d.spec.Extra {
		if addr >= uint64(a) && addr < uint64(a)+uint64(len(b)) {
			return copy(data, b[addr-uint64(a):]), nil
		}
	}
	if addr < uint64(m.base) || addr >= uint64(m.base)+uint64(len(m.flash)) {
		return d.stall(dfu.ErrAddress)
	}
	return copy(data, m.flash[addr-uint64(m.base):]), nil
}

// descriptor answers GET_DESCRIPTOR for the configuration and strings.
func (d *Device) descriptor(val uint16, data []byte) (int, error) {
	switch val >> 8 {
	case dfu.DescConfig:
		return copy(data, d.configDescriptor()), nil
	case dfu.DescString:
		var s string
		switch val & 0xff {
		case 0:
			return copy(data, []byte{4, dfu.DescString, 0x09, 0x04}), nil
		case 1:
			s = d.spec.Serial
		default:
			// Strings 2, 3, … name alternate settings 0, 1, …
			i := int(val&0xff) - 2
			switch {
			case i == 0:
				s = d.spec.Layout
			case i > 0 && i <= len(d.spec.Alts):
				s = d.spec.Alts[i-1].Layout
			default:
				return 0, dfu.ErrStall
			}
		}
		u := utf16.Encode([]rune(s))
		b := []byte{byte(2 + 2*len(u)), dfu.DescString}
		for _, c := range u {
			b = binary.LittleEndian.AppendUint16(b, c)
		}
		return copy(data, b), nil
	}
	return 0, dfu.ErrStall
}

// configDescriptor is the configuration with one DFU interface: in
// run-time mode its single setting, in DFU mode one interface descriptor
// per alternate setting, then the functional descriptor (DFU 1.1
// sections 4.1.2 and 4.2.3).
func (d *Device) configDescriptor() []byte {
	proto, n := byte(dfu.ProtoDFU), len(d.mems)
	if d.runtime {
		proto, n = dfu.ProtoRuntime, 1
	}
	var ifaces []byte
	for alt := range n {
		istr := byte(0)
		if d.dfuse() && !d.runtime {
			istr = byte(2 + alt)
		}
		ifaces = append(ifaces, 9, dfu.DescInterface, 0, byte(alt), 0, dfu.ClassAppSpecific, dfu.SubclassDFU, proto, istr)
	}
	fn := d.spec.Functional.Bytes()
	total := 9 + len(ifaces) + len(fn)
	cfg := []byte{9, dfu.DescConfig, byte(total), byte(total >> 8), 1, 1, 0, 0x80, 50}
	return append(append(cfg, ifaces...), fn...)
}
