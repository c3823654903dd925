package esp_test

import (
	"bytes"
	"compress/zlib"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/station-dev/station/flasher/esp"
	"github.com/station-dev/station/flasher/esp/packet"
	"github.com/station-dev/station/flasher/esp/slip"
)

// fakePort is an in-memory esp.Port with a fake ROM on its far side. The
// ROM answers synchronously inside Write; Read waits for bytes or for the
// read timeout, on a timer, so tests run inside a synctest bubble cost no
// wall-clock time. It records modem-line and baud changes in order.
type fakePort struct {
	mu      sync.Mutex
	rx      []byte
	wake    chan struct{}
	timeout time.Duration
	baud    int
	dtr     bool
	rts     bool
	events  []string
	dec     slip.Decoder
	rom     *fakeROM

	// writeErr, once set, fails every Write: the adapter was unplugged.
	writeErr error
}

var _ esp.Port = (*fakePort)(nil)

func newFakePort(rom *fakeROM) *fakePort {
	p := &fakePort{wake: make(chan struct{}, 1), timeout: time.Second, baud: 115200, rom: rom}
	rom.port = p
	return p
}

func (p *fakePort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writeErr != nil {
		return 0, p.writeErr
	}
	p.rom.settle()
	if p.baud != p.rom.baud {
		return len(b), nil // the chip sees noise
	}
	p.dec.Feed(b, func(f []byte) {
		req, err := packet.ParseRequest(f)
		if err != nil {
			return
		}
		p.rom.handle(req)
	})
	return len(b), nil
}

// emit queues bytes from the chip; the host sees them only at the chip's
// rate. Called with p.mu held.
func (p *fakePort) emit(b []byte) {
	if p.baud != p.rom.baud {
		return
	}
	p.rx = append(p.rx, b...)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *fakePort) Read(b []byte) (int, error) {
	for {
		p.mu.Lock()
		p.rom.settle()
		if len(p.rx) > 0 {
			n := copy(b, p.rx)
			p.rx = p.rx[n:]
			p.mu.Unlock()
			return n, nil
		}
		d := p.timeout
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-p.wake:
			t.Stop()
		case <-t.C:
			return 0, nil
		}
	}
}

func (p *fakePort) SetBaud(baud int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.baud = baud
	p.events = append(p.events, fmt.Sprintf("baud %d", baud))
	return nil
}

func (p *fakePort) SetReadTimeout(d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout = d
	return nil
}

func (p *fakePort) SetDTR(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dtr = on
	p.events = append(p.events, fmt.Sprintf("DTR %d", b2i(on)))
	p.rom.lines(p.dtr, p.rts)
	return nil
}

func (p *fakePort) SetRTS(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rts = on
	p.events = append(p.events, fmt.Sprintf("RTS %d", b2i(on)))
	p.rom.lines(p.dtr, p.rts)
	return nil
}

func (p *fakePort) ResetInputBuffer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rx = nil
	return nil
}

// lineEvents returns the recorded DTR, RTS and baud changes.
func (p *fakePort) lineEvents() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fakeChip is what differs between the fake's chips: addresses as
// esptool and espefuse give them, written out here on their own so that
// a typo in the backend's tables shows.
type fakeChip struct {
	magic     uint32
	macRegs   [2]uint32
	efRead    uint32 // BLOCK0 read registers
	efWrite   uint32 // BLOCK0 write / PGM_DATA registers
	efWords   int    // words a program command takes
	efConf    uint32
	efCmd     uint32
	beginLen  int  // FLASH_BEGIN / FLASH_DEFL_BEGIN parameter bytes
	secInfo   bool // answers GET_SECURITY_INFO
	sdmWord   int  // BLOCK0 word and bit of ENABLE_SECURITY_DOWNLOAD, -1 none
	sdmBit    uint
	chipID    uint32
	dlDisWord int // BLOCK0 word and bit that disable download mode
	dlDisBit  uint
}

var (
	fakeESP32 = fakeChip{
		magic: 0x00F01D83, macRegs: [2]uint32{0x3FF5A004, 0x3FF5A008},
		efRead: 0x3FF5A000, efWrite: 0x3FF5A01C, efWords: 7, efConf: 0x3FF5A0FC, efCmd: 0x3FF5A104,
		beginLen: 16, sdmWord: -1, dlDisWord: 0, dlDisBit: 27,
	}
	fakeESP32S3 = fakeChip{
		magic: 9, macRegs: [2]uint32{0x60007044, 0x60007048},
		efRead: 0x6000702C, efWrite: 0x60007000, efWords: 8, efConf: 0x600071CC, efCmd: 0x600071D4,
		beginLen: 20, secInfo: true, sdmWord: 4, sdmBit: 5, chipID: 9, dlDisWord: 4, dlDisBit: 0,
	}
)

// fakeROM is a small ESP ROM loader: enough of it to exercise the backend.
// Tests change its behaviour through hook.
type fakeROM struct {
	chip fakeChip
	port *fakePort
	baud int
	mode string // "off", "download", "app"
	// pending: EN has risen, the chip boots at the next event.
	pending bool
	// later is output the chip prints at the host's next read.
	later []byte
	flash []byte
	regs  map[uint32]uint32
	fuses [8]uint32 // BLOCK0 as burnt
	shown [8]uint32 // BLOCK0 as the read registers show it
	sdm   bool

	// bootMode is what the ROM prints when it boots; "" follows IO0.
	bootMode string
	// silent ROMs never answer.
	silent bool
	// banner is printed when the application starts.
	banner string
	// hook sees every request first, with the number of requests of
	// its op before it; it can answer instead of the ROM.
	hook func(req packet.Request, n int) (resps []packet.Response, handled bool)

	counts   map[packet.Op]int
	requests []packet.Request
	// writes records WRITE_REG address=value in order.
	writes []string
	// baudAsked is the value of the last CHANGE_BAUDRATE.
	baudAsked uint32
	// flashSize is what SPI_SET_PARAMS said.
	flashSize uint32

	// write state
	begin    packet.Op
	offset   uint32
	size     uint32
	blocks   uint32
	nextSeq  uint32
	deflated bytes.Buffer
}

func newFakeROM(chip fakeChip) *fakeROM {
	r := &fakeROM{
		chip:   chip,
		baud:   115200,
		mode:   "app",
		flash:  bytes.Repeat([]byte{0xFF}, 4<<20),
		regs:   map[uint32]uint32{},
		counts: map[packet.Op]int{},
		banner: "I (312) app_init: App version:      2.3.1\r\n",
	}
	r.setMAC([6]byte{0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56})
	// What esptool's ESP32 baud workaround reads: a 40 MHz measure.
	r.regs[0x3FF5F06C] = 2048 << 7
	r.regs[0x3FF5A010] = 50
	r.regs[0x3FF40014] = 40_000_000 / 115200
	r.regs[0x60000014] = 40_000_000 / 115200
	return r
}

func (r *fakeROM) setMAC(m [6]byte) {
	lo := uint32(m[2])<<24 | uint32(m[3])<<16 | uint32(m[4])<<8 | uint32(m[5])
	hi := uint32(m[0])<<8 | uint32(m[1])
	r.regs[r.chip.macRegs[0]], r.regs[r.chip.macRegs[1]] = lo, hi
	if r.chip.magic == fakeESP32.magic {
		// ESP32: word 1 is the low four bytes, word 2 the high two.
		r.regs[r.chip.macRegs[0]], r.regs[r.chip.macRegs[1]] = lo, hi|0xAB<<16
	}
}

// burn sets bits as a factory would.
func (r *fakeROM) burn(word int, bit uint) {
	r.fuses[word] |= 1 << bit
	r.shown[word] = r.fuses[word]
	r.checkSDM()
}

func (r *fakeROM) checkSDM() {
	if r.chip.sdmWord >= 0 && r.shown[r.chip.sdmWord]&(1<<r.chip.sdmBit) != 0 {
		r.sdm = true
	}
}

// lines follows the auto-reset circuit: RTS alone holds EN low, DTR alone
// holds IO0 low. EN rises through an RC delay, so the chip samples IO0
// at the next line change, or when the host next reads or writes.
// Called with the port's lock held.
func (r *fakeROM) lines(dtr, rts bool) {
	if rts && !dtr {
		r.mode, r.pending = "off", false
		return
	}
	if r.pending {
		r.boot(!(dtr && !rts))
		return
	}
	if r.mode == "off" {
		r.pending = true
	}
}

// settle lets a chip whose EN has risen boot. Called with the port's
// lock held.
func (r *fakeROM) settle() {
	if r.pending {
		p := r.port
		r.boot(!(p.dtr && !p.rts))
	}
	if len(r.later) > 0 && r.mode == "app" {
		r.port.emit(r.later)
	}
	r.later = nil
}

func (r *fakeROM) boot(io0 bool) {
	r.pending = false
	r.baud = 115200
	r.shown = r.fuses
	r.sdm = false
	r.checkSDM()
	boot := r.bootMode
	if boot == "" {
		boot = "download"
		if io0 {
			boot = "app"
		}
	}
	if boot == "download" {
		r.mode = "download"
		r.port.emit([]byte("ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n"))
		return
	}
	r.startApp()
}

// startApp runs the application, which prints its boot log at 115200
// a moment later (at the host's next read).
func (r *fakeROM) startApp() {
	r.mode = "app"
	r.baud = 115200
	r.later = append(r.later, "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"...)
	r.later = append(r.later, "\x1b[0;32mI (29) boot: ESP-IDF v5.1 2nd stage bootloader\x1b[0m\r\n"...)
	r.later = append(r.later, r.banner...)
}

func ok(op packet.Op, value uint32, payload ...byte) packet.Response {
	return packet.Response{Op: op, Value: value, Data: append(payload, 0, 0, 0, 0)}
}

func fail(op packet.Op, code byte) packet.Response {
	return packet.Response{Op: op, Data: []byte{1, code, 0, 0}}
}

// refused is how the ROM turns down a command it does not accept now.
func refused() packet.Response {
	return packet.Response{Op: 0, Data: []byte{1, packet.ErrCodeInvalidMessage, 0, 0}}
}

// handle answers one request. Called with the port's lock held.
func (r *fakeROM) handle(req packet.Request) {
	if r.silent || r.mode != "download" {
		return
	}
	r.requests = append(r.requests, req)
	n := r.counts[req.Op]
	r.counts[req.Op]++
	if r.hook != nil {
		if resps, handled := r.hook(req, n); handled {
			r.send(resps...)
			return
		}
	}
	r.send(r.answer(req)...)
	if req.Op == packet.ChangeBaudrate {
		r.baud = int(binary.LittleEndian.Uint32(req.Data))
		// The ROM derives its UART divider from the 40 MHz crystal.
		r.regs[0x3FF40014] = uint32(40_000_000 / r.baud)
		r.regs[0x60000014] = uint32(40_000_000 / r.baud)
	}
}

func (r *fakeROM) send(resps ...packet.Response) {
	for _, resp := range resps {
		r.port.emit(slip.Encode(nil, resp.Marshal()))
	}
}

func word(b []byte, i int) uint32 {
	v, _ := packet.Word(b, i)
	return v
}

func (r *fakeROM) answer(req packet.Request) []packet.Response {
	op, d := req.Op, req.Data
	if r.sdm {
		switch op {
		case packet.Sync, packet.SPIAttach, packet.SPISetParams, packet.ChangeBaudrate,
			packet.FlashBegin, packet.FlashData, packet.FlashEnd, packet.GetSecurityInfo:
		default:
			return []packet.Response{refused(), refused()}
		}
	}
	switch op {
	case packet.Sync:
		var out []packet.Response
		for range 8 {
			out = append(out, ok(op, 0x20120707))
		}
		return out
	case packet.ReadReg:
		return []packet.Response{ok(op, r.read(word(d, 0)))}
	case packet.WriteReg:
		r.write(word(d, 0), word(d, 1))
		return []packet.Response{ok(op, 0)}
	case packet.SPIAttach:
		if len(d) != 8 {
			return []packet.Response{fail(op, packet.ErrCodeInvalidMessage)}
		}
		return []packet.Response{ok(op, 0)}
	case packet.SPISetParams:
		r.flashSize = word(d, 1)
		return []packet.Response{ok(op, 0)}
	case packet.ChangeBaudrate:
		r.baudAsked = word(d, 0)
		return []packet.Response{ok(op, 0)}
	case packet.GetSecurityInfo:
		if !r.chip.secInfo {
			return []packet.Response{refused()}
		}
		var flags uint32
		if r.sdm {
			flags |= 1 << 2
		}
		p := make([]byte, 20)
		binary.LittleEndian.PutUint32(p[0:], flags)
		binary.LittleEndian.PutUint32(p[12:], r.chip.chipID)
		return []packet.Response{ok(op, 0, p...)}
	case packet.FlashBegin, packet.FlashDeflBegin:
		if len(d) != r.chip.beginLen {
			return []packet.Response{fail(op, packet.ErrCodeInvalidMessage)}
		}
		r.begin, r.size, r.blocks, r.offset, r.nextSeq = op, word(d, 0), word(d, 1), word(d, 3), 0
		r.deflated.Reset()
		if word(d, 2) != 0x400 || int(r.offset)+int(r.size) > len(r.flash) || r.offset%0x1000 != 0 {
			return []packet.Response{fail(op, packet.ErrCodeInvalidParam)}
		}
		for i := r.offset; i < r.offset+r.size; i++ {
			r.flash[i] = 0xFF
		}
		return []packet.Response{ok(op, 0)}
	case packet.FlashData, packet.FlashDeflData:
		seq, data, err := packet.ParseDataBlock(d)
		want := map[packet.Op]packet.Op{packet.FlashData: packet.FlashBegin, packet.FlashDeflData: packet.FlashDeflBegin}[op]
		switch {
		case err != nil || r.begin != want:
			return []packet.Response{fail(op, packet.ErrCodeInvalidMessage)}
		case packet.Checksum(data) != req.Checksum:
			return []packet.Response{fail(op, packet.ErrCodeInvalidCRC)}
		case seq+1 == r.nextSeq:
			return []packet.Response{ok(op, 0)} // a block sent again after a lost answer
		case seq != r.nextSeq || seq >= r.blocks:
			return []packet.Response{fail(op, packet.ErrCodeInvalidMessage)}
		}
		r.nextSeq++
		if op == packet.FlashData {
			copy(r.flash[r.offset+seq*0x400:r.offset+r.size], data)
			return []packet.Response{ok(op, 0)}
		}
		r.deflated.Write(data)
		if r.nextSeq == r.blocks {
			zr, err := zlib.NewReader(&r.deflated)
			if err != nil {
				return []packet.Response{fail(op, packet.ErrCodeDeflate)}
			}
			out, err := io.ReadAll(zr)
			if err != nil || len(out) > int(r.size) {
				return []packet.Response{fail(op, packet.ErrCodeDeflate)}
			}
			copy(r.flash[r.offset:], out)
		}
		return []packet.Response{ok(op, 0)}
	case packet.FlashEnd:
		if word(d, 0) == 1 {
			r.startApp()
		}
		return nil
	case packet.SPIFlashMD5:
		addr, size := word(d, 0), word(d, 1)
		sum := md5.Sum(r.flash[addr : addr+size])
		return []packet.Response{ok(op, 0, []byte(hex.EncodeToString(sum[:]))...)}
	}
	return []packet.Response{fail(op, packet.ErrCodeInvalidMessage)}
}

func (r *fakeROM) read(addr uint32) uint32 {
	c := r.chip
	if addr == 0x40001000 {
		return c.magic
	}
	if addr >= c.efRead && addr < c.efRead+4*8 && (addr-c.efRead)%4 == 0 {
		w := (addr - c.efRead) / 4
		if c.magic == fakeESP32.magic && w < 7 || c.magic != fakeESP32.magic && w < 6 {
			if addr == c.macRegs[0] || addr == c.macRegs[1] {
				return r.regs[addr]
			}
			return r.shown[w]
		}
	}
	if addr == c.efCmd {
		return 0
	}
	return r.regs[addr]
}

func (r *fakeROM) write(addr, v uint32) {
	r.writes = append(r.writes, fmt.Sprintf("%#x=%#x", addr, v))
	r.regs[addr] = v
	c := r.chip
	if addr != c.efCmd {
		return
	}
	switch {
	case v&0x3 == 0x2 && r.regs[c.efConf] == 0x5A5A:
		for w := range c.efWords {
			if w < len(r.fuses) {
				r.fuses[w] |= r.regs[c.efWrite+uint32(4*w)]
			}
		}
	case v&0x3 == 0x1 && r.regs[c.efConf] == 0x5AA5:
		r.shown = r.fuses
		if r.chip.dlDisWord >= 0 && r.shown[r.chip.dlDisWord]&(1<<r.chip.dlDisBit) != 0 && r.chip.secInfo {
			r.silent = true
		}
		r.checkSDM()
	}
}
