package gdb

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/gdb/rsp"
)

// Waits of the option-register lock.
const (
	// optionTimeout bounds the wait for an option write to be
	// programmed: OpenOCD's stm32f2x driver waits as long
	// (FLASH_MASS_ERASE_TIMEOUT), since raising RDP erases and programs
	// the option bytes.
	optionTimeout = 33 * time.Second
	// optionPoll is the pause between two reads of the status register.
	optionPoll = 5 * time.Millisecond
)

// LockOptions lists the one protection the slot can set and read back,
// or nothing.
func (b *Backend) LockOptions() []string {
	if b.res.lock == nil && b.res.optionLock == nil {
		return nil
	}
	return []string{b.cfg.LockName}
}

// Lock sets the protection opts names (the lock command, or the option
// registers written over RSP where the server has none), resets the
// target so that the protection register is loaded from what was
// programmed, and reads it back before letting the core run. A value that
// is not the lock fails with flasher.ErrLockNotSet naming the register,
// the value read and the value wanted; LockReadback returns what was
// read. The lock runs each time: raising the protection to the level it
// has changes nothing.
func (b *Backend) Lock(ctx context.Context, opts []string) error {
	if err := b.ready("lock"); err != nil {
		return err
	}
	if b.res.lock == nil && b.res.optionLock == nil {
		why := "the slot gives no lock for this target and GDB server"
		if b.res.noLock != "" {
			why = b.res.noLock
		}
		return fmt.Errorf("lock: %s: %w", why, flasher.ErrUnsupported)
	}
	run := false
	for _, o := range opts {
		if o != b.cfg.LockName {
			return fmt.Errorf("lock: %q is not a lock this slot has (it has %s): %w", o, b.cfg.LockName, flasher.ErrUnsupported)
		}
		run = true
	}
	if !run {
		return nil
	}
	p := *b.res.protection
	op := fmt.Sprintf("lock %s (%s)", b.cfg.LockName, p.Name)
	b.readback = nil
	how := "option registers over RSP"
	var err error
	if c := b.res.lock; c != nil {
		how = fmt.Sprintf("monitor %q", c.Command)
		err = b.run(ctx, *c)
	} else {
		err = b.setOptions(ctx, *b.res.optionLock)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// The register shows what was programmed only once a reset has
	// loaded it; right after the write it reads back what was written.
	if err := b.run(ctx, b.res.reset[0]); err != nil {
		return fmt.Errorf("%s: reset to load the protection: %w", op, err)
	}
	v, readErr := b.readProtection(ctx, p)
	var errs []error
	if readErr != nil {
		errs = append(errs, fmt.Errorf("%s: read back: %w", op, readErr))
	}
	// Let the core run where the reset left it halted (J-Link).
	for _, c := range b.res.reset[1:] {
		if err := b.run(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("%s: after the reset: %w", op, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	rb := lockRead{Register: p.Name, Addr: p.Addr, Value: uint64(v), Want: p.want(), Set: p.locked(v)}
	b.readback = &rb
	if !rb.Set {
		return fmt.Errorf("lock %s: %w: %s at %#x reads %#x after the lock (%s) and a reset, want %s",
			b.cfg.LockName, flasher.ErrLockNotSet, p.Name, p.Addr, v, how, rb.Want)
	}
	b.log.Info("gdb target locked and read back", "lock", b.cfg.LockName, "how", how,
		"register", p.Name, "address", fmt.Sprintf("%#x", p.Addr), "value", fmt.Sprintf("%#x", v))
	return nil
}

// lockRead is the protection register as the last Lock read it back.
type lockRead struct {
	Register string
	Addr     uint64
	Value    uint64
	Want     string // what a locked device reads
	Set      bool   // Value means the lock is set
}

// LockReport returns what the last Lock read back from the device: the
// lock's state as the protection register shows it, and the register's
// value. Empty when the last Lock read nothing (it failed before).
func (b *Backend) LockReport() flasher.LockReport {
	if b.readback == nil {
		return flasher.LockReport{}
	}
	r := *b.readback
	return flasher.LockReport{
		State: map[string]bool{b.cfg.LockName: r.Set},
		ReadBack: []flasher.Reading{{Stage: "after the lock and a reset", Register: r.Register,
			Addr: fmt.Sprintf("%#x", r.Addr), Value: fmt.Sprintf("%#x", r.Value), Want: r.Want}},
	}
}

var _ flasher.LockReporter = (*Backend)(nil)

// readProtection reads p's register and returns its field.
func (b *Backend) readProtection(ctx context.Context, p Protection) (uint32, error) {
	reg, err := b.readReg(ctx, p.Addr)
	if err != nil {
		return 0, fmt.Errorf("read %s at %#x: %w", p.Name, p.Addr, err)
	}
	return p.field(reg), nil
}

// readReg reads a 32-bit little-endian register.
func (b *Backend) readReg(ctx context.Context, addr uint64) (uint32, error) {
	data, err := b.readMemory(ctx, addr, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(data), nil
}

// writeReg writes a 32-bit register with one M packet.
func (b *Backend) writeReg(ctx context.Context, addr uint64, v uint32) error {
	req := fmt.Appendf(nil, "M%x,4:%s", addr, hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, v)))
	r, err := b.link.roundTrip(ctx, req, b.cfg.Timeout)
	if err != nil {
		return fmt.Errorf("write %#08x at %#x: %w", v, addr, err)
	}
	if se := rsp.ParseError(r); se != nil {
		return fmt.Errorf("write %#08x at %#x: %w", v, addr, se)
	}
	if string(r) != "OK" {
		return fmt.Errorf("write %#08x at %#x: reply %q is not OK", v, addr, describe(r))
	}
	return nil
}

// setOptions programs the protection into the option bytes through the
// flash interface: wait until it is idle, unlock the option control
// register with the keys (and check that it unlocked: a server that
// writes the keys a byte at a time may leave it locked), write the level,
// start the programming, wait for it, and lock the register again.
func (b *Backend) setOptions(ctx context.Context, o optionLock) error {
	readCR := func() (uint32, error) {
		cr, err := b.readReg(ctx, o.ControlReg)
		if err != nil {
			return 0, fmt.Errorf("read %s at %#x: %w", o.ControlName, o.ControlReg, err)
		}
		return cr, nil
	}
	if err := b.waitOptions(ctx, o); err != nil {
		return err
	}
	cr, err := readCR()
	if err != nil {
		return err
	}
	if cr&o.OptLock != 0 {
		for _, k := range o.Keys {
			if err := b.writeReg(ctx, o.KeyReg, k); err != nil {
				return fmt.Errorf("unlock %s through %s: %w", o.ControlName, o.KeyName, err)
			}
		}
		if cr, err = readCR(); err != nil {
			return err
		}
		if cr&o.OptLock != 0 {
			return fmt.Errorf("%s at %#x still reads %#08x, locked against writes, after the option keys were written to %s at %#x: the GDB server may write them a byte at a time",
				o.ControlName, o.ControlReg, cr, o.KeyName, o.KeyReg)
		}
	}
	cr = cr&^(o.Field|o.OptLock|o.OptStart) | o.Value<<bits.TrailingZeros32(o.Field)
	for _, v := range []uint32{cr, cr | o.OptStart} {
		if err := b.writeReg(ctx, o.ControlReg, v); err != nil {
			return fmt.Errorf("set %s: %w", o.ControlName, err)
		}
	}
	if err := b.waitOptions(ctx, o); err != nil {
		return err
	}
	if cr, err = readCR(); err != nil {
		return err
	}
	if err := b.writeReg(ctx, o.ControlReg, cr|o.OptLock); err != nil {
		return fmt.Errorf("lock %s against writes: %w", o.ControlName, err)
	}
	return nil
}

// waitOptions waits until the flash interface is not busy.
func (b *Backend) waitOptions(ctx context.Context, o optionLock) error {
	deadline := time.Now().Add(optionTimeout)
	for {
		sr, err := b.readReg(ctx, o.StatusReg)
		if err != nil {
			return fmt.Errorf("read the flash status at %#x: %w", o.StatusReg, err)
		}
		if sr&o.Busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the flash interface is still busy (status %#08x at %#x) after %v", sr, o.StatusReg, optionTimeout)
		}
		t := time.NewTimer(optionPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// Reset runs the reset commands, which restart the target so that it
// runs under every server (OpenOCD "reset run", pyOCD and probe-rs
// "reset", J-Link "reset" then "go", QEMU "system_reset"), each checked
// against what the server prints on success; then it detaches (D) and
// closes the connection. The link cannot see the application's output,
// so the banner is always "". The backend is unusable afterwards.
func (b *Backend) Reset(ctx context.Context) (string, error) {
	if err := b.ready("reset"); err != nil {
		return "", err
	}
	cmds := make([]string, len(b.res.reset))
	for i, c := range b.res.reset {
		if err := b.run(ctx, c); err != nil {
			return "", fmt.Errorf("reset: %w", err)
		}
		cmds[i] = c.Command
	}
	r, err := b.link.roundTrip(ctx, []byte("D"), b.cfg.Timeout)
	b.detached = true
	// As GDB does after a detach: the server serves the next client only
	// once this one has gone (QEMU takes one connection at a time).
	_ = b.link.close()
	if err != nil {
		return "", fmt.Errorf("reset: detach: %w", err)
	}
	// An empty reply is a server that cannot detach (J-Link): the core
	// runs already, since the reset commands leave it running.
	if se := rsp.ParseError(r); se != nil {
		return "", fmt.Errorf("reset: detach: %w", se)
	}
	b.log.Info("gdb target reset and detached", "commands", strings.Join(cmds, "; "))
	return "", nil
}
