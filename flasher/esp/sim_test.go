package esp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp"
)

// pipePort is the host end of a net.Pipe to a simulated chip, adapted to
// esp.Port as the fixture adapts a serial port: reads time out with
// (0, nil), the modem lines go to the chip's SetLines, and the host's
// baud rate is told to the chip (sim.HostBauder) so that a mismatch
// garbles bytes as on a wire.
type pipePort struct {
	conn     net.Conn
	chip     *sim.ESP
	timeout  atomic.Int64
	baud     atomic.Int64
	dtr, rts bool
}

func (p *pipePort) Read(b []byte) (int, error) {
	if err := p.conn.SetReadDeadline(time.Now().Add(time.Duration(p.timeout.Load()))); err != nil {
		return 0, err
	}
	n, err := p.conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil
	}
	return n, err
}

func (p *pipePort) Write(b []byte) (int, error) { return p.conn.Write(b) }

func (p *pipePort) SetBaud(baud int) error { p.baud.Store(int64(baud)); return nil }

func (p *pipePort) SetReadTimeout(d time.Duration) error { p.timeout.Store(int64(d)); return nil }

func (p *pipePort) SetDTR(on bool) error { p.dtr = on; p.chip.SetLines(p.dtr, p.rts); return nil }

func (p *pipePort) SetRTS(on bool) error { p.rts = on; p.chip.SetLines(p.dtr, p.rts); return nil }

// ResetInputBuffer drops what has arrived: what the chip is sending
// right now, a millisecond's worth.
func (p *pipePort) ResetInputBuffer() error {
	buf := make([]byte, 4096)
	for {
		if err := p.conn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			return err
		}
		n, err := p.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// chipEnd is the chip's end of the pipe; it tells the chip the host's
// line speed.
type chipEnd struct {
	net.Conn
	host *pipePort
}

func (c chipEnd) HostBaud() (int, bool) { return int(c.host.baud.Load()), true }

// simRig is a backend wired to a simulated chip that is serving.
type simRig struct {
	chip  *sim.ESP
	b     *esp.Backend
	trace *bytes.Buffer
}

// startSim serves chip over a pipe until the test ends.
func startSim(t *testing.T, chip *sim.ESP, cfg esp.Config) *simRig {
	t.Helper()
	hostConn, chipConn := net.Pipe()
	port := &pipePort{conn: hostConn, chip: chip}
	port.baud.Store(115200)
	port.timeout.Store(int64(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- chip.Serve(ctx, chipEnd{Conn: chipConn, host: port}) }()
	t.Cleanup(func() {
		cancel()
		hostConn.Close()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, sim.ErrUnplugged) {
			t.Errorf("Serve() = %v", err)
		}
	})
	trace := &bytes.Buffer{}
	cfg.Trace = trace
	return &simRig{chip: chip, b: esp.New(port, cfg), trace: trace}
}

func newSimChip(t *testing.T, model sim.Model, seed int64) *sim.ESP {
	t.Helper()
	chip, err := sim.New(sim.Config{Model: model, Seed: seed})
	if err != nil {
		t.Fatalf("sim.New() = %v", err)
	}
	return chip
}

func simImage(version string) flasher.Image {
	return flasher.Image{Version: version, Segments: []flasher.Segment{
		{Name: "bootloader.bin", Addr: 0x1000, Data: firmware(0x6000, 21)},
		{Name: "partitions.bin", Addr: 0x8000, Data: firmware(0xC00, 22)},
		{Name: "app.bin", Addr: 0x10000, Data: sim.ESPAppImage(version, "station-test", 300_000, 23)},
	}}
}

// TestSim runs the pipeline's device steps against the simulated ROM:
// identify, flash, verify, lock, reset; then identifies the locked chip.
func TestSim(t *testing.T) {
	tests := []struct {
		name      string
		model     sim.Model
		chipName  string
		locks     []string
		wantSDM   bool // the next identify finds Secure Download Mode
		wantFuses []string
	}{
		{
			name: "esp32", model: sim.ESP32, chipName: "ESP32-D0WD-V3",
			locks: []string{"JTAG_DISABLE"}, wantFuses: []string{"JTAG_DISABLE"},
		},
		{
			name: "esp32-s3", model: sim.ESP32S3, chipName: "ESP32-S3",
			locks:     []string{"DIS_PAD_JTAG", "DIS_USB_JTAG", "ENABLE_SECURITY_DOWNLOAD"},
			wantFuses: []string{"DIS_PAD_JTAG", "DIS_USB_JTAG", "ENABLE_SECURITY_DOWNLOAD"},
			wantSDM:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				chip := newSimChip(t, tt.model, 1)
				r := startSim(t, chip, esp.Config{})
				ctx := t.Context()
				dev, err := r.b.Identify(ctx)
				if err != nil {
					t.Fatalf("Identify() = %v\ntrace:\n%s", err, r.trace)
				}
				if want := flasher.HardwareID(chip.MAC().String()); dev.HardwareID != want || dev.Chip != tt.chipName || dev.Locked {
					t.Errorf("Identify() = %+v, want id %s, chip %s, not locked", dev, want, tt.chipName)
				}
				img := simImage("2.3.1")
				start := time.Now()
				if err := r.b.Flash(ctx, img, nil); err != nil {
					t.Fatalf("Flash() = %v\ntrace:\n%s", err, tail(r.trace))
				}
				// The link is paced at 460800 baud in fake time: compression
				// must beat the line rate.
				if el, line := time.Since(start), time.Duration(img.Size()*10)*time.Second/460800; el >= line {
					t.Errorf("Flash() took %v, no faster than the %v the raw bytes take on the line", el, line)
				}
				for _, s := range img.Segments {
					got, err := chip.ReadFlash(int(s.Addr), len(s.Data))
					if err != nil || !bytes.Equal(got, s.Data) {
						t.Errorf("sim flash at %#x does not hold %s (%v)", s.Addr, s.Name, err)
					}
				}
				if err := r.b.Verify(ctx, img); err != nil {
					t.Fatalf("Verify() = %v", err)
				}
				if err := r.b.Lock(ctx, tt.locks); err != nil {
					t.Fatalf("Lock(%q) = %v\ntrace:\n%s", tt.locks, err, tail(r.trace))
				}
				for _, f := range tt.wantFuses {
					if v, err := chip.EFuseField(f); err != nil || v == 0 {
						t.Errorf("sim eFuse %s = %d, %v, want burnt", f, v, err)
					}
				}
				banner, err := r.b.Reset(ctx)
				if err != nil || banner != "2.3.1" {
					t.Errorf("Reset() = %q, %v, want %q\ntrace:\n%s", banner, err, "2.3.1", tail(r.trace))
				}
				dev, err = r.b.Identify(ctx)
				switch {
				case tt.wantSDM:
					if !errors.Is(err, flasher.ErrLocked) || dev.HardwareID != "" || !dev.Locked || dev.Chip != "ESP32-S3" {
						t.Errorf("Identify() after lock = %+v, %v, want locked ESP32-S3 without id, %v", dev, err, flasher.ErrLocked)
					}
				case err != nil:
					t.Errorf("Identify() after lock = %v", err)
				default:
					if !dev.Locked || !dev.LockState[tt.locks[0]] {
						t.Errorf("Identify() after lock = %+v, want %s set", dev, tt.locks[0])
					}
				}
			})
		})
	}
}

// TestSimFaults checks the backend's answer to each fault the simulator
// injects.
func TestSimFaults(t *testing.T) {
	tests := []struct {
		name       string
		faults     sim.Faults
		noCompress bool
		flashErr   error
		verifyErr  error
	}{
		{name: "corrupt link is retried", faults: sim.Faults{CorruptLink: true}},
		{name: "corrupt link uncompressed", faults: sim.Faults{CorruptLink: true}, noCompress: true},
		{name: "flash write error", faults: sim.Faults{FailNextWrite: true}, flashErr: flasher.ErrWrite},
		{name: "corrupt flash caught by verify", faults: sim.Faults{CorruptFlash: true}, verifyErr: flasher.ErrVerify},
		// Uncompressed: the simulator leaves its inflater goroutine
		// behind when a compressed write is cut by an unplug, which
		// synctest reports as a deadlock (reported to its author).
		{name: "unplugged mid-flash", faults: sim.Faults{UnplugAt: 40}, noCompress: true, flashErr: flasher.ErrLinkLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				chip := newSimChip(t, sim.ESP32, 2)
				r := startSim(t, chip, esp.Config{NoCompress: tt.noCompress})
				ctx := t.Context()
				dev, err := r.b.Identify(ctx)
				if err != nil {
					t.Fatalf("Identify() = %v", err)
				}
				chip.SetFaults(tt.faults)
				img := simImage("2.3.2")
				err = r.b.Flash(ctx, img, nil)
				if !errors.Is(err, tt.flashErr) || (tt.flashErr == nil) != (err == nil) {
					t.Fatalf("Flash() with %+v = %v, want %v", tt.faults, err, tt.flashErr)
				}
				if err != nil {
					if !strings.Contains(err.Error(), string(dev.HardwareID)) || !strings.Contains(err.Error(), "flash segment ") {
						t.Errorf("Flash() = %q, want it to name the device and the segment", err)
					}
					// A failed device is reset before it is tried again;
					// this also ends the simulator's abandoned write.
					if !errors.Is(err, flasher.ErrLinkLost) {
						if _, err := r.b.Reset(ctx); err != nil {
							t.Errorf("Reset() after a failed flash = %v", err)
						}
					}
					return
				}
				if err := r.b.Verify(ctx, img); !errors.Is(err, tt.verifyErr) || (tt.verifyErr == nil) != (err == nil) {
					t.Errorf("Verify() with %+v = %v, want %v", tt.faults, err, tt.verifyErr)
				}
			})
		})
	}
}

// TestSimSharedCache flashes two simulated chips from one cache: the
// image is compressed once.
func TestSimSharedCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cache := &esp.Cache{}
		img := simImage("3.0.0")
		for i := range 2 {
			chip := newSimChip(t, sim.ESP32, int64(10+i))
			r := startSim(t, chip, esp.Config{Cache: cache})
			if _, err := r.b.Identify(t.Context()); err != nil {
				t.Fatalf("chip %d: Identify() = %v", i, err)
			}
			if err := r.b.Flash(t.Context(), img, nil); err != nil {
				t.Fatalf("chip %d: Flash() = %v", i, err)
			}
			if err := r.b.Verify(t.Context(), img); err != nil {
				t.Fatalf("chip %d: Verify() = %v", i, err)
			}
		}
		if n := cache.Compressions(); n != int64(len(img.Segments)) {
			t.Errorf("Compressions() = %d for two chips, want %d", n, len(img.Segments))
		}
	})
}

// tail returns the end of a trace for a failure message.
func tail(b *bytes.Buffer) string {
	s := b.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// TestSimLockBurnOrder burns locks into the simulated chip, whose ROM
// closes the moment it reads its closing fuses (ESP32-S3) and flags bad
// bits on request: the closing fuses get a burn of their own after
// everything else reads back clean (espefuse burn_all), and Lock reports
// what it read.
func TestSimLockBurnOrder(t *testing.T) {
	type read struct{ stage, register, value string }
	tests := []struct {
		name   string
		model  sim.Model
		locks  []string
		faults sim.Faults
		// wantPrograms are the BLOCK0 program commands, by word, in order.
		wantPrograms []map[int]uint32
		wantErr      error
		wantText     []string
		wantState    map[string]bool // LockReport().State
		wantBurnt    map[string]bool // the chip's fuses, if not wantState
		wantReads    []read          // in LockReport().ReadBack
		wantChip     sim.State       // the chip's state after Lock
	}{
		{
			name: "esp32-s3 DIS_PAD_JTAG then ENABLE_SECURITY_DOWNLOAD", model: sim.ESP32S3,
			locks:        []string{"DIS_PAD_JTAG", "ENABLE_SECURITY_DOWNLOAD"},
			wantPrograms: []map[int]uint32{{1: 1 << 19}, {4: 1 << 5}},
			wantState:    map[string]bool{"DIS_PAD_JTAG": true, "ENABLE_SECURITY_DOWNLOAD": true},
			wantReads: []read{
				{"before", "EFUSE_RD_REPEAT_DATA0_REG", "0x00000000"},
				{"after burn 1", "EFUSE_RD_REPEAT_DATA0_REG", "0x00080000"},
				{"after burn 1", "EFUSE_RD_REPEAT_ERR0_REG", "0x00000000"},
				// SECURE_DOWNLOAD_ENABLE (bit 2) and HARD_DIS_JTAG (bit 7).
				{"after burn 2", "GET_SECURITY_INFO flags", "0x00000084"},
			},
			wantChip: sim.StateSecureDownload,
		},
		{
			name: "esp32-s3 errors after the first burn leave the ROM open", model: sim.ESP32S3,
			locks:        []string{"DIS_PAD_JTAG", "ENABLE_SECURITY_DOWNLOAD"},
			faults:       sim.Faults{EFuseErrors: [5]uint32{0: 1 << 19}},
			wantPrograms: []map[int]uint32{{1: 1 << 19}, {1: 1 << 19}, {1: 1 << 19}},
			wantErr:      flasher.ErrWrite,
			wantText: []string{
				"after 3 burns: EFUSE_RD_REPEAT_ERR0_REG (0x6000717c) reads 0x00080000, want 0x00000000",
				"(DIS_PAD_JTAG)", "ENABLE_SECURITY_DOWNLOAD not burnt",
			},
			// Burnt, but flagged: the report cannot count it as set.
			wantState: map[string]bool{"DIS_PAD_JTAG": false, "ENABLE_SECURITY_DOWNLOAD": false},
			wantBurnt: map[string]bool{"DIS_PAD_JTAG": true, "ENABLE_SECURITY_DOWNLOAD": false},
			wantReads: []read{{"after burn 1, attempt 3", "EFUSE_RD_REPEAT_ERR0_REG", "0x00080000"}},
			wantChip:  sim.StateDownload,
		},
		{
			name: "esp32-s3 DIS_DOWNLOAD_MODE silences the ROM", model: sim.ESP32S3,
			locks:        []string{"DIS_DOWNLOAD_MODE", "DIS_USB_JTAG"},
			wantPrograms: []map[int]uint32{{3: 1 << 22}, {4: 1}},
			wantState:    map[string]bool{"DIS_USB_JTAG": true, "DIS_DOWNLOAD_MODE": true},
			wantReads: []read{
				{"after burn 1", "EFUSE_RD_REPEAT_DATA2_REG", "0x00400000"},
				{"after burn 2", "answer to READ_REG", "no answer"},
			},
			wantChip: sim.StateSilent,
		},
		{
			name: "esp32 UART_DOWNLOAD_DIS last, read back", model: sim.ESP32,
			locks:        []string{"UART_DOWNLOAD_DIS", "JTAG_DISABLE"},
			wantPrograms: []map[int]uint32{{6: 1 << 6}, {0: 1 << 27}},
			wantState:    map[string]bool{"JTAG_DISABLE": true, "UART_DOWNLOAD_DIS": true},
			wantReads: []read{
				{"after burn 1", "EFUSE_BLK0_RDATA6_REG", "0x00000040"},
				{"after burn 2", "EFUSE_BLK0_RDATA0_REG", "0x08000000"},
			},
			// UART_DOWNLOAD_DIS acts at the next boot.
			wantChip: sim.StateDownload,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				chip := newSimChip(t, tt.model, 3)
				r := startSim(t, chip, esp.Config{})
				ctx := t.Context()
				if _, err := r.b.Identify(ctx); err != nil {
					t.Fatalf("Identify() = %v", err)
				}
				chip.SetFaults(tt.faults)
				err := r.b.Lock(ctx, tt.locks)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("Lock(%q) = %v, want %v\ntrace:\n%s", tt.locks, err, tt.wantErr, tail(r.trace))
				}
				for _, s := range tt.wantText {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Lock(%q) = %q, want it to say %q", tt.locks, err, s)
					}
				}
				var got []map[int]uint32
				for _, p := range chip.Stats().EFusePrograms {
					if p.Block != 0 {
						continue
					}
					words := map[int]uint32{}
					for w, v := range p.Words {
						if v != 0 {
							words[w] = v
						}
					}
					got = append(got, words)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.wantPrograms) {
					t.Errorf("BLOCK0 programs = %v, want %v", got, tt.wantPrograms)
				}
				burnt := tt.wantBurnt
				if burnt == nil {
					burnt = tt.wantState
				}
				for name, want := range burnt {
					if v, _ := chip.EFuseField(name); (v != 0) != want {
						t.Errorf("sim eFuse %s = %d, want burnt %v", name, v, want)
					}
				}
				rep := r.b.LockReport()
				if !maps.Equal(rep.State, tt.wantState) {
					t.Errorf("LockReport().State = %v, want %v", rep.State, tt.wantState)
				}
				for _, w := range tt.wantReads {
					if !slices.ContainsFunc(rep.ReadBack, func(g flasher.Reading) bool {
						return g.Stage == w.stage && g.Register == w.register && g.Value == w.value
					}) {
						t.Errorf("LockReport().ReadBack has no %s %s = %s; got %+v", w.stage, w.register, w.value, rep.ReadBack)
					}
				}
				synctest.Wait()
				if got := chip.State(); got != tt.wantChip {
					t.Errorf("chip State() after Lock = %v, want %v", got, tt.wantChip)
				}
			})
		})
	}
}
