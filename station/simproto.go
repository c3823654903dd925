package station

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/flasher/dfu"
	"github.com/station-dev/station/flasher/dfu/dfusim"
	"github.com/station-dev/station/flasher/stm32"
)

// simulated is a bench of simulated devices behind a fixture, of any
// protocol.
type simulated struct {
	fixture *fixtures.Fixture
	// dfuBus is the simulated USB bus of dfu devices, for the connector.
	dfuBus dfu.Bus
	// ports lists each slot's device port and identity, for station sim.
	devices []simDevice
	close   func() error
}

// simDevice is one simulated device, as station sim lists it.
type simDevice struct {
	Slot  string `json:"slot"`
	Port  string `json:"port"`
	Lines string `json:"lines,omitempty"`
	ID    string `json:"id"`
}

// demoProtocols are the protocols station demo and station sim simulate.
var demoProtocols = []string{"esp", "stm32", "gdb", "dfu", "block"}

// demoTarget is how a protocol's demo is built: the firmware, where it
// goes, the device-side locks, and the simulated devices.
type demoTarget struct {
	protocol string
	// address is where the firmware goes.
	address uint64
	// format is the artifact's format.
	format string
	// maxImage bounds --image-size, and maxWhy says why.
	maxImage int64
	maxWhy   string
	// image makes the demo firmware for a version.
	image func(version string, size int) []byte
	// locks are the device-side locks the demo work order asks for.
	locks func(chip string) []string
}

func targetFor(protocol string) (demoTarget, error) {
	switch protocol {
	case "esp", "":
		return demoTarget{protocol: "esp", address: 0x10000, maxImage: 3 << 20, maxWhy: "the app partition of a 4 MiB chip",
			image: func(v string, n int) []byte { return sim.ESPAppImage(v, "thermostat", n, 1) },
			locks: defaultLocks}, nil
	case "stm32":
		return demoTarget{protocol: "stm32", address: 0x08000000, maxImage: 1 << 20, maxWhy: "the flash of an STM32F405",
			image: rawFirmware, locks: func(string) []string { return []string{"rdp"} }}, nil
	case "gdb", "dfu":
		return demoTarget{protocol: protocol, address: 0x08000000, maxImage: 1 << 20, maxWhy: "the flash of an STM32F405",
			image: rawFirmware, locks: func(string) []string { return nil }}, nil
	case "block":
		return demoTarget{protocol: protocol, format: "img", maxImage: 3 << 20, maxWhy: "what the demo keeps in memory per work order",
			image: rawFirmware, locks: func(string) []string { return nil }}, nil
	}
	return demoTarget{}, usageErr("--protocol %q: use %s", protocol, strings.Join(demoProtocols, ", "))
}

// imageSize reads --image-size for the target: at least 4 KiB, at most
// what the target holds.
func (t demoTarget) imageSize(s string) (fixtures.Size, error) {
	size, err := fixtures.ParseSize(s)
	switch {
	case err != nil:
		return 0, usageErr("--image-size: %v", err)
	case size < 4096 || int64(size) > t.maxImage:
		return 0, usageErr("--image-size must be between 4KiB and %s for %s (%s)", byteSize(t.maxImage), t.protocol, t.maxWhy)
	}
	return size, nil
}

// rawFirmware is a firmware image for a Cortex-M's flash: a vector table
// whose reset handler (at 0x100) loops in place, the version written at
// 0x200 as a build stamps it, and bytes that do not compress. A core
// reset into it (QEMU) runs and stays up.
func rawFirmware(version string, n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(uint64(n), 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	binary.LittleEndian.PutUint32(b[0:], 0x20001000) // initial stack pointer
	binary.LittleEndian.PutUint32(b[4:], 0x08000101) // reset handler, Thumb
	binary.LittleEndian.PutUint16(b[0x100:], 0xE7FE) // b .
	copy(b[0x200:], "firmware "+version+"\x00")
	return b
}

// startSimulated starts count simulated devices of protocol in dir.
func startSimulated(ctx context.Context, protocol, dir string, count int, chip string, faults faultFlags, logger *slog.Logger) (*simulated, error) {
	switch protocol {
	case "esp", "":
		if chip == "" {
			chip = "esp32"
		}
		fleet, fx, err := startSimFleet(ctx, dir, count, chip, faults, logger)
		if err != nil {
			return nil, err
		}
		s := &simulated{fixture: fx, close: fleet.Close}
		for i, d := range fleet.Devices() {
			s.devices = append(s.devices, simDevice{Slot: fx.Slots[i].Name, Port: d.Port(), Lines: d.Lines(), ID: d.MAC().String()})
		}
		return s, nil
	case "stm32":
		return startSTM32Sim(ctx, dir, count, chip, faults, logger)
	case "gdb":
		return startQEMUSim(ctx, dir, count, faults, logger)
	case "dfu":
		return startDFUSim(count, faults)
	case "block":
		return startBlockSim(ctx, dir, count, faults, logger)
	}
	return nil, usageErr("--protocol %q: use %s", protocol, strings.Join(demoProtocols, ", "))
}

// stm32Family reads --chip for simulated STM32s.
func stm32Family(chip string) (sim.STM32Family, error) {
	switch strings.ToLower(chip) {
	case "", "f4", "stm32f4", "stm32f405":
		return sim.STM32F4, nil
	case "f1", "stm32f1", "stm32f103":
		return sim.STM32F1MD, nil
	case "f0", "stm32f0":
		return sim.STM32F0, nil
	case "l4", "stm32l4":
		return sim.STM32L4, nil
	case "g0", "stm32g0":
		return sim.STM32G0, nil
	}
	return 0, usageErr("--chip %q: for stm32 use f4 (STM32F405, the default), f1, f0, l4 or g0", chip)
}

// startSTM32Sim starts simulated STM32 bootloaders on pseudo-terminals:
// BOOT0 on DTR and NRST on RTS over each port's line sideband, 8N1 (a
// pseudo-terminal carries no parity).
func startSTM32Sim(ctx context.Context, dir string, count int, chip string, faults faultFlags, logger *slog.Logger) (*simulated, error) {
	family, err := stm32Family(chip)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := sim.STM32FleetConfig{Dir: dir, Logger: logger}
	fx := &fixtures.Fixture{Name: "simulated STM32"}
	for i := range count {
		cfg.Devices = append(cfg.Devices, sim.STM32Config{Family: family, Seed: int64(i + 1), CRC: true})
		fx.Slots = append(fx.Slots, fixtures.Slot{Name: slotName(i, count), Protocol: "stm32", Parity: "none"})
	}
	if err := checkFaultSlots(fx, faults); err != nil {
		return nil, err
	}
	fleet, err := sim.StartSTM32Fleet(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &simulated{fixture: fx, close: fleet.Close}
	for i, d := range fleet.Devices() {
		fx.Slots[i].Port, fx.Slots[i].Lines = d.Port(), d.Lines()
		if f, ok := faults[fx.Slots[i].Name]; ok {
			d.Chip().SetFaults(sim.STM32Faults{FailNextWrite: f.FailNextWrite, FailWritesFrom: f.FailWritesFrom,
				UnplugAt: f.UnplugAt, CorruptFlash: f.CorruptFlash, EraseDelay: f.EraseDelay})
		}
		s.devices = append(s.devices, simDevice{Slot: fx.Slots[i].Name, Port: d.Port(), Lines: d.Lines(), ID: string(stm32.FormatUID(d.UID()))})
	}
	if err := fx.Validate(); err != nil {
		fleet.Close()
		return nil, err
	}
	return s, nil
}

// checkFaultSlots refuses faults for slots the fixture does not have.
func checkFaultSlots(fx *fixtures.Fixture, faults faultFlags) error {
	for slot := range faults {
		if _, ok := fx.Slot(slot); !ok {
			return usageErr("--fault %s: there is no slot %s (slots are %s … %s)", slot, slot, fx.Slots[0].Name, fx.Slots[len(fx.Slots)-1].Name)
		}
	}
	return nil
}

// dfuLayout is an STM32F405's flash as its DfuSe bootloader describes it.
const dfuLayout = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg"

// startDFUSim puts count simulated STM32 DfuSe bootloaders (0483:df11) on a
// simulated USB bus, one per port 1-1.1, 1-1.2, ...: identical boards with
// the same USB serial string, told apart by their port and, as hardware
// id, by the unique id each holds at 0x1FFF7A10.
func startDFUSim(count int, faults faultFlags) (*simulated, error) {
	fx := &fixtures.Fixture{Name: "simulated DfuSe bootloaders"}
	var specs []dfusim.Spec
	for i := range count {
		name := slotName(i, count)
		port := fmt.Sprintf("1-1.%d", i+1)
		uid := make([]byte, 12)
		binary.LittleEndian.PutUint64(uid, 0x3030_5732_0043_0041+uint64(i)*0x1_0001)
		spec := dfusim.Spec{Port: port, VID: 0x0483, PID: 0xdf11, Serial: "STM32FxSTM32",
			Functional: dfu.Functional{Attributes: 0x0b, DetachTimeout: 255, TransferSize: 2048, Version: 0x011a},
			Layout:     dfuLayout, PollTimeout: 1, Extra: map[uint32][]byte{0x1FFF7A10: uid}}
		if f, ok := faults[name]; ok {
			switch {
			case f.FailNextWrite || f.FailWritesFrom > 0:
				spec.Fault, spec.FaultBlock = dfusim.FaultWrite, 3
			case f.UnplugAt > 0:
				spec.Fault, spec.FaultBlock = dfusim.FaultDisappear, 3
			case f.CorruptFlash:
				spec.Fault, spec.FaultBlock = dfusim.FaultCorrupt, 3
			}
		}
		specs = append(specs, spec)
		fx.Slots = append(fx.Slots, fixtures.Slot{Name: name, Protocol: "dfu",
			USB: &fixtures.USBMatch{Location: port, VID: "0483", PID: "df11"}, DFU: &fixtures.DFUSlot{UIDAddress: 0x1FFF7A10}})
	}
	if err := checkFaultSlots(fx, faults); err != nil {
		return nil, err
	}
	if err := fx.Validate(); err != nil {
		return nil, err
	}
	s := &simulated{fixture: fx, dfuBus: dfusim.NewBus(specs...), close: func() error { return nil }}
	for _, sl := range fx.Slots {
		s.devices = append(s.devices, simDevice{Slot: sl.Name, Port: "usb " + sl.USB.Location, ID: "0483:df11"})
	}
	return s, nil
}

// blockCardSize is the size of each simulated SD card.
const blockCardSize = 8 << 20

// startBlockSim makes count SD cards: files of blockCardSize filled with
// old data, attached as loop devices when the station runs as root and
// the kernel has them (as a card in a USB reader is a block device), or
// left as plain files.
func startBlockSim(ctx context.Context, dir string, count int, faults faultFlags, logger *slog.Logger) (*simulated, error) {
	if len(faults) > 0 {
		return nil, usageErr("--fault: simulated SD cards take no injected faults")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fx := &fixtures.Fixture{Name: "simulated SD cards"}
	var loops []string
	detach := func() error {
		var errs []error
		for _, l := range loops {
			if out, err := exec.Command("losetup", "-d", l).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("losetup -d %s: %v: %s", l, err, out))
			}
		}
		return errors.Join(errs...)
	}
	s := &simulated{fixture: fx, close: detach}
	old := bytes.Repeat([]byte{0xAA}, blockCardSize)
	for i := range count {
		name := slotName(i, count)
		file := filepath.Join(dir, fmt.Sprintf("card-%d.img", i))
		if err := os.WriteFile(file, old, 0o644); err != nil {
			detach()
			return nil, err
		}
		dev := file
		if os.Geteuid() == 0 {
			out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", file).Output()
			if err == nil {
				dev = strings.TrimSpace(string(out))
				loops = append(loops, dev)
			} else if i == 0 {
				logger.Info("no loop devices; the simulated cards are plain files", "err", err)
			}
		}
		fx.Slots = append(fx.Slots, fixtures.Slot{Name: name, Protocol: "block", Port: dev})
		s.devices = append(s.devices, simDevice{Slot: name, Port: dev, ID: file})
	}
	if err := fx.Validate(); err != nil {
		detach()
		return nil, err
	}
	return s, nil
}
