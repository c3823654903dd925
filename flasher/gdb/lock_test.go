package gdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/station-dev/station/flasher"
)

// TestLockPerServer locks an STM32F4 through fakes that answer as each
// kind of GDB server does, and checks that the lock is read back from
// FLASH_OPTCR after a reset, and refused when the answer or the read-back
// is not a lock.
func TestLockPerServer(t *testing.T) {
	ctx := context.Background()
	oldLock := &Command{Command: "stm32f4x lock 0"}
	tests := []struct {
		name     string
		f        *fakeTarget
		lock     *Command // overrides the table's
		wantErr  error
		want     []string // in the error
		value    uint64   // read back, when the lock works
		monitor  []string // monitor commands sent
		readable bool     // the lock was read back (LockReadback)
	}{
		{name: "openocd", f: &fakeTarget{Kind: KindOpenOCD}, value: 0x00, readable: true,
			monitor: []string{"stm32f2x lock 0", "reset run"}},
		{name: "pyocd", f: &fakeTarget{Kind: KindPyOCD, BusyReads: 2}, value: 0x55, readable: true,
			monitor: []string{"reset"}},
		{name: "probe-rs", f: &fakeTarget{Kind: KindProbeRS}, value: 0x55, readable: true,
			monitor: []string{"reset"}},
		{name: "jlink", f: &fakeTarget{Kind: KindJLink}, value: 0x55, readable: true,
			monitor: []string{"reset", "go"}},
		{name: "openocd prints its failure with an OK reply", f: &fakeTarget{Kind: KindOpenOCD, LockFails: true},
			want:    []string{"FLASH_OPTCR.RDP", `"stm32f2x lock 0" did not work`, "stm32f2x failed to lock device", `"stm32f2x locked"`},
			monitor: []string{"stm32f2x lock 0"}},
		{name: "openocd has no stm32f4x command", f: &fakeTarget{Kind: KindOpenOCD}, lock: oldLock, wantErr: flasher.ErrUnsupported,
			want: []string{"FLASH_OPTCR.RDP", "does not know", `invalid command name \"stm32f4x\"`}, monitor: []string{"stm32f4x lock 0"}},
		// probe-rs answers its help text and OK to a command it does not
		// know, which the OK alone took for a lock.
		{name: "probe-rs help text is no lock", f: &fakeTarget{Kind: KindProbeRS}, lock: oldLock, wantErr: flasher.ErrUnsupported,
			want: []string{"FLASH_OPTCR.RDP", "the GDB server (probe-rs) does not know", "Supported Commands:"}, monitor: []string{"stm32f4x lock 0"}},
		// OK to everything, and nothing programmed: only the read-back
		// after the reset tells.
		{name: "probe-rs OK but option bytes unchanged", f: &fakeTarget{Kind: KindProbeRS, NoOptionBytes: true}, wantErr: flasher.ErrLockNotSet,
			want: []string{"FLASH_OPTCR.RDP at 0x40023c14 reads 0xaa after the lock", "want level 1"}, monitor: []string{"reset"}, value: 0xAA, readable: true},
		{name: "probe-rs keys written a byte at a time", f: &fakeTarget{Kind: KindProbeRS, ByteWrites: true},
			want: []string{"FLASH_OPTCR at 0x40023c14 still reads 0x0fffaaed", "FLASH_OPTKEYR"}},
		{name: "pyocd reset fails", f: &fakeTarget{Kind: KindPyOCD, ResetFails: true},
			want: []string{"reset to load the protection", "Transfer failed"}, monitor: []string{"reset"}},
		{name: "jlink unknown command is a silent OK", f: &fakeTarget{Kind: KindJLink}, lock: &Command{Command: "lock", Success: "Device locked"},
			want: []string{`"lock" did not work`, "answered nothing", `"Device locked"`}, monitor: []string{"lock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fakeBackend(t, tt.f, Config{TargetName: "stm32f4", Server: tt.f.Kind, Lock: tt.lock})
			if got := b.LockOptions(); !slices.Equal(got, []string{DefaultLockName}) {
				t.Errorf("LockOptions() = %v, want [%s]", got, DefaultLockName)
			}
			err := b.Lock(ctx, []string{DefaultLockName})
			switch {
			case len(tt.want) == 0 && err != nil:
				t.Fatalf("Lock() = %v", err)
			case len(tt.want) > 0 && err == nil:
				t.Fatalf("Lock() = nil, want an error with %q", tt.want)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("Lock() = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Lock() = %v, want it to contain %q", err, w)
				}
			}
			if got := tt.f.monitorCommands(); !slices.Equal(got, tt.monitor) {
				t.Errorf("monitor commands %q, want %q", got, tt.monitor)
			}
			rep := b.LockReport()
			if !tt.readable {
				if rep.State != nil || len(rep.ReadBack) != 0 {
					t.Errorf("LockReport() = %+v, want nothing read", rep)
				}
				return
			}
			set := tt.value != 0xAA && tt.value != 0xCC
			want := flasher.Reading{Stage: "after the lock and a reset", Register: "FLASH_OPTCR.RDP", Addr: "0x40023c14",
				Value: fmt.Sprintf("%#x", tt.value), Want: stm32f4RDP.Want}
			if len(rep.ReadBack) != 1 || rep.ReadBack[0] != want || rep.State[DefaultLockName] != set || len(rep.State) != 1 {
				t.Errorf("LockReport() = %+v, want lock_state %s=%v and [%+v]", rep, DefaultLockName, set, want)
			}
			if running, _, _ := tt.f.state(); !running {
				t.Error("the core is halted after the lock's reset, want it running")
			}
		})
	}
}

// TestResetPerServer resets through fakes of each server and checks that
// the core runs once the backend has detached.
func TestResetPerServer(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		kind, target string
		monitor      []string
	}{
		{KindOpenOCD, "stm32f4", []string{"reset run"}},
		{KindPyOCD, "stm32f4", []string{"reset"}},
		{KindProbeRS, "stm32f4", []string{"reset"}},
		{KindJLink, "stm32f4", []string{"reset", "go"}},
		{KindQEMU, "netduinoplus2", []string{"system_reset"}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			f := &fakeTarget{Kind: tt.kind}
			b := fakeBackend(t, f, Config{TargetName: tt.target, Server: tt.kind})
			if banner, err := b.Reset(ctx); err != nil || banner != "" {
				t.Fatalf("Reset() = %q, %v", banner, err)
			}
			running, detached, resets := f.state()
			if !running || !detached || resets != 1 {
				t.Errorf("after Reset: running %v, detached %v, resets %d; want true, true, 1", running, detached, resets)
			}
			if got := f.monitorCommands(); !slices.Equal(got, tt.monitor) {
				t.Errorf("monitor commands %q, want %q", got, tt.monitor)
			}
			if err := b.Flash(ctx, flasher.Image{Segments: []flasher.Segment{{Addr: 0x20000000, Data: []byte{1}}}}, nil); !errors.Is(err, errDetached) {
				t.Errorf("Flash() after Reset = %v, want errDetached", err)
			}
		})
	}
	t.Run("failure text", func(t *testing.T) {
		f := &fakeTarget{Kind: KindProbeRS, ResetFails: true}
		b := fakeBackend(t, f, Config{TargetName: "stm32f4", Server: KindProbeRS})
		_, err := b.Reset(ctx)
		if err == nil || !strings.Contains(err.Error(), "Error while resetting target") {
			t.Fatalf("Reset() = %v, want probe-rs's error text", err)
		}
		if _, detached, _ := f.state(); detached {
			t.Error("Reset detached after a failed reset")
		}
	})
	t.Run("qemu has no reset command", func(t *testing.T) {
		b := fakeBackend(t, &fakeTarget{Kind: KindQEMU}, Config{TargetName: "netduinoplus2", Reset: []Command{{Command: "reset"}}})
		if _, err := b.Reset(ctx); !errors.Is(err, flasher.ErrUnsupported) || !strings.Contains(err.Error(), "unknown command: 'reset'") {
			t.Fatalf("Reset() = %v, want ErrUnsupported quoting QEMU", err)
		}
	})
}

func TestIdentifyLockState(t *testing.T) {
	for _, tt := range []struct {
		rdp    byte
		locked bool
	}{{0, false}, {0x55, true}} {
		f := &fakeTarget{Kind: KindOpenOCD, RDP: tt.rdp, UID: fakeUID}
		b := New(f.pipe(t), Config{TargetName: "stm32f4", Server: KindOpenOCD})
		dev, err := b.Identify(context.Background())
		if err != nil {
			t.Fatalf("Identify(RDP %#x) = %v", tt.rdp, err)
		}
		if dev.Locked != tt.locked || dev.LockState[DefaultLockName] != tt.locked {
			t.Errorf("Identify(RDP %#x) = locked %v, state %v; want %v", tt.rdp, dev.Locked, dev.LockState, tt.locked)
		}
		b.Close()
	}
}

func TestLockGeneric(t *testing.T) {
	ctx := context.Background()
	explicit := Config{HardwareIDFrom: "mem:0x1FFF7A10,12", Lock: &Command{Command: "lock", Success: "Device locked\nPower cycle to apply"},
		Protection: &stm32f4RDP}
	t.Run("lock", func(t *testing.T) {
		f := &fakeTarget{}
		b := fakeBackend(t, f, explicit)
		if err := b.Lock(ctx, []string{"readout"}); err != nil || !f.locked {
			t.Fatalf("Lock() = %v, locked %v", err, f.locked)
		}
		if err := b.Lock(ctx, []string{"jtag"}); !errors.Is(err, flasher.ErrUnsupported) {
			t.Errorf("Lock(jtag) = %v, want ErrUnsupported", err)
		}
	})
	t.Run("no lock", func(t *testing.T) {
		b := fakeBackend(t, &fakeTarget{}, Config{HardwareIDFrom: "mem:0x1FFF7A10,12"})
		if got := b.LockOptions(); len(got) != 0 {
			t.Errorf("LockOptions() = %v, want none", got)
		}
		if err := b.Lock(ctx, []string{"readout"}); !errors.Is(err, flasher.ErrUnsupported) {
			t.Errorf("Lock() = %v, want ErrUnsupported", err)
		}
	})
	t.Run("error words are not the success text", func(t *testing.T) {
		cfg := explicit
		cfg.Lock = &Command{Command: "fail", Success: "Device locked"}
		b := fakeBackend(t, &fakeTarget{}, cfg)
		if err := b.Lock(ctx, []string{"readout"}); err == nil || !strings.Contains(err.Error(), "flash is busy") {
			t.Errorf("Lock() = %v, want the server's text", err)
		}
	})
	t.Run("monitor output in the reply", func(t *testing.T) {
		b := fakeBackend(t, &fakeTarget{}, Config{HardwareIDFrom: "mem:0x1FFF7A10,12"})
		if out, err := b.Monitor(ctx, "hexonly"); err != nil || out != "all in the reply\n" {
			t.Errorf("Monitor(hexonly) = %q, %v", out, err)
		}
		if out, err := b.Monitor(ctx, "lock"); err != nil || out != "Device locked\nPower cycle to apply\n" {
			t.Errorf("Monitor(lock) = %q, %v", out, err)
		}
	})
}

func TestConfigCheck(t *testing.T) {
	lock := &Command{Command: "lock", Success: "locked"}
	tests := []struct {
		name  string
		cfg   Config
		field string // of the *ConfigError; "" for none
		want  string
	}{
		{name: "table entry", cfg: Config{TargetName: "stm32f4", Server: KindProbeRS}},
		{name: "qemu's one server", cfg: Config{TargetName: "netduinoplus2"}},
		{name: "explicit", cfg: Config{TargetName: "stm32l4", MemoryMap: fakeMap, Reset: fakeReset, Lock: lock, Protection: &stm32f4RDP}},
		{name: "explicit without lock", cfg: Config{MemoryMap: fakeMap, Reset: fakeReset}},
		{name: "misspelt target", cfg: Config{TargetName: "stm32f4x", Server: KindOpenOCD}, field: "target",
			want: `"stm32f4x" is not a target the station knows (it knows stm32f4, netduinoplus2)`},
		{name: "no target", cfg: Config{Server: KindOpenOCD}, field: "target", want: "is missing"},
		{name: "unknown target with a map only", cfg: Config{TargetName: "x", MemoryMap: fakeMap}, field: "target", want: "memory_map and reset"},
		{name: "no server", cfg: Config{TargetName: "stm32f4"}, field: "server", want: "jlink, openocd, probe-rs, pyocd"},
		{name: "bad server", cfg: Config{TargetName: "stm32f4", Server: "stlink"}, field: "server", want: `"stlink"`},
		{name: "stm32f4 on qemu", cfg: Config{TargetName: "stm32f4", Server: KindQEMU}, field: "server", want: "no commands for qemu"},
		{name: "stm32f4 on qemu with its reset", cfg: Config{TargetName: "stm32f4", Server: KindQEMU, Reset: []Command{{Command: "system_reset"}}}},
		{name: "lock on qemu", cfg: Config{TargetName: "netduinoplus2", Lock: lock}, field: "lock", want: "cannot be locked"},
		{name: "protection on qemu", cfg: Config{TargetName: "netduinoplus2", Protection: &stm32f4RDP}, field: "lock", want: "reads 0"},
		{name: "lock without read-back", cfg: Config{MemoryMap: fakeMap, Reset: fakeReset, Lock: lock}, field: "protection", want: "read back"},
		{name: "map without flash", cfg: Config{MemoryMap: fakeMap[3:], Reset: fakeReset}, field: "memory_map", want: "no flash"},
		{name: "empty reset", cfg: Config{MemoryMap: fakeMap, Reset: []Command{{Success: "x"}}}, field: "reset", want: "empty"},
		{name: "protection without mask", cfg: Config{MemoryMap: fakeMap, Reset: fakeReset, Lock: lock,
			Protection: &Protection{Name: "R", Addr: 0x40022020, NotLocked: []uint32{0xAA}}}, field: "protection", want: "mask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check()
			if summary := tt.cfg.Summary(); (summary == "") != (err != nil) {
				t.Errorf("Summary() = %q with Check() = %v", summary, err)
			}
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(ce.Msg, tt.want) {
				t.Fatalf("Check() = %v, want a %s error with %q", err, tt.field, tt.want)
			}
		})
	}
}

func TestConfigSummary(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{TargetName: "stm32f4", Server: KindJLink},
			`target stm32f4 on jlink: resets with "reset" then "go"; locks through FLASH_OPTCR over RSP, read back from FLASH_OPTCR.RDP at 0x40023c14 after a reset`},
		{Config{TargetName: "netduinoplus2"},
			`target netduinoplus2 on qemu: resets with "system_reset"; no device lock: QEMU models no STM32 flash interface`},
		// A server the table does not know for the target takes none of
		// its lock: QEMU would read FLASH_OPTCR as 0, level 1.
		{Config{TargetName: "stm32f4", Server: KindQEMU, Reset: []Command{{Command: "system_reset"}}},
			`target stm32f4 on qemu: resets with "system_reset"; no device lock`},
	} {
		if got := tt.cfg.Summary(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("Summary() = %q, want %q", got, tt.want)
		}
	}
}
