package block

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

const benchSize = 256 << 20

// BenchmarkBlockVsBmaptool reports our write+verify time over the time of
// `bmaptool copy --bmap` for the same half-mapped 256 MiB image and loop
// device (block_vs_bmaptool; at most 1.0 is the aim).
func BenchmarkBlockVsBmaptool(b *testing.B) {
	dir := b.TempDir()
	img := makeImage(b, dir, benchSize, Gzip)
	disk := newDisk(b, dir, benchSize+(1<<20), 0)
	for _, tc := range []struct {
		c      Compression
		direct bool
	}{{None, false}, {None, true}, {Gzip, true}} {
		c := tc.c
		name := string(c)
		if tc.direct {
			name += "/direct"
		}
		b.Run(name, func(b *testing.B) {
			src, err := OpenSource(img.files[c], img.bmap)
			if err != nil {
				b.Fatal(err)
			}
			var ours, theirs time.Duration
			for b.Loop() {
				start := time.Now()
				if out, err := exec.Command("bmaptool", "-q", "copy", "--bmap", img.bmap, img.files[c], disk).CombinedOutput(); err != nil {
					b.Fatalf("bmaptool copy: %v %s", err, out)
				}
				theirs += time.Since(start)

				start = time.Now()
				d, err := OpenTarget(disk, Options{Direct: tc.direct})
				if err != nil {
					b.Fatal(err)
				}
				r := MultiWrite(context.Background(), src, []Target{d}, Options{Verify: true})[0]
				d.Close()
				ours += time.Since(start)
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			b.ReportMetric(float64(ours)/float64(theirs), "block_vs_bmaptool")
			b.ReportMetric(float64(img.bm.MappedBytes())/(1<<20)/(ours.Seconds()/float64(b.N)), "MiB/s")
		})
	}
}

// BenchmarkMultiwrite4 reports the wall time of writing (and verifying)
// four loop devices at once over that of one (multiwrite_4_ratio; at most
// 1.3 is the aim).
func BenchmarkMultiwrite4(b *testing.B) {
	dir := b.TempDir()
	img := makeImage(b, dir, benchSize, Zstd)
	src, err := OpenSource(img.files[Zstd], img.bmap)
	if err != nil {
		b.Fatal(err)
	}
	var disks []string
	for range 4 {
		disks = append(disks, newDisk(b, dir, benchSize+(1<<20), 0))
	}
	write := func(b *testing.B, paths []string, direct bool) time.Duration {
		var ts []Target
		for _, p := range paths {
			d, err := OpenTarget(p, Options{Direct: direct})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ts = append(ts, d)
		}
		start := time.Now()
		for _, r := range MultiWrite(context.Background(), src, ts, Options{Verify: true}) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		return time.Since(start)
	}
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) {
			var one, four time.Duration
			for b.Loop() {
				one += write(b, disks[:1], direct)
				four += write(b, disks, direct)
			}
			b.ReportMetric(float64(four)/float64(one), "multiwrite_4_ratio")
			b.ReportMetric(one.Seconds()/float64(b.N), "s_1_target")
		})
	}
}
