package gdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/flasher"
)

const (
	flashBase = 0x08000000
	imageSize = 256 << 10
)

// needTools skips without the tools named (each is also its Debian
// package), unless CI is set: there a missing tool fails, since the test
// script installs them.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing: scripts/lib.sh TEST_PACKAGES installs it", tool)
			}
			t.Skipf("%s is not installed: scripts/test installs it (apt-get install %s)", tool, tool)
		}
	}
}

// startQEMU starts one halted netduinoplus2 with its gdbstub.
func startQEMU(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := StartServer(ctx, ServerConfig{Kind: KindQEMU})
	if err != nil {
		t.Fatalf("StartServer(qemu) = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU (pid %d) at %s: %s", s.Pid(), s.Addr(), s.outputTail())
		}
	})
	return s
}

// connect dials the server and returns an identified backend.
func connect(t testing.TB, s *Server, cfg Config) (*Backend, flasher.Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	if cfg.TargetName == "" {
		cfg.TargetName = "netduinoplus2"
	}
	b := New(conn, cfg)
	t.Cleanup(func() { b.Close() })
	dev, err := b.Identify(ctx)
	if err != nil {
		t.Fatalf("Identify = %v", err)
	}
	return b, dev
}

// testImage is seeded random data behind a vector table whose reset
// handler is "b ." (0xE7FE), so that a QEMU let run after a test spins
// instead of locking up. The table's words are harmless as Thumb code
// too, for a core that starts at 0 without a reset.
func testImage(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	copy(data, []byte{0x00, 0x10, 0x00, 0x20, 0x09, 0x00, 0x00, 0x08, 0xFE, 0xE7})
	return data
}

func imageOf(data []byte) flasher.Image {
	return flasher.Image{Version: "test", Segments: []flasher.Segment{{Name: "app", Addr: flashBase, Data: data}}}
}

// gdbDump reads memory back with gdb-multiarch, the real GDB client.
func gdbDump(t testing.TB, addr string, start, end uint64) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dump.bin")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gdb-multiarch", "-nx", "-batch",
		"-ex", "set architecture arm",
		"-ex", "target remote "+addr,
		"-ex", fmt.Sprintf("dump binary memory %s %#x %#x", out, start, end),
		"-ex", "detach")
	if b, err := proctest.Output(cmd); err != nil {
		t.Fatalf("gdb-multiarch dump: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestQEMUFlashVerify(t *testing.T) {
	needTools(t, "qemu-system-arm", "gdb-multiarch")
	t.Parallel()
	s := startQEMU(t)
	b, dev := connect(t, s, Config{HardwareID: "qemu-slot-1"})
	if dev.FlashSize != 1<<20 {
		t.Errorf("Identify().FlashSize = %d, want %d", dev.FlashSize, 1<<20)
	}
	data := testImage(1, imageSize)
	ctx := context.Background()
	var last, total int64
	if err := b.Flash(ctx, imageOf(data), func(done, tot int64) { last, total = done, tot }); err != nil {
		t.Fatalf("Flash = %v", err)
	}
	if last != imageSize || total != imageSize {
		t.Errorf("last progress = %d/%d, want %d/%d", last, total, imageSize, imageSize)
	}
	if b.vflash != no || b.crc != unknown {
		t.Errorf("after Flash vflash=%v crc=%v, want no (QEMU has no vFlash) and unknown", b.vflash, b.crc)
	}
	if err := b.Verify(ctx, imageOf(data)); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if b.crc != no {
		t.Errorf("after Verify crc = %v, want no (QEMU has no qCRC)", b.crc)
	}
	// One byte changed behind the backend's back: Verify must see it.
	if r, err := b.link.roundTrip(ctx, []byte("M8001234,1:5a"), time.Second); err != nil || string(r) != "OK" {
		t.Fatalf("M = %q, %v", r, err)
	}
	bad := bytes.Clone(data)
	bad[0x1234] ^= 0xFF
	if bad[0x1234] == 0x5a {
		bad[0x1234] ^= 1
	}
	err := b.Verify(ctx, imageOf(bad))
	if !errors.Is(err, flasher.ErrVerify) || !strings.Contains(err.Error(), "0x8001234") {
		t.Fatalf("Verify(changed image) = %v, want ErrVerify at 0x8001234", err)
	}
	if err := b.Flash(ctx, imageOf(data), nil); err != nil {
		t.Fatalf("Flash again = %v", err)
	}
	// Reset into the image (QEMU's system_reset, then detach) so that
	// the core runs its "b ." loop when gdb-multiarch detaches.
	if banner, err := b.Reset(ctx); err != nil || banner != "" {
		t.Fatalf("Reset = %q, %v", banner, err)
	}
	if _, err := b.Reset(ctx); !errors.Is(err, errDetached) {
		t.Errorf("Reset after Reset = %v, want errDetached", err)
	}
	got := gdbDump(t, s.Addr(), flashBase, flashBase+imageSize)
	if !bytes.Equal(got, data) {
		t.Fatalf("gdb-multiarch read back %d bytes that differ from the image", len(got))
	}
}

func TestQEMUParallelSlots(t *testing.T) {
	needTools(t, "qemu-system-arm", "gdb-multiarch")
	t.Parallel()
	const slots = 4
	var wg sync.WaitGroup
	errs := make([]error, slots)
	servers := make([]*Server, slots)
	images := make([][]byte, slots)
	for i := range slots {
		servers[i] = startQEMU(t)
		images[i] = testImage(uint64(100+i), imageSize)
	}
	for i := range slots {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := servers[i].Dial(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			b := New(conn, Config{TargetName: "netduinoplus2", HardwareID: flasher.HardwareID(fmt.Sprintf("qemu-slot-%d", i))})
			defer b.Close()
			dev, err := b.Identify(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			if want := flasher.HardwareID(fmt.Sprintf("qemu-slot-%d", i)); dev.HardwareID != want {
				errs[i] = fmt.Errorf("Identify().HardwareID = %q, want %q", dev.HardwareID, want)
				return
			}
			if err := b.Flash(ctx, imageOf(images[i]), nil); err != nil {
				errs[i] = err
				return
			}
			if err := b.Verify(ctx, imageOf(images[i])); err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = b.Reset(ctx)
		})
	}
	wg.Wait()
	for i := range slots {
		if errs[i] != nil {
			t.Fatalf("slot %d: %v", i, errs[i])
		}
	}
	for i := range slots {
		if got := gdbDump(t, servers[i].Addr(), flashBase, flashBase+imageSize); !bytes.Equal(got, images[i]) {
			t.Errorf("slot %d: gdb-multiarch read back something else than the slot's image", i)
		}
	}
}

func TestQEMUIdentify(t *testing.T) {
	needTools(t, "qemu-system-arm")
	t.Parallel()
	s := startQEMU(t)
	for range 2 {
		b, dev := connect(t, s, Config{HardwareID: "qemu-a"})
		// QEMU maps nothing at the UID (0x1FFF7A10): m answers E14.
		want := flasher.Device{HardwareID: "qemu-a", Chip: "STM32F405 (QEMU netduinoplus2) (hardware id from the slot's configuration: the unique id at 0x1fff7a10 cannot be read (server replied error E14))", FlashSize: 1 << 20}
		if dev.HardwareID != want.HardwareID || dev.Chip != want.Chip || dev.FlashSize != want.FlashSize {
			t.Errorf("Identify() = %+v, want %+v", dev, want)
		}
		if b.features.PacketSize != 0x1000 || b.mapFrom != "configuration" || b.link.noAck || b.pipeline != 16 {
			t.Errorf("packet size %#x, map from %q, no-ack %v, pipeline %d; want 0x1000, configuration, false, 16",
				b.features.PacketSize, b.mapFrom, b.link.noAck, b.pipeline)
		}
		if err := b.Lock(context.Background(), []string{"readout"}); !errors.Is(err, flasher.ErrUnsupported) {
			t.Errorf("Lock() = %v, want ErrUnsupported", err)
		}
		b.Close()
	}
}

func TestQEMUKilledMidFlash(t *testing.T) {
	needTools(t, "qemu-system-arm")
	t.Parallel()
	s := startQEMU(t)
	b, _ := connect(t, s, Config{HardwareID: "qemu-k"})
	killed := false
	err := b.Flash(context.Background(), imageOf(testImage(7, 1<<20)), func(done, total int64) {
		if done > 64<<10 && !killed {
			killed = true
			if err := syscall.Kill(s.Pid(), syscall.SIGKILL); err != nil {
				t.Errorf("kill qemu: %v", err)
			}
		}
	})
	if !killed || !errors.Is(err, flasher.ErrLinkLost) {
		t.Fatalf("Flash() with QEMU killed = %v (killed %v), want ErrLinkLost", err, killed)
	}
	<-s.Exited()
}
