package esp

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	// readName names the read register of BLOCK0 word w, as espefuse's
	// mem_definition.py does.
	readName(w int) string
	// burn programs the bits set in words (indexed by BLOCK0 word) and
	// makes the controller reload its read registers. Chips that flag
	// badly programmed bits return them (see errors).
	burn(ctx context.Context, e *efuseIO, words []uint32) (bad []uint32, err error)
	// errors reads the bits the controller flags as badly programmed,
	// indexed by BLOCK0 word; nil where BLOCK0 has no error registers.
	errors(ctx context.Context, e *efuseIO) ([]uint32, error)
	// errReg names and locates the error register of BLOCK0 word w.
	errReg(w int) (name string, addr uint32)
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

// readName: EFUSE_BLK0_RDATAn_REG (espefuse efuse/esp32/mem_definition.py).
func (d *esp32EFuse) readName(w int) string { return fmt.Sprintf("EFUSE_BLK0_RDATA%d_REG", w) }

// errors: espefuse checks no error register for the ESP32's BLOCK0
// (efuse/esp32/fields.py get_coding_scheme_warnings: blocks 1-3 only).
func (d *esp32EFuse) errors(context.Context, *efuseIO) ([]uint32, error) { return nil, nil }

func (d *esp32EFuse) errReg(int) (string, uint32) { return "", 0 }

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

// readName: word 0 is EFUSE_RD_WR_DIS_REG, words 1..5 are
// EFUSE_RD_REPEAT_DATA0..4_REG (espefuse efuse/esp32s3/mem_definition.py).
func (d *s3EFuse) readName(w int) string {
	if w == 0 {
		return "EFUSE_RD_WR_DIS_REG"
	}
	return fmt.Sprintf("EFUSE_RD_REPEAT_DATA%d_REG", w-1)
}

// errReg: EFUSE_RD_REPEAT_ERR0..4_REG flag bad bits of BLOCK0 words 1..5.
func (d *s3EFuse) errReg(w int) (string, uint32) {
	return fmt.Sprintf("EFUSE_RD_REPEAT_ERR%d_REG", w-1), d.repeatErr + uint32(4*(w-1))
}

// errors is get_coding_scheme_warnings for BLOCK0: RD_REPEAT_ERR0..4.
func (d *s3EFuse) errors(ctx context.Context, e *efuseIO) ([]uint32, error) {
	bad := make([]uint32, 6)
	for w := 1; w <= 5; w++ {
		_, addr := d.errReg(w)
		v, err := e.read(ctx, addr)
		if err != nil {
			return nil, err
		}
		bad[w] = v
	}
	return bad, nil
}

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
	return d.errors(ctx, e)
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
// name. Before Identify it lists those Plan gives.
func (b *Backend) LockOptions() []string {
	if b.chip != nil {
		return b.chip.lockNames()
	}
	p, _ := Plan(b.cfg)
	return p.Locks
}

// Plan is what a slot with cfg offers before its chip is identified: the
// lock eFuses of the chip cfg.Chip names, or of every chip the backend
// knows when it names none (preflight checks the chip's own), and the
// flash cfg.FlashSize gives. A chip the backend does not know is an
// error.
func Plan(cfg Config) (flasher.Plan, error) {
	cfg = cfg.withDefaults()
	p := flasher.Plan{Device: "the ESP chip", Flash: []flasher.Range{{Start: 0, End: uint64(cfg.FlashSize)}}}
	if cfg.Chip != "" {
		c, err := chipByKey(cfg.Chip)
		if err != nil {
			return flasher.Plan{}, err
		}
		p.Device, p.Locks = c.Name, c.lockNames()
		return p, nil
	}
	for _, c := range chips {
		for _, n := range c.lockNames() {
			if !slices.Contains(p.Locks, n) {
				p.Locks = append(p.Locks, n)
			}
		}
	}
	return p, nil
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
		state[f.Name] = f.set(words)
	}
	return state, nil
}

// set reports whether the fuse's bit is set in words, indexed by BLOCK0
// word.
func (f lockFuse) set(words map[int]uint32) bool { return words[f.Word]&(1<<f.Bit) != 0 }

// fuseNames lists the fuses' names for messages.
func fuseNames(fuses []lockFuse) string {
	names := make([]string, len(fuses))
	for i, f := range fuses {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// hex32 formats a register value for the lock report and messages.
func hex32(v uint32) string { return fmt.Sprintf("0x%08x", v) }

// LockReport returns what the last Lock read back from the device: the
// BLOCK0 words before and after each burn, the error registers after
// each burn where the chip has them, and, after the burn that closed the
// ROM, the ROM's answer (GET_SECURITY_INFO flags, or no answer).
func (b *Backend) LockReport() flasher.LockReport {
	return flasher.LockReport{State: maps.Clone(b.report.State), ReadBack: slices.Clone(b.report.ReadBack)}
}

var _ flasher.LockReporter = (*Backend)(nil)

// read appends one value read back to the lock report; addr is 0 for a
// command's answer.
func (b *Backend) read(stage, register string, addr uint32, value string) {
	r := flasher.Reading{Stage: stage, Register: register, Value: value}
	if addr != 0 {
		r.Addr = fmt.Sprintf("%#x", addr)
	}
	b.report.ReadBack = append(b.report.ReadBack, r)
}

// readWords appends BLOCK0 words, in word order, to the lock report.
func (b *Backend) readWords(stage string, words map[int]uint32) {
	d := b.chip.efuse
	for _, w := range slices.Sorted(maps.Keys(words)) {
		b.read(stage, d.readName(w), d.readAddr(w), hex32(words[w]))
	}
}

// readErrors appends the error registers to the lock report. Word 0
// (WR_DIS) has none.
func (b *Backend) readErrors(stage string, bad []uint32) {
	for w := 1; w < len(bad); w++ {
		name, addr := b.chip.efuse.errReg(w)
		b.read(stage, name, addr, hex32(bad[w]))
	}
}

// lockFuses finds the named fuses, each once.
func (b *Backend) lockFuses(opts []string) ([]lockFuse, error) {
	c := b.chip
	var fuses []lockFuse
	for _, name := range opts {
		f, ok := c.lock(name)
		if !ok {
			return nil, b.fail(flasher.ErrUnsupported, "lock: the %s has no lock eFuse %q (it has %s)",
				c.Name, name, strings.Join(c.lockNames(), ", "))
		}
		if !slices.ContainsFunc(fuses, func(g lockFuse) bool { return g.Name == f.Name }) {
			fuses = append(fuses, f)
		}
	}
	return fuses, nil
}

// Lock burns the named lock eFuses (espefuse names; see LockOptions) by
// driving the eFuse controller with WRITE_REG and READ_REG as espefuse
// does, and reads them back; LockReport returns what was read. Fuses
// already burnt are left alone, so Lock is idempotent.
//
// As espefuse's burn_all does, the fuses that close the ROM
// (UART_DOWNLOAD_DIS on the ESP32; ENABLE_SECURITY_DOWNLOAD and
// DIS_DOWNLOAD_MODE on the ESP32-S3) are burnt last, in a burn of their
// own, and only once every other fuse reads back set with no new bit
// flagged in the controller's error registers; otherwise Lock fails
// without burning them, naming the register, the value read and the
// value expected. The ESP32-S3's ROM closes as soon as it reloads its
// closing fuses, so their own burn cannot be read back: Lock confirms it
// by what the ROM still tells, GET_SECURITY_INFO's Secure Download Mode
// flag, or, for DIS_DOWNLOAD_MODE, its silence.
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	b.report = flasher.LockReport{State: map[string]bool{}}
	if err := b.ready("lock"); err != nil {
		return err
	}
	c := b.chip
	fuses, err := b.lockFuses(opts)
	if err != nil {
		return err
	}
	for _, f := range fuses {
		b.report.State[f.Name] = false
	}
	if len(fuses) == 0 {
		return nil
	}
	if b.sdm {
		return b.lockInSDM(fuses)
	}
	words, err := b.readBlock0(ctx, fuses)
	if err != nil {
		return b.fail(err, "lock")
	}
	b.readWords("before", words)
	var open, closing []lockFuse
	var protected []string
	for _, f := range fuses {
		if f.set(words) {
			b.report.State[f.Name] = true
			continue
		}
		if f.Effect == effectNone {
			open = append(open, f)
		} else {
			closing = append(closing, f)
		}
		if words[0]&(1<<f.WrDis) != 0 {
			protected = append(protected, fmt.Sprintf("%s (WR_DIS bit %d)", f.Name, f.WrDis))
		}
	}
	if len(open)+len(closing) == 0 {
		b.link.tracef("* lock: %s already burnt", strings.Join(opts, ", "))
		return nil
	}
	if len(protected) > 0 {
		return b.fail(flasher.ErrLocked, "lock: %s write-protected", strings.Join(protected, ", "))
	}
	e := &efuseIO{b: b}
	// burn_block fails when the error count grew: errors flagged before
	// the burn are not the burn's.
	baseline, err := c.efuse.errors(ctx, e)
	if err != nil {
		return b.fail(err, "lock: read the eFuse error registers")
	}
	b.readErrors("before", baseline)
	n := 0
	if len(open) > 0 {
		n++
		err := b.burnCycle(ctx, e, n, open, baseline)
		var postponed string
		if len(closing) > 0 {
			// espefuse: "The postponed eFuses were not burned due to an
			// error."
			postponed = fmt.Sprintf("; %s not burnt: fuses that close the ROM are burnt only once the others read back", fuseNames(closing))
		}
		var rb *readbackError
		switch {
		case errors.As(err, &rb):
			return b.fail(flasher.ErrWrite, "lock: %v%s", rb, postponed)
		case err != nil:
			return b.fail(err, "lock: burn %s%s", fuseNames(open), postponed)
		}
	}
	if len(closing) > 0 {
		n++
		err := b.burnCycle(ctx, e, n, closing, baseline)
		var rb *readbackError
		switch {
		case errors.As(err, &rb):
			return b.fail(flasher.ErrWrite, "lock: %v", rb)
		case err != nil:
			return b.afterBurnFailed(ctx, n, closing, err)
		}
	}
	b.log.Info("esp eFuses burnt", "fuses", fuseNames(slices.Concat(open, closing)), "burns", n)
	return nil
}

// lockInSDM answers Lock on a ROM in Secure Download Mode, which refuses
// eFuse access: the locks GET_SECURITY_INFO shows are in place, any
// other is an error.
func (b *Backend) lockInSDM(fuses []lockFuse) error {
	b.read("identify", "GET_SECURITY_INFO flags", 0, hex32(b.sdmFlags))
	var missing []string
	for _, f := range fuses {
		b.report.State[f.Name] = b.sdmState[f.Name]
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

// readbackError is a burn whose read-back still disagrees after the last
// attempt: each problem names the register, the value read and the value
// expected.
type readbackError struct {
	burns    int
	problems []string
}

func (e *readbackError) Error() string {
	return fmt.Sprintf("after %d burns: %s", e.burns, strings.Join(e.problems, "; "))
}

// burnCycle burns fuses in one program of BLOCK0, as espefuse's
// burn_words does: up to efuseBurnAttempts times, until every bit reads
// back set and the error registers flag no bit that baseline did not. A
// failed register access returns its error; a read-back that still
// disagrees after the last attempt returns a *readbackError.
func (b *Backend) burnCycle(ctx context.Context, e *efuseIO, n int, fuses []lockFuse, baseline []uint32) error {
	pgm := make([]uint32, 8)
	for _, f := range fuses {
		pgm[f.Word] |= 1 << f.Bit
	}
	b.link.tracef("* lock: burn %d: %s", n, fuseNames(fuses))
	var problems []string
	for attempt := 1; attempt <= efuseBurnAttempts; attempt++ {
		bad, err := b.chip.efuse.burn(ctx, e, pgm)
		if err != nil {
			return err
		}
		now, err := b.readBlock0(ctx, fuses)
		if err != nil {
			return err
		}
		stage := fmt.Sprintf("after burn %d", n)
		if attempt > 1 {
			stage += fmt.Sprintf(", attempt %d", attempt)
		}
		b.readWords(stage, now)
		b.readErrors(stage, bad)
		problems = b.checkBurn(fuses, now, bad, baseline)
		if len(problems) == 0 {
			return nil
		}
		b.link.tracef("* lock: burn %d, attempt %d of %d: %s", n, attempt, efuseBurnAttempts, strings.Join(problems, "; "))
	}
	return &readbackError{burns: efuseBurnAttempts, problems: problems}
}

// checkBurn compares a burn's read-back with what it asked for, records
// each fuse's state, and describes every disagreement: a fuse whose bit
// reads 0, and error register bits the burn added.
func (b *Backend) checkBurn(fuses []lockFuse, now map[int]uint32, bad, baseline []uint32) []string {
	d := b.chip.efuse
	var problems []string
	for _, f := range fuses {
		set := f.set(now)
		b.report.State[f.Name] = set
		if !set {
			problems = append(problems, fmt.Sprintf("%s not set: %s (%#x) reads %s, want bit %d (%s) set",
				f.Name, d.readName(f.Word), d.readAddr(f.Word), hex32(now[f.Word]), f.Bit, hex32(1<<f.Bit)))
		}
	}
	for w := 1; w < len(bad); w++ {
		var was uint32
		if w < len(baseline) {
			was = baseline[w]
		}
		added := bad[w] &^ was
		if added == 0 {
			continue
		}
		var hit []string
		for _, f := range fuses {
			if f.Word == w && added&(1<<f.Bit) != 0 {
				hit = append(hit, f.Name)
				b.report.State[f.Name] = false
			}
		}
		name, addr := d.errReg(w)
		msg := fmt.Sprintf("%s (%#x) reads %s, want %s: the eFuse controller flags badly programmed bits", name, addr, hex32(bad[w]), hex32(was))
		if len(hit) > 0 {
			msg += " (" + strings.Join(hit, ", ") + ")"
		}
		problems = append(problems, msg)
	}
	return problems
}

// afterBurnFailed decides what a failed register access during the burn
// of closing fuses (burn n) means. The ROM closes as soon as it reloads
// them: espefuse's efuse_read reconnects and counts that as success when
// the fuse it burnt is the cause. Here the ROM is asked without a reset:
// in Secure Download Mode GET_SECURITY_INFO must show its flag; with
// download mode disabled it answers nothing.
func (b *Backend) afterBurnFailed(ctx context.Context, n int, fuses []lockFuse, err error) error {
	what := fuseNames(fuses)
	stage := fmt.Sprintf("after burn %d", n)
	var sdm, nodl bool
	for _, f := range fuses {
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
		var siNA *noAnswerError
		switch {
		case serr == nil:
			b.read(stage, "GET_SECURITY_INFO flags", 0, hex32(si.flags))
			if si.flags&secFlagSecureDownload == 0 {
				return b.fail(flasher.ErrWrite, "lock: burn %s: the ROM refuses register access (%v) but GET_SECURITY_INFO flags read %s, want bit 2 (SECURE_DOWNLOAD_ENABLE, %s) set",
					what, err, hex32(si.flags), hex32(secFlagSecureDownload))
			}
			b.report.State["ENABLE_SECURITY_DOWNLOAD"] = true
			if nodl {
				return b.fail(flasher.ErrWrite, "lock: burn %s: the ROM still answers in Secure Download Mode (GET_SECURITY_INFO flags %s), want no answer once DIS_DOWNLOAD_MODE is burnt",
					what, hex32(si.flags))
			}
			b.enterSDM(b.chip, si.flags)
			// What this Lock read back before the ROM closed stays known.
			for name, on := range b.report.State {
				b.sdmState[name] = b.sdmState[name] || on
			}
			b.link.tracef("* lock: the ROM is now in Secure Download Mode (GET_SECURITY_INFO flags %s)", hex32(si.flags))
			b.log.Info("esp eFuses burnt; secure download mode on", "fuses", what)
			return nil
		case errors.As(serr, &siNA):
			b.read(stage, "GET_SECURITY_INFO", 0, "no answer")
		default:
			b.read(stage, "GET_SECURITY_INFO", 0, serr.Error())
		}
	}
	if nodl && errors.As(err, &na) {
		b.noLink = true
		b.read(stage, "answer to "+na.op.String(), 0, "no answer")
		for _, f := range fuses {
			b.report.State[f.Name] = true
		}
		b.link.tracef("* lock: the ROM stopped answering: download mode is disabled")
		b.log.Info("esp eFuses burnt; download mode disabled", "fuses", what)
		return nil
	}
	return b.fail(err, "lock: burn %s", what)
}
