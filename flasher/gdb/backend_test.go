package gdb

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
)

var fakeUID = []byte{0x33, 0x00, 0x2D, 0x00, 0x0E, 0x51, 0x35, 0x32, 0x39, 0x34, 0x32, 0x31}

// fakeReset is the generic fake's reset command.
var fakeReset = []Command{{Command: "reset", Success: "Resetting target"}}

// fakeConfig gives a configuration that names no target the fake's map
// and reset, as a fixture for a chip outside the table does.
func fakeConfig(cfg Config) Config {
	if cfg.TargetName == "" && cfg.MemoryMap == nil {
		cfg.MemoryMap = fakeMap
	}
	if cfg.TargetName == "" && cfg.Reset == nil {
		cfg.Reset = fakeReset
	}
	return cfg
}

// fakeBackend returns an identified backend talking to f over net.Pipe;
// a cfg without a target gets fakeConfig's map and reset.
func fakeBackend(t *testing.T, f *fakeTarget, cfg Config) *Backend {
	t.Helper()
	if f.UID == nil {
		f.UID = fakeUID
	}
	b := New(f.pipe(t), fakeConfig(cfg))
	t.Cleanup(func() { b.Close() })
	if _, err := b.Identify(context.Background()); err != nil {
		t.Fatalf("Identify = %v", err)
	}
	return b
}

func TestIdentify(t *testing.T) {
	tests := []struct {
		name     string
		f        *fakeTarget
		cfg      Config
		wantID   flasher.HardwareID
		wantChip string
		wantSize int64
		wantErr  error
		noAck    bool
		pipeline int
	}{
		{name: "uid from memory", f: &fakeTarget{UID: fakeUID}, cfg: Config{HardwareIDFrom: "mem:0x1FFF7A10,12"},
			wantID: "33002d000e51353239343231", wantChip: "GDB target", wantSize: 128 << 10, noAck: true, pipeline: DefaultPipeline},
		{name: "stm32f4 defaults", f: &fakeTarget{UID: fakeUID}, cfg: Config{TargetName: "stm32f4", Server: KindOpenOCD},
			wantID: "33002d000e51353239343231", wantChip: "STM32F4", wantSize: 128 << 10, noAck: true, pipeline: DefaultPipeline},
		{name: "uid zeros falls back", f: &fakeTarget{UID: make([]byte, 12)}, cfg: Config{TargetName: "stm32f4", Server: KindOpenOCD, HardwareID: "probe-7"},
			wantID: "probe-7", wantChip: "STM32F4 (hardware id from the slot's configuration: the unique id at 0x1fff7a10 reads as zeros)",
			wantSize: 128 << 10, noAck: true, pipeline: DefaultPipeline},
		{name: "uid zeros without fallback", f: &fakeTarget{UID: make([]byte, 12)}, cfg: Config{TargetName: "stm32f4", Server: KindOpenOCD},
			wantErr: flasher.ErrUnsupported},
		{name: "uid unreadable falls back", f: &fakeTarget{UID: fakeUID}, cfg: Config{HardwareIDFrom: "mem:0x30000000,12", HardwareID: "p"},
			wantID: "p", wantChip: "GDB target (hardware id from the slot's configuration: the unique id at 0x30000000 cannot be read (server replied error E14))",
			wantSize: 128 << 10, noAck: true, pipeline: DefaultPipeline},
		{name: "none", f: &fakeTarget{}, cfg: Config{HardwareIDFrom: HardwareIDNone, HardwareID: "serial-9"},
			wantID: "serial-9", wantChip: "GDB target (hardware id from the slot's configuration)", wantSize: 128 << 10, noAck: true, pipeline: DefaultPipeline},
		{name: "none without id", f: &fakeTarget{}, cfg: Config{}, wantErr: flasher.ErrUnsupported},
		{name: "unknown target", f: &fakeTarget{}, cfg: Config{TargetName: "stm32f5", Server: KindOpenOCD}, wantErr: flasher.ErrUnsupported},
		{name: "bad source", f: &fakeTarget{}, cfg: Config{HardwareIDFrom: "uid"}, wantErr: flasher.ErrUnsupported},
		{name: "acks kept", f: &fakeTarget{NoNoAck: true}, cfg: Config{HardwareIDFrom: HardwareIDNone, HardwareID: "x"},
			wantID: "x", wantChip: "GDB target (hardware id from the slot's configuration)", wantSize: 128 << 10, noAck: false, pipeline: 1},
		{name: "no map from server: the target's", f: &fakeTarget{NoMemoryMap: true, UID: fakeUID}, cfg: Config{TargetName: "stm32f4", Server: KindOpenOCD},
			wantID: "33002d000e51353239343231", wantChip: "STM32F4", wantSize: 1 << 20, noAck: true, pipeline: DefaultPipeline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.TargetName == "" {
				cfg = fakeConfig(cfg)
			}
			b := New(tt.f.pipe(t), cfg)
			defer b.Close()
			dev, err := b.Identify(context.Background())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Identify() = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Identify() = %v", err)
			}
			if dev.HardwareID != tt.wantID || dev.Chip != tt.wantChip || dev.FlashSize != tt.wantSize {
				t.Errorf("Identify() = %+v, want id %q chip %q flash %d", dev, tt.wantID, tt.wantChip, tt.wantSize)
			}
			if b.link.noAck != tt.noAck || b.pipeline != tt.pipeline {
				t.Errorf("noAck, pipeline = %v, %d, want %v, %d", b.link.noAck, b.pipeline, tt.noAck, tt.pipeline)
			}
		})
	}
}

func TestIdentifySilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			buf := make([]byte, 256)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := New(conn, fakeConfig(Config{ConnectTimeout: 100 * time.Millisecond}))
	defer b.Close()
	if _, err := b.Identify(context.Background()); !errors.Is(err, flasher.ErrNoResponse) {
		t.Fatalf("Identify() against a silent server = %v, want ErrNoResponse", err)
	}
}

// payload is data full of bytes that need escaping.
func payload(n int, seed byte) []byte {
	d := make([]byte, n)
	for i := range d {
		switch i % 7 {
		case 0:
			d[i] = '#'
		case 1:
			d[i] = '$'
		case 2:
			d[i] = '}'
		case 3:
			d[i] = '*'
		default:
			d[i] = byte(i) ^ seed
		}
	}
	return d
}

func TestFlashVFlash(t *testing.T) {
	f := &fakeTarget{PacketSize: 0x200}
	b := fakeBackend(t, f, Config{HardwareIDFrom: "mem:0x1FFF7A10,12"})
	img := flasher.Image{Segments: []flasher.Segment{
		{Name: "boot", Addr: 0x08000100, Data: payload(0x100, 1)},
		// Shares block 0x08000000 with "boot", crosses into 0x08004000
		// and, past 0x08010000, into the 64 KiB region.
		{Name: "app", Addr: 0x08003F00, Data: payload(0xC200, 2)},
		{Name: "ram", Addr: 0x20000010, Data: payload(0x333, 3)},
	}}
	var calls int
	var last int64
	if err := b.Flash(context.Background(), img, func(done, total int64) {
		calls++
		if done < last || total != img.Size() {
			t.Errorf("progress(%d, %d) after %d", done, total, last)
		}
		last = done
	}); err != nil {
		t.Fatalf("Flash() = %v", err)
	}
	if last != img.Size() || calls < 3 {
		t.Errorf("progress ended at %d after %d calls, want %d", last, calls, img.Size())
	}
	wantErase := []string{"8000000,10000", "8010000,10000"}
	if !slices.Equal(f.erased, wantErase) {
		t.Errorf("erased %v, want %v (merged, block aligned)", f.erased, wantErase)
	}
	for _, s := range img.Segments {
		if got := f.bytesAt(s.Addr, len(s.Data)); !bytes.Equal(got, s.Data) {
			t.Errorf("segment %s: target holds something else", s.Name)
		}
	}
	if got := f.bytesAt(0x08000000, 0x100); !bytes.Equal(got, bytes.Repeat([]byte{0xFF}, 0x100)) {
		t.Error("the erased gap before boot is not 0xFF")
	}
	cmds := f.commands()
	if !slices.Contains(cmds, "vFlashDone") || !slices.Contains(cmds, "X") || slices.Contains(cmds, "M") {
		t.Errorf("commands %v: want vFlashDone and X for RAM, no M", cmds)
	}
	if err := b.Verify(context.Background(), img); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if cmds := f.commands(); slices.Contains(cmds[len(cmds)-3:], "m") {
		t.Errorf("Verify read back although the server has qCRC: %v", cmds[len(cmds)-3:])
	}
	// Flash the same image again: erase-before-write must hold.
	if err := b.Flash(context.Background(), img, nil); err != nil {
		t.Fatalf("Flash() again = %v", err)
	}
}

func TestVerify(t *testing.T) {
	data := payload(0x3000, 9)
	img := flasher.Image{Segments: []flasher.Segment{{Name: "app", Addr: 0x08000000, Data: data}}}
	bad := bytes.Clone(data)
	bad[0x2345] ^= 0x40
	badImg := flasher.Image{Segments: []flasher.Segment{{Name: "app", Addr: 0x08000000, Data: bad}}}
	tests := []struct {
		name     string
		f        *fakeTarget
		img      flasher.Image
		wantErr  error
		wantText string
		readback bool
	}{
		{name: "crc ok", f: &fakeTarget{}, img: img},
		{name: "crc mismatch", f: &fakeTarget{}, img: badImg, wantErr: flasher.ErrVerify, wantText: "CRC"},
		{name: "no crc: readback ok", f: &fakeTarget{NoCRC: true}, img: img, readback: true},
		{name: "no crc: readback mismatch", f: &fakeTarget{NoCRC: true}, img: badImg, wantErr: flasher.ErrVerify, wantText: "0x8002345", readback: true},
		{name: "crc error: readback", f: &fakeTarget{CRCError: true}, img: img, readback: true},
		{name: "acks on", f: &fakeTarget{NoCRC: true, NoNoAck: true}, img: badImg, wantErr: flasher.ErrVerify, wantText: "0x8002345", readback: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fakeBackend(t, tt.f, Config{HardwareIDFrom: "mem:0x1FFF7A10,12"})
			ctx := context.Background()
			if err := b.Flash(ctx, img, nil); err != nil {
				t.Fatalf("Flash() = %v", err)
			}
			tt.f.mu.Lock()
			tt.f.log = nil
			tt.f.mu.Unlock()
			err := b.Verify(ctx, tt.img)
			if !errors.Is(err, tt.wantErr) || (err != nil && !strings.Contains(err.Error(), tt.wantText)) {
				t.Fatalf("Verify() = %v, want %v with %q", err, tt.wantErr, tt.wantText)
			}
			if got := slices.Contains(tt.f.commands(), "m"); got != tt.readback {
				t.Errorf("read back = %v, want %v", got, tt.readback)
			}
		})
	}
}

func TestFlashErrors(t *testing.T) {
	seg := func(addr uint64, n int) flasher.Image {
		return flasher.Image{Segments: []flasher.Segment{{Name: "s", Addr: addr, Data: payload(n, 5)}}}
	}
	tests := []struct {
		name     string
		f        *fakeTarget
		img      flasher.Image
		wantErr  error
		wantText string
	}{
		{name: "write fails", f: &fakeTarget{FailWriteAt: 0x08001000}, img: seg(0x08000000, 0x2000), wantErr: flasher.ErrWrite, wantText: "vFlashWrite"},
		{name: "link drops", f: &fakeTarget{CloseAfter: 12}, img: seg(0x08000000, 0x8000), wantErr: flasher.ErrLinkLost},
		{name: "outside the map", f: &fakeTarget{}, img: seg(0x30000000, 16), wantErr: flasher.ErrUnsupported, wantText: "0x30000000"},
		{name: "into ROM", f: &fakeTarget{}, img: seg(0x1FFF7A00, 16), wantErr: flasher.ErrUnsupported, wantText: "read-only"},
		{name: "past the flash", f: &fakeTarget{}, img: seg(0x0801FFF0, 32), wantErr: flasher.ErrUnsupported, wantText: "0x8020000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fakeBackend(t, tt.f, Config{HardwareIDFrom: "mem:0x1FFF7A10,12"})
			err := b.Flash(context.Background(), tt.img, nil)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Flash() = %v, want %v with %q", err, tt.wantErr, tt.wantText)
			}
		})
	}
}

func TestFlashCancelled(t *testing.T) {
	f := &fakeTarget{}
	b := fakeBackend(t, f, Config{HardwareIDFrom: "mem:0x1FFF7A10,12"})
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("operator stopped the slot")
	img := flasher.Image{Segments: []flasher.Segment{{Name: "s", Addr: 0x20000000, Data: payload(0x8000, 1)}}}
	err := b.Flash(ctx, img, func(done, total int64) {
		if done > 0 {
			cancel(stop)
		}
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Flash() cancelled = %v, want the cause", err)
	}
	// The replies still owed are skipped: the link stays usable.
	if err := b.Flash(context.Background(), img, nil); err != nil {
		t.Fatalf("Flash() after a cancel = %v", err)
	}
	if err := b.Verify(context.Background(), img); err != nil {
		t.Fatalf("Verify() after a cancel = %v", err)
	}
}
