package station

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/fixtures/sim"
)

const simHelp = `
station sim: start simulated devices on pseudo-terminals and keep them alive
until interrupted (Ctrl-C), for trying a station or a fixture by hand.

Each device speaks the real protocol on a real pseudo-terminal: DIR/esp-0,
DIR/esp-1, ... (stable links to /dev/pts/N). A pseudo-terminal cannot carry
DTR and RTS, so each device also listens on DIR/esp-N.lines for them; the
fixture file written to DIR/fixture.yaml names both, ready for station run.

Faults (--fault, repeatable) make a slot misbehave, as SLOT=FAULT[,FAULT...]:
  unplug@P        unplug the device when its flash reaches P %
  write-error     answer the next flash block with a flash write error
  write-error@P   answer every block from P % on with a flash write error
  corrupt-link    corrupt one byte of the next block on the wire (the ROM
                  answers with a checksum error; the flasher resends it)
  corrupt-flash   corrupt one byte as it is stored (only verify notices)
  slow=D          delay every response by D (e.g. 20ms)
  slow-erase=D    add D per 4 KiB sector erased

The hands of an operator: DIR/control is a unix socket taking one command per
line, answered "ok" or "error: ...":
  unplug N    pull the device of slot N (0-based)
  plug N      plug a new device (new MAC, blank flash) into slot N
  replug N    plug the same device back into slot N
--cycle D swaps each device for a new one D after it booted the firmware a
station wrote (and a device the station left alone for a while, done before
or failed), as an operator working a jig; --plug-delay D starts with empty
slots and plugs a device into one slot after the other, D apart.

Examples:
  station sim --protocol esp --count 4 --dir /tmp/sim
  station sim --count 16 --cycle 3s --plug-delay 500ms --dir /tmp/sim
  station sim --count 8 --chip esp32s3 --fault S03=unplug@40 --dir /tmp/sim
`

// sim is "station sim".
func (m *Main) sim(ctx context.Context, args []string) error {
	fs := m.newFlagSet("sim", simHelp)
	var (
		protocol, dir, chip string
		count               int
		cycle, plugDelay    time.Duration
		faults              faultFlags
		asJSON              bool
	)
	fs.StringVar(&protocol, "protocol", "esp", "the devices' `protocol`: esp, stm32 (UART bootloader) or gdb (STM32F405 in QEMU behind its GDB server)")
	fs.IntVar(&count, "count", 4, "how many devices")
	fs.StringVar(&dir, "dir", "", "`folder` for the ports and the fixture file (default: a new temporary folder)")
	fs.StringVar(&chip, "chip", "", "the simulated `chip`: esp32 (default) or esp32s3; for stm32 f4 (default), f1, f0, l4 or g0")
	fs.Var(&faults, "fault", "`SLOT=FAULT` to inject (repeatable; see above)")
	fs.DurationVar(&cycle, "cycle", 0, "swap each device for a new one this `long` after it booted its new firmware (0: never)")
	fs.DurationVar(&plugDelay, "plug-delay", 0, "start with empty slots and plug a device in every `interval` (0: all plugged at start)")
	fs.BoolVar(&asJSON, "json", false, "print the devices as JSON")
	logger, err := m.parseWithLogger(fs, args, "warn")
	if err != nil {
		return err
	}
	if count < 1 || count > 256 {
		return usageErr("--count must be between 1 and 256")
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "station-sim-"); err != nil {
			return err
		}
	}
	if protocol != "esp" {
		if cycle > 0 || plugDelay > 0 {
			return usageErr("--cycle and --plug-delay simulate esp devices only")
		}
		return m.simOther(ctx, protocol, dir, count, chip, faults, asJSON, logger)
	}
	if chip == "" {
		chip = "esp32"
	}
	fleet, fx, err := startSimFleet(ctx, dir, count, chip, faults, logger)
	if err != nil {
		return err
	}
	defer fleet.Close()
	fixturePath := filepath.Join(dir, "fixture.yaml")
	if err := writeFixture(fixturePath, fx); err != nil {
		return err
	}
	model, err := parseModel(chip)
	if err != nil {
		return err
	}
	seeds := &sim.Seeds{Next: time.Now().UnixNano()}
	bench := sim.NewBench(fleet.Devices(), func(int) sim.Config { return sim.Config{Model: model, Seed: seeds.Take()} }, logger)
	control := filepath.Join(dir, "control")
	ln, err := sim.ListenControl(control)
	if err != nil {
		return err
	}
	go bench.ServeControl(ctx, ln)
	if plugDelay > 0 {
		for i := range fleet.Devices() {
			if err := bench.Unplug(i); err != nil {
				return err
			}
		}
	}
	if asJSON {
		var devs []map[string]string
		for i, d := range fleet.Devices() {
			devs = append(devs, map[string]string{"slot": fx.Slots[i].Name, "port": d.Port(), "lines": d.Lines(), "mac": d.MAC().String()})
		}
		enc := json.NewEncoder(m.Stdout)
		if err := enc.Encode(map[string]any{"fixture": fixturePath, "control": control, "devices": devs}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(m.Stdout, "%d simulated %s devices (press Ctrl-C to stop):\n", count, chip)
		for i, d := range fleet.Devices() {
			fmt.Fprintf(m.Stdout, "  %-4s %s  MAC %s  (modem lines: %s)\n", fx.Slots[i].Name, d.Port(), d.MAC(), d.Lines())
		}
		fmt.Fprintf(m.Stdout, "fixture file: %s\ncontrol socket: %s\n", fixturePath, control)
	}
	if plugDelay > 0 {
		go bench.PlugInTurn(ctx, plugDelay)
	}
	if cycle > 0 {
		go bench.Cycle(ctx, cycle, max(10*time.Second, 2*cycle))
	}
	<-ctx.Done()
	return nil
}

// simOther runs simulated devices of a protocol other than esp until ctx
// ends.
func (m *Main) simOther(ctx context.Context, protocol, dir string, count int, chip string, faults faultFlags, asJSON bool, logger *slog.Logger) error {
	if protocol == "dfu" {
		return usageErr("--protocol dfu: simulated DFU devices live on a USB bus inside the station's process, which another process cannot open; try station demo --protocol dfu")
	}
	s, err := startSimulated(ctx, protocol, dir, count, chip, faults, logger)
	if err != nil {
		return err
	}
	defer s.close()
	fixturePath := filepath.Join(dir, "fixture.yaml")
	if err := writeFixture(fixturePath, s.fixture); err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(m.Stdout).Encode(map[string]any{"fixture": fixturePath, "protocol": protocol, "devices": s.devices}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(m.Stdout, "%d simulated %s devices (press Ctrl-C to stop):\n", count, protocol)
		for _, d := range s.devices {
			fmt.Fprintf(m.Stdout, "  %-4s %s  id %s\n", d.Slot, d.Port, d.ID)
		}
		fmt.Fprintf(m.Stdout, "fixture file: %s\n", fixturePath)
	}
	<-ctx.Done()
	return nil
}

// startSimFleet starts count simulated chips in dir and returns them with a
// fixture whose slots S01, S02, ... point at them.
func startSimFleet(ctx context.Context, dir string, count int, chip string, faults faultFlags, logger *slog.Logger) (*sim.Fleet, *fixtures.Fixture, error) {
	model, err := parseModel(chip)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	cfg := sim.FleetConfig{Dir: dir, Logger: logger}
	fx := &fixtures.Fixture{Name: "simulated"}
	for i := range count {
		cfg.Devices = append(cfg.Devices, sim.Config{Model: model, Seed: int64(i + 1)})
		fx.Slots = append(fx.Slots, fixtures.Slot{Name: slotName(i, count), Protocol: "esp"})
	}
	for slot := range faults {
		if _, ok := fx.Slot(slot); !ok {
			return nil, nil, usageErr("--fault %s: there is no slot %s (slots are %s … %s)", slot, slot, fx.Slots[0].Name, fx.Slots[count-1].Name)
		}
	}
	fleet, err := sim.StartFleet(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	for i, d := range fleet.Devices() {
		fx.Slots[i].Port, fx.Slots[i].Lines = d.Port(), d.Lines()
		if f, ok := faults[fx.Slots[i].Name]; ok {
			d.ESP().SetFaults(f)
		}
	}
	if err := fx.Validate(); err != nil {
		fleet.Close()
		return nil, nil, err
	}
	return fleet, fx, nil
}

func slotName(i, n int) string {
	if n < 100 {
		return fmt.Sprintf("S%02d", i+1)
	}
	return fmt.Sprintf("S%03d", i+1)
}

func parseModel(chip string) (sim.Model, error) {
	switch strings.ToLower(strings.ReplaceAll(chip, "-", "")) {
	case "esp32":
		return sim.ESP32, nil
	case "esp32s3":
		return sim.ESP32S3, nil
	}
	return 0, usageErr("--chip %q: use esp32 or esp32s3", chip)
}

func writeFixture(path string, fx *fixtures.Fixture) error {
	b, err := fx.Marshal()
	if err != nil {
		return fmt.Errorf("write fixture: %w", err)
	}
	return os.WriteFile(path, append([]byte("# Written by station for simulated devices.\n"), b...), 0o644)
}

// faultFlags collects --fault SLOT=FAULT,... flags.
type faultFlags map[string]sim.Faults

func (f *faultFlags) String() string { return "" }

// Set parses one --fault flag.
func (f *faultFlags) Set(v string) error {
	slot, spec, ok := strings.Cut(v, "=")
	if !ok || slot == "" || spec == "" {
		return fmt.Errorf("%q: write SLOT=FAULT, e.g. S03=unplug@40", v)
	}
	if *f == nil {
		*f = faultFlags{}
	}
	faults := (*f)[slot]
	for _, item := range strings.Split(spec, ",") {
		name, arg, _ := strings.Cut(strings.TrimSpace(item), "@")
		name, val, _ := strings.Cut(name, "=")
		pct := func() (int, error) {
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n > 100 {
				return 0, fmt.Errorf("%s@%s: the percentage must be 1 to 100", name, arg)
			}
			return n, nil
		}
		dur := func() (time.Duration, error) {
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return 0, fmt.Errorf("%s=%s: write a duration such as 20ms", name, val)
			}
			return d, nil
		}
		var err error
		switch {
		case name == "unplug" && arg != "":
			faults.UnplugAt, err = pct()
		case name == "write-error" && arg == "":
			faults.FailNextWrite = true
		case name == "write-error":
			faults.FailWritesFrom, err = pct()
		case name == "corrupt-link":
			faults.CorruptLink = true
		case name == "corrupt-flash":
			faults.CorruptFlash = true
		case name == "slow" && val != "":
			faults.ResponseDelay, err = dur()
		case name == "slow-erase" && val != "":
			faults.EraseDelay, err = dur()
		default:
			err = fmt.Errorf("%q is not a fault; see --help", item)
		}
		if err != nil {
			return err
		}
	}
	(*f)[slot] = faults
	return nil
}
