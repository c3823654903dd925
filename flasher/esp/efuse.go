package esp

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp/packet"
)

// efuseBurnTimeout is how long espefuse waits for the controller's CMD
// register to clear (mem_definition_base.py EFUSE_BURN_TIMEOUT).
const efuseBurnTimeout = 250 * time.Millisecond

// efuseBurnAttempts is how often espefuse burns a block whose bits did not
// all come out set (base_fields.py burn_words: range(3)).
const efuseBurnAttempts = 3

// efuseDriver drives one chip's eFuse controller the way espefuse does for
// that chip. Only BLOCK0, where every lock bit lives, is burnt.
type efuseDriver interface {
	// readAddr returns the read register of BLOCK0 word w.
	readAddr(w int) uint32
	// burn programs the bits set in words (indexed by BLOCK0 word) and
	// makes the controller reload its read registers. Chips that flag
	// badly programmed bits return them, indexed the same way.
	burn(ctx context.Context, e *efuseIO, words []uint32) (bad []uint32, err error)
}

// efuseIO is the register access a driver gets from the backend.
type efuseIO struct {
	b *Backend
}

func (e *efuseIO) read(ctx context.Context, addr uint32) (uint32, error) {
	return e.b.link.readReg(ctx, addr)
}

func (e *efuseIO) write(ctx context.Context, addr, v uint32) error {
	return e.b.link.writeReg(ctx, addr, v, 0, 0)
}

// writeWait writes and has the ROM wait d afterwards.
func (e *efuseIO) writeWait(ctx context.Context, addr, v uint32, d time.Duration) error {
	return e.b.link.writeReg(ctx, addr, v, d, e.b.chip.UARTDate)
}

// update replaces the bits of mask in a register with v shifted into
// place (loader.py update_reg).
func (e *efuseIO) update(ctx context.Context, addr, mask, v uint32) error {
	old, err := e.read(ctx, addr)
	if err != nil {
		return err
	}
	shift := bits.TrailingZeros32(mask)
	return e.write(ctx, addr, old&^mask|(v<<shift)&mask)
}

// xtalMHz returns the crystal frequency: fixed for the chip, or estimated
// from the UART divider and the line speed as esptool's get_crystal_freq
// does.
func (e *efuseIO) xtalMHz(ctx context.Context) (int, error) {
	c := e.b.chip
	if c.XtalMHz != 0 {
		return c.XtalMHz, nil
	}
	div, err := e.read(ctx, c.UARTClkDiv)
	if err != nil {
		return 0, err
	}
	div &= 0xFFFFF // UART_CLKDIV_MASK
	if div == 0 {
		e.b.log.Warn("esp uart divider reads 0, assuming a 40 MHz crystal")
		return 40, nil
	}
	est := float64(e.b.baud) * float64(div) / 1e6
	switch {
	case est > 45:
		return 48, nil
	case est > 33:
		return 40, nil
	}
	return 26, nil
}

// esp32EFuse is the ESP32's controller: one program command burns every
// block's write registers (espefuse efuse/esp32/fields.py).
type esp32EFuse struct {
	readBase, writeBase uint32
	words               int
	conf, cmd           uint32
	dacConf, clk        uint32
	decStatus           uint32
	clock               map[int][3]uint32
}

func (d *esp32EFuse) readAddr(w int) uint32 { return d.readBase + uint32(4*w) }

// burn follows burn_words and write_efuses: write the block's write
// registers, set the eFuse clock for the crystal, CONF = 0x5A5A, CMD = 2
// (program), then efuse_read.
func (d *esp32EFuse) burn(ctx context.Context, e *efuseIO, words []uint32) ([]uint32, error) {
	for i := range d.words {
		var w uint32
		if i < len(words) {
			w = words[i]
		}
		if err := e.write(ctx, d.writeBase+uint32(4*i), w); err != nil {
			return nil, err
		}
	}
	mhz, err := e.xtalMHz(ctx)
	if err != nil {
		return nil, err
	}
	sel, ok := d.clock[mhz]
	if !ok {
		return nil, fmt.Errorf("no eFuse timing for a %d MHz crystal", mhz)
	}
	if err := e.update(ctx, d.dacConf, 0xFF, sel[2]); err != nil { // EFUSE_DAC_CLK_DIV_MASK
		return nil, err
	}
	if err := e.update(ctx, d.clk, 0x00FF, sel[0]); err != nil { // EFUSE_CLK_SEL0_MASK
		return nil, err
	}
	if err := e.update(ctx, d.clk, 0xFF00, sel[1]); err != nil { // EFUSE_CLK_SEL1_MASK
		return nil, err
	}
	if err := e.write(ctx, d.conf, 0x5A5A); err != nil { // EFUSE_CONF_WRITE
		return nil, err
	}
	if err := e.write(ctx, d.cmd, 0x2); err != nil { // EFUSE_CMD_WRITE
		return nil, err
	}
	if err := d.reload(ctx, e); err != nil {
		return nil, err
	}
	// get_coding_scheme_warnings: BLOCK0 has no coding scheme, the
	// register is read for the transcript only.
	if _, err := e.read(ctx, d.decStatus); err != nil {
		return nil, err
	}
	return nil, nil
}

// reload is efuse_read: wait, CONF = 0x5AA5, CMD = 1 (read), wait.
func (d *esp32EFuse) reload(ctx context.Context, e *efuseIO) error {
	if err := d.wait(ctx, e); err != nil {
		return err
	}
	if err := e.write(ctx, d.conf, 0x5AA5); err != nil { // EFUSE_CONF_READ
		return err
	}
	if err := e.write(ctx, d.cmd, 0x1); err != nil { // EFUSE_CMD_READ
		return err
	}
	return d.wait(ctx, e)
}

// wait is wait_efuse_idle: poll CMD until it reads 0.
func (d *esp32EFuse) wait(ctx context.Context, e *efuseIO) error {
	deadline := time.Now().Add(efuseBurnTimeout)
	for {
		v, err := e.read(ctx, d.cmd)
		if err != nil {
			return err
		}
		if v == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("eFuse controller still busy (CMD %#x) after %v", v, efuseBurnTimeout)
		}
	}
}

// s3EFuse is the ESP32-S3's controller: data goes to PGM_DATA0..7 and a
// program command burns the block named in CMD (espefuse
// efuse/esp32s3/fields.py).
type s3EFuse struct {
	readBase, pgmData uint32
	pgmWords          int
	conf, cmd         uint32
	dacConf           uint32
	wrTim1, wrTim2    uint32
	repeatErr         uint32
}

func (d *s3EFuse) readAddr(w int) uint32 { return d.readBase + uint32(4*w) }

// burn follows burn_words for BLOCK0: efuse_controller_setup
// (set_efuse_timing, clear_pgm_registers, wait), the data into PGM_DATA,
// efuse_program (CONF = 0x5A5A, CMD = 2 | block << 2, wait, clear,
// efuse_read) and get_coding_scheme_warnings (RD_REPEAT_ERR0..4).
func (d *s3EFuse) burn(ctx context.Context, e *efuseIO, words []uint32) ([]uint32, error) {
	mhz, err := e.xtalMHz(ctx)
	if err != nil {
		return nil, err
	}
	if mhz != 40 {
		return nil, fmt.Errorf("the eFuse controller supports only a 40 MHz crystal, not %d MHz", mhz)
	}
	steps := []struct{ addr, mask, v uint32 }{
		{d.dacConf, 0xFF << 9, 0xFF},    // EFUSE_DAC_NUM_M
		{d.dacConf, 0xFF, 0x28},         // EFUSE_DAC_CLK_DIV_M
		{d.wrTim1, 0xFFFF << 8, 0x3000}, // EFUSE_PWR_ON_NUM_M
		{d.wrTim2, 0xFFFF, 0x190},       // EFUSE_PWR_OFF_NUM_M
	}
	for _, s := range steps {
		if err := e.update(ctx, s.addr, s.mask, s.v); err != nil {
			return nil, err
		}
	}
	if err := d.clear(ctx, e); err != nil {
		return nil, err
	}
	if err := d.wait(ctx, e); err != nil {
		return nil, err
	}
	for i := range d.pgmWords {
		var w uint32
		if i < len(words) {
			w = words[i]
		}
		if err := e.write(ctx, d.pgmData+uint32(4*i), w); err != nil {
			return nil, err
		}
	}
	if err := d.wait(ctx, e); err != nil {
		return nil, err
	}
	if err := e.write(ctx, d.conf, 0x5A5A); err != nil { // EFUSE_WRITE_OP_CODE
		return nil, err
	}
	if err := e.write(ctx, d.cmd, 0x2|0<<2); err != nil { // EFUSE_PGM_CMD, block 0
		return nil, err
	}
	if err := d.wait(ctx, e); err != nil {
		return nil, err
	}
	if err := d.clear(ctx, e); err != nil {
		return nil, err
	}
	if err := d.wait(ctx, e); err != nil {
		return nil, err
	}
	if err := e.write(ctx, d.conf, 0x5AA5); err != nil { // EFUSE_READ_OP_CODE
		return nil, err
	}
	// "need to add a delay after triggering EFUSE_READ_CMD, as ROM
	// loader checks some efuse registers after each command is
	// completed": 1000 µs.
	if err := e.writeWait(ctx, d.cmd, 0x1, time.Millisecond); err != nil { // EFUSE_READ_CMD
		return nil, err
	}
	if err := d.wait(ctx, e); err != nil {
		return nil, err
	}
	// RD_REPEAT_ERR0..4 flag bad bits of BLOCK0 words 1..5.
	bad := make([]uint32, 6)
	for i := range 5 {
		v, err := e.read(ctx, d.repeatErr+uint32(4*i))
		if err != nil {
			return nil, err
		}
		bad[i+1] = v
	}
	return bad, nil
}

// clear is clear_pgm_registers: wait, then zero PGM_DATA0..7.
func (d *s3EFuse) clear(ctx context.Context, e *efuseIO) error {
	if err := d.wait(ctx, e); err != nil {
		return err
	}
	for i := range d.pgmWords {
		if err := e.write(ctx, d.pgmData+uint32(4*i), 0); err != nil {
			return err
		}
	}
	return nil
}

// wait is wait_efuse_idle: poll CMD until neither the program nor the
// read bit is set, twice in a row ("due to a hardware error, we have to
// read READ_CMD again to make sure the efuse clock is normal").
func (d *s3EFuse) wait(ctx context.Context, e *efuseIO) error {
	const cmds = 0x2 | 0x1
	deadline := time.Now().Add(efuseBurnTimeout)
	for {
		v, err := e.read(ctx, d.cmd)
		if err != nil {
			return err
		}
		if v&cmds == 0 {
			v, err = e.read(ctx, d.cmd)
			if err != nil {
				return err
			}
			if v&cmds == 0 {
				return nil
			}
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("eFuse controller still busy (CMD %#x) after %v", v, efuseBurnTimeout)
		}
	}
}

// LockOptions lists the lock eFuses of the identified chip, by espefuse
// name. Before Identify it lists those of the chip Config.Chip names, or
// of every chip the backend knows.
func (b *Backend) LockOptions() []string {
	switch {
	case b.chip != nil:
		return b.chip.lockNames()
	case b.cfg.Chip != "":
		if c, err := chipByKey(b.cfg.Chip); err == nil {
			return c.lockNames()
		}
		return nil
	}
	var names []string
	for _, c := range chips {
		for _, n := range c.lockNames() {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// readBlock0 reads the BLOCK0 words that hold WR_DIS (word 0) and the
// given fuses.
func (b *Backend) readBlock0(ctx context.Context, fuses []lockFuse) (map[int]uint32, error) {
	words := map[int]uint32{}
	need := []int{0}
	for _, f := range fuses {
		if !slices.Contains(need, f.Word) {
			need = append(need, f.Word)
		}
	}
	for _, w := range need {
		v, err := b.link.readReg(ctx, b.chip.efuse.readAddr(w))
		if err != nil {
			return nil, fmt.Errorf("read eFuse BLOCK0 word %d: %w", w, err)
		}
		words[w] = v
	}
	return words, nil
}

// readLocks reports which of the named lock eFuses are burnt.
func (b *Backend) readLocks(ctx context.Context, names []string) (map[string]bool, error) {
	fuses := make([]lockFuse, 0, len(names))
	for _, n := range names {
		f, _ := b.chip.lock(n)
		fuses = append(fuses, f)
	}
	words, err := b.readBlock0(ctx, fuses)
	if err != nil {
		return nil, err
	}
	state := map[string]bool{}
	for _, f := range fuses {
		state[f.Name] = words[f.Word]&(1<<f.Bit) != 0
	}
	return state, nil
}

// Lock burns the named lock eFuses (espefuse names; see LockOptions) by
// driving the eFuse controller with WRITE_REG and READ_REG as espefuse
// does, then reads them back. Fuses already burnt are left alone, so Lock
// is idempotent. Burning ENABLE_SECURITY_DOWNLOAD or DIS_DOWNLOAD_MODE
// closes the ROM to further register access at once; Lock then confirms
// what the ROM still tells (GET_SECURITY_INFO) and reports success.
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	if err := b.ready("lock"); err != nil {
		return err
	}
	c := b.chip
	var fuses []lockFuse
	for _, name := range opts {
		f, ok := c.lock(name)
		if !ok {
			return b.fail(flasher.ErrUnsupported, "lock: the %s has no lock eFuse %q (it has %s)",
				c.Name, name, strings.Join(c.lockNames(), ", "))
		}
		if !slices.ContainsFunc(fuses, func(g lockFuse) bool { return g.Name == f.Name }) {
			fuses = append(fuses, f)
		}
	}
	if len(fuses) == 0 {
		return nil
	}
	if b.sdm {
		var missing []string
		for _, f := range fuses {
			if !b.sdmState[f.Name] {
				missing = append(missing, f.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		return b.fail(flasher.ErrLocked, "lock: cannot burn %s: the ROM is in Secure Download Mode and refuses eFuse access",
			strings.Join(missing, ", "))
	}
	words, err := b.readBlock0(ctx, fuses)
	if err != nil {
		return b.fail(err, "lock")
	}
	var todo []lockFuse
	var names, protected []string
	for _, f := range fuses {
		if words[f.Word]&(1<<f.Bit) != 0 {
			continue
		}
		todo = append(todo, f)
		names = append(names, f.Name)
		if words[0]&(1<<f.WrDis) != 0 {
			protected = append(protected, fmt.Sprintf("%s (WR_DIS bit %d)", f.Name, f.WrDis))
		}
	}
	if len(todo) == 0 {
		b.link.tracef("* lock: %s already burnt", strings.Join(opts, ", "))
		return nil
	}
	if len(protected) > 0 {
		return b.fail(flasher.ErrLocked, "lock: %s write-protected", strings.Join(protected, ", "))
	}
	pgm := make([]uint32, 8)
	for _, f := range todo {
		pgm[f.Word] |= 1 << f.Bit
	}
	what := strings.Join(names, ", ")
	b.link.tracef("* lock: burning %s", what)
	e := &efuseIO{b: b}
	for attempt := 1; attempt <= efuseBurnAttempts; attempt++ {
		bad, err := c.efuse.burn(ctx, e, pgm)
		if err != nil {
			return b.afterBurnFailed(ctx, todo, what, err)
		}
		now, err := b.readBlock0(ctx, todo)
		if err != nil {
			return b.afterBurnFailed(ctx, todo, what, err)
		}
		var missing []string
		for _, f := range todo {
			bit := uint32(1) << f.Bit
			if now[f.Word]&bit == 0 || (bad != nil && bad[f.Word]&bit != 0) {
				missing = append(missing, f.Name)
			}
		}
		if len(missing) == 0 {
			b.log.Info("esp eFuses burnt", "fuses", what)
			return nil
		}
		b.link.tracef("* lock: %s not set after burn %d of %d", strings.Join(missing, ", "), attempt, efuseBurnAttempts)
		if attempt == efuseBurnAttempts {
			return b.fail(flasher.ErrWrite, "lock: %s not set after %d burns", strings.Join(missing, ", "), efuseBurnAttempts)
		}
	}
	return nil
}

// afterBurnFailed decides what a failed register access during a burn
// means. A fuse that closes the ROM makes the following access fail:
// espefuse's efuse_read reconnects and counts that as success when the
// fuse it burnt is the cause.
func (b *Backend) afterBurnFailed(ctx context.Context, todo []lockFuse, what string, err error) error {
	var sdm, nodl bool
	for _, f := range todo {
		sdm = sdm || f.Effect == effectSecureDownload
		nodl = nodl || f.Effect == effectNoDownload
	}
	var na *noAnswerError
	var refused *refusedError
	var rom *packet.ROMError
	closed := errors.As(err, &na) || errors.As(err, &refused) || errors.As(err, &rom)
	if !closed || ctx.Err() != nil {
		return b.fail(err, "lock: burn %s", what)
	}
	if sdm {
		if err := b.link.flush(); err != nil {
			return b.fail(err, "lock: burn %s", what)
		}
		si, serr := b.securityInfo(ctx)
		if serr == nil && si.flags&secFlagSecureDownload != 0 {
			b.sdm = true
			b.sdmState = map[string]bool{"ENABLE_SECURITY_DOWNLOAD": true, "DIS_DOWNLOAD_MODE": false,
				"DIS_PAD_JTAG": si.flags&secFlagHardDisJTAG != 0}
			b.link.tracef("* lock: the ROM is now in Secure Download Mode; %s cannot be read back", what)
			b.log.Info("esp eFuses burnt; secure download mode on", "fuses", what)
			return nil
		}
	}
	if nodl && errors.As(err, &na) {
		b.noLink = true
		b.link.tracef("* lock: the ROM stopped answering: download mode is disabled")
		b.log.Info("esp eFuses burnt; download mode disabled", "fuses", what)
		return nil
	}
	return b.fail(err, "lock: burn %s", what)
}
