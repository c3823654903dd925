package gdb

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
)

// BenchmarkGDBVsGdbMultiarch flashes and verifies a 256 KiB image on one
// QEMU netduinoplus2, (a) with this backend (connect, Identify, Flash,
// Verify) and (b) with gdb-multiarch ("restore" of the binary, then "dump
// binary memory" compared in Go), and reports the ratio of the two times.
func BenchmarkGDBVsGdbMultiarch(b *testing.B) {
	needTools(b, "qemu-system-arm", "gdb-multiarch")
	s := startQEMU(b)
	data := testImage(42, imageSize)
	img := imageOf(data)
	dir := b.TempDir()
	file := filepath.Join(dir, "image.bin")
	dump := filepath.Join(dir, "dump.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ours := func(reset bool) {
		conn, err := s.Dial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		be := New(conn, Config{TargetName: "netduinoplus2", HardwareID: "bench"})
		defer be.Close()
		if _, err := be.Identify(ctx); err != nil {
			b.Fatalf("Identify = %v", err)
		}
		if err := be.Flash(ctx, img, nil); err != nil {
			b.Fatalf("Flash = %v", err)
		}
		if err := be.Verify(ctx, img); err != nil {
			b.Fatalf("Verify = %v", err)
		}
		if reset {
			if _, err := be.Reset(ctx); err != nil {
				b.Fatalf("Reset = %v", err)
			}
		}
	}
	theirs := func() {
		os.Remove(dump)
		cmd := exec.CommandContext(b.Context(), "gdb-multiarch", "-nx", "-batch",
			"-ex", "set architecture arm",
			"-ex", "target remote "+s.Addr(),
			"-ex", fmt.Sprintf("restore %s binary %#x", file, flashBase),
			"-ex", fmt.Sprintf("dump binary memory %s %#x %#x", dump, flashBase, flashBase+imageSize),
			"-ex", "detach")
		if out, err := proctest.Output(cmd); err != nil {
			b.Fatalf("gdb-multiarch: %v\n%s", err, out)
		}
		got, err := os.ReadFile(dump)
		if err != nil || !bytes.Equal(got, data) {
			b.Fatalf("gdb-multiarch read back something else than the image (%v)", err)
		}
	}
	// Once, untimed: flash and reset, so that the core runs the image's
	// "b ." loop whenever a client detaches. A core started from a blank
	// flash has its Thumb bit clear and locks up, which ends QEMU.
	ours(true)
	var tOurs, tTheirs time.Duration
	for b.Loop() {
		t0 := time.Now()
		ours(false)
		t1 := time.Now()
		theirs()
		tOurs += t1.Sub(t0)
		tTheirs += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(tOurs.Seconds()/n*1e3, "ours_ms")
	b.ReportMetric(tTheirs.Seconds()/n*1e3, "gdbmultiarch_ms")
	b.ReportMetric(tOurs.Seconds()/tTheirs.Seconds(), "gdb_vs_gdbmultiarch")
}
