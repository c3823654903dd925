package dfu_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/dfu"
	"github.com/station-dev/station/flasher/dfu/dfusim"
)

// childEnv marks the test binary re-executed under umockdev-run.
const childEnv = "DFU_UMOCKDEV_CHILD"

// TestGousbUnderUmockdev re-runs this test binary under umockdev-run so
// that gousb and libusb enumerate the emulated devices.
func TestGousbUnderUmockdev(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		gousbChild(t)
		return
	}
	needUmockdev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "umockdev-run", "-d", pairDevices, "--",
		os.Args[0], "-test.run=^TestGousbUnderUmockdev$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := proctest.Output(cmd)
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("test under umockdev failed: %v", err)
	}
}

func gousbChild(t *testing.T) {
	ctx := context.Background()
	bus := dfu.NewGousbBus()
	defer bus.Close()
	// Go reads files with raw system calls, which umockdev's preload
	// library does not see: point the sysfs reads at the testbed.
	bus.SysfsRoot = os.Getenv("UMOCKDEV_DIR") + "/sys/bus/usb/devices"
	found, err := dfu.Find(ctx, bus, 0x0483, 0xdf11)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	want := []dfu.Info{
		{VID: 0x0483, PID: 0xdf11, Serial: "3754346A3233", Port: "1-1.2"},
		{VID: 0x0483, PID: 0xdf11, Serial: "3754346A3233", Port: "1-1.3"},
	}
	if len(found) != len(want) {
		t.Fatalf("Find = %+v, want %+v", found, want)
	}
	for i := range want {
		if found[i] != want[i] {
			t.Errorf("device %d = %+v, want %+v", i, found[i], want[i])
		}
	}
	// Each slot opens the device on its own port.
	for _, port := range []string{"1-1.2", "1-1.3"} {
		dev, err := bus.Open(ctx, port)
		if err != nil {
			t.Fatalf("Open(%s): %v", port, err)
		}
		dev.Close()
	}
	if _, err := bus.Open(ctx, "1-1.9"); !errors.Is(err, dfu.ErrNotFound) {
		t.Errorf("Open(1-1.9) = %v, want ErrNotFound", err)
	}
	// A control transfer reaches usbfs; without a replay script umockdev
	// cannot answer it. Report how far it gets.
	b := dfu.NewBackend(bus, dfu.Config{VID: 0x0483, PID: 0xdf11, Port: "1-1.3"})
	defer b.Close()
	_, err = b.Identify(ctx)
	t.Logf("Identify through libusb under umockdev: %v", err)
	if err == nil {
		return
	}
	if errors.Is(err, flasher.ErrNoResponse) && !errors.Is(err, dfu.ErrNotFound) {
		t.Logf("the device was found and opened; the control transfer is where emulation stops")
	}
}

// replayImage is flashed in the replayed session: two segments, one
// spanning a 16 KiB page boundary.
var replayImage = flasher.Image{Segments: []flasher.Segment{
	{Name: "boot", Addr: 0x08000000, Data: payload(5000, 21)},
	{Name: "app", Addr: 0x08003f00, Data: payload(700, 22)},
}}

// replayEnv carries the expected hardware id to the replaying child.
const replayEnv = "DFU_PCAP_REPLAY_WANT"

// TestGousbReplaysSimSession runs Identify (with a UID read), Flash,
// Verify and Reset (DfuSe erase, set address, DNLOAD, GETSTATUS polling,
// ABORT, UPLOAD, leave) against the simulator, records the
// control transfers as a usbmon pcap, and replays them with umockdev to
// the same backend over gousb and libusb's usbfs URBs on port 1-1.3.
func TestGousbReplaysSimSession(t *testing.T) {
	cfg := dfu.Config{VID: 0x0483, PID: 0xdf11, Port: "1-1.3", UIDAddress: 0x1FFF7A10}
	if want := os.Getenv(replayEnv); want != "" {
		bus := dfu.NewGousbBus()
		defer bus.Close()
		bus.SysfsRoot = os.Getenv("UMOCKDEV_DIR") + "/sys/bus/usb/devices"
		b := dfu.NewBackend(bus, cfg)
		defer b.Close()
		dev, err := b.Identify(context.Background())
		if err != nil {
			t.Fatalf("Identify over libusb replay: %v", err)
		}
		if got := string(dev.HardwareID) + "|" + dev.Chip; got != want {
			t.Fatalf("Identify over libusb replay = %q, want %q", got, want)
		}
		t.Logf("Identify over libusb replay: %+v", dev)
		if err := b.Flash(context.Background(), replayImage, nil); err != nil {
			t.Fatalf("Flash over libusb replay: %v", err)
		}
		if err := b.Verify(context.Background(), replayImage); err != nil {
			t.Fatalf("Verify over libusb replay: %v", err)
		}
		if _, err := b.Reset(context.Background()); err != nil {
			t.Fatalf("Reset over libusb replay: %v", err)
		}
		return
	}
	needUmockdev(t)
	rec := &recordingBus{Bus: dfusim.NewBus(stm32("1-1.3", "3754346A3233"))}
	b := dfu.NewBackend(rec, cfg)
	dev, err := b.Identify(context.Background())
	if err != nil {
		t.Fatalf("Identify against simulator: %v", err)
	}
	if err := b.Flash(context.Background(), replayImage, nil); err != nil {
		t.Fatalf("Flash against simulator: %v", err)
	}
	if err := b.Verify(context.Background(), replayImage); err != nil {
		t.Fatalf("Verify against simulator: %v", err)
	}
	if _, err := b.Reset(context.Background()); err != nil {
		t.Fatalf("Reset against simulator: %v", err)
	}
	b.Close()
	pcap := t.TempDir() + "/session.pcap"
	if err := writeUsbmonPcap(pcap, 1, 4, rec.log); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "umockdev-run", "-d", pairDevices,
		"--pcap", "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.3="+pcap, "--",
		os.Args[0], "-test.run=^TestGousbReplaysSimSession$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), replayEnv+"="+string(dev.HardwareID)+"|"+dev.Chip)
	out, err := proctest.Output(cmd)
	t.Logf("%d control transfers replayed; child output:\n%s", len(rec.log), out)
	if err != nil {
		t.Fatalf("replay under umockdev failed: %v", err)
	}
}
