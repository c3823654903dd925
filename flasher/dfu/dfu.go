package dfu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Class requests of DFU 1.1 section 3 (bRequest values).
const (
	ReqDetach    = 0 // DFU_DETACH: leave run-time mode after wDetachTimeOut
	ReqDnload    = 1 // DFU_DNLOAD: one block of firmware, zero length ends it
	ReqUpload    = 2 // DFU_UPLOAD: one block read back from the device
	ReqGetStatus = 3 // DFU_GETSTATUS: 6 bytes of status, poll time and state
	ReqClrStatus = 4 // DFU_CLRSTATUS: leave dfuERROR for dfuIDLE
	ReqGetState  = 5 // DFU_GETSTATE: one byte of state, no transition
	ReqAbort     = 6 // DFU_ABORT: back to dfuIDLE from an idle sub-state
)

// bmRequestType values for class requests to an interface, and for the
// standard GET_DESCRIPTOR request to the device.
const (
	RTypeClassOut = 0x21 // host to device, class, interface
	RTypeClassIn  = 0xA1 // device to host, class, interface
	RTypeStdIn    = 0x80 // device to host, standard, device
	ReqGetDesc    = 6    // GET_DESCRIPTOR (USB 2.0 table 9-4)
)

// SET_INTERFACE (USB 2.0 section 9.4.10): wValue is the alternate
// setting, wIndex the interface. A configured device uses alternate
// setting 0 until it is sent (section 9.1.1.5), so a DFU device
// addresses the memory of alt 0 until the host selects another.
const (
	RTypeStdOutIntf = 0x01 // host to device, standard, interface
	ReqSetInterface = 11   // SET_INTERFACE
)

// Descriptor types (USB 2.0 table 9-5 and DFU 1.1 section 4.1.3).
const (
	DescDevice     = 0x01
	DescConfig     = 0x02
	DescString     = 0x03
	DescInterface  = 0x04
	DescFunctional = 0x21 // DFU functional descriptor
)

// Interface class, subclass and protocols of a DFU interface (DFU 1.1
// section 4.1.2 and 4.2.3).
const (
	ClassAppSpecific = 0xFE
	SubclassDFU      = 0x01
	ProtoRuntime     = 0x01 // run-time mode, next to the application's interfaces
	ProtoDFU         = 0x02 // DFU mode, the only interface
)

// State is bState of DFU 1.1 section 6.1.2.
type State uint8

// DFU states.
const (
	AppIdle              State = 0
	AppDetach            State = 1
	DfuIdle              State = 2
	DfuDnloadSync        State = 3
	DfuDnBusy            State = 4
	DfuDnloadIdle        State = 5
	DfuManifestSync      State = 6
	DfuManifest          State = 7
	DfuManifestWaitReset State = 8
	DfuUploadIdle        State = 9
	DfuError             State = 10
)

var stateNames = [...]string{"appIDLE", "appDETACH", "dfuIDLE", "dfuDNLOAD-SYNC", "dfuDNBUSY",
	"dfuDNLOAD-IDLE", "dfuMANIFEST-SYNC", "dfuMANIFEST", "dfuMANIFEST-WAIT-RESET", "dfuUPLOAD-IDLE", "dfuERROR"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state" + strconv.Itoa(int(s))
}

// Status is bStatus of DFU 1.1 section 6.1.2.
type Status uint8

// DFU status codes.
const (
	StatusOK             Status = 0x00
	ErrTarget            Status = 0x01 // file not for this device
	ErrFile              Status = 0x02 // file fails a vendor check
	ErrWrite             Status = 0x03 // cannot write memory
	ErrErase             Status = 0x04 // memory erase failed
	ErrCheckErased       Status = 0x05 // erase check failed
	ErrProg              Status = 0x06 // program memory failed
	ErrVerify            Status = 0x07 // programmed memory failed verification
	ErrAddress           Status = 0x08 // address out of range
	ErrNotDone           Status = 0x09 // zero-length DNLOAD before the firmware was complete
	ErrFirmware          Status = 0x0A // firmware corrupt, cannot return to run-time
	ErrVendor            Status = 0x0B // vendor specific, see iString
	ErrUSBReset          Status = 0x0C // unexpected USB reset
	ErrPOR               Status = 0x0D // unexpected power-on reset
	ErrUnknown           Status = 0x0E // something went wrong
	ErrStalledPkt        Status = 0x0F // unexpected request
	statusCount                 = 0x10
	functionalDescLength        = 9
)

var statusNames = [statusCount]string{"OK", "errTARGET", "errFILE", "errWRITE", "errERASE",
	"errCHECK_ERASED", "errPROG", "errVERIFY", "errADDRESS", "errNOTDONE", "errFIRMWARE",
	"errVENDOR", "errUSBR", "errPOR", "errUNKNOWN", "errSTALLEDPKT"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status" + strconv.Itoa(int(s))
}

// Transport errors a Device returns, wrapped, so the backend can tell a
// refused request from a vanished device.
var (
	// ErrStall means the device stalled the control pipe: it refused
	// the request in its current state.
	ErrStall = errors.New("usb: control request stalled")
	// ErrGone means the device is no longer on the bus.
	ErrGone = errors.New("usb: device gone")
	// ErrNotFound means no device is at the port path asked for.
	ErrNotFound = errors.New("usb: no device at port")
	// ErrTimeout means the device did not answer a control request
	// within the transfer's timeout: it NAKed or was not listening.
	ErrTimeout = errors.New("usb: control request timed out")
	// ErrIO means the transfer failed on the wire (libusb's
	// LIBUSB_ERROR_IO), as it does while a device drops off the bus.
	ErrIO = errors.New("usb: i/o error")
)

// Device is the narrow USB interface the backend needs: control transfers
// on endpoint 0 and a bus reset. Descriptors are read with GET_DESCRIPTOR.
type Device interface {
	// Control performs one control transfer and returns the number of
	// bytes transferred. data is sent for OUT requests (rType bit 7
	// clear) and filled for IN requests.
	Control(ctx context.Context, rType, request uint8, val, idx uint16, data []byte) (int, error)
	// Reset issues a USB port reset. A device that re-enumerates during the reset (it leaves
	// DFU mode, or its descriptors change) makes Reset return an error
	// wrapping ErrGone, ErrNotFound, ErrIO or ErrStall; the handle is
	// then stale and the device must be found again on its port.
	Reset(ctx context.Context) error
	// Close releases the device.
	Close() error
}

// Info describes one device on the bus.
type Info struct {
	// VID and PID are idVendor and idProduct.
	VID, PID uint16
	// Serial is the serial number string, "" when the device has none.
	Serial string
	// Port is the physical port path, bus number then hub ports:
	// "1-1.4" (the Linux sysfs name). It survives re-enumeration.
	Port string
}

// Bus lists devices and opens one by its port path.
type Bus interface {
	// List returns the devices now on the bus.
	List(ctx context.Context) ([]Info, error)
	// Open opens the device at port path; ErrNotFound when none is there.
	Open(ctx context.Context, port string) (Device, error)
}

// PortPath formats a bus number and hub port numbers as "1-1.4".
func PortPath(bus int, ports []int) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(bus))
	for i, p := range ports {
		if i == 0 {
			b.WriteByte('-')
		} else {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}

// Functional is the DFU functional descriptor (DFU 1.1 section 4.1.3).
type Functional struct {
	// Attributes is bmAttributes.
	Attributes uint8
	// DetachTimeout is wDetachTimeOut in milliseconds.
	DetachTimeout uint16
	// TransferSize is wTransferSize, the largest DNLOAD/UPLOAD block.
	TransferSize uint16
	// Version is bcdDFUVersion: 0x0110 for DFU 1.1, 0x011a for DfuSe.
	Version uint16
}

// bmAttributes bits.
const (
	AttrCanDnload             = 1 << 0
	AttrCanUpload             = 1 << 1
	AttrManifestationTolerant = 1 << 2
	AttrWillDetach            = 1 << 3
)

// VersionDfuSe is bcdDFUVersion of ST's DfuSe extension.
const VersionDfuSe = 0x011a

// Bytes encodes the descriptor.
func (f Functional) Bytes() []byte {
	b := []byte{functionalDescLength, DescFunctional, f.Attributes, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[3:], f.DetachTimeout)
	binary.LittleEndian.PutUint16(b[5:], f.TransferSize)
	binary.LittleEndian.PutUint16(b[7:], f.Version)
	return b
}

// AltSetting is one DFU interface alternate setting found in a
// configuration descriptor.
type AltSetting struct {
	Interface, Alt uint8
	// Protocol is ProtoRuntime or ProtoDFU.
	Protocol uint8
	// StringIndex is iInterface; DfuSe devices name their memory there.
	StringIndex uint8
	// Functional is the functional descriptor that follows the
	// interface, shared by all alternate settings.
	Functional Functional
}

// ParseConfig finds the DFU interfaces in a full configuration descriptor
// (wTotalLength bytes).
func ParseConfig(b []byte) ([]AltSetting, error) {
	if len(b) < 9 || b[1] != DescConfig {
		return nil, errors.New("parse configuration descriptor: not a configuration descriptor")
	}
	var alts []AltSetting
	var fn *Functional
	inDFU := false
	for off := 0; off < len(b); {
		l := int(b[off])
		if l < 2 || off+l > len(b) {
			return nil, fmt.Errorf("parse configuration descriptor: bad descriptor length %d at offset %d", l, off)
		}
		d := b[off : off+l]
		switch d[1] {
		case DescInterface:
			if l < 9 {
				return nil, fmt.Errorf("parse configuration descriptor: short interface descriptor at offset %d", off)
			}
			inDFU = d[5] == ClassAppSpecific && d[6] == SubclassDFU
			if inDFU {
				alts = append(alts, AltSetting{Interface: d[2], Alt: d[3], Protocol: d[7], StringIndex: d[8]})
			}
		case DescFunctional:
			if inDFU && l >= 7 {
				f := Functional{Attributes: d[2], DetachTimeout: binary.LittleEndian.Uint16(d[3:]),
					TransferSize: binary.LittleEndian.Uint16(d[5:]), Version: 0x0100}
				if l >= 9 {
					f.Version = binary.LittleEndian.Uint16(d[7:])
				}
				fn = &f
			}
		}
		off += l
	}
	if len(alts) == 0 {
		return nil, errors.New("parse configuration descriptor: no DFU interface (class 0xFE subclass 0x01)")
	}
	if fn == nil {
		return nil, errors.New("parse configuration descriptor: DFU interface has no functional descriptor")
	}
	for i := range alts {
		alts[i].Functional = *fn
	}
	return alts, nil
}

// StatusReply is the answer to DFU_GETSTATUS.
type StatusReply struct {
	Status Status
	// PollTimeout is bwPollTimeout in milliseconds: the least time
	// before the next GETSTATUS.
	PollTimeout uint32
	State       State
	StringIndex uint8
}

// StatusError is a device that reports a status other than OK, or a state
// the backend did not expect.
type StatusError struct {
	// Op names what the backend was doing.
	Op     string
	Status Status
	State  State
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: device reports %s in state %s", e.Op, e.Status, e.State)
}

// Unwrap maps write failures to flasher sentinels.
func (e *StatusError) Unwrap() error { return statusSentinel(e.Status) }

// memSegment is one run of equal pages in a DfuSe memory layout.
type memSegment struct {
	start    uint32
	pages    int
	pageSize uint32
	attrs    byte // 'a'..'g': bit0 readable, bit1 erasable, bit2 writable
}

// Layout is a DfuSe memory layout, as named by the alt setting's string
// "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg".
type Layout struct {
	Name     string
	segments []memSegment
}

// ParseLayout parses a DfuSe interface string.
func ParseLayout(s string) (Layout, error) {
	if !strings.HasPrefix(s, "@") {
		return Layout{}, fmt.Errorf("parse memory layout %q: no leading @", s)
	}
	parts := strings.Split(s[1:], "/")
	if len(parts) < 3 || (len(parts)-1)%2 != 0 {
		return Layout{}, fmt.Errorf("parse memory layout %q: want name/address/sectors", s)
	}
	l := Layout{Name: strings.TrimSpace(parts[0])}
	for i := 1; i+1 < len(parts); i += 2 {
		a, err := strconv.ParseUint(strings.TrimSpace(parts[i]), 0, 32)
		if err != nil {
			return Layout{}, fmt.Errorf("parse memory layout %q: address %q: %w", s, parts[i], err)
		}
		addr := uint32(a)
		for _, sec := range strings.Split(parts[i+1], ",") {
			sec = strings.TrimSpace(sec)
			n, rest, ok := strings.Cut(sec, "*")
			if !ok || len(rest) < 2 {
				return Layout{}, fmt.Errorf("parse memory layout %q: sector %q", s, sec)
			}
			count, err := strconv.Atoi(n)
			if err != nil {
				return Layout{}, fmt.Errorf("parse memory layout %q: sector count %q: %w", s, n, err)
			}
			attr := rest[len(rest)-1]
			rest = rest[:len(rest)-1]
			mult := uint32(1)
			switch rest[len(rest)-1] {
			case 'K':
				mult, rest = 1024, rest[:len(rest)-1]
			case 'M':
				mult, rest = 1024*1024, rest[:len(rest)-1]
			case 'B', ' ':
				rest = rest[:len(rest)-1]
			}
			size, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil || size <= 0 || count <= 0 {
				return Layout{}, fmt.Errorf("parse memory layout %q: sector size %q", s, sec)
			}
			seg := memSegment{start: addr, pages: count, pageSize: uint32(size) * mult, attrs: attr}
			l.segments = append(l.segments, seg)
			addr += uint32(count) * seg.pageSize
		}
	}
	return l, nil
}

// Pages returns the start addresses of the pages that [addr, addr+n)
// touches, and an error when part of the range is outside the layout.
func (l Layout) Pages(addr uint32, n uint32) ([]uint32, error) {
	var out []uint32
	end := uint64(addr) + uint64(n)
	cur := uint64(addr)
	for cur < end {
		found := false
		for _, s := range l.segments {
			segEnd := uint64(s.start) + uint64(s.pages)*uint64(s.pageSize)
			if cur >= uint64(s.start) && cur < segEnd {
				page := uint64(s.start) + (cur-uint64(s.start))/uint64(s.pageSize)*uint64(s.pageSize)
				out = append(out, uint32(page))
				cur = page + uint64(s.pageSize)
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("address %#x is outside the device's memory %q", cur, l.Name)
		}
	}
	return out, nil
}

// Size returns the total bytes in the layout and its first address.
func (l Layout) Size() (base uint32, size int64) {
	if len(l.segments) == 0 {
		return 0, 0
	}
	base = l.segments[0].start
	for _, s := range l.segments {
		size += int64(s.pages) * int64(s.pageSize)
	}
	return base, size
}
