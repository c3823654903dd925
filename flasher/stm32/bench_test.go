//go:build linux

package stm32_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/flasher/stm32"
)

// BenchmarkSTM32VsStm32flash times, on the same simulated STM32F4 (with
// GET CHECKSUM) on a PTY at the same baud rate (env STM32_BENCH_BAUD,
// default 115200):
//
//   - this backend's Flash + Verify of a 128 KiB image (erase included,
//     Identify not), and
//   - `stm32flash -m 8n1 -b BAUD -w image.bin -v -S 0x08000000:131072`,
//     the whole run, after a reset so that its init byte gets its ACK.
//
// It reports both, "stm32_vs_stm32flash" (our seconds over
// stm32flash's: below 1 is faster) and "stm32_effective_over_line":
// image bytes / our seconds / (baud/10). The simulator paces 8N1, ten
// bits a byte, in both directions, and erases instantly (hardware takes
// tens of milliseconds a page); on hardware at 8E1 a byte takes eleven
// bits. stm32flash verifies by reading every block back; this backend
// asks the bootloader for a CRC, so the image crosses the line once.
func BenchmarkSTM32VsStm32flash(b *testing.B) {
	tool := stm32flash(b)
	baud := 115200
	if v := os.Getenv("STM32_BENCH_BAUD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("STM32_BENCH_BAUD=%q is not a baud rate", v)
		}
		baud = n
	}
	const size = 128 << 10
	d := startDevice(b, sim.STM32Config{Family: sim.STM32F4, CRC: true, StrapBoot0: true, Seed: 1}, baud)
	img := image(size, 42)
	in := filepath.Join(b.TempDir(), "image.bin")
	if err := os.WriteFile(in, img.Segments[0].Data, 0o644); err != nil {
		b.Fatal(err)
	}
	chip := d.sim.Chip()
	var ours, theirs time.Duration
	b.ResetTimer()
	for range b.N {
		be := d.backend(stm32.Config{}, baud)
		if _, err := be.Identify(d.ctx); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := be.Flash(d.ctx, img, nil); err != nil {
			b.Fatal(err)
		}
		if err := be.Verify(d.ctx, img); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)

		chip.SetLines(false, true) // NRST low: a fresh bootloader for stm32flash
		chip.SetLines(false, false)
		start = time.Now()
		if _, err := runTool(d.ctx, tool, baud, d.sim.Port(), "-w", in, "-v", "-S", fmt.Sprintf("%#x:%d", sim.STM32FlashBase, size)); err != nil {
			b.Fatal(err)
		}
		theirs += time.Since(start)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "stm32_s")
	b.ReportMetric(theirs.Seconds()/n, "stm32flash_s")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "stm32_vs_stm32flash")
	b.ReportMetric(size/(ours.Seconds()/n)/(float64(baud)/10), "stm32_effective_over_line")
}
