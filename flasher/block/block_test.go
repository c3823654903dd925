package block

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
)

const (
	imgSize  = 16<<20 + 1000 // a partial last block
	diskSize = 20 << 20
)

// TestWriteMatchesBmaptool writes the image in each compression with and
// without its bmap and checks the whole device ends up byte for byte as
// after `bmaptool copy`.
func TestWriteMatchesBmaptool(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize, Gzip, XZ, Zstd)

	ref := newDisk(t, dir, diskSize, 0xAA)
	run2(t, "bmaptool", "copy", "--bmap", img.bmap, img.files[Gzip], ref)
	want := readN(t, ref, diskSize)
	for _, r := range img.bm.Ranges {
		off, n := img.bm.Span(r)
		if !bytes.Equal(want[off:off+n], img.data[off:off+n]) {
			t.Fatalf("bmaptool's copy differs from the generated image in blocks %d-%d: the test image is wrong", r.First, r.Last)
		}
	}

	for _, c := range []Compression{None, Gzip, XZ, Zstd} {
		for _, withBmap := range []bool{true, false} {
			name := string(c)
			if withBmap {
				name += "+bmap"
			}
			t.Run(name, func(t *testing.T) {
				bmapPath := ""
				if withBmap {
					bmapPath = img.bmap
				}
				src, err := OpenSource(img.files[c], bmapPath)
				if err != nil {
					t.Fatal(err)
				}
				if src.Compression != c {
					t.Errorf("compression detected as %s, want %s", src.Compression, c)
				}
				disk := newDisk(t, dir, diskSize, 0xAA)
				var last int64
				res := MultiWrite(context.Background(), src, []Target{openT(t, disk, Options{})},
					Options{Verify: true, Progress: func(_ int, done, _ int64) { last = done }})
				r := res[0]
				if r.Err != nil || !r.Verified {
					t.Fatalf("write: %+v", r)
				}
				if want := sum(img.data); !withBmap && r.SHA256 != want {
					t.Errorf("image sha256 %s, want %s", r.SHA256, want)
				}
				wantWritten := int64(imgSize)
				if withBmap {
					wantWritten = img.bm.MappedBytes()
				}
				if r.Written != wantWritten || last != wantWritten {
					t.Errorf("written %d, progress %d, want %d", r.Written, last, wantWritten)
				}
				got := readN(t, disk, diskSize)
				if withBmap {
					if !bytes.Equal(got, want) {
						t.Errorf("device differs from bmaptool's copy (sha256 %s vs %s)", sum(got), sum(want))
					}
				} else if !bytes.Equal(got[:imgSize], img.data) || !bytes.Equal(got[imgSize:], want[imgSize:]) {
					t.Error("device differs from the image")
				}
			})
		}
	}
}

// TestMultiWriteOneTargetFails writes to four devices at once; one fails
// after 8 MiB and the other three finish and verify.
func TestMultiWriteOneTargetFails(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize, Zstd)
	src, err := OpenSource(img.files[Zstd], img.bmap)
	if err != nil {
		t.Fatal(err)
	}
	var targets []Target
	var disks []string
	for i := range 4 {
		disk := newDisk(t, dir, diskSize, 0)
		disks = append(disks, disk)
		var tg Target = openT(t, disk, Options{})
		if i == 2 {
			tg = &faultyTarget{Target: tg, limit: 8 << 20}
		}
		targets = append(targets, tg)
	}
	res := MultiWrite(context.Background(), src, targets, Options{Verify: true, ChunkSize: 1 << 20, QueueDepth: 2})
	for i, r := range res {
		if i == 2 {
			if !errors.Is(r.Err, flasher.ErrWrite) || r.Verified {
				t.Errorf("faulty target: err %v verified %v, want ErrWrite", r.Err, r.Verified)
			}
			if r.Written > 8<<20 {
				t.Errorf("faulty target wrote %d bytes past its limit", r.Written)
			}
			continue
		}
		if r.Err != nil || !r.Verified {
			t.Errorf("target %d: %+v", i, r)
			continue
		}
		if got := readN(t, disks[i], imgSize); !bytes.Equal(got, img.data) {
			t.Errorf("target %d holds other bytes than the image", i)
		}
	}
}

// hungTarget blocks in its first write until the test ends, like a card
// reader that stopped answering.
type hungTarget struct {
	Target
	release chan struct{}
}

func (h *hungTarget) WriteAt(p []byte, off int64) (int, error) {
	<-h.release
	return 0, os.ErrClosed
}

// TestMultiWriteHungTarget checks that a target that never completes a
// write is given up after StallTimeout while the others finish.
func TestMultiWriteHungTarget(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize)
	src, err := OpenSource(img.raw, img.bmap)
	if err != nil {
		t.Fatal(err)
	}
	hung := &hungTarget{Target: openT(t, newDisk(t, dir, diskSize, 0), Options{}), release: make(chan struct{})}
	t.Cleanup(func() { close(hung.release) })
	good := newDisk(t, dir, diskSize, 0)
	res := MultiWrite(context.Background(), src, []Target{hung, openT(t, good, Options{})},
		Options{Verify: true, ChunkSize: 1 << 20, QueueDepth: 1, StallTimeout: 200 * time.Millisecond})
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "accepted no data") {
		t.Errorf("hung target: %v, want a stall error", res[0].Err)
	}
	if res[1].Err != nil || !res[1].Verified {
		t.Errorf("good target: %+v", res[1])
	}
}

// TestClearUnmapped checks that Discard and ZeroUnmapped leave no old data
// in the bmap's holes, and that without either the old data stays.
func TestClearUnmapped(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize)
	src, err := OpenSource(img.raw, img.bmap)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		opts      Options
		wantClean bool
	}{
		{"discard", Options{Discard: true}, true},
		{"zero", Options{ZeroUnmapped: true}, true},
		{"neither", Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := newDisk(t, dir, diskSize, 0xAA)
			r := MultiWrite(context.Background(), src, []Target{openT(t, disk, Options{})}, tc.opts)[0]
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			got := readN(t, disk, diskSize)
			if tc.name == "discard" && isLoop(disk) && !bytes.Equal(got[:imgSize], img.data) {
				// loop devices discard by punching holes: zeros.
				t.Error("discarded loop device does not read as the image")
			}
			clean := bytes.Equal(got[:imgSize], img.data)
			if clean != tc.wantClean {
				t.Errorf("image range equals the image: %v, want %v", clean, tc.wantClean)
			}
			if !bytes.Equal(got[imgSize:], bytes.Repeat([]byte{0xAA}, diskSize-imgSize)) {
				t.Error("bytes past the image were touched")
			}
		})
	}
}

// TestCorruptImage checks that broken images fail with a clear error.
func TestCorruptImage(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize, Gzip, XZ)
	gz, _ := os.ReadFile(img.files[Gzip])
	xzb, _ := os.ReadFile(img.files[XZ])
	raw, _ := os.ReadFile(img.raw)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := func(b []byte, at int) []byte { c := bytes.Clone(b); c[at] ^= 0xFF; return c }
	mappedAt := int(img.bm.Ranges[1].First*img.bm.BlockSize + 10)
	for _, tc := range []struct {
		name     string
		path     string
		bmap     string
		wantOpen string // error from OpenSource, "" if it opens
		wantErr  string // error from MultiWrite
	}{
		{"gzip header", write("badhdr.img.gz", append([]byte{0x1f, 0x8b, 0, 0}, gz[4:]...)), "", "not valid gzip", ""},
		{"gzip middle", write("badmid.img.gz", flip(gz, len(gz)/2)), "", "", "read image"},
		{"gzip crc", write("badcrc.img.gz", flip(gz, len(gz)-6)), "", "", "checksum"},
		{"xz truncated", write("trunc.img.xz", xzb[:len(xzb)/2]), img.bmap, "", "unexpected EOF"},
		{"raw truncated", write("trunc.img", raw[:imgSize/2]), img.bmap, "", "truncated"},
		{"raw differs from bmap", write("flip.img", flip(raw, mappedAt)), img.bmap, "", "the image or the bmap is corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := OpenSource(tc.path, tc.bmap)
			if tc.wantOpen != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantOpen) {
					t.Fatalf("OpenSource: %v, want %q", err, tc.wantOpen)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenSource: %v", err)
			}
			disk := newDisk(t, dir, diskSize, 0)
			r := MultiWrite(context.Background(), src, []Target{openT(t, disk, Options{})}, Options{Verify: true})[0]
			if r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr) || r.Verified {
				t.Fatalf("MultiWrite: %v, want an error with %q", r.Err, tc.wantErr)
			}
			t.Log(r.Err)
		})
	}
}

// TestVerifyCatchesFlip flips one byte on the device after a good write.
func TestVerifyCatchesFlip(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, imgSize)
	src, err := OpenSource(img.raw, img.bmap)
	if err != nil {
		t.Fatal(err)
	}
	disk := newDisk(t, dir, diskSize, 0)
	d := openT(t, disk, Options{Direct: true})
	r := MultiWrite(context.Background(), src, []Target{d}, Options{Verify: true})[0]
	if r.Err != nil || !r.Verified {
		t.Fatalf("write: %+v", r)
	}
	at := img.bm.Ranges[len(img.bm.Ranges)/2].First*img.bm.BlockSize + 123
	// Flip through another descriptor, as a failing card would.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{img.data[at] ^ 0x01}
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	if err := VerifyBmap(context.Background(), d, img.bm); !errors.Is(err, flasher.ErrVerify) {
		t.Errorf("VerifyBmap: %v, want ErrVerify", err)
	}
	if err := VerifyHash(context.Background(), d, imgSize, r.SHA256); !errors.Is(err, flasher.ErrVerify) {
		t.Errorf("VerifyHash: %v, want ErrVerify", err)
	}
}

// TestRefuseMounted mounts an ext4 filesystem on a loop device and expects
// OpenTarget, the backend and MultiWrite's caller to be refused.
func TestRefuseMounted(t *testing.T) {
	dir := t.TempDir()
	disk := newDisk(t, dir, 32<<20, 0)
	if !isLoop(disk) {
		need(t, "root and a loop device (losetup, from util-linux; scripts/test runs as root in CI)", errors.New(disk+" is a plain file"))
	}
	if out, err := exec.Command("mkfs.ext4", "-q", disk).CombinedOutput(); err != nil {
		need(t, "mkfs.ext4 (Debian e2fsprogs, which scripts/test installs)", fmt.Errorf("%v: %s", err, out))
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", disk, mnt).CombinedOutput(); err != nil {
		need(t, "mount as root (Debian mount, which scripts/test installs)", fmt.Errorf("%v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	_, err := OpenTarget(disk, Options{AllowFixed: true})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "is mounted at "+mnt+": unmount it first") {
		t.Fatalf("OpenTarget on a mounted device: %v", err)
	}
	t.Log(err)
	if _, err := NewBackend(disk, Config{}).Identify(context.Background()); !errors.Is(err, ErrUnsafe) {
		t.Errorf("Identify on a mounted device: %v", err)
	}
}

// TestBackend drives the flasher.Backend adapter with segments.
func TestBackend(t *testing.T) {
	dir := t.TempDir()
	disk := newDisk(t, dir, 8<<20, 0xAA)
	b := NewBackend(disk, Config{})
	defer b.Close()
	dev, err := b.Identify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dev.HardwareID == "" || (isLoop(disk) && dev.FlashSize != 8<<20) {
		t.Errorf("Identify: %+v", dev)
	}
	img := flasher.Image{Segments: []flasher.Segment{
		{Name: "boot", Addr: 512, Data: bytes.Repeat([]byte{1, 2, 3}, 1000)},
		{Name: "rootfs", Addr: 1 << 20, Data: bytes.Repeat([]byte{9}, 5<<20)},
	}}
	var done, total int64
	if err := b.Flash(context.Background(), img, func(d, tt int64) { done, total = d, tt }); err != nil {
		t.Fatal(err)
	}
	if done != img.Size() || total != img.Size() {
		t.Errorf("progress %d/%d, want %d", done, total, img.Size())
	}
	if err := b.Verify(context.Background(), img); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	img.Segments[1].Data = bytes.Clone(img.Segments[1].Data)
	img.Segments[1].Data[4242] = 8
	if err := b.Verify(context.Background(), img); !errors.Is(err, flasher.ErrVerify) {
		t.Errorf("Verify of a different image: %v, want ErrVerify", err)
	}
	if err := b.Lock(context.Background(), []string{"wp"}); !errors.Is(err, flasher.ErrUnsupported) {
		t.Errorf("Lock: %v, want ErrUnsupported", err)
	}
	if s, err := b.Reset(context.Background()); s != "" || err != nil {
		t.Errorf("Reset: %q %v", s, err)
	}
	big := flasher.Image{Segments: []flasher.Segment{{Name: "x", Addr: 8<<20 - 10, Data: make([]byte, 100)}}}
	if isLoop(disk) {
		if err := b.Flash(context.Background(), big, nil); !errors.Is(err, flasher.ErrUnsupported) {
			t.Errorf("Flash past the end: %v", err)
		}
	}
}

// TestHardwareID checks the fallbacks that any machine has.
func TestHardwareID(t *testing.T) {
	dir := t.TempDir()
	disk := newDisk(t, dir, 1<<20, 0)
	id, err := HardwareID(disk)
	if err != nil {
		t.Fatal(err)
	}
	if isLoop(disk) && string(id) != disk {
		t.Errorf("loop device id %q, want its path", id)
	}
	if !isLoop(disk) && !strings.HasPrefix(string(id), "file:") {
		t.Errorf("file id %q", id)
	}
	if _, err := HardwareID(filepath.Join(dir, "missing")); err == nil {
		t.Error("HardwareID of a missing path: no error")
	}
}
