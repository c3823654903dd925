package block

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// testImage is a generated image with a bmap and compressed copies.
type testImage struct {
	raw, bmap string
	files     map[Compression]string
	data      []byte
	bm        *Bmap
}

// makeImage writes a sparse image of size bytes in dir: mapped runs of
// pseudo-random, half-compressible data over about half of it, the rest
// holes; then its bmap (bmaptool create) and .gz, .xz, .zst copies.
func makeImage(tb testing.TB, dir string, size int64, compressions ...Compression) *testImage {
	tb.Helper()
	if _, err := exec.LookPath("bmaptool"); err != nil {
		need(tb, "bmaptool (Debian bmap-tools, which scripts/test installs)", err)
	}
	img := &testImage{raw: filepath.Join(dir, "image.img"), bmap: filepath.Join(dir, "image.bmap"), files: map[Compression]string{}}
	img.data = make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	const run = 1 << 20
	for off := int64(0); off < size; off += run {
		switch (off / run) % 4 {
		case 0:
			continue // hole
		case 1, 3:
			end := min(off+run, size)
			for i := off; i < end; i++ {
				img.data[i] = byte(r.Uint32() & 0x3f)
			}
		case 2:
			// a few scattered blocks, one unaligned
			for _, b := range []int64{0, 5, 77, 200} {
				o := off + b*4096 + 100
				for i := o; i < min(o+700, size); i++ {
					img.data[i] = byte(r.Uint32())
				}
			}
		}
	}
	// the last bytes, so the final partial block is mapped
	copy(img.data[size-10:], "end-of-img")
	f, err := os.Create(img.raw)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	for off := int64(0); off < size; off += 4096 {
		blk := img.data[off:min(off+4096, size)]
		if !allZero(blk) {
			if _, err := f.WriteAt(blk, off); err != nil {
				tb.Fatal(err)
			}
		}
	}
	f.Close()
	run2(tb, "bmaptool", "create", img.raw, "-o", img.bmap)
	img.files[None] = img.raw
	for _, c := range compressions {
		switch c {
		case Gzip:
			run2(tb, "gzip", "-k", "-1", "-f", img.raw)
			img.files[c] = img.raw + ".gz"
		case XZ:
			run2(tb, "xz", "-k", "-0", "-T2", "-f", img.raw)
			img.files[c] = img.raw + ".xz"
		case Zstd:
			run2(tb, "zstd", "-q", "-k", "-f", "-T2", img.raw)
			img.files[c] = img.raw + ".zst"
		}
	}
	bf, err := os.Open(img.bmap)
	if err != nil {
		tb.Fatal(err)
	}
	defer bf.Close()
	if img.bm, err = ParseBmap(bf); err != nil {
		tb.Fatalf("parse bmaptool's bmap: %v", err)
	}
	return img
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func run2(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newDisk returns a loop device over a file of size bytes filled with fill,
// or the file itself when loop devices cannot be used.
func newDisk(tb testing.TB, dir string, size int64, fill byte) string {
	tb.Helper()
	f, err := os.CreateTemp(dir, "disk-*.bin")
	if err != nil {
		tb.Fatal(err)
	}
	buf := bytes.Repeat([]byte{fill}, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			tb.Fatal(err)
		}
	}
	f.Close()
	if os.Geteuid() != 0 {
		tb.Logf("not root: writing to the plain file %s instead of a loop device", f.Name())
		return f.Name()
	}
	out, err := exec.Command("losetup", "--find", "--show", f.Name()).CombinedOutput()
	if err != nil {
		tb.Logf("losetup failed (%v: %s): writing to the plain file %s instead", err, out, f.Name())
		return f.Name()
	}
	dev := strings.TrimSpace(string(out))
	tb.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			tb.Logf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func isLoop(path string) bool { return strings.HasPrefix(path, "/dev/loop") }

// readAll reads the first n bytes of path, bypassing nothing.
func readN(tb testing.TB, path string, n int64) []byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return b
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func openT(tb testing.TB, path string, opts Options) *Device {
	tb.Helper()
	d, err := OpenTarget(path, opts)
	if err != nil {
		tb.Fatalf("OpenTarget(%s): %v", path, err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// faultyTarget fails every write once limit bytes were written, like a
// card pulled out mid-write.
type faultyTarget struct {
	Target
	limit   int64
	written atomic.Int64
}

func (f *faultyTarget) WriteAt(p []byte, off int64) (int, error) {
	if f.written.Add(int64(len(p))) > f.limit {
		return 0, os.ErrDeadlineExceeded // any I/O error; EIO in real life
	}
	return f.Target.WriteAt(p, off)
}

// need stops a test whose requirement this machine lacks: a failure when
// CI is set, where scripts/test provides every requirement, a skip
// naming the requirement elsewhere.
func need(tb testing.TB, what string, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("this test needs %s: %v", what, err)
	}
	tb.Skipf("this test needs %s: %v", what, err)
}
