package esp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/esp"
	"github.com/station-dev/station/flasher/esp/packet"
)

// rig is a backend over a fake port and ROM.
type rig struct {
	rom   *fakeROM
	port  *fakePort
	b     *esp.Backend
	trace *bytes.Buffer
}

func newRig(chip fakeChip, cfg esp.Config) *rig {
	rom := newFakeROM(chip)
	port := newFakePort(rom)
	trace := &bytes.Buffer{}
	if cfg.Trace == nil {
		cfg.Trace = trace
	}
	return &rig{rom: rom, port: port, b: esp.New(port, cfg), trace: trace}
}

// firmware returns n bytes that compress about as well as an application
// image does.
func firmware(n int, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		switch rnd.IntN(4) {
		case 0:
			b[i] = byte(rnd.Uint32())
		case 1:
			b[i] = 0
		default:
			b[i] = byte(rnd.IntN(16))
		}
	}
	return b
}

func identify(t *testing.T, r *rig) flasher.Device {
	t.Helper()
	dev, err := r.b.Identify(t.Context())
	if err != nil {
		t.Fatalf("Identify() = %v\ntrace:\n%s", err, r.trace)
	}
	return dev
}

func TestIdentify(t *testing.T) {
	tests := []struct {
		name     string
		chip     fakeChip
		burn     [][2]int
		wantChip string
		wantLock map[string]bool
	}{
		{
			name: "esp32", chip: fakeESP32, wantChip: "ESP32-D0WDQ6",
			wantLock: map[string]bool{"JTAG_DISABLE": false, "UART_DOWNLOAD_DIS": false},
		},
		{
			name: "esp32 jtag disabled", chip: fakeESP32, burn: [][2]int{{6, 6}}, wantChip: "ESP32-D0WDQ6",
			wantLock: map[string]bool{"JTAG_DISABLE": true, "UART_DOWNLOAD_DIS": false},
		},
		{
			name: "esp32-s3", chip: fakeESP32S3, wantChip: "ESP32-S3",
			wantLock: map[string]bool{"DIS_PAD_JTAG": false, "DIS_USB_JTAG": false, "ENABLE_SECURITY_DOWNLOAD": false, "DIS_DOWNLOAD_MODE": false},
		},
		{
			name: "esp32-s3 usb jtag disabled", chip: fakeESP32S3, burn: [][2]int{{3, 22}}, wantChip: "ESP32-S3",
			wantLock: map[string]bool{"DIS_PAD_JTAG": false, "DIS_USB_JTAG": true, "ENABLE_SECURITY_DOWNLOAD": false, "DIS_DOWNLOAD_MODE": false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(tt.chip, esp.Config{})
				for _, b := range tt.burn {
					r.rom.burn(b[0], uint(b[1]))
				}
				dev := identify(t, r)
				if dev.HardwareID != "24:0a:c4:12:34:56" {
					t.Errorf("Identify() hardware id = %q, want %q", dev.HardwareID, "24:0a:c4:12:34:56")
				}
				if dev.Chip != tt.wantChip {
					t.Errorf("Identify() chip = %q, want %q", dev.Chip, tt.wantChip)
				}
				if fmt.Sprint(dev.LockState) != fmt.Sprint(tt.wantLock) {
					t.Errorf("Identify() lock state = %v, want %v", dev.LockState, tt.wantLock)
				}
				if want := len(tt.burn) > 0; dev.Locked != want {
					t.Errorf("Identify() locked = %v, want %v", dev.Locked, want)
				}
				if dev.FlashSize != esp.DefaultFlashSize || r.rom.flashSize != esp.DefaultFlashSize {
					t.Errorf("Identify() flash size = %d, SPI_SET_PARAMS size %d, want %d", dev.FlashSize, r.rom.flashSize, esp.DefaultFlashSize)
				}
				if r.rom.baudAsked != esp.DefaultBaud {
					t.Errorf("CHANGE_BAUDRATE asked for %d, want %d", r.rom.baudAsked, esp.DefaultBaud)
				}
			})
		})
	}
}

// TestIdentifyLineSequence checks the order of modem-line and baud
// changes: the classic reset into the bootloader at 115200, then the
// working baud once the ROM has agreed.
func TestIdentifyLineSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{Baud: 921600})
		identify(t, r)
		want := []string{"baud 115200", "DTR 0", "RTS 1", "DTR 1", "RTS 0", "DTR 0", "baud 921600"}
		if got := r.port.lineEvents(); !slices.Equal(got, want) {
			t.Errorf("line events = %q, want %q", got, want)
		}
		// The baud change is asked for before the host follows.
		ops := opsOf(r.rom.requests)
		if i := slices.Index(ops, packet.ChangeBaudrate); i < 0 || i != len(ops)-1 {
			t.Errorf("requests = %v, want CHANGE_BAUDRATE last", ops)
		}
		for _, want := range []string{"> SYNC", "< SYNC", "> READ_REG addr=0x40001000", "> SPI_ATTACH", "> CHANGE_BAUDRATE new=921600 old=0", "* DTR asserted"} {
			if !strings.Contains(r.trace.String(), want) {
				t.Errorf("trace lacks %q:\n%s", want, r.trace)
			}
		}
	})
}

func opsOf(reqs []packet.Request) []packet.Op {
	var ops []packet.Op
	for _, r := range reqs {
		ops = append(ops, r.Op)
	}
	return ops
}

func TestIdentifyResetNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{Reset: esp.ResetNone, Baud: 115200})
		r.rom.mode = "download"
		identify(t, r)
		if got := r.port.lineEvents(); !slices.Equal(got, []string{"baud 115200"}) {
			t.Errorf("line events = %q, want no DTR/RTS and no baud change", got)
		}
		if r.rom.counts[packet.ChangeBaudrate] != 0 {
			t.Errorf("CHANGE_BAUDRATE sent %d times at the ROM's own rate, want 0", r.rom.counts[packet.ChangeBaudrate])
		}
	})
}

func TestIdentifyNoResponse(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(*fakeROM)
		cfg      esp.Config
		wantHint string
	}{
		{"silent in download mode", func(r *fakeROM) { r.silent = true }, esp.Config{}, "waiting for download"},
		{"IO0 not wired", func(r *fakeROM) { r.bootMode = "app" }, esp.Config{}, "booted in mode 0x13"},
		{"reset none and not in download mode", func(r *fakeROM) {}, esp.Config{Reset: esp.ResetNone}, "jig must hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tt.cfg.ConnectAttempts = 2
				r := newRig(fakeESP32, tt.cfg)
				tt.setup(r.rom)
				_, err := r.b.Identify(t.Context())
				if !errors.Is(err, flasher.ErrNoResponse) {
					t.Fatalf("Identify() = %v, want %v", err, flasher.ErrNoResponse)
				}
				if !strings.Contains(err.Error(), tt.wantHint) {
					t.Errorf("Identify() = %q, want it to say %q", err, tt.wantHint)
				}
				if n := strings.Count(r.trace.String(), "> SYNC"); tt.name == "silent in download mode" && n != 10 {
					t.Errorf("SYNC sent %d times, want 2 attempts x 5", n)
				}
			})
		})
	}
}

func TestIdentifyWrongChip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32S3, esp.Config{Chip: "esp32"})
		dev, err := r.b.Identify(t.Context())
		if !errors.Is(err, flasher.ErrUnsupported) || dev.Chip != "ESP32-S3" {
			t.Errorf("Identify() = %+v, %v, want chip ESP32-S3 and %v", dev, err, flasher.ErrUnsupported)
		}
	})
}

func TestIdentifyUnknownMagic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := fakeESP32
		c.magic = 0xFFF0C101 // an ESP8266
		r := newRig(c, esp.Config{})
		if _, err := r.b.Identify(t.Context()); !errors.Is(err, flasher.ErrUnsupported) || !strings.Contains(err.Error(), "0xfff0c101") {
			t.Errorf("Identify() = %v, want %v naming the magic value", err, flasher.ErrUnsupported)
		}
	})
}

func TestIdentifySecureDownloadMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32S3, esp.Config{})
		r.rom.burn(4, 5) // ENABLE_SECURITY_DOWNLOAD
		dev, err := r.b.Identify(t.Context())
		if !errors.Is(err, flasher.ErrLocked) {
			t.Fatalf("Identify() = %v, want %v", err, flasher.ErrLocked)
		}
		if dev.Chip != "ESP32-S3" || !dev.Locked || dev.HardwareID != "" || !dev.LockState["ENABLE_SECURITY_DOWNLOAD"] {
			t.Errorf("Identify() device = %+v, want chip ESP32-S3, locked, no hardware id", dev)
		}
		// The ROM still allows flash writes; the backend prepared them.
		if r.rom.counts[packet.SPIAttach] != 1 || r.rom.counts[packet.ChangeBaudrate] != 1 {
			t.Errorf("SPI_ATTACH %d, CHANGE_BAUDRATE %d, want 1 each", r.rom.counts[packet.SPIAttach], r.rom.counts[packet.ChangeBaudrate])
		}
		img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: firmware(5000, 1)}}}
		if err := r.b.Flash(t.Context(), img, nil); err != nil {
			t.Fatalf("Flash() in secure download mode = %v", err)
		}
		if r.rom.counts[packet.FlashData] == 0 || r.rom.counts[packet.FlashDeflData] != 0 {
			t.Errorf("Flash() sent %d FLASH_DATA, %d FLASH_DEFL_DATA, want uncompressed only", r.rom.counts[packet.FlashData], r.rom.counts[packet.FlashDeflData])
		}
		if !bytes.Equal(r.rom.flash[0x10000:0x10000+5000], img.Segments[0].Data) {
			t.Errorf("flash does not hold the image after Flash()")
		}
		if err := r.b.Verify(t.Context(), img); !errors.Is(err, flasher.ErrLocked) {
			t.Errorf("Verify() in secure download mode = %v, want %v", err, flasher.ErrLocked)
		}
		if err := r.b.Lock(t.Context(), []string{"ENABLE_SECURITY_DOWNLOAD"}); err != nil {
			t.Errorf("Lock(already set) in secure download mode = %v, want nil", err)
		}
		if err := r.b.Lock(t.Context(), []string{"DIS_USB_JTAG"}); !errors.Is(err, flasher.ErrLocked) {
			t.Errorf("Lock(DIS_USB_JTAG) in secure download mode = %v, want %v", err, flasher.ErrLocked)
		}
	})
}

func TestFlashVerify(t *testing.T) {
	tests := []struct {
		name string
		chip fakeChip
		cfg  esp.Config
	}{
		{"esp32 compressed", fakeESP32, esp.Config{}},
		{"esp32 uncompressed", fakeESP32, esp.Config{NoCompress: true}},
		{"esp32-s3 compressed", fakeESP32S3, esp.Config{}},
		{"esp32-s3 uncompressed", fakeESP32S3, esp.Config{NoCompress: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(tt.chip, tt.cfg)
				identify(t, r)
				img := flasher.Image{Version: "2.3.1", Segments: []flasher.Segment{
					{Name: "bootloader.bin", Addr: 0x1000, Data: firmware(0x5000, 1)},
					{Name: "partitions.bin", Addr: 0x8000, Data: firmware(0xC00, 2)},
					// Unaligned start and length: the backend pads.
					{Name: "app.bin", Addr: 0x10123, Data: firmware(200_001, 3)},
				}}
				var last, calls int64
				prev := int64(-1)
				err := r.b.Flash(t.Context(), img, func(done, total int64) {
					if done < prev || total != img.Size() {
						t.Errorf("progress(%d, %d) after %d, want monotonic of %d", done, total, prev, img.Size())
					}
					prev, last = done, done
					calls++
				})
				if err != nil {
					t.Fatalf("Flash() = %v\ntrace:\n%s", err, r.trace)
				}
				if last != img.Size() || calls < 10 {
					t.Errorf("progress ended at %d after %d calls, want %d in many steps", last, calls, img.Size())
				}
				for _, s := range img.Segments {
					if got := r.rom.flash[s.Addr:s.End()]; !bytes.Equal(got, s.Data) {
						t.Errorf("flash at %#x does not hold %s", s.Addr, s.Name)
					}
				}
				if got := r.rom.flash[0x10000:0x10123]; !bytes.Equal(got, bytes.Repeat([]byte{0xFF}, 0x123)) {
					t.Errorf("padding before app.bin = % X..., want 0xFF", got[:8])
				}
				if err := r.b.Verify(t.Context(), img); err != nil {
					t.Errorf("Verify() = %v", err)
				}
				for _, op := range []packet.Op{packet.FlashEnd, packet.FlashDeflEnd} {
					if n := r.rom.counts[op]; n != 0 {
						t.Errorf("%v sent %d times, want 0: it makes the ROM leave the loader", op, n)
					}
				}
				if strings.Contains(r.trace.String(), "data=") && strings.Contains(r.trace.String(), string(img.Segments[2].Data[:16])) {
					t.Errorf("trace carries payload bytes")
				}
			})
		})
	}
}

func TestVerifyMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{})
		identify(t, r)
		img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: firmware(10_000, 4)}}}
		if err := r.b.Flash(t.Context(), img, nil); err != nil {
			t.Fatalf("Flash() = %v", err)
		}
		r.rom.flash[0x10000+777] ^= 0x01
		err := r.b.Verify(t.Context(), img)
		if !errors.Is(err, flasher.ErrVerify) {
			t.Fatalf("Verify() = %v, want %v", err, flasher.ErrVerify)
		}
		for _, want := range []string{"app.bin", "0x10000", "24:0a:c4:12:34:56", "flash MD5", "image MD5"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Verify() = %q, want it to name %q", err, want)
			}
		}
	})
}

// TestFlashErrors checks how data blocks are retried and how failures
// are named.
func TestFlashErrors(t *testing.T) {
	type hook = func(req packet.Request, n int) ([]packet.Response, bool)
	dropOnce := func(op packet.Op, at int) hook {
		return func(req packet.Request, n int) ([]packet.Response, bool) {
			return nil, req.Op == op && n == at
		}
	}
	tests := []struct {
		name      string
		cfg       esp.Config
		hook      hook
		wantErr   error
		wantText  string
		wantSends int // data requests sent, 0 = do not check
	}{
		{
			name: "lost answer is retried", hook: dropOnce(packet.FlashDeflData, 3),
			wantSends: 1,
		},
		{
			name: "bad checksum is retried",
			hook: func(req packet.Request, n int) ([]packet.Response, bool) {
				if req.Op == packet.FlashDeflData && n == 2 {
					return []packet.Response{fail(req.Op, packet.ErrCodeInvalidCRC)}, true
				}
				return nil, false
			},
			wantSends: 1,
		},
		{
			name: "answers stop",
			hook: func(req packet.Request, n int) ([]packet.Response, bool) {
				return nil, req.Op == packet.FlashDeflData && n >= 16
			},
			wantErr:  flasher.ErrLinkLost,
			wantText: "esp 24:0a:c4:12:34:56: flash segment app.bin at 0x10000: FLASH_DEFL_DATA block 17 of",
		},
		{
			name: "flash write error fails at once",
			hook: func(req packet.Request, n int) ([]packet.Response, bool) {
				if req.Op == packet.FlashDeflData && n == 5 {
					return []packet.Response{fail(req.Op, packet.ErrCodeFlashWrite)}, true
				}
				return nil, false
			},
			wantErr:  flasher.ErrWrite,
			wantText: "FLASH_DEFL_DATA block 6 of",
		},
		{
			name: "uncompressed flash write error",
			cfg:  esp.Config{NoCompress: true},
			hook: func(req packet.Request, n int) ([]packet.Response, bool) {
				if req.Op == packet.FlashData && n == 1 {
					return []packet.Response{fail(req.Op, packet.ErrCodeFlashWrite)}, true
				}
				return nil, false
			},
			wantErr:  flasher.ErrWrite,
			wantText: "FLASH_DATA block 2 of 40",
		},
		{
			name: "erase refused",
			hook: func(req packet.Request, n int) ([]packet.Response, bool) {
				if req.Op == packet.FlashDeflBegin {
					return []packet.Response{fail(req.Op, packet.ErrCodeFailedToAct)}, true
				}
				return nil, false
			},
			wantText: "FLASH_DEFL_BEGIN refused by the ROM: failed to act on message (0x06)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(fakeESP32, tt.cfg)
				identify(t, r)
				r.rom.hook = tt.hook
				data := firmware(40_000, 5)
				img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: data}}}
				before := r.rom.counts[packet.FlashDeflData] + r.rom.counts[packet.FlashData]
				err := r.b.Flash(t.Context(), img, nil)
				switch {
				case tt.wantErr == nil && tt.wantText == "":
					if err != nil {
						t.Fatalf("Flash() = %v", err)
					}
					if !bytes.Equal(r.rom.flash[0x10000:0x10000+len(data)], data) {
						t.Errorf("flash does not hold the image")
					}
				case err == nil:
					t.Fatalf("Flash() = nil, want an error")
				default:
					if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
						t.Errorf("Flash() = %v, want %v", err, tt.wantErr)
					}
					if !strings.Contains(err.Error(), tt.wantText) {
						t.Errorf("Flash() = %q, want it to contain %q", err, tt.wantText)
					}
				}
				if tt.wantSends > 0 {
					blocks := r.rom.counts[packet.FlashDeflData] + r.rom.counts[packet.FlashData] - before
					retries := strings.Count(r.trace.String(), "failed:")
					if retries != tt.wantSends {
						t.Errorf("%d blocks sent with %d retries, want %d retry", blocks, retries, tt.wantSends)
					}
				}
			})
		})
	}
}

func TestFlashWriteErrorNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{})
		identify(t, r)
		r.rom.hook = func(req packet.Request, n int) ([]packet.Response, bool) {
			if req.Op == packet.FlashDeflData {
				return []packet.Response{fail(req.Op, packet.ErrCodeFlashWrite)}, true
			}
			return nil, false
		}
		img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: firmware(10_000, 6)}}}
		if err := r.b.Flash(t.Context(), img, nil); !errors.Is(err, flasher.ErrWrite) {
			t.Fatalf("Flash() = %v, want %v", err, flasher.ErrWrite)
		}
		if n := r.rom.counts[packet.FlashDeflData]; n != 1 {
			t.Errorf("FLASH_DEFL_DATA sent %d times, want 1", n)
		}
	})
}

func TestFlashRetriesBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{})
		identify(t, r)
		r.rom.hook = func(req packet.Request, n int) ([]packet.Response, bool) {
			if req.Op == packet.FlashDeflData {
				return []packet.Response{fail(req.Op, packet.ErrCodeInvalidCRC)}, true
			}
			return nil, false
		}
		img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: firmware(10_000, 6)}}}
		err := r.b.Flash(t.Context(), img, nil)
		if !errors.Is(err, flasher.ErrLinkLost) || !strings.Contains(err.Error(), "invalid checksum") {
			t.Fatalf("Flash() = %v, want %v after bad checksums", err, flasher.ErrLinkLost)
		}
		if n := r.rom.counts[packet.FlashDeflData]; n != 3 {
			t.Errorf("FLASH_DEFL_DATA sent %d times, want 3", n)
		}
	})
}

func TestFlashPortFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{})
		identify(t, r)
		r.rom.hook = func(req packet.Request, n int) ([]packet.Response, bool) {
			if req.Op == packet.FlashDeflData && n == 4 {
				r.port.writeErr = errors.New("device reports readiness to read but returned no data")
			}
			return nil, false
		}
		img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: firmware(40_000, 7)}}}
		err := r.b.Flash(t.Context(), img, nil)
		if !errors.Is(err, flasher.ErrLinkLost) || !strings.Contains(err.Error(), "block 6 of") {
			t.Errorf("Flash() = %v, want %v at block 6", err, flasher.ErrLinkLost)
		}
	})
}

func TestFlashCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{})
		identify(t, r)
		ctx, cancel := context.WithCancelCause(t.Context())
		stop := errors.New("operator pressed stop")
		img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: firmware(100_000, 8)}}}
		err := r.b.Flash(ctx, img, func(done, total int64) {
			if done > total/2 {
				cancel(stop)
			}
		})
		if !errors.Is(err, stop) {
			t.Errorf("Flash() after cancel = %v, want %v", err, stop)
		}
	})
}

func TestFlashBeforeIdentify(t *testing.T) {
	r := newRig(fakeESP32, esp.Config{})
	img := flasher.Image{Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: []byte{1}}}}
	if err := r.b.Flash(t.Context(), img, nil); err == nil {
		t.Errorf("Flash() before Identify = nil, want an error")
	}
}

func TestFlashPastFlashEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{FlashSize: 2 << 20})
		identify(t, r)
		img := flasher.Image{Segments: []flasher.Segment{{Name: "big.bin", Addr: 0x1F0000, Data: make([]byte, 0x20000)}}}
		if err := r.b.Flash(t.Context(), img, nil); !errors.Is(err, flasher.ErrUnsupported) {
			t.Errorf("Flash() past the flash end = %v, want %v", err, flasher.ErrUnsupported)
		}
	})
}

// TestCacheShared checks that two slots flashing one image compress it
// once.
func TestCacheShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cache := &esp.Cache{}
		img := flasher.Image{Segments: []flasher.Segment{
			{Name: "bootloader.bin", Addr: 0x1000, Data: firmware(0x4000, 9)},
			{Name: "app.bin", Addr: 0x10000, Data: firmware(50_000, 10)},
		}}
		for slot := range 2 {
			r := newRig(fakeESP32, esp.Config{Cache: cache})
			identify(t, r)
			if err := r.b.Flash(t.Context(), img, nil); err != nil {
				t.Fatalf("slot %d: Flash() = %v", slot, err)
			}
			if err := r.b.Verify(t.Context(), img); err != nil {
				t.Fatalf("slot %d: Verify() = %v", slot, err)
			}
		}
		if n := cache.Compressions(); n != 2 {
			t.Errorf("cache compressed %d segments for two slots, want 2", n)
		}
	})
}

func TestLock(t *testing.T) {
	tests := []struct {
		name     string
		chip     fakeChip
		opts     []string
		wantBits map[int]uint32
		// wantOrder lists writes that must come in this order.
		wantOrder []string
	}{
		{
			name: "esp32 jtag", chip: fakeESP32, opts: []string{"JTAG_DISABLE"},
			wantBits:  map[int]uint32{6: 1 << 6},
			wantOrder: []string{"0x3ff5a034=0x40", "0x3ff5a0fc=0x5a5a", "0x3ff5a104=0x2", "0x3ff5a0fc=0x5aa5", "0x3ff5a104=0x1"},
		},
		{
			name: "esp32 both", chip: fakeESP32, opts: []string{"JTAG_DISABLE", "UART_DOWNLOAD_DIS"},
			wantBits: map[int]uint32{6: 1 << 6, 0: 1 << 27},
		},
		{
			name: "esp32-s3 jtag", chip: fakeESP32S3, opts: []string{"DIS_PAD_JTAG", "DIS_USB_JTAG"},
			wantBits: map[int]uint32{1: 1 << 19, 3: 1 << 22},
			wantOrder: []string{"0x60007004=0x80000", "0x6000700c=0x400000", "0x600071cc=0x5a5a", "0x600071d4=0x2",
				"0x60007004=0x0", "0x600071cc=0x5aa5", "0x600071d4=0x1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(tt.chip, esp.Config{})
				identify(t, r)
				if err := r.b.Lock(t.Context(), tt.opts); err != nil {
					t.Fatalf("Lock(%q) = %v\ntrace:\n%s", tt.opts, err, r.trace)
				}
				for w, bits := range tt.wantBits {
					if r.rom.fuses[w]&bits != bits {
						t.Errorf("BLOCK0 word %d = %#x, want bits %#x set", w, r.rom.fuses[w], bits)
					}
				}
				if !inOrder(r.rom.writes, tt.wantOrder) {
					t.Errorf("WRITE_REG sequence = %q, want %q in order", r.rom.writes, tt.wantOrder)
				}
				// Idempotent: nothing more is written.
				n := len(r.rom.writes)
				if err := r.b.Lock(t.Context(), tt.opts); err != nil {
					t.Errorf("Lock(%q) again = %v", tt.opts, err)
				}
				if len(r.rom.writes) != n {
					t.Errorf("Lock(%q) again wrote %q, want nothing", tt.opts, r.rom.writes[n:])
				}
				// The next identify sees the locks.
				dev := identify(t, r)
				if !dev.Locked {
					t.Errorf("Identify() after Lock: locked = false, state %v", dev.LockState)
				}
			})
		})
	}
}

// inOrder reports whether want appears in got as a subsequence.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestLockErrors(t *testing.T) {
	tests := []struct {
		name     string
		chip     fakeChip
		setup    func(*fakeROM)
		opts     []string
		want     error
		wantText string
	}{
		{"unknown name", fakeESP32, nil, []string{"DIS_PAD_JTAG"}, flasher.ErrUnsupported, "it has JTAG_DISABLE, UART_DOWNLOAD_DIS"},
		{"write protected", fakeESP32, func(r *fakeROM) { r.burn(0, 14) }, []string{"JTAG_DISABLE"}, flasher.ErrLocked, "WR_DIS bit 14"},
		{"bit does not take", fakeESP32, func(r *fakeROM) {
			r.hook = func(req packet.Request, n int) ([]packet.Response, bool) {
				if req.Op == packet.WriteReg && word(req.Data, 0) == 0x3FF5A104 && word(req.Data, 1) == 2 {
					return []packet.Response{ok(req.Op, 0)}, true // the program command does nothing
				}
				return nil, false
			}
		}, []string{"JTAG_DISABLE"}, flasher.ErrWrite, "after 3 burns: JTAG_DISABLE not set: EFUSE_BLK0_RDATA6_REG (0x3ff5a018) reads 0x00000000, want bit 6 (0x00000040) set"},
		{"closing burn not confirmed by the ROM", fakeESP32S3, func(r *fakeROM) {
			r.hook = func(req packet.Request, n int) ([]packet.Response, bool) {
				if req.Op == packet.GetSecurityInfo {
					return []packet.Response{ok(req.Op, 0, make([]byte, 20)...)}, true // flags 0
				}
				return nil, false
			}
		}, []string{"ENABLE_SECURITY_DOWNLOAD"}, flasher.ErrWrite, "GET_SECURITY_INFO flags read 0x00000000, want bit 2 (SECURE_DOWNLOAD_ENABLE, 0x00000004) set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(tt.chip, esp.Config{})
				identify(t, r)
				if tt.setup != nil {
					tt.setup(r.rom)
				}
				err := r.b.Lock(t.Context(), tt.opts)
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("Lock(%q) = %v, want %v saying %q", tt.opts, err, tt.want, tt.wantText)
				}
			})
		})
	}
}

// TestLockSecureDownload burns ENABLE_SECURITY_DOWNLOAD: the ROM refuses
// register reads as soon as it reloads its eFuses, and Lock confirms the
// mode through GET_SECURITY_INFO.
func TestLockSecureDownload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32S3, esp.Config{})
		identify(t, r)
		if err := r.b.Lock(t.Context(), []string{"DIS_PAD_JTAG", "ENABLE_SECURITY_DOWNLOAD"}); err != nil {
			t.Fatalf("Lock() = %v\ntrace:\n%s", err, r.trace)
		}
		if !r.rom.sdm || r.rom.fuses[1]&(1<<19) == 0 {
			t.Errorf("after Lock: sdm %v, word 1 %#x; want both fuses burnt", r.rom.sdm, r.rom.fuses[1])
		}
		if err := r.b.Verify(t.Context(), flasher.Image{Segments: []flasher.Segment{{Name: "a", Addr: 0, Data: []byte{1}}}}); !errors.Is(err, flasher.ErrLocked) {
			t.Errorf("Verify() after the lock = %v, want %v", err, flasher.ErrLocked)
		}
		banner, err := r.b.Reset(t.Context())
		if err != nil || banner != "2.3.1" {
			t.Errorf("Reset() = %q, %v, want 2.3.1", banner, err)
		}
		dev, err := r.b.Identify(t.Context())
		if !errors.Is(err, flasher.ErrLocked) || dev.HardwareID != "" || !dev.Locked {
			t.Errorf("Identify() after the lock = %+v, %v, want locked, no id, %v", dev, err, flasher.ErrLocked)
		}
	})
}

func TestLockDisableDownload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32S3, esp.Config{})
		identify(t, r)
		if err := r.b.Lock(t.Context(), []string{"DIS_DOWNLOAD_MODE"}); err != nil {
			t.Fatalf("Lock() = %v\ntrace:\n%s", err, r.trace)
		}
		img := flasher.Image{Segments: []flasher.Segment{{Name: "a", Addr: 0, Data: []byte{1}}}}
		if err := r.b.Flash(t.Context(), img, nil); !errors.Is(err, flasher.ErrLocked) {
			t.Errorf("Flash() after DIS_DOWNLOAD_MODE = %v, want %v", err, flasher.ErrLocked)
		}
	})
}

func TestLockOptions(t *testing.T) {
	tests := []struct {
		cfg  esp.Config
		want []string
	}{
		{esp.Config{Chip: "esp32"}, []string{"JTAG_DISABLE", "UART_DOWNLOAD_DIS"}},
		{esp.Config{Chip: "ESP32-S3"}, []string{"DIS_PAD_JTAG", "DIS_USB_JTAG", "ENABLE_SECURITY_DOWNLOAD", "DIS_DOWNLOAD_MODE"}},
		{esp.Config{}, []string{"JTAG_DISABLE", "UART_DOWNLOAD_DIS", "DIS_PAD_JTAG", "DIS_USB_JTAG", "ENABLE_SECURITY_DOWNLOAD", "DIS_DOWNLOAD_MODE"}},
	}
	for _, tt := range tests {
		if got := esp.New(nil, tt.cfg).LockOptions(); !slices.Equal(got, tt.want) {
			t.Errorf("LockOptions() with chip %q = %q, want %q", tt.cfg.Chip, got, tt.want)
		}
	}
}

func TestReset(t *testing.T) {
	tests := []struct {
		name   string
		banner string
		want   string
	}{
		{"plain", "I (312) app_init: App version:      2.3.1\r\n", "2.3.1"},
		{"colour and cpu_start", "\x1b[0;32mI (288) cpu_start: App version:      v1.0-rc2-3-gdeadbee\x1b[0m\r\n", "v1.0-rc2-3-gdeadbee"},
		{"none", "I (300) main: hello\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(fakeESP32, esp.Config{})
				identify(t, r)
				r.rom.banner = tt.banner
				n := len(r.port.lineEvents())
				got, err := r.b.Reset(t.Context())
				if err != nil || got != tt.want {
					t.Errorf("Reset() = %q, %v, want %q", got, err, tt.want)
				}
				want := []string{"baud 115200", "DTR 0", "RTS 1", "RTS 0"}
				if ev := r.port.lineEvents()[n:]; !slices.Equal(ev, want) {
					t.Errorf("Reset() line events = %q, want %q", ev, want)
				}
			})
		})
	}
}

func TestResetNoneRunsUserCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{Reset: esp.ResetNone})
		r.rom.mode = "download"
		identify(t, r)
		got, err := r.b.Reset(t.Context())
		if err != nil || got != "2.3.1" {
			t.Errorf("Reset() = %q, %v, want 2.3.1", got, err)
		}
		if r.rom.counts[packet.FlashEnd] != 1 {
			t.Errorf("FLASH_END sent %d times, want 1", r.rom.counts[packet.FlashEnd])
		}
	})
}

func TestResetHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(fakeESP32, esp.Config{})
		identify(t, r)
		r.rom.banner = ""
		ctx, cancel := context.WithTimeout(t.Context(), 500*1e6)
		defer cancel()
		if _, err := r.b.Reset(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Reset() past its deadline = %v, want %v", err, context.DeadlineExceeded)
		}
	})
}
