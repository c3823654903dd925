package gdb

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/station-dev/station/flasher/gdb/rsp"
)

// fakeTarget is a GDB server in front of a small STM32F4: a memory map
// with flash that must be erased (to 0xFF) in whole blocks before
// vFlashWrite can clear bits, RAM that M and X write, qCRC, monitor
// commands, no-ack mode and the flash interface's option registers
// (FLASH_OPTKEYR, FLASH_SR, FLASH_OPTCR) with read-out protection that a
// reset loads. Kind makes its monitor commands, its resets and its detach
// those of one kind of server (the sources are in dialect's and targets'
// comments); "" is a generic server. Its zero value serves the default
// map; the fields inject faults.
type fakeTarget struct {
	// Kind is the server the fake acts as: KindOpenOCD, KindPyOCD,
	// KindProbeRS, KindJLink, KindQEMU or "".
	Kind string
	// LockFails makes OpenOCD's lock command print its failure.
	LockFails bool
	// ResetFails makes pyOCD's and probe-rs's reset print an error.
	ResetFails bool
	// ByteWrites writes M data a byte at a time, as probe-rs does; the
	// fake's FLASH_OPTKEYR then ignores the keys.
	ByteWrites bool
	// NoOptionBytes makes option programming change nothing, as on QEMU
	// or a part whose option bytes fail.
	NoOptionBytes bool
	// BusyReads is how many FLASH_SR reads show BSY after each option
	// start.
	BusyReads int
	// RDP is the RDP option byte the part starts with; 0 means 0xAA
	// (level 0).
	RDP byte
	// Regions is the memory map; nil means fakeMap.
	Regions []rsp.Region
	// PacketSize is announced in qSupported; 0 means 0x1000.
	PacketSize int
	// NoNoAck leaves QStartNoAckMode out of qSupported.
	NoNoAck bool
	// NoCRC answers qCRC with an empty reply; CRCError with E03.
	NoCRC, CRCError bool
	// NoMemoryMap leaves the memory map out of qSupported.
	NoMemoryMap bool
	// FailWriteAt makes a vFlashWrite that covers it fail with E05.
	FailWriteAt uint64
	// CloseAfter closes the connection after that many packets (0: never).
	CloseAfter int
	// UID is what the UID address (0x1FFF7A10) holds.
	UID []byte

	mu       sync.Mutex
	mem      map[uint64][]byte // region start → contents
	locked   bool
	resets   int
	log      []string // packets received, without their data
	monitor  []string // monitor commands received
	packets  int
	erased   []string
	detached bool
	running  bool // the core runs (every server halts it on connect)

	opt     bool   // the option registers below are set up
	optRDP  byte   // the programmed RDP option byte
	optcr   uint32 // FLASH_OPTCR
	keyStep int    // option keys written in order so far
	busy    int    // FLASH_SR reads left showing BSY
}

// probeRSHelp is probe-rs's answer to a monitor command it does not know
// (probe-rs-tools gdb_server/target/monitor.rs HELP_TEXT).
const probeRSHelp = "Supported Commands:\n\n    info - print session information\n    reset - reset target\n    reset halt - reset target and halt afterwards\n"

// options sets the option registers up as a reset leaves them: an
// unprotected part (RDP 0xAA) unless the option byte says otherwise.
func (f *fakeTarget) options() {
	if !f.opt {
		f.opt, f.optRDP = true, f.RDP
		if f.optRDP == 0 {
			f.optRDP = 0xAA
		}
		f.reload()
	}
}

// reload is what a reset does to FLASH_OPTCR: load it from the option
// bytes, with OPTLOCK set (RM0090 reset value 0x0FFFAAED).
func (f *fakeTarget) reload() {
	f.optcr = 0x0FFF00ED | uint32(f.optRDP)<<8
	f.keyStep = 0
}

// reset is a system reset; run says whether the core runs after it.
func (f *fakeTarget) reset(run bool) {
	f.options()
	f.resets++
	f.reload()
	f.running = run
}

// program stores RDP into the option bytes, as OPTSTRT or a lock command
// does.
func (f *fakeTarget) program(rdp byte) {
	f.options()
	if !f.NoOptionBytes {
		f.optRDP = rdp
	}
	f.busy = f.BusyReads
}

// readReg answers a 4-byte read of the flash interface.
func (f *fakeTarget) readReg(addr uint64) (uint32, bool) {
	f.options()
	switch addr {
	case f4OptKeyR:
		return 0, true
	case f4SR:
		if f.busy > 0 {
			f.busy--
			return f4BSY, true
		}
		return 0, true
	case f4OptCR:
		return f.optcr, true
	}
	return 0, false
}

// writeReg takes a write to the flash interface.
func (f *fakeTarget) writeReg(addr uint64, v uint32) bool {
	f.options()
	switch addr {
	case f4OptKeyR:
		switch {
		case f.ByteWrites:
		case v == f4OptKey1:
			f.keyStep = 1
		case v == f4OptKey2 && f.keyStep == 1:
			f.optcr &^= f4OptLock
			f.keyStep = 0
		default:
			f.keyStep = 0
		}
	case f4OptCR:
		if f.optcr&f4OptLock != 0 {
			return true // ignored while locked
		}
		f.optcr = v &^ f4OptStrt
		if v&f4OptStrt != 0 {
			f.program(byte(v >> 8))
		}
	case f4SR:
	default:
		return false
	}
	return true
}

// flashIF reports whether [addr, addr+n) is a flash interface register.
func flashIF(addr uint64, n int) bool {
	return n == 4 && addr%4 == 0 && addr >= 0x40023C00 && addr < 0x40023C20
}

var fakeMap = []rsp.Region{
	{Type: rsp.MemFlash, Start: 0x08000000, Length: 64 << 10, BlockSize: 16 << 10},
	{Type: rsp.MemFlash, Start: 0x08010000, Length: 64 << 10, BlockSize: 64 << 10},
	{Type: rsp.MemROM, Start: 0x1FFF7A00, Length: 0x100},
	{Type: rsp.MemRAM, Start: 0x20000000, Length: 64 << 10},
}

func (f *fakeTarget) regions() []rsp.Region {
	if f.Regions == nil {
		return fakeMap
	}
	return f.Regions
}

// region returns the contents backing [addr, addr+n), or nil.
func (f *fakeTarget) region(addr uint64, n int) (rsp.Region, []byte) {
	if f.mem == nil {
		f.mem = map[uint64][]byte{}
	}
	for _, r := range f.regions() {
		if addr >= r.Start && addr+uint64(n) <= r.End() {
			m, ok := f.mem[r.Start]
			if !ok {
				m = make([]byte, r.Length)
				if r.Type == rsp.MemFlash {
					for i := range m {
						m[i] = 0xFF
					}
				}
				if r.Start <= 0x1FFF7A10 && 0x1FFF7A10 < r.End() {
					copy(m[0x1FFF7A10-r.Start:], f.UID)
				}
				f.mem[r.Start] = m
			}
			return r, m[addr-r.Start : addr-r.Start+uint64(n)]
		}
	}
	return rsp.Region{}, nil
}

// read copies [addr, addr+n) across adjacent regions, as a real target's
// memory reads; false if any byte is unmapped.
func (f *fakeTarget) read(addr uint64, n int) ([]byte, bool) {
	out := make([]byte, 0, n)
	for len(out) < n {
		at := addr + uint64(len(out))
		var reg rsp.Region
		for _, r := range f.regions() {
			if r.Contains(at) {
				reg = r
			}
		}
		if reg.Length == 0 {
			return nil, false
		}
		k := min(uint64(n-len(out)), reg.End()-at)
		_, m := f.region(at, int(k))
		out = append(out, m...)
	}
	return out, true
}

// listen serves one client at a time on a loopback port until the test
// ends.
func (f *fakeTarget) listen(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.serve(c)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// pipe returns the client end of an in-memory connection served by f.
func (f *fakeTarget) pipe(t testing.TB) net.Conn {
	a, b := net.Pipe()
	go func() {
		f.serve(b)
		b.Close()
	}()
	t.Cleanup(func() { a.Close() })
	return a
}

// serve speaks RSP on c until the client leaves.
func (f *fakeTarget) serve(c io.ReadWriter) {
	// Every server halts the target when a client connects.
	f.mu.Lock()
	f.running = false
	f.mu.Unlock()
	r := rsp.NewReader(c, 0)
	w := bufio.NewWriter(c)
	noAck := false
	for {
		ev, err := r.Next()
		if err != nil {
			return
		}
		if ev.Kind != rsp.KindPacket {
			continue
		}
		if ev.BadChecksum {
			w.WriteByte(rsp.Nack)
			w.Flush()
			continue
		}
		if !noAck {
			w.WriteByte(rsp.Ack)
		}
		data, err := rsp.Decode(nil, ev.Data)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.packets++
		if f.CloseAfter > 0 && f.packets > f.CloseAfter {
			f.mu.Unlock()
			w.Flush()
			return
		}
		replies, startNoAck, quit := f.handle(data)
		f.mu.Unlock()
		for _, reply := range replies {
			w.Write(rsp.AppendPacket(nil, reply))
		}
		w.Flush()
		noAck = noAck || startNoAck
		if quit {
			return
		}
	}
}

// handle answers one packet: one reply, or O packets and a reply.
func (f *fakeTarget) handle(p []byte) (replies [][]byte, startNoAck, quit bool) {
	one := func(s string) [][]byte { return [][]byte{[]byte(s)} }
	s := string(p)
	name, _, _ := strings.Cut(s, ":")
	if len(name) > 0 && strings.ContainsRune("mMX", rune(name[0])) {
		name = name[:1]
	}
	f.log = append(f.log, name)
	switch {
	case strings.HasPrefix(s, "qSupported"):
		ps := f.PacketSize
		if ps == 0 {
			ps = 0x1000
		}
		feat := fmt.Sprintf("PacketSize=%x", ps)
		if !f.NoMemoryMap {
			feat += ";qXfer:memory-map:read+"
		}
		if !f.NoNoAck {
			feat += ";QStartNoAckMode+"
		}
		return one(feat), false, false
	case s == "QStartNoAckMode" && !f.NoNoAck:
		return one("OK"), true, false
	case s == "?":
		return one("S05"), false, false
	case strings.HasPrefix(s, "qXfer:memory-map:read::") && !f.NoMemoryMap:
		var off, n int
		if _, err := fmt.Sscanf(s[len("qXfer:memory-map:read::"):], "%x,%x", &off, &n); err != nil {
			return one("E01"), false, false
		}
		doc := rsp.AppendMemoryMap(nil, f.regions())
		if off > len(doc) {
			return one("E02"), false, false
		}
		chunk, kind := doc[off:], byte('l')
		if len(chunk) > n {
			chunk, kind = chunk[:n], 'm'
		}
		return [][]byte{rsp.AppendEscaped([]byte{kind}, chunk)}, false, false
	case s[0] == 'm':
		var addr uint64
		var n int
		if _, err := fmt.Sscanf(s[1:], "%x,%x", &addr, &n); err != nil {
			return one("E01"), false, false
		}
		if flashIF(addr, n) {
			v, ok := f.readReg(addr)
			if !ok {
				return one("E14"), false, false
			}
			return one(hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, v))), false, false
		}
		m, ok := f.read(addr, n)
		if !ok {
			return one("E14"), false, false
		}
		// Run-length encoded, as stubs may send replies.
		return [][]byte{rsp.AppendRunLength(nil, []byte(hex.EncodeToString(m)))}, false, false
	case s[0] == 'M' || s[0] == 'X':
		head, body, ok := strings.Cut(s[1:], ":")
		var addr uint64
		var n int
		if _, err := fmt.Sscanf(head, "%x,%x", &addr, &n); !ok || err != nil {
			return one("E01"), false, false
		}
		data := []byte(body)
		if s[0] == 'M' {
			var err error
			if data, err = hex.DecodeString(body); err != nil {
				return one("E01"), false, false
			}
		}
		if len(data) != n {
			return one("E02"), false, false
		}
		if n == 0 {
			return one("OK"), false, false
		}
		if flashIF(addr, n) {
			if !f.writeReg(addr, binary.LittleEndian.Uint32(data)) {
				return one("E03"), false, false
			}
			return one("OK"), false, false
		}
		r, m := f.region(addr, n)
		if m == nil || r.Type != rsp.MemRAM {
			return one("E03"), false, false
		}
		copy(m, data)
		return one("OK"), false, false
	case strings.HasPrefix(s, "vFlashErase:"):
		var addr, n uint64
		if _, err := fmt.Sscanf(s[len("vFlashErase:"):], "%x,%x", &addr, &n); err != nil {
			return one("E01"), false, false
		}
		r, m := f.region(addr, int(n))
		if m == nil || r.Type != rsp.MemFlash {
			return one("E.memtype"), false, false
		}
		if (addr-r.Start)%r.BlockSize != 0 || n%r.BlockSize != 0 {
			return one("E02"), false, false
		}
		for i := range m {
			m[i] = 0xFF
		}
		f.erased = append(f.erased, fmt.Sprintf("%x,%x", addr, n))
		return one("OK"), false, false
	case strings.HasPrefix(s, "vFlashWrite:"):
		a, data, _ := strings.Cut(s[len("vFlashWrite:"):], ":")
		addr, err := strconv.ParseUint(a, 16, 64)
		if err != nil {
			return one("E01"), false, false
		}
		r, m := f.region(addr, len(data))
		if m == nil || r.Type != rsp.MemFlash {
			return one("E.memtype"), false, false
		}
		if f.FailWriteAt != 0 && addr <= f.FailWriteAt && f.FailWriteAt < addr+uint64(len(data)) {
			return one("E05"), false, false
		}
		for i := range m {
			// Flash programming only clears bits.
			if m[i]&data[i] != data[i] {
				return one("E06"), false, false
			}
			m[i] = data[i]
		}
		return one("OK"), false, false
	case s == "vFlashDone":
		return one("OK"), false, false
	case strings.HasPrefix(s, "qCRC:"):
		if f.NoCRC {
			return one(""), false, false
		}
		if f.CRCError {
			return one("E03"), false, false
		}
		var addr uint64
		var n int
		if _, err := fmt.Sscanf(s[len("qCRC:"):], "%x,%x", &addr, &n); err != nil {
			return one("E01"), false, false
		}
		m, ok := f.read(addr, n)
		if !ok {
			return one("E14"), false, false
		}
		return one(fmt.Sprintf("C%08x", rsp.CRC(m))), false, false
	case strings.HasPrefix(s, "qRcmd,"):
		cmd, err := hex.DecodeString(s[len("qRcmd,"):])
		if err != nil {
			return one("E01"), false, false
		}
		f.monitor = append(f.monitor, string(cmd))
		return f.command(string(cmd)), false, false
	case s == "D":
		f.detached = true
		switch f.Kind {
		case KindJLink:
			// "Remote doesn't know how to detach": the core stays as it is.
			return one(""), false, true
		case KindPyOCD, KindQEMU, "":
			// Both resume the target when their last client detaches.
			f.running = true
		}
		return one("OK"), false, true
	case s == "k":
		return nil, false, true
	case s == "g":
		return one(strings.Repeat("00000000", 16)), false, false
	case strings.HasPrefix(s, "Hg"), strings.HasPrefix(s, "Hc"):
		return one("OK"), false, false
	case s == "qAttached":
		return one("1"), false, false
	}
	return one(""), false, false
}

// flashBytes returns a copy of the fake's memory at addr.
func (f *fakeTarget) bytesAt(addr uint64, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, _ := f.read(addr, n)
	return m
}

func (f *fakeTarget) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// command answers a monitor command as the fake's Kind of server does.
func (f *fakeTarget) command(cmd string) [][]byte {
	out := func(text string) []byte { return []byte("O" + hex.EncodeToString([]byte(text))) }
	result := func(text string) []byte { return []byte(hex.EncodeToString([]byte(text))) }
	ok := []byte("OK")
	switch f.Kind {
	case KindOpenOCD:
		switch cmd {
		case "stm32f2x lock 0":
			var log [][]byte
			if f.running {
				log = append(log, out("Target not halted\n"))
			}
			if f.LockFails {
				return append(log, result("stm32f2x failed to lock device\n"))
			}
			f.program(0x00) // OpenOCD writes RDP 0x00
			return append(log, result("stm32f2x locked\n"))
		case "reset run", "reset":
			f.reset(true)
			return [][]byte{out("[stm32f4x.cpu] external reset detected\n"), ok}
		case "reset halt":
			f.reset(false)
			return [][]byte{ok}
		}
		return [][]byte{out("invalid command name \"" + firstWord(cmd) + "\"\n"), []byte("E01")}
	case KindPyOCD:
		switch cmd {
		case "reset":
			if f.ResetFails {
				return [][]byte{result("Transfer failed: SWD/JTAG Transfer Fault\n")}
			}
			f.reset(true)
			return [][]byte{result("Resetting target\n")}
		case "reset halt":
			f.reset(false)
			return [][]byte{result("Resetting target with halt\nSuccessfully halted device on reset\n")}
		}
		return [][]byte{result("Error: unrecognized command '" + firstWord(cmd) + "'\n")}
	case KindProbeRS:
		switch cmd {
		case "reset":
			if f.ResetFails {
				return [][]byte{out("Resetting target\nError while resetting target:\n\tprobe timeout\n"), ok}
			}
			f.reset(true)
			return [][]byte{out("Resetting target\nDone\n"), ok}
		case "reset halt":
			f.reset(false)
			return [][]byte{out("Resetting and halting target\nTarget halted\n"), ok}
		}
		return [][]byte{out(probeRSHelp + "\n"), ok}
	case KindJLink:
		switch cmd {
		case "reset":
			f.reset(false) // J-Link's reset halts
			return [][]byte{out("Resetting target\r\n"), ok}
		case "go":
			f.running = true
			return [][]byte{ok}
		case "halt":
			f.running = false
			return [][]byte{ok}
		}
		// How J-Link answers what it does not know is not known here:
		// the fake takes the worst case, a silent OK.
		return [][]byte{ok}
	case KindQEMU:
		if cmd == "system_reset" {
			f.reset(false) // the gdbstub keeps the machine stopped
			return [][]byte{ok}
		}
		return [][]byte{out("unknown command: '" + cmd + "'\n"), ok}
	}
	switch cmd {
	case "reset":
		f.reset(true)
		return [][]byte{out("Resetting target\n"), ok}
	case "lock":
		f.locked = true
		f.program(0x55)
		return [][]byte{out("Device locked\n"), out("Power cycle to apply\n"), ok}
	case "fail":
		return [][]byte{out("Error: flash is busy\n"), ok}
	case "hexonly":
		return [][]byte{result("all in the reply\n")}
	}
	return [][]byte{out("unknown command: '" + cmd + "'\n"), ok}
}

func firstWord(cmd string) string {
	w, _, _ := strings.Cut(cmd, " ")
	return w
}

// state returns what the fake's target does now.
func (f *fakeTarget) state() (running, detached bool, resets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running, f.detached, f.resets
}

// monitorCommands returns the monitor commands received.
func (f *fakeTarget) monitorCommands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.monitor...)
}
