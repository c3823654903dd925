package esp_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp"
)

// Example flashes a simulated ESP32 over a pipe, as a station flashes a
// device on a serial port: identify, flash, verify, lock, reset.
func Example() {
	ctx := context.Background()
	chip, _ := sim.New(sim.Config{Model: sim.ESP32, Seed: 7})
	host, far := net.Pipe()
	port := &pipePort{conn: host, chip: chip}
	port.baud.Store(115200)
	port.timeout.Store(int64(time.Second))
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- chip.Serve(sctx, chipEnd{Conn: far, host: port}) }()
	defer func() { stop(); host.Close(); <-done }()

	// One cache for every slot of the station: an image is compressed once.
	cache := &esp.Cache{}
	b := esp.New(port, esp.Config{Cache: cache})
	defer b.Close()

	dev, err := b.Identify(ctx)
	if err != nil {
		fmt.Println("identify:", err)
		return
	}
	fmt.Println(dev.Chip, dev.HardwareID == flasher.HardwareID(chip.MAC().String()), dev.Locked)

	img := flasher.Image{Version: "1.0.0", Segments: []flasher.Segment{
		{Name: "app.bin", Addr: 0x10000, Data: sim.ESPAppImage("1.0.0", "example", 8192, 1)},
	}}
	if err := b.Flash(ctx, img, func(done, total int64) {}); err != nil {
		fmt.Println("flash:", err)
		return
	}
	if err := b.Verify(ctx, img); err != nil {
		fmt.Println("verify:", err)
		return
	}
	if err := b.Lock(ctx, []string{"JTAG_DISABLE"}); err != nil {
		fmt.Println("lock:", err)
		return
	}
	version, err := b.Reset(ctx)
	fmt.Println(version, err)
	// Output:
	// ESP32-D0WD-V3 true false
	// 1.0.0 <nil>
}
