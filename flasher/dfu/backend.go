package dfu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/station-dev/station/flasher"
)

// DfuSe commands sent in a DNLOAD at block 0 (AN3156 section 6).
const (
	dfuseGetCommands = 0x00 // UPLOAD block 0 lists the supported commands
	dfuseSetAddress  = 0x21 // 0x21 + 4-byte address: set the address pointer
	dfuseErase       = 0x41 // 0x41 + 4-byte address: erase a page; alone: mass erase
	dfuseUnprotect   = 0x92 // read unprotect, mass erases
)

// Defaults for Config fields left zero.
const (
	// DefaultEnumerateTimeout is how long the backend waits for a
	// detached device to come back in DFU mode on its port.
	DefaultEnumerateTimeout = 5 * time.Second
	// DefaultTransferSize is used when the functional descriptor says 0.
	DefaultTransferSize = 1024
	// DefaultStatusTimeout bounds the GETSTATUS polling of one block.
	DefaultStatusTimeout = 30 * time.Second
)

// Config says which device the backend drives and how. The zero value
// takes every default; VID and PID 0 match any DFU device.
type Config struct {
	// VID and PID select the device; 0 matches any.
	VID, PID uint16
	// Port is the physical port path of the slot ("1-1.4"). Empty is
	// accepted only when exactly one device matches VID:PID.
	Port string
	// DFUVID and DFUPID are the IDs the device enumerates with in DFU
	// mode when they differ from its run-time IDs; 0 matches any.
	DFUVID, DFUPID uint16
	// Alt is the DFU alternate setting to use (0 is internal flash on
	// STM32 bootloaders).
	Alt uint8
	// DfuSe forces the DfuSe protocol; otherwise it is chosen when
	// bcdDFUVersion is 0x011a.
	DfuSe bool
	// Address is the DfuSe base address images are relative to when
	// their segment addresses are below it (0x08000000 on STM32).
	Address uint32
	// MassErase erases the whole DfuSe memory once instead of the pages
	// each segment touches.
	MassErase bool
	// PageSize is the DfuSe erase page size used when the alt setting's
	// string has no memory layout; 0 means 2048.
	PageSize uint32
	// TransferSize overrides wTransferSize.
	TransferSize uint16
	// DetachTimeout overrides wDetachTimeOut.
	DetachTimeout time.Duration
	// EnumerateTimeout is how long to wait for re-enumeration after a
	// detach; 0 means DefaultEnumerateTimeout.
	EnumerateTimeout time.Duration
	// UIDAddress, when set on a DfuSe device, makes Identify read
	// UIDLength bytes there (0x1FFF7A10 on STM32F4) as the hardware id
	// instead of using the USB serial string.
	UIDAddress uint32
	// UIDLength is the length of the UID read; 0 means 12.
	UIDLength int
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
	// Trace logs every control transfer at debug level.
	Trace bool
}

// Backend flashes one DFU device. It implements flasher.Backend.
type Backend struct {
	bus Bus
	cfg Config
	log *slog.Logger

	dev    Device
	info   Info
	alt    AltSetting
	xfer   int
	dfuse  bool
	layout Layout
}

var _ flasher.Backend = (*Backend)(nil)

// NewBackend returns a backend for the device cfg selects on bus. Nothing
// is opened until Identify.
func NewBackend(bus Bus, cfg Config) *Backend {
	if cfg.EnumerateTimeout == 0 {
		cfg.EnumerateTimeout = DefaultEnumerateTimeout
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 2048
	}
	if cfg.UIDLength == 0 {
		cfg.UIDLength = 12
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{bus: bus, cfg: cfg, log: log}
}

func statusSentinel(s Status) error {
	switch s {
	case ErrWrite, ErrErase, ErrCheckErased, ErrProg:
		return flasher.ErrWrite
	case ErrVerify:
		return flasher.ErrVerify
	}
	return nil
}

// Find lists the DFU candidates on bus matching vid:pid (0 matches any),
// sorted by port path. It is how a fixture binds devices to slots.
func Find(ctx context.Context, bus Bus, vid, pid uint16) ([]Info, error) {
	all, err := bus.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list usb devices: %w", err)
	}
	var out []Info
	for _, d := range all {
		if (vid == 0 || d.VID == vid) && (pid == 0 || d.PID == pid) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (b *Backend) linkErr(op string, err error) error {
	if errors.Is(err, ErrGone) || errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: device at port %s disappeared, check cable and power: %w: %w", op, b.info.Port, flasher.ErrLinkLost, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (b *Backend) control(ctx context.Context, rType, req uint8, val uint16, data []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.dev.Control(ctx, rType, req, val, uint16(b.alt.Interface), data)
	if b.cfg.Trace {
		b.log.Debug("dfu control", "rtype", rType, "req", req, "val", val, "len", len(data), "n", n, "err", err)
	}
	return n, err
}

func (b *Backend) getStatus(ctx context.Context) (StatusReply, error) {
	var buf [6]byte
	n, err := b.control(ctx, RTypeClassIn, ReqGetStatus, 0, buf[:])
	if err != nil {
		return StatusReply{}, err
	}
	if n < 6 {
		return StatusReply{}, fmt.Errorf("short GETSTATUS reply of %d bytes", n)
	}
	return StatusReply{Status: Status(buf[0]), PollTimeout: uint32(buf[1]) | uint32(buf[2])<<8 | uint32(buf[3])<<16,
		State: State(buf[4]), StringIndex: buf[5]}, nil
}

// getState reads bState without a transition.
func (b *Backend) getState(ctx context.Context) (State, error) {
	var buf [1]byte
	n, err := b.control(ctx, RTypeClassIn, ReqGetState, 0, buf[:])
	if err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, errors.New("empty GETSTATE reply")
	}
	return State(buf[0]), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitIdle polls GETSTATUS, sleeping bwPollTimeout between polls, until
// the device leaves dfuDNBUSY / dfuDNLOAD-SYNC / dfuMANIFEST*.
func (b *Backend) waitIdle(ctx context.Context, op string) (StatusReply, error) {
	deadline := time.Now().Add(DefaultStatusTimeout)
	for {
		st, err := b.getStatus(ctx)
		if err != nil {
			return st, b.linkErr(op+": get status", err)
		}
		if st.Status != StatusOK || st.State == DfuError {
			return st, &StatusError{Op: op, Status: st.Status, State: st.State}
		}
		switch st.State {
		case DfuDnBusy, DfuDnloadSync, DfuManifest, DfuManifestSync:
		default:
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s: device stays in %s for %s, power-cycle it and retry: %w", op, st.State, DefaultStatusTimeout, flasher.ErrNoResponse)
		}
		if err := sleepCtx(ctx, time.Duration(st.PollTimeout)*time.Millisecond); err != nil {
			return st, err
		}
	}
}

// toIdle brings the device to dfuIDLE from any idle, busy or error
// state. It asks at most twice: a busy state is waited out once, with
// waitIdle's bounded polling, and what follows must be one ABORT or
// CLRSTATUS away from dfuIDLE.
func (b *Backend) toIdle(ctx context.Context) error {
	st, err := b.getStatus(ctx)
	if err != nil {
		return b.linkErr("get status", err)
	}
	for waited := false; ; waited = true {
		switch st.State {
		case DfuIdle:
			return nil
		case DfuError:
			b.log.Info("dfu: clearing error state", "port", b.info.Port, "status", st.Status.String())
			if _, err := b.control(ctx, RTypeClassOut, ReqClrStatus, 0, nil); err != nil {
				return b.linkErr("clear status", err)
			}
		case DfuDnloadIdle, DfuUploadIdle, DfuDnloadSync, DfuManifestSync:
			if _, err := b.control(ctx, RTypeClassOut, ReqAbort, 0, nil); err != nil {
				return b.linkErr("abort", err)
			}
		case AppIdle, AppDetach:
			return fmt.Errorf("device at port %s is in run-time mode (%s), not DFU mode: %w", b.info.Port, st.State, flasher.ErrNoResponse)
		case DfuManifestWaitReset:
			// DFU 1.1 section 6.1.2: only a USB reset or a power-on
			// reset leaves dfuMANIFEST-WAIT-RESET.
			return fmt.Errorf("device at port %s waits for a USB reset after manifestation (%s): %w", b.info.Port, st.State, flasher.ErrNoResponse)
		case DfuDnBusy, DfuManifest:
			if waited {
				return fmt.Errorf("device at port %s stays in %s, power-cycle it: %w", b.info.Port, st.State, flasher.ErrNoResponse)
			}
			// waitIdle returns a state that is not busy, or an error.
			if st, err = b.waitIdle(ctx, "wait for idle"); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("device at port %s reports unknown DFU state %d: %w", b.info.Port, st.State, flasher.ErrUnsupported)
		}
		break
	}
	s, err := b.getState(ctx)
	if err != nil {
		return b.linkErr("get state", err)
	}
	if s != DfuIdle {
		return fmt.Errorf("device at port %s stays in %s, power-cycle it: %w", b.info.Port, s, flasher.ErrNoResponse)
	}
	return nil
}

// dfuIDs reports whether the device has other IDs in DFU mode.
func (b *Backend) dfuIDs() bool { return b.cfg.DFUVID != 0 || b.cfg.DFUPID != 0 }

// matches says whether d is the slot's device: with its run-time IDs
// (Config.VID:PID) or, when they are set, its DFU-mode IDs
// (Config.DFUVID:DFUPID). dfuOnly accepts only the IDs of DFU mode, which
// are the run-time ones when no DFU-mode IDs are set.
func (b *Backend) matches(d Info, dfuOnly bool) bool {
	runtime := (b.cfg.VID == 0 || d.VID == b.cfg.VID) && (b.cfg.PID == 0 || d.PID == b.cfg.PID)
	if !b.dfuIDs() {
		return runtime
	}
	dfuMode := (b.cfg.DFUVID == 0 || d.VID == b.cfg.DFUVID) && (b.cfg.DFUPID == 0 || d.PID == b.cfg.DFUPID)
	return dfuMode || (runtime && !dfuOnly)
}

// ids names the IDs the slot's device is looked for by, for messages.
func (b *Backend) ids(dfuOnly bool) string {
	rt := fmt.Sprintf("%04x:%04x", b.cfg.VID, b.cfg.PID)
	if !b.dfuIDs() {
		return rt
	}
	dm := fmt.Sprintf("%04x:%04x", b.cfg.DFUVID, b.cfg.DFUPID)
	if dfuOnly {
		return dm + " (DFU mode)"
	}
	return rt + " or " + dm + " (DFU mode)"
}

// pick finds the slot's device on port, or the only matching device
// when port is "".
func (b *Backend) pick(ctx context.Context, port string, dfuOnly bool) (Info, error) {
	all, err := b.bus.List(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("list usb devices: %w", err)
	}
	var found []Info
	for _, d := range all {
		if b.matches(d, dfuOnly) {
			found = append(found, d)
		}
	}
	if port != "" {
		for _, d := range found {
			if d.Port == port {
				return d, nil
			}
		}
		return Info{}, fmt.Errorf("no USB device %s at port %s: check the cable and that the device is in its bootloader: %w",
			b.ids(dfuOnly), port, flasher.ErrNoResponse)
	}
	switch len(found) {
	case 0:
		return Info{}, fmt.Errorf("no USB device %s found: check the cable and that the device is in its bootloader: %w", b.ids(dfuOnly), flasher.ErrNoResponse)
	case 1:
		return found[0], nil
	}
	ports := make([]string, len(found))
	for i, d := range found {
		ports[i] = d.Port
	}
	return Info{}, fmt.Errorf("%d USB devices %s found on ports %s: set the slot's port: %w",
		len(found), b.ids(dfuOnly), strings.Join(ports, ", "), flasher.ErrNoResponse)
}

// readConfig reads the full configuration descriptor and finds the alt
// setting b.cfg.Alt.
func (b *Backend) readConfig(ctx context.Context) error {
	hdr := make([]byte, 9)
	n, err := b.dev.Control(ctx, RTypeStdIn, ReqGetDesc, DescConfig<<8, 0, hdr)
	if err != nil {
		return b.linkErr("read configuration descriptor", err)
	}
	if n < 4 {
		return fmt.Errorf("read configuration descriptor: short reply of %d bytes: %w", n, flasher.ErrNoResponse)
	}
	total := binary.LittleEndian.Uint16(hdr[2:])
	full := make([]byte, total)
	n, err = b.dev.Control(ctx, RTypeStdIn, ReqGetDesc, DescConfig<<8, 0, full)
	if err != nil {
		return b.linkErr("read configuration descriptor", err)
	}
	alts, err := ParseConfig(full[:n])
	if err != nil {
		return fmt.Errorf("device at port %s: %w: %w", b.info.Port, err, flasher.ErrUnsupported)
	}
	for _, a := range alts {
		if a.Alt == b.cfg.Alt || a.Protocol == ProtoRuntime {
			b.alt = a
			if a.Alt == b.cfg.Alt {
				break
			}
		}
	}
	if b.alt.Protocol == 0 {
		return fmt.Errorf("device at port %s has no DFU alternate setting %d: %w", b.info.Port, b.cfg.Alt, flasher.ErrUnsupported)
	}
	b.xfer = int(b.alt.Functional.TransferSize)
	if b.cfg.TransferSize != 0 {
		b.xfer = int(b.cfg.TransferSize)
	}
	if b.xfer == 0 {
		b.xfer = DefaultTransferSize
	}
	b.dfuse = b.cfg.DfuSe || b.alt.Functional.Version == VersionDfuSe
	return nil
}

// readString reads string descriptor idx in US English.
func (b *Backend) readString(ctx context.Context, idx uint8) (string, error) {
	buf := make([]byte, 255)
	n, err := b.dev.Control(ctx, RTypeStdIn, ReqGetDesc, DescString<<8|uint16(idx), 0x0409, buf)
	if err != nil {
		return "", err
	}
	if n < 2 || buf[1] != DescString {
		return "", errors.New("not a string descriptor")
	}
	n = min(n, int(buf[0]))
	u := make([]uint16, 0, n/2)
	for i := 2; i+1 < n; i += 2 {
		u = append(u, binary.LittleEndian.Uint16(buf[i:]))
	}
	return string(utf16.Decode(u)), nil
}

// open opens the device info names, finds the slot's alternate setting
// (or the run-time interface) and selects it with SET_INTERFACE.
func (b *Backend) open(ctx context.Context, info Info) error {
	dev, err := b.bus.Open(ctx, info.Port)
	if err != nil {
		return fmt.Errorf("open USB device at port %s: %w: %w", info.Port, flasher.ErrNoResponse, err)
	}
	b.dev, b.info, b.alt = dev, info, AltSetting{}
	if err := b.readConfig(ctx); err != nil {
		return err
	}
	// Without SET_INTERFACE the device stays on alternate setting 0
	// (USB 2.0 section 9.1.1.5) and every request reaches alt 0's
	// memory, whatever setting the slot names.
	if _, err := b.dev.Control(ctx, RTypeStdOutIntf, ReqSetInterface, uint16(b.alt.Alt), uint16(b.alt.Interface), nil); err != nil {
		return b.linkErr(fmt.Sprintf("select alternate setting %d of interface %d", b.alt.Alt, b.alt.Interface), err)
	}
	return nil
}

func (b *Backend) closeDev() {
	if b.dev != nil {
		_ = b.dev.Close()
		b.dev = nil
	}
}

// connect opens the slot's device, in run-time or DFU mode, detaches it
// to DFU mode when needed, and leaves it in dfuIDLE.
func (b *Backend) connect(ctx context.Context) error {
	b.closeDev()
	info, err := b.pick(ctx, b.cfg.Port, false)
	if err != nil {
		return err
	}
	if err := b.open(ctx, info); err != nil {
		return err
	}
	return b.settle(ctx)
}

// settle takes an open device to dfuIDLE, detaching it first when it is
// in run-time mode, and reads its DfuSe memory layout.
func (b *Backend) settle(ctx context.Context) error {
	if b.alt.Protocol == ProtoRuntime {
		if err := b.detach(ctx); err != nil {
			return err
		}
	}
	if err := b.toIdle(ctx); err != nil {
		return err
	}
	if b.dfuse {
		b.layout = Layout{}
		if b.alt.StringIndex != 0 {
			if s, err := b.readString(ctx, b.alt.StringIndex); err == nil {
				if l, err := ParseLayout(s); err == nil {
					b.layout = l
				} else {
					b.log.Warn("dfu: memory layout not understood, using page size", "layout", s, "err", err)
				}
			}
		}
	}
	return nil
}

// busReset resets the port. A device that re-enumerates during the reset
// makes libusb fail the reset (or the transfers around it) with "not
// found", "no device", an I/O error or a stall: these are the
// re-enumeration expected, not faults. The handle is closed either way.
func (b *Backend) busReset(ctx context.Context, op string) error {
	err := b.dev.Reset(ctx)
	b.closeDev()
	switch {
	case err == nil:
	case errors.Is(err, ErrGone), errors.Is(err, ErrNotFound), errors.Is(err, ErrIO), errors.Is(err, ErrStall):
		b.log.Info("dfu: device re-enumerates after the usb reset", "port", b.info.Port, "op", op, "reset", err.Error())
	default:
		return b.linkErr(op+": usb reset", err)
	}
	return nil
}

// waitOpen waits, bounded by Config.EnumerateTimeout and ctx, for the
// slot's device to appear on port (in DFU mode when dfuOnly), and opens
// it. The bus has no hotplug events (gousb), so it lists the bus again
// every 50 ms.
func (b *Backend) waitOpen(ctx context.Context, port string, dfuOnly bool, after string) error {
	late := errors.New("enumerate timeout")
	ctx, cancel := context.WithTimeoutCause(ctx, b.cfg.EnumerateTimeout, late)
	defer cancel()
	var last error
	for {
		info, err := b.pick(ctx, port, dfuOnly)
		if err == nil {
			err = b.open(ctx, info)
			if err == nil && dfuOnly && b.alt.Protocol != ProtoDFU {
				err = fmt.Errorf("device at port %s is still in run-time mode", port)
			}
			if err == nil {
				return nil
			}
			b.closeDev()
		}
		last = err
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			if context.Cause(ctx) == late {
				mode := ""
				if dfuOnly {
					mode = " in DFU mode"
				}
				return fmt.Errorf("device %s at port %s did not come back%s within %s %s: check it supports DFU and power-cycle it: %w (last: %w)",
					b.ids(dfuOnly), port, mode, b.cfg.EnumerateTimeout, after, flasher.ErrNoResponse, last)
			}
			return err
		}
	}
}

// detach sends DFU_DETACH, resets the bus when the device will not detach
// by itself, and waits for the same port to come back in DFU mode, with
// the DFU-mode IDs when the slot gives them.
func (b *Backend) detach(ctx context.Context) error {
	port := b.info.Port
	fn := b.alt.Functional
	timeout := time.Duration(fn.DetachTimeout) * time.Millisecond
	if b.cfg.DetachTimeout != 0 {
		timeout = b.cfg.DetachTimeout
	}
	b.log.Info("dfu: detaching device to DFU mode", "port", port)
	if _, err := b.control(ctx, RTypeClassOut, ReqDetach, uint16(min(timeout.Milliseconds(), 0xffff)), nil); err != nil &&
		!errors.Is(err, ErrGone) {
		return b.linkErr("detach", err)
	}
	if fn.Attributes&AttrWillDetach == 0 {
		if err := b.busReset(ctx, "detach"); err != nil {
			return err
		}
	}
	b.closeDev()
	return b.waitOpen(ctx, port, true, "after detach")
}

func (b *Backend) ensure(ctx context.Context) error {
	if b.dev == nil {
		return b.connect(ctx)
	}
	return b.toIdle(ctx)
}

// Identify implements flasher.Backend. The hardware id is the USB serial
// string, or the UID read at Config.UIDAddress on a DfuSe device.
func (b *Backend) Identify(ctx context.Context) (flasher.Device, error) {
	if err := b.connect(ctx); err != nil {
		return flasher.Device{}, err
	}
	d := flasher.Device{HardwareID: flasher.HardwareID(b.info.Serial), Chip: "DFU 1.1"}
	if b.dfuse {
		d.Chip = "DfuSe"
		if b.layout.Name != "" {
			d.Chip = "DfuSe " + b.layout.Name
			base, size := b.layout.Size()
			d.FlashBase, d.FlashSize = uint64(base), size
		} else {
			d.FlashBase = uint64(b.cfg.Address)
		}
		if b.cfg.UIDAddress != 0 {
			uid, err := b.upload(ctx, b.cfg.UIDAddress, b.cfg.UIDLength)
			if err != nil {
				return flasher.Device{}, fmt.Errorf("read UID at %#x: %w", b.cfg.UIDAddress, err)
			}
			d.HardwareID = flasher.HardwareID(hex.EncodeToString(uid))
		}
	}
	if d.HardwareID == "" {
		return flasher.Device{}, fmt.Errorf("device at port %s has no USB serial string; configure a UID address: %w", b.info.Port, flasher.ErrUnsupported)
	}
	return d, nil
}

// dnload sends one DNLOAD block and waits for the device to take it.
func (b *Backend) dnload(ctx context.Context, op string, block uint16, data []byte) (StatusReply, error) {
	if _, err := b.control(ctx, RTypeClassOut, ReqDnload, block, data); err != nil {
		if errors.Is(err, ErrStall) {
			st, serr := b.getStatus(ctx)
			if serr == nil && st.Status != StatusOK {
				return st, &StatusError{Op: op, Status: st.Status, State: st.State}
			}
		}
		return StatusReply{}, b.linkErr(op, err)
	}
	return b.waitIdle(ctx, op)
}

func (b *Backend) dfuseCommand(ctx context.Context, cmd byte, addr uint32, withAddr bool) error {
	buf := []byte{cmd}
	if withAddr {
		buf = binary.LittleEndian.AppendUint32(buf, addr)
	}
	op := fmt.Sprintf("dfuse command %#02x at %#x", cmd, addr)
	st, err := b.dnload(ctx, op, 0, buf)
	if err != nil {
		return err
	}
	if st.State != DfuDnloadIdle {
		return &StatusError{Op: op, Status: st.Status, State: st.State}
	}
	return nil
}

func (b *Backend) segAddr(s flasher.Segment) (uint32, error) {
	a := s.Addr
	if a < uint64(b.cfg.Address) {
		a += uint64(b.cfg.Address)
	}
	if a+uint64(len(s.Data)) > 1<<32 {
		return 0, fmt.Errorf("segment %s at %#x does not fit a 32-bit address space", s.Name, a)
	}
	return uint32(a), nil
}

func (b *Backend) pages(addr uint32, n int) ([]uint32, error) {
	if len(b.layout.segments) > 0 {
		return b.layout.Pages(addr, uint32(n))
	}
	var out []uint32
	ps := b.cfg.PageSize
	for p := addr / ps * ps; uint64(p) < uint64(addr)+uint64(n); p += ps {
		out = append(out, p)
	}
	return out, nil
}

// Flash implements flasher.Backend. Plain DFU takes one segment (its
// address is ignored) and manifests it; DfuSe erases and writes each
// segment at its address.
func (b *Backend) Flash(ctx context.Context, img flasher.Image, progress flasher.Progress) error {
	if err := img.Validate(); err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	if err := b.ensure(ctx); err != nil {
		return err
	}
	if b.alt.Functional.Attributes&AttrCanDnload == 0 {
		return fmt.Errorf("device at port %s cannot download (bitCanDnload clear): %w", b.info.Port, flasher.ErrUnsupported)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	total := img.Size()
	if !b.dfuse {
		return b.flashPlain(ctx, img, total, progress)
	}
	if b.cfg.MassErase {
		b.log.Info("dfu: mass erase", "port", b.info.Port)
		if err := b.dfuseCommand(ctx, dfuseErase, 0, false); err != nil {
			return fmt.Errorf("mass erase: %w", err)
		}
	}
	// Erase every page any segment touches once, before writing, so that
	// a page shared by two segments is not erased after the first is
	// written.
	if !b.cfg.MassErase {
		seen := map[uint32]bool{}
		for _, s := range img.Segments {
			addr, err := b.segAddr(s)
			if err != nil {
				return err
			}
			pages, err := b.pages(addr, len(s.Data))
			if err != nil {
				return fmt.Errorf("erase for %s: %w", s.Name, err)
			}
			for _, p := range pages {
				if seen[p] {
					continue
				}
				seen[p] = true
				if err := b.dfuseCommand(ctx, dfuseErase, p, true); err != nil {
					return fmt.Errorf("erase page %#x for %s: %w", p, s.Name, err)
				}
			}
		}
	}
	var done int64
	for _, s := range img.Segments {
		addr, err := b.segAddr(s)
		if err != nil {
			return err
		}
		for off := 0; off < len(s.Data); off += b.xfer {
			chunk := s.Data[off:min(off+b.xfer, len(s.Data))]
			a := addr + uint32(off)
			if err := b.dfuseCommand(ctx, dfuseSetAddress, a, true); err != nil {
				return fmt.Errorf("write %s: %w", s.Name, err)
			}
			if _, err := b.dnload(ctx, fmt.Sprintf("write %s at %#x", s.Name, a), 2, chunk); err != nil {
				return err
			}
			done += int64(len(chunk))
			progress(done, total)
		}
	}
	return b.toIdle(ctx)
}

func (b *Backend) flashPlain(ctx context.Context, img flasher.Image, total int64, progress flasher.Progress) error {
	if len(img.Segments) != 1 {
		return fmt.Errorf("plain DFU writes one image, got %d segments: %w", len(img.Segments), flasher.ErrUnsupported)
	}
	data := img.Segments[0].Data
	var blk uint16
	for off := 0; off < len(data); off += b.xfer {
		chunk := data[off:min(off+b.xfer, len(data))]
		if _, err := b.dnload(ctx, fmt.Sprintf("download block %d", blk), blk, chunk); err != nil {
			return err
		}
		blk++
		progress(int64(off+len(chunk)), total)
	}
	return b.manifest(ctx, blk)
}

// manifest ends a plain download with a zero-length DNLOAD and sees the
// device through manifestation (DFU 1.1 section 7 and appendix A.1):
// dfuMANIFEST-SYNC, dfuMANIFEST, then dfuIDLE on a manifestation-tolerant
// device. A device with bitManifestationTolerant clear goes from
// dfuMANIFEST to dfuMANIFEST-WAIT-RESET, where only a USB reset moves it
// (section 6.1.2), and it need not answer GETSTATUS in dfuMANIFEST at all
// ("not all devices will be able to respond"): once it has reported
// manifestation, a request it leaves unanswered is taken as that. It is
// then reset, and the backend waits for it to re-enumerate on the same
// port, in DFU or run-time mode, and opens it again, so that Verify can
// read it back. Every wait is bounded.
func (b *Backend) manifest(ctx context.Context, blk uint16) error {
	const op = "manifest"
	if _, err := b.control(ctx, RTypeClassOut, ReqDnload, blk, nil); err != nil {
		if errors.Is(err, ErrStall) {
			if st, serr := b.getStatus(ctx); serr == nil && st.Status != StatusOK {
				return &StatusError{Op: op, Status: st.Status, State: st.State}
			}
		}
		return b.linkErr(op, err)
	}
	tolerant := b.alt.Functional.Attributes&AttrManifestationTolerant != 0
	deadline := time.Now().Add(DefaultStatusTimeout)
	manifesting := false
poll:
	for {
		st, err := b.getStatus(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !tolerant && manifesting {
				b.log.Info("dfu: device stopped answering during manifestation, as a device that is not manifestation-tolerant may",
					"port", b.info.Port, "err", err.Error())
				break poll
			}
			return b.linkErr(op+": get status", err)
		}
		if st.Status != StatusOK || st.State == DfuError {
			return &StatusError{Op: op, Status: st.Status, State: st.State}
		}
		switch st.State {
		case DfuIdle:
			if tolerant {
				return nil
			}
			// A device that says it is not tolerant yet comes back to
			// dfuIDLE has manifested; it is reset all the same.
			break poll
		case DfuManifestWaitReset:
			break poll
		case DfuManifestSync, DfuManifest:
			manifesting = true
		default:
			return &StatusError{Op: op + ": unexpected state", Status: st.Status, State: st.State}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: device stays in %s for %s, power-cycle it and retry: %w", op, st.State, DefaultStatusTimeout, flasher.ErrNoResponse)
		}
		if err := sleepCtx(ctx, time.Duration(st.PollTimeout)*time.Millisecond); err != nil {
			return err
		}
	}
	port := b.info.Port
	b.log.Info("dfu: device manifested and waits for a usb reset; resetting it", "port", port)
	if err := b.busReset(ctx, op); err != nil {
		return err
	}
	if err := b.waitOpen(ctx, port, false, "after the usb reset that ends manifestation"); err != nil {
		return err
	}
	return b.settle(ctx)
}

// upload reads n bytes. On DfuSe it sets the address pointer and uploads
// from block 2; on plain DFU it uploads from the start (addr is ignored).
func (b *Backend) upload(ctx context.Context, addr uint32, n int) ([]byte, error) {
	if b.alt.Functional.Attributes&AttrCanUpload == 0 {
		return nil, fmt.Errorf("device at port %s cannot upload (bitCanUpload clear): %w", b.info.Port, flasher.ErrUnsupported)
	}
	if err := b.toIdle(ctx); err != nil {
		return nil, err
	}
	out := make([]byte, 0, n)
	buf := make([]byte, b.xfer)
	// The device computes DfuSe addresses with its own wTransferSize, so
	// with an overridden size the pointer is set again for every block.
	perBlock := b.dfuse && b.xfer != int(b.alt.Functional.TransferSize)
	blk := uint16(0)
	for len(out) < n {
		if b.dfuse && (len(out) == 0 || perBlock) {
			a := addr + uint32(len(out))
			if err := b.toIdle(ctx); err != nil {
				return nil, err
			}
			if err := b.dfuseCommand(ctx, dfuseSetAddress, a, true); err != nil {
				return nil, fmt.Errorf("upload at %#x: %w", a, err)
			}
			if _, err := b.control(ctx, RTypeClassOut, ReqAbort, 0, nil); err != nil {
				return nil, b.linkErr("abort", err)
			}
			blk = 2
		}
		want := b.xfer
		if b.dfuse {
			want = min(b.xfer, n-len(out))
		}
		got, err := b.control(ctx, RTypeClassIn, ReqUpload, blk, buf[:want])
		if err != nil {
			if errors.Is(err, ErrStall) {
				if st, serr := b.getStatus(ctx); serr == nil && st.Status != StatusOK {
					return nil, &StatusError{Op: fmt.Sprintf("upload block %d", blk), Status: st.Status, State: st.State}
				}
			}
			return nil, b.linkErr(fmt.Sprintf("upload block %d", blk), err)
		}
		out = append(out, buf[:min(got, n-len(out))]...)
		if got < want {
			break
		}
		blk++
	}
	if err := b.toIdle(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// Verify implements flasher.Backend by reading every segment back.
func (b *Backend) Verify(ctx context.Context, img flasher.Image) error {
	if err := b.ensure(ctx); err != nil {
		return err
	}
	if !b.dfuse && len(img.Segments) != 1 {
		return fmt.Errorf("plain DFU verifies one image, got %d segments: %w", len(img.Segments), flasher.ErrUnsupported)
	}
	for _, s := range img.Segments {
		addr, err := b.segAddr(s)
		if err != nil {
			return err
		}
		got, err := b.upload(ctx, addr, len(s.Data))
		if err != nil {
			return fmt.Errorf("read back %s: %w", s.Name, err)
		}
		if len(got) < len(s.Data) {
			return fmt.Errorf("read back %s: device returned %d of %d bytes: %w", s.Name, len(got), len(s.Data), flasher.ErrVerify)
		}
		if i := firstDiff(got, s.Data); i >= 0 {
			return fmt.Errorf("read back %s: byte at %#x is %#02x, want %#02x: %w", s.Name, uint64(addr)+uint64(i), got[i], s.Data[i], flasher.ErrVerify)
		}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a[:len(b)], b) {
		return -1
	}
	for i := range b {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// LockOptions implements flasher.Backend; DFU has no standard lock.
func (b *Backend) LockOptions() []string { return nil }

// Lock implements flasher.Backend; asking for any lock is ErrUnsupported.
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	if len(opts) == 0 {
		return nil
	}
	return fmt.Errorf("lock %v: DFU has no device-side locks: %w", opts, flasher.ErrUnsupported)
}

// Reset implements flasher.Backend. DfuSe leaves DFU mode with a
// zero-length DNLOAD after setting the address to the base; plain DFU
// resets the port. The banner is always "".
func (b *Backend) Reset(ctx context.Context) (string, error) {
	if b.dev == nil {
		if err := b.connect(ctx); err != nil {
			return "", err
		}
	}
	defer b.closeDev()
	if b.dfuse {
		if err := b.toIdle(ctx); err != nil {
			return "", err
		}
		base := b.cfg.Address
		if base == 0 {
			base, _ = b.layout.Size()
		}
		if err := b.dfuseCommand(ctx, dfuseSetAddress, base, true); err != nil {
			return "", fmt.Errorf("leave DFU mode: %w", err)
		}
		if _, err := b.control(ctx, RTypeClassOut, ReqDnload, 2, nil); err != nil && !errors.Is(err, ErrGone) {
			return "", b.linkErr("leave DFU mode", err)
		}
		// The device leaves on the GETSTATUS that follows; it may be gone
		// before it answers.
		if _, err := b.getStatus(ctx); err != nil && !errors.Is(err, ErrGone) && !errors.Is(err, ErrStall) {
			return "", b.linkErr("leave DFU mode", err)
		}
		return "", nil
	}
	if err := b.busReset(ctx, "reset"); err != nil {
		return "", err
	}
	return "", nil
}

// Close implements flasher.Backend.
func (b *Backend) Close() error {
	b.closeDev()
	return nil
}
