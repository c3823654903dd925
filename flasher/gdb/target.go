package gdb

import "github.com/station-dev/station/flasher/gdb/rsp"

// target holds what the backend knows of a chip before it asks the
// server: the memory map to use when the server sends none, where the
// unique id lives, and how to reset and lock it.
type target struct {
	// Name is the Config.TargetName that selects the entry.
	Name string
	// Chip is the name Identify reports.
	Chip string
	// HardwareIDFrom is the default Config.HardwareIDFrom.
	HardwareIDFrom string
	// MemoryMap is used when the server answers no qXfer:memory-map.
	MemoryMap []rsp.Region
	// ResetCommand and LockCommand are the default monitor commands.
	ResetCommand string
	LockCommand  string
	// CortexM says a reset may be asked of the core itself through
	// SCB->AIRCR when no reset command is configured.
	CortexM bool
	// Pipeline is how many requests the server can take in flight even
	// with acknowledgments on; 0 means only in no-ack mode.
	Pipeline int
}

// stm32f4Map is the STM32F405/407 memory: flash sectors 0–3 of 16 KiB, 4
// of 64 KiB, 5–11 of 128 KiB (RM0090 rev 19, table 5 "Flash module
// organization"), 112+16 KiB SRAM (RM0090 section 2.3.1; QEMU's
// stm32f405_soc maps 192 KiB there, the F405 datasheet's 128 KiB of
// SRAM1/SRAM2 plus 64 KiB of CCM moved, so the map covers QEMU's too), and
// the system memory holding the UID (RM0090 section 39.1, "Unique device
// ID register": base 0x1FFF7A10, 96 bits).
var stm32f4Map = []rsp.Region{
	{Type: rsp.MemFlash, Start: 0x08000000, Length: 4 * 16 << 10, BlockSize: 16 << 10},
	{Type: rsp.MemFlash, Start: 0x08010000, Length: 64 << 10, BlockSize: 64 << 10},
	{Type: rsp.MemFlash, Start: 0x08020000, Length: 7 * 128 << 10, BlockSize: 128 << 10},
	{Type: rsp.MemRAM, Start: 0x10000000, Length: 64 << 10},
	{Type: rsp.MemROM, Start: 0x1FFF0000, Length: 0x7A30},
	{Type: rsp.MemRAM, Start: 0x20000000, Length: 192 << 10},
}

// targets are the chips the backend knows by name. Sources: RM0090
// (STM32F405/415/407/417 reference manual); OpenOCD's stm32f4x flash
// driver ("stm32f4x lock 0" sets read-out protection level 1); QEMU 7.2
// hw/arm/stm32f405_soc.c and netduinoplus2.c, and what its gdbstub was
// seen to answer (doc.go).
var targets = []target{
	{
		Name:           "stm32f4",
		Chip:           "STM32F4",
		HardwareIDFrom: "mem:0x1FFF7A10,12",
		MemoryMap:      stm32f4Map,
		LockCommand:    "stm32f4x lock 0",
		CortexM:        true,
	},
	{
		Name:           "netduinoplus2",
		Chip:           "STM32F405 (QEMU netduinoplus2)",
		HardwareIDFrom: "mem:0x1FFF7A10,12",
		MemoryMap:      stm32f4Map,
		// QEMU's human monitor command; "reset" is unknown to it.
		ResetCommand: "system_reset",
		// QEMU's system-mode gdbstub never waits for acknowledgments
		// and handles packets in the order they arrive.
		Pipeline: 16,
	},
}

func targetByName(name string) (target, bool) {
	for _, t := range targets {
		if t.Name == name {
			return t, true
		}
	}
	return target{}, false
}

// TargetNames lists the TargetName values the backend knows.
func TargetNames() []string {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	return names
}
