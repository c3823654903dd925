package gdb

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/station-dev/station/flasher/gdb/rsp"
)

// Command is a monitor command (qRcmd) and what the GDB server prints
// when it worked.
type Command struct {
	// Command is the monitor command, e.g. "reset run".
	Command string
	// Success is the whole of what the server prints when the command
	// worked, compared without the white space around it and without
	// carriage returns; "" means it prints nothing. Any other answer is
	// a failure: servers answer OK to commands they do not know. Under
	// OpenOCD only the command's result counts, not the log lines it
	// sends meanwhile.
	Success string
}

// Protection is the register a lock is read back from.
type Protection struct {
	// Name names the register and its field for operators, e.g.
	// "FLASH_OPTCR.RDP".
	Name string
	// Addr is the address of the 32-bit register, read as 4 bytes,
	// little-endian.
	Addr uint64
	// Mask selects the field; the field's value is shifted down to bit 0.
	Mask uint32
	// NotLocked are the field values that are not the lock Lock sets:
	// any other value reads as locked.
	NotLocked []uint32
	// Want describes a locked value for messages; "" means "any value but"
	// NotLocked.
	Want string
}

// field extracts the protection field from the register's value.
func (p Protection) field(reg uint32) uint32 {
	return (reg & p.Mask) >> bits.TrailingZeros32(p.Mask)
}

// locked reports whether a field value is the lock.
func (p Protection) locked(v uint32) bool { return !slices.Contains(p.NotLocked, v) }

// want says what a locked device reads.
func (p Protection) want() string {
	if p.Want != "" {
		return p.Want
	}
	vs := make([]string, len(p.NotLocked))
	for i, v := range p.NotLocked {
		vs[i] = fmt.Sprintf("%#x", v)
	}
	return "any value but " + strings.Join(vs, ", ")
}

// optionLock sets read-out protection through the flash interface's
// registers with RSP memory reads and writes, for servers that have no
// lock command (pyOCD, probe-rs, J-Link).
type optionLock struct {
	// KeyReg is the option key register; Keys unlock the option control
	// register when written to it in order.
	KeyReg uint64
	Keys   [2]uint32
	// StatusReg holds Busy while an option write is programmed.
	StatusReg uint64
	Busy      uint32
	// ControlReg is the option control register: OptLock set means it
	// is locked against writes, OptStart programs what it holds, Field
	// is the protection and Value the level Lock writes there.
	ControlReg uint64
	OptLock    uint32
	OptStart   uint32
	Field      uint32
	Value      uint32
	// Name names the registers for messages.
	KeyName, ControlName string
}

// serverOps is how one kind of GDB server locks and resets a target.
type serverOps struct {
	// Lock is the server's lock command; nil locks through the target's
	// option registers (optionLock) where it has them.
	Lock *Command
	// Reset restarts the target so that it runs. The first command resets
	// (the lock's read-back follows it); any after it let the core run
	// (J-Link's reset halts, its go resumes).
	Reset []Command
}

// target holds what the backend knows of a chip before it asks the
// server: the memory map to use when the server sends none, where the
// unique id lives, how its protection is set and read back, and how each
// kind of GDB server resets and locks it.
type target struct {
	// Name is the Config.TargetName that selects the entry.
	Name string
	// Chip is the name Identify reports.
	Chip string
	// HardwareIDFrom is the default Config.HardwareIDFrom.
	HardwareIDFrom string
	// MemoryMap is used when the server answers no qXfer:memory-map.
	MemoryMap []rsp.Region
	// Protection is where the lock is read back; nil for a target with
	// none, and then NoLock says why.
	Protection *Protection
	NoLock     string
	// OptionLock sets the protection through registers on servers with
	// no lock command.
	OptionLock *optionLock
	// Servers are the kinds of GDB server the table knows for the
	// target.
	Servers map[string]serverOps
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

// The STM32F4 flash interface (cmsis-device-f4 stm32f405xx.h: FLASH_R_BASE
// 0x40023C00, OPTKEYR +0x08, SR +0x0C, OPTCR +0x14, FLASH_SR_BSY bit 16,
// FLASH_OPTCR_OPTLOCK bit 0, OPTSTRT bit 1, RDP bits 15:8;
// stm32f4xx_hal_flash.h FLASH_OPT_KEY1/2; OpenOCD src/flash/nor/stm32f2x.c
// STM32_FLASH_OPTKEYR/SR/OPTCR, the same values).
const (
	f4OptKeyR = 0x40023C08 // FLASH_OPTKEYR
	f4SR      = 0x40023C0C // FLASH_SR
	f4OptCR   = 0x40023C14 // FLASH_OPTCR
	f4OptKey1 = 0x08192A3B // FLASH_OPT_KEY1
	f4OptKey2 = 0x4C5D6E7F // FLASH_OPT_KEY2
	f4BSY     = 1 << 16    // FLASH_SR_BSY
	f4OptLock = 1 << 0     // FLASH_OPTCR_OPTLOCK
	f4OptStrt = 1 << 1     // FLASH_OPTCR_OPTSTRT
	f4RDP     = 0xFF00     // FLASH_OPTCR_RDP
	// f4RDPLevel1 is what the HAL writes for level 1 (OB_RDP_LEVEL_1,
	// stm32f4xx_hal_flash_ex.h); any value but 0xAA (level 0) and 0xCC
	// (level 2) is level 1 (RM0090 section 3.6.3, table 13).
	f4RDPLevel1 = 0x55
)

// stm32f4RDP is read-out protection as FLASH_OPTCR shows it. The register
// is loaded from the option bytes at reset, and what is written to it
// reads back at once, before anything is programmed (ST community thread
// 41514, on the F7's OPTCR1; the F4 has no option-load bit,
// HAL_FLASH_OB_Launch only starts and waits), so only a read after a
// reset proves the lock.
var stm32f4RDP = Protection{
	Name:      "FLASH_OPTCR.RDP",
	Addr:      f4OptCR,
	Mask:      f4RDP,
	NotLocked: []uint32{0xAA, 0xCC},
	Want:      "level 1: any value but 0xaa (level 0) and 0xcc (level 2)",
}

// stm32f4OptionLock is ST's sequence for the option bytes (PM0059 section
// 2.6.2, RM0090 section 3.6.2; HAL_FLASH_OB_Unlock, FLASH_OB_RDP_LevelConfig
// and HAL_FLASH_OB_Launch; OpenOCD stm32x_write_options).
var stm32f4OptionLock = optionLock{
	KeyReg: f4OptKeyR, Keys: [2]uint32{f4OptKey1, f4OptKey2},
	StatusReg: f4SR, Busy: f4BSY,
	ControlReg: f4OptCR, OptLock: f4OptLock, OptStart: f4OptStrt, Field: f4RDP, Value: f4RDPLevel1,
	KeyName: "FLASH_OPTKEYR", ControlName: "FLASH_OPTCR",
}

// targets are the chips the backend knows by name, with what each kind
// of GDB server answers for them. Sources, besides those above:
//   - OpenOCD: the F2/F4/F7 flash driver is stm32f2x (src/flash/nor/stm32f2x.c;
//     tcl/target/stm32f4x.cfg declares its bank with it), so the lock is
//     "stm32f2x lock 0", whose result is "stm32f2x locked" and whose
//     failures are text too ("stm32f2x failed to lock device") with an
//     OK reply; "reset run" answers OK (src/target/target.c
//     handle_reset_command) and leaves the core running, while detaching
//     resumes nothing (src/server/gdb_server.c gdb_detach).
//   - pyOCD: no lock command (pyocd/commands/commands.py); "reset" prints
//     "Resetting target" and leaves the core running (ResetCommand; the
//     same file's "reset halt" prints "Resetting target with halt").
//   - probe-rs: no lock command; "reset" prints "Resetting target" and
//     "Done" and runs the core; any other command prints its help text
//     and answers OK (probe-rs-tools gdb_server/target/monitor.rs).
//   - J-Link GDB server: "reset" prints "Resetting target" and leaves the
//     core halted, "go" runs it (cortex-debug issues 461 and 756); its
//     texts are from users' logs, not from SEGGER's manual.
//   - QEMU 7.2: "system_reset" answers OK with no output; the gdbstub
//     resumes the machine when the client detaches (gdbstub.c
//     handle_detach). Its STM32F405 maps the flash interface as an
//     unimplemented device (hw/arm/stm32f405_soc.c): it reads 0 and
//     ignores writes.
var targets = []target{
	{
		Name:           "stm32f4",
		Chip:           "STM32F4",
		HardwareIDFrom: "mem:0x1FFF7A10,12",
		MemoryMap:      stm32f4Map,
		Protection:     &stm32f4RDP,
		OptionLock:     &stm32f4OptionLock,
		Servers: map[string]serverOps{
			KindOpenOCD: {Lock: &Command{Command: "stm32f2x lock 0", Success: "stm32f2x locked"},
				Reset: []Command{{Command: "reset run"}}},
			KindPyOCD:   {Reset: []Command{{Command: "reset", Success: "Resetting target"}}},
			KindProbeRS: {Reset: []Command{{Command: "reset", Success: "Resetting target\nDone"}}},
			KindJLink:   {Reset: []Command{{Command: "reset", Success: "Resetting target"}, {Command: "go"}}},
		},
	},
	{
		Name:           "netduinoplus2",
		Chip:           "STM32F405 (QEMU netduinoplus2)",
		HardwareIDFrom: "mem:0x1FFF7A10,12",
		MemoryMap:      stm32f4Map,
		NoLock:         "QEMU models no STM32 flash interface (FLASH_OPTCR reads 0 and ignores writes), so no lock can be set or read back",
		// QEMU's human monitor command; "reset" is unknown to it.
		Servers: map[string]serverOps{KindQEMU: {Reset: []Command{{Command: "system_reset"}}}},
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

// servers lists the kinds of GDB server the table knows for t, sorted.
func (t target) servers() []string {
	var kinds []string
	for k := range t.Servers {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}
