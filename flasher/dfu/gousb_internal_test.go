package dfu

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/gousb"
	"github.com/station-dev/station/flasher"
)

// TestMapUSBErr checks that libusb's errors reach the backend as the
// sentinels it decides on.
func TestMapUSBErr(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{gousb.ErrorPipe, ErrStall},
		{gousb.ErrorNoDevice, ErrGone},
		{gousb.ErrorNotFound, ErrGone},
		{gousb.ErrorTimeout, ErrTimeout},
		{gousb.ErrorIO, ErrIO},
	}
	for _, tt := range tests {
		if got := mapUSBErr(tt.in); !errors.Is(got, tt.want) || !errors.Is(got, tt.in) {
			t.Errorf("mapUSBErr(%v) = %v, want it to wrap %v and %v", tt.in, got, tt.want, tt.in)
		}
	}
	if got := mapUSBErr(gousb.ErrorAccess); !errors.Is(got, gousb.ErrorAccess) {
		t.Errorf("mapUSBErr(%v) = %v, want it unchanged", gousb.ErrorAccess, got)
	}
}

// resetDevice is a Device whose reset fails with err.
type resetDevice struct {
	Device
	err error
}

func (d *resetDevice) Reset(context.Context) error { return d.err }
func (d *resetDevice) Close() error                { return nil }

// TestBusResetReenumeration checks that the errors libusb gives while a
// device re-enumerates during a reset (not found, no device, I/O, pipe)
// are taken as the re-enumeration, and others fail.
func TestBusResetReenumeration(t *testing.T) {
	tests := []struct {
		libusb  error
		wantErr bool
	}{
		{nil, false},
		{gousb.ErrorNotFound, false},
		{gousb.ErrorNoDevice, false},
		{gousb.ErrorIO, false},
		{gousb.ErrorPipe, false},
		{gousb.ErrorAccess, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.libusb), func(t *testing.T) {
			b := NewBackend(nil, Config{})
			b.dev = &resetDevice{err: mapUSBErr(tt.libusb)}
			err := b.busReset(context.Background(), "manifest")
			if (err != nil) != tt.wantErr {
				t.Fatalf("busReset with libusb %v = %v, want error %v", tt.libusb, err, tt.wantErr)
			}
			if b.dev != nil {
				t.Errorf("busReset left the stale handle open")
			}
			if err != nil && errors.Is(err, flasher.ErrLinkLost) {
				t.Errorf("busReset = %v: an access error is not a lost link", err)
			}
		})
	}
}
