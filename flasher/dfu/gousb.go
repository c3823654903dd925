package dfu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/gousb"
)

// DefaultControlTimeout bounds one control transfer on a gousb device.
const DefaultControlTimeout = 5 * time.Second

// GousbBus implements Bus over libusb through github.com/google/gousb.
// It lists only devices with a DFU interface (class 0xFE, subclass 0x01).
type GousbBus struct {
	ctx *gousb.Context
	// Timeout bounds each control transfer; 0 means DefaultControlTimeout.
	Timeout time.Duration
	// SysfsRoot is where serial strings are read without opening the
	// device ("/sys/bus/usb/devices"); "" skips sysfs.
	SysfsRoot string
}

// NewGousbBus opens a libusb context. Close it when done.
func NewGousbBus() *GousbBus {
	return &GousbBus{ctx: gousb.NewContext(), SysfsRoot: "/sys/bus/usb/devices"}
}

// Close releases the libusb context.
func (b *GousbBus) Close() error { return b.ctx.Close() }

func hasDFU(desc *gousb.DeviceDesc) bool {
	for _, c := range desc.Configs {
		for _, intf := range c.Interfaces {
			for _, a := range intf.AltSettings {
				if a.Class == ClassAppSpecific && a.SubClass == SubclassDFU {
					return true
				}
			}
		}
	}
	return false
}

// List implements Bus. The serial string comes from sysfs when it can,
// so listing sends no request to devices; otherwise from the device.
func (b *GousbBus) List(ctx context.Context) ([]Info, error) {
	var out []Info
	var needSerial []int
	devs, err := b.ctx.OpenDevices(func(desc *gousb.DeviceDesc) bool {
		if !hasDFU(desc) {
			return false
		}
		in := Info{VID: uint16(desc.Vendor), PID: uint16(desc.Product), Port: PortPath(desc.Bus, desc.Path)}
		if b.SysfsRoot != "" {
			if s, err := os.ReadFile(filepath.Join(b.SysfsRoot, in.Port, "serial")); err == nil {
				in.Serial = strings.TrimSpace(string(s))
				out = append(out, in)
				return false
			}
		}
		needSerial = append(needSerial, len(out))
		out = append(out, in)
		return true
	})
	// OpenDevices opens what it can and reports the rest in err.
	for _, d := range devs {
		port := PortPath(d.Desc.Bus, d.Desc.Path)
		for _, i := range needSerial {
			if out[i].Port == port {
				if s, serr := d.SerialNumber(); serr == nil {
					out[i].Serial = s
				}
			}
		}
		d.Close()
	}
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("enumerate usb devices: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out, nil
}

// Open implements Bus.
func (b *GousbBus) Open(ctx context.Context, port string) (Device, error) {
	devs, err := b.ctx.OpenDevices(func(desc *gousb.DeviceDesc) bool {
		return PortPath(desc.Bus, desc.Path) == port
	})
	if len(devs) == 0 {
		if err != nil {
			return nil, fmt.Errorf("open usb device at %s: %w", port, err)
		}
		return nil, fmt.Errorf("open usb device at %s: %w", port, ErrNotFound)
	}
	for _, d := range devs[1:] {
		d.Close()
	}
	d := devs[0]
	d.ControlTimeout = b.Timeout
	if d.ControlTimeout == 0 {
		d.ControlTimeout = DefaultControlTimeout
	}
	return &gousbDevice{d: d}, nil
}

// gousbDevice is an open device. It claims no interface through gousb:
// gousb's Config.Interface selects an alternate setting with
// USBDEVFS_SETINTERFACE, which umockdev cannot replay. usbfs claims the
// DFU interface for this handle at the first request addressed to it
// (Linux drivers/usb/core/devio.c, checkintf), and the backend selects
// the alternate setting with a SET_INTERFACE control request: a DFU
// interface has no endpoints besides the control pipe (DFU 1.1 section
// 4.2.3, bNumEndpoints 0), so the kernel's endpoint bookkeeping for the
// setting, all that the ioctl adds, has nothing to do.
type gousbDevice struct{ d *gousb.Device }

func mapUSBErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gousb.ErrorPipe):
		return fmt.Errorf("%w: %w", ErrStall, err)
	case errors.Is(err, gousb.ErrorNoDevice), errors.Is(err, gousb.ErrorNotFound):
		return fmt.Errorf("%w: %w", ErrGone, err)
	case errors.Is(err, gousb.ErrorTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, gousb.ErrorIO):
		return fmt.Errorf("%w: %w", ErrIO, err)
	}
	return err
}

// Control implements Device. gousb takes no context: the transfer is
// bounded by ControlTimeout and ctx is checked before it starts.
func (g *gousbDevice) Control(ctx context.Context, rType, request uint8, val, idx uint16, data []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := g.d.Control(rType, request, val, idx, data)
	return n, mapUSBErr(err)
}

// Reset implements Device. libusb_reset_device reports a device that
// re-enumerates as LIBUSB_ERROR_NOT_FOUND (libusb's documentation), and
// transfers to a device that is dropping off the bus fail with
// LIBUSB_ERROR_NO_DEVICE, _IO or _PIPE: each is returned mapped to
// ErrGone, ErrIO or ErrStall for the backend to take as the
// re-enumeration it expects.
func (g *gousbDevice) Reset(ctx context.Context) error { return mapUSBErr(g.d.Reset()) }

// Close implements Device.
func (g *gousbDevice) Close() error { return g.d.Close() }
