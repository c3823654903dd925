package dfu_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"

	"github.com/station-dev/station/flasher/dfu"
)

// transfer is one control transfer seen by recordingBus.
type transfer struct {
	rType, req uint8
	val, idx   uint16
	wLength    int
	data       []byte // sent (OUT) or received (IN)
	stalled    bool
}

// recordingBus wraps a Bus and records every control transfer, so that a
// session against the simulator can be replayed to libusb by umockdev.
type recordingBus struct {
	dfu.Bus
	mu  sync.Mutex
	log []transfer
}

func (r *recordingBus) Open(ctx context.Context, port string) (dfu.Device, error) {
	d, err := r.Bus.Open(ctx, port)
	if err != nil {
		return nil, err
	}
	return &recordingDevice{Device: d, r: r}, nil
}

type recordingDevice struct {
	dfu.Device
	r *recordingBus
}

func (d *recordingDevice) Control(ctx context.Context, rType, req uint8, val, idx uint16, data []byte) (int, error) {
	n, err := d.Device.Control(ctx, rType, req, val, idx, data)
	tr := transfer{rType: rType, req: req, val: val, idx: idx, wLength: len(data), stalled: errors.Is(err, dfu.ErrStall)}
	if rType&0x80 != 0 {
		tr.data = append([]byte(nil), data[:max(n, 0)]...)
	} else {
		tr.data = append([]byte(nil), data...)
	}
	d.r.mu.Lock()
	d.r.log = append(d.r.log, tr)
	d.r.mu.Unlock()
	return n, err
}

// writeUsbmonPcap writes transfers as a libpcap file of
// DLT_USB_LINUX_MMAPPED (220) records for bus:dev, as the kernel's usbmon
// reports control transfers: on submit the setup packet and any OUT data
// (urb_len wLength), on completion any IN data (urb_len the length done).
func writeUsbmonPcap(path string, bus uint16, dev uint8, log []transfer) error {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 220)
	usec := uint32(0)
	rec := func(id uint64, ev, ep byte, status int32, urbLen uint32, setup, data []byte) {
		h := make([]byte, 64)
		binary.LittleEndian.PutUint64(h[0:], id)
		h[8], h[9], h[10], h[11] = ev, 2, ep, dev
		binary.LittleEndian.PutUint16(h[12:], bus)
		h[14], h[15] = '-', '<'
		if setup != nil {
			h[14] = 0
			copy(h[40:], setup)
		}
		if len(data) > 0 {
			h[15] = 0
		}
		usec += 100
		binary.LittleEndian.PutUint64(h[16:], uint64(usec/1_000_000))
		binary.LittleEndian.PutUint32(h[24:], usec%1_000_000)
		binary.LittleEndian.PutUint32(h[28:], uint32(status))
		binary.LittleEndian.PutUint32(h[32:], urbLen)
		binary.LittleEndian.PutUint32(h[36:], uint32(len(data)))
		pkt := append(h, data...)
		b = binary.LittleEndian.AppendUint32(b, usec/1_000_000)
		b = binary.LittleEndian.AppendUint32(b, usec%1_000_000)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
		b = append(b, pkt...)
	}
	for i, t := range log {
		setup := []byte{t.rType, t.req, byte(t.val), byte(t.val >> 8), byte(t.idx), byte(t.idx >> 8), byte(t.wLength), byte(t.wLength >> 8)}
		id := uint64(0x1000 + i)
		in := t.rType&0x80 != 0
		ep := byte(0)
		if in {
			ep = 0x80
		}
		var out []byte
		if !in {
			out = t.data
		}
		rec(id, 'S', ep, -115, uint32(t.wLength), setup, out) // -EINPROGRESS
		status, n := int32(0), len(t.data)
		var reply []byte
		if in {
			reply = t.data
		}
		if t.stalled {
			status, n, reply = -32, 0, nil // -EPIPE
		}
		rec(id, 'C', ep, status, uint32(n), nil, reply)
	}
	return os.WriteFile(path, b, 0o644)
}
