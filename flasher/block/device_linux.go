package block

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/station-dev/station/flasher"
)

// Device is a block device or a regular file opened as a Target.
type Device struct {
	path   string
	f      *os.File // buffered I/O
	direct *os.File // O_DIRECT, nil unless Options.Direct on a block device
	size   int64
	block  bool
}

var _ Target = (*Device)(nil)

// OpenTarget opens path for writing after the safety checks: a block
// device must not be mounted, hold /, /boot or swap, and must be removable
// unless opts.AllowFixed. Loop devices count as removable. A regular file
// is opened as it is (it grows as needed).
func OpenTarget(path string, opts Options) (*Device, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	d := &Device{path: path}
	switch {
	case st.Mode().IsRegular():
		d.f, err = os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open target: %w", err)
		}
		d.size = math.MaxInt64
		return d, nil
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
	default:
		return nil, fmt.Errorf("%s is neither a block device nor a regular file", path)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if err := CheckSafe(uint64(sys.Rdev), opts.AllowFixed); err != nil {
		return nil, err
	}
	d.block = true
	d.f, err = os.OpenFile(path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%s is in use (mounted, in a RAID or LVM, or opened by another program): release it first: %w", path, err)
		}
		return nil, fmt.Errorf("open target: %w", err)
	}
	if err := ioctlPtr(d.f, unix.BLKGETSIZE64, unsafe.Pointer(&d.size)); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("read size of %s: %w", path, err)
	}
	if opts.Direct {
		// O_EXCL is already held by d.f; a second O_EXCL open would fail.
		d.direct, err = os.OpenFile(path, os.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			d.f.Close()
			return nil, fmt.Errorf("open %s with O_DIRECT: %w", path, err)
		}
	}
	return d, nil
}

func ioctlPtr(f *os.File, req uint, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(p))
	if e != 0 {
		return e
	}
	return nil
}

// Name returns the path the device was opened with.
func (d *Device) Name() string { return d.path }

// Size returns the device's capacity; a regular file has no limit.
func (d *Device) Size() int64 { return d.size }

func aligned(p []byte, off int64) bool {
	return off%align == 0 && len(p)%align == 0 && len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%align == 0
}

// WriteAt writes p at off, through O_DIRECT when opened so and aligned.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if d.direct != nil && aligned(p, off) {
		return d.direct.WriteAt(p, off)
	}
	return d.f.WriteAt(p, off)
}

// ReadAt reads at off, through O_DIRECT when opened so and aligned.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if d.direct != nil && aligned(p, off) {
		return d.direct.ReadAt(p, off)
	}
	return d.f.ReadAt(p, off)
}

// Discard issues BLKDISCARD on a block device for the sector-aligned part
// of the range, writing zeros over the unaligned edges, and punches a hole
// in a regular file.
func (d *Device) Discard(off, n int64) error {
	if !d.block {
		return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	}
	a, b := (off+511)&^511, (off+n)&^511
	if b <= a {
		return d.writeZeros(off, n)
	}
	r := [2]uint64{uint64(a), uint64(b - a)}
	if err := ioctlPtr(d.f, unix.BLKDISCARD, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("BLKDISCARD %d+%d: %w", a, b-a, err)
	}
	if err := d.writeZeros(off, a-off); err != nil {
		return err
	}
	return d.writeZeros(b, off+n-b)
}

// Zero makes [off, off+n) read as zeros: BLKZEROOUT on a block device,
// FALLOC_FL_ZERO_RANGE on a file, plain zero writes where those fail.
func (d *Device) Zero(off, n int64) error {
	if !d.block {
		if unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n) == nil {
			return nil
		}
		return d.writeZeros(off, n)
	}
	a, b := (off+511)&^511, (off+n)&^511
	if b > a {
		r := [2]uint64{uint64(a), uint64(b - a)}
		if err := ioctlPtr(d.f, unix.BLKZEROOUT, unsafe.Pointer(&r)); err != nil {
			return d.writeZeros(off, n)
		}
	} else {
		a, b = off, off
	}
	if err := d.writeZeros(off, a-off); err != nil {
		return err
	}
	return d.writeZeros(b, off+n-b)
}

func (d *Device) writeZeros(off, n int64) error {
	z := make([]byte, min(n, 1<<20))
	for n > 0 {
		m := min(int64(len(z)), n)
		if _, err := d.f.WriteAt(z[:m], off); err != nil {
			return err
		}
		off += m
		n -= m
	}
	return nil
}

// Flush fsyncs and, on a block device, flushes its buffer cache
// (BLKFLSBUF) so that nothing is left only in memory.
func (d *Device) Flush() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if d.block {
		if err := ioctlPtr(d.f, unix.BLKFLSBUF, nil); err != nil {
			return fmt.Errorf("BLKFLSBUF: %w", err)
		}
	}
	return nil
}

// DropCache drops the page cache of the device so reads hit the medium.
func (d *Device) DropCache() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := unix.Fadvise(int(d.f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("posix_fadvise DONTNEED: %w", err)
	}
	return nil
}

// Close closes the device.
func (d *Device) Close() error {
	if d.direct != nil {
		d.direct.Close()
	}
	return d.f.Close()
}

// sysBlock returns the sysfs directory of the whole disk holding the block
// device dev, and the disk's kernel name.
func sysBlock(dev uint64) (string, string, error) {
	p, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return "", "", fmt.Errorf("find device %d:%d in sysfs: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
		p = filepath.Dir(p)
	}
	return p, filepath.Base(p), nil
}

// related returns the major:minor numbers of the disk at sysdir, its
// partitions and, recursively, their holders (dm, md), by kernel name.
func related(sysdir string) map[string]string {
	out := map[string]string{}
	var walk func(dir string)
	walk = func(dir string) {
		if b, err := os.ReadFile(filepath.Join(dir, "dev")); err == nil {
			mm := strings.TrimSpace(string(b))
			if _, seen := out[mm]; seen {
				return
			}
			out[mm] = filepath.Base(dir)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
				walk(filepath.Join(dir, e.Name()))
			}
		}
		holders, _ := os.ReadDir(filepath.Join(dir, "holders"))
		for _, h := range holders {
			if p, err := filepath.EvalSymlinks(filepath.Join(dir, "holders", h.Name())); err == nil {
				walk(p)
			}
		}
	}
	walk(sysdir)
	return out
}

// ErrUnsafe means a target was refused because writing it could destroy
// data in use: it is mounted, holds the system, or is a fixed disk.
var ErrUnsafe = errors.New("refusing to write this device")

// CheckSafe refuses the block device dev (a disk or one of its
// partitions) when the disk or any partition is mounted or used as swap,
// holds / or /boot, or the disk is not removable and allowFixed is false.
func CheckSafe(dev uint64, allowFixed bool) error {
	sysdir, disk, err := sysBlock(dev)
	if err != nil {
		return err
	}
	devs := related(sysdir)
	if err := checkMounts("/proc/self/mountinfo", devs); err != nil {
		return err
	}
	if err := checkSwaps("/proc/swaps", devs); err != nil {
		return err
	}
	if !allowFixed && !strings.HasPrefix(disk, "loop") {
		b, _ := os.ReadFile(filepath.Join(sysdir, "removable"))
		if strings.TrimSpace(string(b)) != "1" && !onUSB(sysdir) {
			return fmt.Errorf("%s is a fixed disk, not a removable card or USB reader: set AllowFixed to write it anyway: %w", disk, ErrUnsafe)
		}
	}
	return nil
}

// onUSB reports whether the disk sits behind a USB device (card readers
// that report removable=0).
func onUSB(sysdir string) bool {
	p, err := filepath.EvalSymlinks(filepath.Join(sysdir, "device"))
	return err == nil && strings.Contains(p, "/usb")
}

func checkMounts(mountinfo string, devs map[string]string) error {
	f, err := os.Open(mountinfo)
	if err != nil {
		return fmt.Errorf("check mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		name, ok := devs[fields[2]]
		if !ok {
			continue
		}
		mnt := unescape(fields[4])
		switch mnt {
		case "/":
			return fmt.Errorf("%s holds the root filesystem of this computer: choose another device: %w", name, ErrUnsafe)
		case "/boot", "/boot/efi":
			return fmt.Errorf("%s holds %s of this computer: choose another device: %w", name, mnt, ErrUnsafe)
		}
		return fmt.Errorf("%s is mounted at %s: unmount it first: %w", name, mnt, ErrUnsafe)
	}
	return sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func checkSwaps(swaps string, devs map[string]string) error {
	b, err := os.ReadFile(swaps)
	if err != nil {
		return nil // no swap support
	}
	for i, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if i == 0 || len(fields) < 2 {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(unescape(fields[0]), &st) != nil {
			continue
		}
		dev := st.Dev // a swap file lives on its filesystem's device
		if fields[1] == "partition" {
			dev = st.Rdev
		}
		if name, ok := devs[fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))]; ok {
			return fmt.Errorf("%s holds swap space (%s) of this computer: swapoff it or choose another device: %w", name, fields[0], ErrUnsafe)
		}
	}
	return nil
}

// HardwareID returns the identity of the medium at path: for an SD card or
// eMMC on an MMC host its CID ("cid:…"), for a disk behind a USB card
// reader the reader's serial and LUN ("usb:SERIAL:lunN"), for a disk with a
// serial in sysfs that serial, and otherwise the path itself.
func HardwareID(path string) (flasher.HardwareID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("hardware id: %w", err)
	}
	if st.Mode()&os.ModeDevice == 0 {
		abs, _ := filepath.Abs(path)
		return flasher.HardwareID("file:" + abs), nil
	}
	sysdir, disk, err := sysBlock(uint64(st.Sys().(*syscall.Stat_t).Rdev))
	if err != nil {
		return "", fmt.Errorf("hardware id: %w", err)
	}
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}
	if cid := read(filepath.Join(sysdir, "device", "cid")); cid != "" {
		return flasher.HardwareID("cid:" + cid), nil
	}
	if dev, err := filepath.EvalSymlinks(filepath.Join(sysdir, "device")); err == nil && strings.Contains(dev, "/usb") {
		// .../usb1/1-2/1-2:1.0/host3/target3:0:0/3:0:0:1 : the SCSI
		// address's last number is the LUN; the USB device directory
		// above holds the serial.
		lun := dev[strings.LastIndexByte(dev, ':')+1:]
		for p := dev; p != "/" && p != "."; p = filepath.Dir(p) {
			if s := read(filepath.Join(p, "serial")); s != "" && read(filepath.Join(p, "idVendor")) != "" {
				return flasher.HardwareID("usb:" + s + ":lun" + lun), nil
			}
		}
	}
	if s := read(filepath.Join(sysdir, "device", "serial")); s != "" {
		return flasher.HardwareID("serial:" + s), nil
	}
	if s := read(filepath.Join(sysdir, "device", "wwid")); s != "" {
		return flasher.HardwareID("wwid:" + s), nil
	}
	_ = disk
	return flasher.HardwareID(path), nil
}
