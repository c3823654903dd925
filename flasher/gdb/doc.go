// Package gdb flashes microcontrollers through any GDB server that
// speaks the GDB remote serial protocol (RSP): OpenOCD, pyOCD, probe-rs,
// SEGGER's J-Link GDB server, a Black Magic Probe's serial port, and
// QEMU's gdbstub for tests.
//
// In the pipeline (identify → preflight → flash → verify → activate →
// lock → label → done) a [Backend] serves identify (qSupported, no-ack
// mode, the memory map from qXfer:memory-map:read, the chip's unique id
// read with m, e.g. the STM32F4 UID at 0x1FFF7A10), flash (vFlashErase /
// vFlashWrite / vFlashDone into flash regions, X or M elsewhere), verify
// (qCRC computed by the server, a readback otherwise), lock (a monitor
// command, qRcmd, or the flash interface's option registers written with
// M, then a reset and a read-back of the protection register) and the
// final reset (monitor commands that leave the core running, then
// detach). A [Server] starts and owns the GDB server of one slot, or
// attaches to one that runs already.
//
// What the backend does for a chip comes from the target table (target.go)
// for the kind of server ([Config.Server]), or from the configuration in
// full; [Config.Check] refuses anything else, so that a misspelt target is
// not flashed without a memory map, a lock or a reset. A monitor command
// succeeds only when the server prints its success text (monitor.go says
// how each server answers): servers answer OK to commands they do not
// know.
//
// The backend drives an io.ReadWriteCloser that is already open. Packet
// framing, escapes, run-length decoding, the memory map XML and GDB's
// CRC-32 live in [github.com/station-dev/station/flasher/gdb/rsp].
// Memory and flash packets are pipelined (several in flight, replies
// matched in order) when the server accepted QStartNoAckMode, or when the
// target table says the server never waits for acks (QEMU).
//
// What QEMU 7.2's gdbstub (qemu-system-arm -M netduinoplus2) was seen to
// answer, and how the backend copes:
//
//   - qSupported → "PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+":
//     no memory map, no QStartNoAckMode (it answers empty); the
//     "netduinoplus2" target supplies the STM32F4 map.
//   - qXfer:memory-map:read, vFlashErase, vFlashWrite, vFlashDone, qCRC
//     and X all answer empty (unsupported). Flash is therefore written
//     with M (hex), which QEMU's emulated flash accepts like RAM, and
//     verified by reading back with m (at most 2048 bytes a request).
//   - The UID at 0x1FFF7A10 answers E14 (nothing mapped): Identify falls
//     back to Config.HardwareID and says so in Device.Chip.
//   - qRcmd runs QEMU's human monitor: "system_reset" works, "reset" is
//     an "unknown command" with an OK reply; no lock exists, and its
//     STM32 flash interface is unimplemented (FLASH_OPTCR reads 0).
//   - It never waits for the client's '+', so packets can be pipelined
//     with acks on; it takes one client at a time, halts the CPU when one
//     connects and sends "T02thread:01;" unasked if the CPU was running.
//   - On D it resumes the CPU; a core reset from a blank flash has its
//     Thumb bit clear and locks up, which ends QEMU ("Lockup: can't
//     escalate 3 to HardFault").
//
// Reference: GDB manual, appendix E "Remote Serial Protocol" and appendix
// "Memory Map Format"; gdb/remote.c and gdb/target-memory.c (GDB 13);
// QEMU 7.2 gdbstub.c.
package gdb
