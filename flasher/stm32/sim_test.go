//go:build linux

package stm32_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.bug.st/serial"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/stm32"
)

// testBaud keeps the tests quick; the benchmark runs at 115200.
const testBaud = 460800

// device is a simulated STM32 on a real PTY, with the station's serial
// port open on it (8N1: a PTY carries no parity) and DTR/RTS going to
// the sideband.
type device struct {
	sim  *sim.STM32Device
	port *fixtures.SerialPort
	ctx  context.Context
}

func startDevice(t testing.TB, cfg sim.STM32Config, baud int) *device {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := sim.StartSTM32Device(ctx, filepath.Join(t.TempDir(), "stm32"), cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p, err := fixtures.OpenSerial(ctx, d.Port(), baud, serial.NoParity, d.Lines())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		cancel()
		d.Wait()
	})
	return &device{sim: d, port: p, ctx: ctx}
}

func (d *device) backend(cfg stm32.Config, baud int) *stm32.Backend {
	cfg.Mode, cfg.Baud = stm32.Mode8N1, baud
	return stm32.New(d.port, cfg)
}

// image is n bytes of firmware-like data at the start of flash.
func image(n int, seed uint64) flasher.Image {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.UintN(256))
	}
	copy(data, []byte{0x00, 0x50, 0x00, 0x20, 0x01, 0x01, 0x00, 0x08}) // SP in SRAM, reset vector in flash
	return flasher.Image{Version: "1.0.0", Segments: []flasher.Segment{{Name: "app", Addr: sim.STM32FlashBase, Data: data}}}
}

func TestIdentify(t *testing.T) {
	cases := []struct {
		family    sim.STM32Family
		flashSize int
		chip      string
	}{
		{sim.STM32F0, 0, "STM32F030x8/F05xxx"},
		{sim.STM32F1MD, 64 << 10, "STM32F10xxx Medium-density"},
		{sim.STM32F1HD, 0, "STM32F10xxx High-density"},
		{sim.STM32F4, 0, "STM32F40xxx/41xxx"},
		{sim.STM32F42, 0, "STM32F42xxx/43xxx"},
		{sim.STM32L4, 256 << 10, "STM32L47xxx/48xxx"},
		{sim.STM32G0, 0, "STM32G07xxx/08xxx"},
	}
	for i, tc := range cases {
		t.Run(tc.chip, func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{Family: tc.family, FlashSize: tc.flashSize, Seed: int64(i + 1)}, testBaud)
			dev, err := d.backend(stm32.Config{}, testBaud).Identify(d.ctx)
			if err != nil {
				t.Fatalf("Identify() error = %v", err)
			}
			want := stm32.FormatUID(d.sim.UID())
			if dev.HardwareID != want || len(dev.HardwareID) != 24 {
				t.Errorf("Identify().HardwareID = %q, want %q (24 hex digits)", dev.HardwareID, want)
			}
			if dev.Chip != tc.chip {
				t.Errorf("Identify().Chip = %q, want %q", dev.Chip, tc.chip)
			}
			if dev.FlashSize != int64(d.sim.Chip().FlashSize()) {
				t.Errorf("Identify().FlashSize = %d, want %d", dev.FlashSize, d.sim.Chip().FlashSize())
			}
			if dev.Locked || dev.LockState[stm32.LockRDP] {
				t.Errorf("Identify() = locked %v, lock state %v; want unlocked", dev.Locked, dev.LockState)
			}
			if got := d.sim.Chip().State(); got != sim.StateDownload {
				t.Errorf("chip state after Identify = %v, want %v", got, sim.StateDownload)
			}
		})
	}
}

func TestIdentifyFamilyMismatch(t *testing.T) {
	d := startDevice(t, sim.STM32Config{Family: sim.STM32G0}, testBaud)
	_, err := d.backend(stm32.Config{Family: "f4"}, testBaud).Identify(d.ctx)
	if !errors.Is(err, flasher.ErrUnsupported) {
		t.Fatalf("Identify() with family f4 on a G0 = %v, want ErrUnsupported", err)
	}
}

func TestIdentifyNoBootloader(t *testing.T) {
	// The jig wires BOOT0 to RTS, the backend drives it on DTR: the
	// chip resets into its application every time.
	d := startDevice(t, sim.STM32Config{Wiring: sim.STM32WiringRTSBoot0}, testBaud)
	_, err := d.backend(stm32.Config{ConnectAttempts: 2}, testBaud).Identify(d.ctx)
	if !errors.Is(err, flasher.ErrNoResponse) {
		t.Fatalf("Identify() with the wrong wiring = %v, want ErrNoResponse", err)
	}
	// With the jig's wiring it works.
	if _, err := d.backend(stm32.Config{ResetSequence: stm32.ResetRTSBoot0DTRReset}, testBaud).Identify(d.ctx); err != nil {
		t.Fatalf("Identify() with reset sequence %s = %v", stm32.ResetRTSBoot0DTRReset, err)
	}
}

func TestFlashVerify(t *testing.T) {
	cases := []struct {
		name   string
		family sim.STM32Family
		crc    bool
		cfg    stm32.Config
		size   int
	}{
		{"f1 erase readback", sim.STM32F1MD, false, stm32.Config{}, 64 << 10},
		{"f4 extended erase crc", sim.STM32F4, true, stm32.Config{}, 80<<10 + 6},
		{"g0 crc off", sim.STM32G0, true, stm32.Config{NoCRC: true}, 24 << 10},
		{"l4 mass erase", sim.STM32L4, true, stm32.Config{MassErase: true}, 16 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{Family: tc.family, CRC: tc.crc}, testBaud)
			// Something already in flash past the image: page erase
			// must clear only what the image covers.
			keep := []byte("keep me")
			keepAt := uint32(sim.STM32FlashBase + 127<<10)
			if tc.family == sim.STM32F4 {
				keepAt = sim.STM32FlashBase + 200<<10 // past sector 4 (64-128 KiB)
			}
			if err := d.sim.Chip().WriteFlash(keepAt, keep); err != nil {
				t.Fatal(err)
			}
			if err := d.sim.Chip().WriteFlash(sim.STM32FlashBase, []byte{1, 2, 3, 4}); err != nil {
				t.Fatal(err)
			}
			b := d.backend(tc.cfg, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			img := image(tc.size, uint64(tc.size))
			var last, calls int64
			err := b.Flash(d.ctx, img, func(done, total int64) {
				if done < last || total != img.Size() {
					t.Errorf("progress(%d, %d) after %d", done, total, last)
				}
				last = done
				calls++
			})
			if err != nil {
				t.Fatalf("Flash() error = %v", err)
			}
			if last != img.Size() || calls < img.Size()/256 {
				t.Errorf("progress ended at %d after %d calls, want %d in blocks of 256", last, calls, img.Size())
			}
			if err := b.Verify(d.ctx, img); err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			seg := img.Segments[0]
			got, _ := d.sim.Chip().ReadFlash(uint32(seg.Addr), len(seg.Data))
			if !bytes.Equal(got, seg.Data) {
				t.Fatal("simulated flash does not hold the image")
			}
			kept, _ := d.sim.Chip().ReadFlash(keepAt, len(keep))
			if tc.cfg.MassErase == bytes.Equal(kept, keep) {
				t.Errorf("flash at %#x = %q after Flash (mass erase %v)", keepAt, kept, tc.cfg.MassErase)
			}
			wantCRC := tc.crc && !tc.cfg.NoCRC
			if n := d.sim.Chip().Stats().Commands[0xA1]; (n > 0) != wantCRC {
				t.Errorf("GET CHECKSUM ran %d times, want it used: %v", n, wantCRC)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	const size = 32 << 10
	failAt := uint32(sim.STM32FlashBase + 10<<10 + 100)
	cases := []struct {
		name   string
		crc    bool
		faults sim.STM32Faults
		flash  error  // from Flash
		verify error  // from Verify, if Flash passed
		msg    string // in the error
	}{
		{"corrupt flash, crc", true, sim.STM32Faults{CorruptFlash: true}, nil, flasher.ErrVerify, "differs at 0x08000080"},
		{"corrupt flash, readback", false, sim.STM32Faults{CorruptFlash: true}, nil, flasher.ErrVerify, "differs at 0x08000080"},
		{"write error", false, sim.STM32Faults{FailWriteAt: failAt}, flasher.ErrWrite, nil, "at 0x08002800"},
		{"unplug", false, sim.STM32Faults{UnplugAt: 50}, flasher.ErrLinkLost, nil, "write 256 bytes at 0x08003f00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{Family: sim.STM32G0, CRC: tc.crc}, testBaud)
			b := d.backend(stm32.Config{}, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			d.sim.Chip().SetFaults(tc.faults)
			img := image(size, 3)
			err := b.Flash(d.ctx, img, nil)
			if tc.flash == nil && err == nil {
				err = b.Verify(d.ctx, img)
			}
			want := tc.flash
			if want == nil {
				want = tc.verify
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Flash+Verify = %v, want %v with %q", err, want, tc.msg)
			}
		})
	}
}

func TestLockReadoutProtection(t *testing.T) {
	d := startDevice(t, sim.STM32Config{Family: sim.STM32F1MD, Seed: 9}, testBaud)
	b := d.backend(stm32.Config{}, testBaud)
	if _, err := b.Identify(d.ctx); err != nil {
		t.Fatal(err)
	}
	img := image(8<<10, 5)
	if err := b.Flash(d.ctx, img, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.LockOptions(); len(got) != 1 || got[0] != "rdp" {
		t.Fatalf("LockOptions() = %v, want [rdp]", got)
	}
	if err := b.Lock(d.ctx, []string{"rdp"}); err != nil {
		t.Fatalf("Lock(rdp) error = %v", err)
	}
	if !d.sim.Chip().ReadProtected() {
		t.Fatal("the chip is not read-protected after Lock(rdp)")
	}
	if err := b.Lock(d.ctx, []string{"rdp"}); err != nil {
		t.Fatalf("second Lock(rdp) error = %v, want nil (idempotent)", err)
	}
	if err := b.Lock(d.ctx, []string{"wrp"}); !errors.Is(err, flasher.ErrUnsupported) {
		t.Errorf("Lock(wrp) = %v, want ErrUnsupported", err)
	}

	// A new session: identity hidden, device reported locked.
	b2 := d.backend(stm32.Config{}, testBaud)
	dev, err := b2.Identify(d.ctx)
	if !errors.Is(err, flasher.ErrLocked) {
		t.Fatalf("Identify() on a protected chip = %v, want ErrLocked", err)
	}
	if !dev.Locked || !dev.LockState["rdp"] || dev.HardwareID != "" || dev.Chip != "STM32F10xxx Medium-density" {
		t.Errorf("Identify() on a protected chip = %+v, want locked, rdp set, no hardware id, the chip named", dev)
	}
	if err := b2.Lock(d.ctx, []string{"rdp"}); err != nil {
		t.Errorf("Lock(rdp) on a protected chip = %v, want nil", err)
	}
	if err := b2.Verify(d.ctx, img); !errors.Is(err, flasher.ErrLocked) {
		t.Errorf("Verify() on a protected chip = %v, want ErrLocked", err)
	}
	// The bootloader itself refuses reads, not only the backend.
	if nacks := d.sim.Chip().Stats().Nacks; nacks == 0 {
		t.Error("the simulator sent no NACK to READ MEMORY under protection")
	}

	// READOUT UNPROTECT mass-erases and clears the protection.
	if err := b2.Unprotect(d.ctx); err != nil {
		t.Fatalf("Unprotect() error = %v", err)
	}
	if d.sim.Chip().ReadProtected() {
		t.Error("the chip is still protected after Unprotect")
	}
	if i := bytes.IndexFunc(d.sim.Chip().Flash(), func(r rune) bool { return r != utf8.RuneError }); i >= 0 {
		t.Errorf("flash at offset %#x is not erased after READOUT UNPROTECT", i)
	}
	dev, err = d.backend(stm32.Config{}, testBaud).Identify(d.ctx)
	if err != nil || dev.Locked || dev.HardwareID != stm32.FormatUID(d.sim.UID()) {
		t.Fatalf("Identify() after Unprotect = %+v, %v; want unlocked with the UID", dev, err)
	}
}

func TestReset(t *testing.T) {
	cases := []struct {
		name  string
		cfg   stm32.Config
		strap bool
	}{
		{"nrst pulse", stm32.Config{BannerWait: 2 * time.Second}, false},
		{"go, boot0 strapped", stm32.Config{ResetSequence: stm32.ResetNone, BannerWait: 2 * time.Second}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{AppBanner: "blinky 1.2.3", StrapBoot0: tc.strap}, testBaud)
			b := d.backend(tc.cfg, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.Flash(d.ctx, image(4<<10, 1), nil); err != nil {
				t.Fatal(err)
			}
			banner, err := b.Reset(d.ctx)
			if err != nil || banner != "blinky 1.2.3" {
				t.Fatalf("Reset() = %q, %v; want the app's banner", banner, err)
			}
			if got := d.sim.Chip().State(); got != sim.StateApp {
				t.Errorf("chip state after Reset = %v, want %v", got, sim.StateApp)
			}
		})
	}
}

// stm32flash finds the tool; the interop tests skip without it unless
// CI is set.
func stm32flash(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("stm32flash")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("stm32flash is not installed (scripts/lib.sh TEST_PACKAGES lists it): %v", err)
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("stm32flash is not installed: scripts/test installs it (apt-get install stm32flash): %v", err)
		}
		t.Skipf("stm32flash is not installed: scripts/test installs it (apt-get install stm32flash): %v", err)
	}
	return p
}

func runTool(ctx context.Context, tool string, baud int, port string, args ...string) (string, error) {
	all := append([]string{"-m", "8n1", "-b", strconv.Itoa(baud)}, args...)
	out, err := proctest.Output(exec.CommandContext(ctx, tool, append(all, port)...))
	if err != nil {
		return string(out), fmt.Errorf("stm32flash %s: %w\n%s", strings.Join(all, " "), err, out)
	}
	return string(out), nil
}

// TestStm32flashInterop: what our backend writes, stm32flash reads back
// and verifies; what stm32flash writes, our backend verifies; and both
// agree with the simulator's flash.
func TestStm32flashInterop(t *testing.T) {
	tool := stm32flash(t)
	for _, crc := range []bool{false, true} {
		t.Run(fmt.Sprintf("crc=%v", crc), func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{Family: sim.STM32F4, CRC: crc, Seed: 3}, testBaud)
			dir := t.TempDir()
			img := image(32<<10, 11)
			data := img.Segments[0].Data
			b := d.backend(stm32.Config{}, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.Flash(d.ctx, img, nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(d.ctx, img); err != nil {
				t.Fatal(err)
			}
			// The backend leaves BOOT0 high and the session open:
			// stm32flash's init byte is NACKed or re-synced.
			back := filepath.Join(dir, "back.bin")
			if out, err := runTool(d.ctx, tool, testBaud, d.sim.Port(), "-r", back, "-S", fmt.Sprintf("%#x:%d", sim.STM32FlashBase, len(data))); err != nil {
				t.Fatal(err)
			} else if !strings.Contains(out, "0x0413") {
				t.Errorf("stm32flash did not report PID 0x0413:\n%s", out)
			}
			rb, err := os.ReadFile(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rb, data) {
				t.Fatal("stm32flash reads back something else than the backend wrote")
			}
			if crc {
				out, err := runTool(d.ctx, tool, testBaud, d.sim.Port(), "-C", "-S", fmt.Sprintf("%#x:%d", sim.STM32FlashBase, len(data)))
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("= 0x%08x", stm32.CRC(data)); !strings.Contains(out, want) {
					t.Errorf("stm32flash -C does not print %s:\n%s", want, out)
				}
			}

			// stm32flash writes another image; the backend verifies it.
			img2 := image(20<<10+20, 12)
			in := filepath.Join(dir, "image2.bin")
			if err := os.WriteFile(in, img2.Segments[0].Data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := runTool(d.ctx, tool, testBaud, d.sim.Port(), "-w", in, "-v", "-S", fmt.Sprintf("%#x:%d", sim.STM32FlashBase, len(img2.Segments[0].Data))); err != nil {
				t.Fatal(err)
			}
			b = d.backend(stm32.Config{}, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(d.ctx, img2); err != nil {
				t.Fatalf("Verify() of what stm32flash wrote = %v", err)
			}
			if err := b.Verify(d.ctx, img); !errors.Is(err, flasher.ErrVerify) {
				t.Fatalf("Verify() of the old image = %v, want ErrVerify", err)
			}
			got, _ := d.sim.Chip().ReadFlash(sim.STM32FlashBase, len(img2.Segments[0].Data))
			if !bytes.Equal(got, img2.Segments[0].Data) {
				t.Fatal("simulated flash does not hold what stm32flash wrote")
			}
		})
	}
}
