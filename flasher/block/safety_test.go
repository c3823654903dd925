//go:build linux

package block

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRefuseSystemDisk checks that the disk holding / is refused, with the
// fixed-disk override or without it. Where / is on no block device (a
// container's overlay), a loop device stands in for the system disk in a
// made-up mountinfo.
func TestRefuseSystemDisk(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	dev := uint64(st.Dev)
	if _, err := os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev))); err != nil {
		t.Logf("/ is on no block device here (%v): a loop device stands in for the system disk", err)
		refuseStandInRoot(t)
		return
	}
	for _, allowFixed := range []bool{false, true} {
		err := CheckSafe(dev, allowFixed)
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "root filesystem") {
			t.Errorf("CheckSafe(/, allowFixed=%v): %v, want a root filesystem refusal", allowFixed, err)
		}
		t.Log(err)
	}
}

// refuseStandInRoot mounts nothing: it names a loop device as the root
// filesystem's in a made-up mountinfo and checks the refusal.
func refuseStandInRoot(t *testing.T) {
	disk := newDisk(t, t.TempDir(), 1<<20, 0)
	if !isLoop(disk) {
		need(t, "root and a loop device (losetup, from util-linux; scripts/test runs as root in CI)", errors.New(disk+" is a plain file"))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(disk, &st); err != nil {
		t.Fatal(err)
	}
	mm := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte("22 1 "+mm+" / / rw,relatime shared:1 - ext4 "+disk+" rw\n"), 0o644)
	err := checkMounts(mi, map[string]string{mm: filepath.Base(disk)})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "root filesystem") {
		t.Errorf("the stand-in system disk %s: %v, want a root filesystem refusal", disk, err)
	}
}

// TestMountinfo checks mount parsing against a made-up mountinfo.
func TestMountinfo(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte(`22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 22 8:1 / /boot rw shared:2 - vfat /dev/sda1 rw
40 22 8:17 / /media/my\040card rw - vfat /dev/sdb1 rw
`), 0o644)
	for _, tc := range []struct {
		devs map[string]string
		want string
	}{
		{map[string]string{"8:0": "sda", "8:2": "sda2"}, "sda2 holds the root filesystem"},
		{map[string]string{"8:1": "sda1"}, "sda1 holds /boot"},
		{map[string]string{"8:16": "sdb", "8:17": "sdb1"}, "sdb1 is mounted at /media/my card: unmount it first"},
		{map[string]string{"8:32": "sdc"}, ""},
	} {
		err := checkMounts(mi, tc.devs)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.devs, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.devs, err, tc.want)
		}
	}
}

// TestMultiWriteCanceled checks that a canceled context stops every target.
func TestMultiWriteCanceled(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize)
	src, err := OpenSource(img.raw, img.bmap)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := MultiWrite(ctx, src, []Target{openT(t, newDisk(t, dir, diskSize, 0), Options{})}, Options{Verify: true})
	if !errors.Is(res[0].Err, context.Canceled) || res[0].Verified {
		t.Errorf("canceled write: %+v", res[0])
	}
}
