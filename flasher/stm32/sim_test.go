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

// wrapped stands for the station's wrappers of a backend (the fixture's
// portBackend, the pipeline's timedBackend): ReportLock finds the
// report through Unwrap.
type wrapped struct{ flasher.Backend }

func (w wrapped) Unwrap() flasher.Backend { return w.Backend }

// TestLockReadBack: Lock reads read-out protection back in a fresh
// bootloader session and reports what it read; a protection that did
// not take fails with ErrLockNotSet naming the command and the option
// byte, and protection already in place is read back, not assumed.
// Before, Lock checked READ MEMORY without a report, failed a lock that
// did not take with ErrWrite, and took a NACKed READOUT PROTECT or a
// chip Identify found protected as locked without reading anything.
func TestLockReadBack(t *testing.T) {
	type read struct{ stage, register, addr, value string }
	cases := []struct {
		name    string
		family  sim.STM32Family
		cfg     stm32.Config
		strap   bool
		faults  sim.STM32Faults
		before  func(*sim.STM32) // after Identify, before Lock
		wantErr error
		msg     []string // in the error
		locked  bool     // the report's state and the chip's
		reads   []read   // in the report, in this order
	}{
		{
			name: "f1 locks", family: sim.STM32F1MD, locked: true,
			reads: []read{
				{"lock", "READOUT PROTECT answer", "", "0x79 0x79"},
				{"after READOUT PROTECT and the chip's reset", "init 0x7F answer", "", "0x79"},
				{"after READOUT PROTECT and the chip's reset", "GET bootloader version", "", "0x22"},
				{"after READOUT PROTECT and the chip's reset", "GET VERSION version and option bytes", "", "0x22 0x00 0x00"},
				{"after READOUT PROTECT and the chip's reset", "GET ID product id", "", "0x410"},
				{"after READOUT PROTECT and the chip's reset", "READ MEMORY of the unique id", "0x1ffff7e8", "0x1f"},
			},
		},
		{
			name: "g0 locks, boot0 strapped, no reset lines", family: sim.STM32G0, strap: true,
			cfg: stm32.Config{ResetSequence: stm32.ResetNone}, locked: true,
			reads: []read{
				{"lock", "READOUT PROTECT answer", "", "0x79 0x79"},
				{"after READOUT PROTECT and the chip's reset", "init 0x7F answer", "", "0x79"},
				{"after READOUT PROTECT and the chip's reset", "GET ID product id", "", "0x460"},
				{"after READOUT PROTECT and the chip's reset", "READ MEMORY of the unique id", "0x1fff7590", "0x1f"},
			},
		},
		{
			name: "f1 option bytes ignore the lock", family: sim.STM32F1MD, faults: sim.STM32Faults{IgnoreReadoutProtect: true},
			wantErr: flasher.ErrLockNotSet,
			msg:     []string{"READ MEMORY of the unique id at 0x1ffff7e8 is answered 0x79 then ", "want 0x1f", "option byte RDP at 0x1ffff800 reads 0xa5, want any value but 0xa5"},
			reads: []read{
				{"after READOUT PROTECT and the chip's reset", "init 0x7F answer", "", "0x79"},
				{"after READOUT PROTECT and the chip's reset", "option byte RDP", "0x1ffff800", "0xa5"},
			},
		},
		{
			name: "f4 option bytes ignore the lock", family: sim.STM32F4, faults: sim.STM32Faults{IgnoreReadoutProtect: true},
			wantErr: flasher.ErrLockNotSet,
			msg:     []string{"READ MEMORY of the unique id at 0x1fff7a10 is answered", "option byte RDP at 0x1fffc001 reads 0xaa, want any value but 0xaa"},
			reads:   []read{{"after READOUT PROTECT and the chip's reset", "option byte RDP", "0x1fffc001", "0xaa"}},
		},
		{
			name: "already protected: READOUT PROTECT refused, read back", family: sim.STM32L4, locked: true,
			before: func(c *sim.STM32) { c.SetReadProtected(true) },
			reads: []read{
				{"lock", "READOUT PROTECT answer", "", "0x1f"},
				{"after READOUT PROTECT was refused", "init 0x7F answer", "", "0x79"},
				{"after READOUT PROTECT was refused", "READ MEMORY of the unique id", "0x1fff7590", "0x1f"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{Family: tc.family, StrapBoot0: tc.strap, Seed: 21}, testBaud)
			chip := d.sim.Chip()
			b := d.backend(tc.cfg, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			chip.SetFaults(tc.faults)
			if tc.before != nil {
				tc.before(chip)
			}
			err := b.Lock(d.ctx, []string{stm32.LockRDP})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Lock(rdp) = %v, want %v", err, tc.wantErr)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Lock(rdp) = %q, want it to say %q", err, m)
				}
			}
			rep, ok := flasher.ReportLock(wrapped{wrapped{b}})
			if !ok {
				t.Fatal("ReportLock through two wrappers found no report")
			}
			if got := rep.State[stm32.LockRDP]; got != tc.locked || len(rep.State) != 1 {
				t.Errorf("LockReport().State = %v, want rdp: %v", rep.State, tc.locked)
			}
			if got := chip.ReadProtected(); got != tc.locked {
				t.Errorf("the chip's read protection = %v after Lock, want %v", got, tc.locked)
			}
			if b.Locked() != tc.locked {
				t.Errorf("Locked() = %v after Lock, want %v", b.Locked(), tc.locked)
			}
			next := 0
			for _, r := range rep.ReadBack {
				if next < len(tc.reads) {
					w := tc.reads[next]
					if r.Stage == w.stage && r.Register == w.register && r.Addr == w.addr && r.Value == w.value {
						next++
					}
				}
			}
			if next < len(tc.reads) {
				t.Errorf("LockReport().ReadBack lacks %+v (in order); it is %+v", tc.reads[next], rep.ReadBack)
			}
			for _, r := range rep.ReadBack {
				if r.Register == "READ MEMORY of the unique id" && r.Want == "" {
					t.Errorf("reading %+v says nothing of the value wanted", r)
				}
			}
		})
	}
}

// TestLockAgainReadsBack: a second Lock on a chip the backend locked,
// and a Lock on a chip Identify found protected, read the protection
// back from the device.
func TestLockAgainReadsBack(t *testing.T) {
	d := startDevice(t, sim.STM32Config{Family: sim.STM32F1MD, Seed: 22}, testBaud)
	b := d.backend(stm32.Config{}, testBaud)
	if _, err := b.Identify(d.ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(d.ctx, []string{stm32.LockRDP}); err != nil {
		t.Fatal(err)
	}
	b2 := d.backend(stm32.Config{}, testBaud)
	if _, err := b2.Identify(d.ctx); !errors.Is(err, flasher.ErrLocked) {
		t.Fatalf("Identify() on a protected chip = %v, want ErrLocked", err)
	}
	for name, be := range map[string]*stm32.Backend{"same backend": b, "identified protected": b2} {
		syncs := d.sim.Chip().Stats().Syncs
		if err := be.Lock(d.ctx, []string{stm32.LockRDP}); err != nil {
			t.Fatalf("%s: Lock(rdp) again = %v", name, err)
		}
		rep := be.LockReport()
		last := rep.ReadBack[len(rep.ReadBack)-1]
		if !rep.State[stm32.LockRDP] || last.Stage != "already protected" || last.Value != "0x1f" {
			t.Errorf("%s: LockReport() = %+v; want rdp set, read back already protected", name, rep)
		}
		if got := d.sim.Chip().Stats().Syncs; got <= syncs {
			t.Errorf("%s: Lock(rdp) again did not start a bootloader session (syncs %d before, %d after)", name, syncs, got)
		}
	}
}

// TestFlashWholeProgramUnits: images whose segments start or end inside
// a double word (L4/G0) or share one flash the same as aligned ones. The
// simulator refuses, as the silicon does (PROGERR), a double word
// programmed twice; the backend wrote 256-byte blocks from each segment's
// start, which split double words between WRITE MEMORY commands.
func TestFlashWholeProgramUnits(t *testing.T) {
	base := uint64(sim.STM32FlashBase)
	noise := func(n int, seed uint64) []byte { return image(n, seed).Segments[0].Data }
	cases := []struct {
		name   string
		family sim.STM32Family
		segs   []flasher.Segment
	}{
		{"g0 segment at 4 mod 8 over three blocks", sim.STM32G0, []flasher.Segment{{Name: "app", Addr: base + 0x804, Data: noise(600, 1)}}},
		{"l4 segment at 4 mod 8 over three blocks", sim.STM32L4, []flasher.Segment{{Name: "app", Addr: base + 0x804, Data: noise(600, 2)}}},
		{"g0 adjacent segments share a double word", sim.STM32G0, []flasher.Segment{
			{Name: "boot", Addr: base, Data: noise(12, 3)}, {Name: "app", Addr: base + 12, Data: noise(300, 4)}}},
		{"f1 adjacent segments", sim.STM32F1MD, []flasher.Segment{
			{Name: "boot", Addr: base, Data: noise(10, 5)}, {Name: "app", Addr: base + 12, Data: noise(300, 6)}}},
		{"f4 segment at 4 mod 8", sim.STM32F4, []flasher.Segment{{Name: "app", Addr: base + 0x804, Data: noise(600, 7)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, sim.STM32Config{Family: tc.family, CRC: true}, testBaud)
			// The flash holds an old image: erase must clear what is written.
			if err := d.sim.Chip().WriteFlash(sim.STM32FlashBase, bytes.Repeat([]byte{0x5A}, 8<<10)); err != nil {
				t.Fatal(err)
			}
			b := d.backend(stm32.Config{}, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			img := flasher.Image{Version: "1", Segments: tc.segs}
			var last int64
			if err := b.Flash(d.ctx, img, func(done, total int64) { last = done }); err != nil {
				t.Fatalf("Flash() = %v", err)
			}
			if last != img.Size() {
				t.Errorf("progress ended at %d, want %d", last, img.Size())
			}
			if err := b.Verify(d.ctx, img); err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if n := d.sim.Chip().Stats().Nacks; n != 0 {
				t.Errorf("the bootloader sent %d NACKs, want none", n)
			}
		})
	}
}

// TestFlashRetryAfterFailedWrite: a Flash that failed part way (blocks
// programmed before the failure) and is run again erases every page it
// writes, so no block lands on flash that is not erased.
func TestFlashRetryAfterFailedWrite(t *testing.T) {
	for _, family := range []sim.STM32Family{sim.STM32F1MD, sim.STM32G0, sim.STM32F4} {
		d := startDevice(t, sim.STM32Config{Family: family}, testBaud)
		t.Run(d.sim.Chip().Name(), func(t *testing.T) {
			b := d.backend(stm32.Config{}, testBaud)
			if _, err := b.Identify(d.ctx); err != nil {
				t.Fatal(err)
			}
			img := image(12<<10, 8)
			d.sim.Chip().SetFaults(sim.STM32Faults{FailWriteAt: sim.STM32FlashBase + 9<<10 + 8})
			if err := b.Flash(d.ctx, img, nil); !errors.Is(err, flasher.ErrWrite) {
				t.Fatalf("Flash() with a refused block = %v, want ErrWrite", err)
			}
			nacks := d.sim.Chip().Stats().Nacks
			if err := b.Flash(d.ctx, img, nil); err != nil {
				t.Fatalf("Flash() again = %v", err)
			}
			if err := b.Verify(d.ctx, img); err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if n := d.sim.Chip().Stats().Nacks; n != nacks {
				t.Errorf("the second Flash got %d NACKs, want none", n-nacks)
			}
		})
	}
}
