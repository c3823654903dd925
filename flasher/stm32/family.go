package stm32

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/station-dev/station/flasher"
)

// Family is what the backend knows of one STM32 product id: where flash,
// the unique id and the flash size register are, and how flash is cut
// into erase pages (sectors on F2/F4, which the bootloader numbers like
// pages).
type Family struct {
	// PID is the product id GET ID returns (DBGMCU_IDCODE DEV_ID).
	PID uint16
	// Key names the family in fixture files and Config.Family, for
	// example "f1-md".
	Key string
	// Name is what Device.Chip reports.
	Name string
	// FlashBase is the address of the first flash byte.
	FlashBase uint32
	// FlashSize is the largest flash of the family in bytes; the flash
	// size register tells a part's own size.
	FlashSize uint32
	// Pages lists erase page sizes from the start of flash; the last one
	// repeats to the end.
	Pages []uint32
	// UIDAddr is the 96-bit unique device id (three 32-bit words).
	UIDAddr uint32
	// FlashSizeAddr is the 16-bit flash size register, in KiB.
	FlashSizeAddr uint32
	// ProgramUnit is how many bytes the flash interface programs at
	// once, each unit only once between two erases: 2 (a half-word,
	// F0/F1: PGERR), 8 (a double word, L4/G0: PROGERR), 1 where
	// programming only clears bits (F2/F4). Flash writes whole units.
	ProgramUnit uint32
	// RDPAddr is the option byte that holds the read protection level,
	// which READ MEMORY reads on an unprotected chip.
	RDPAddr uint32
	// RDPLevel0 is the value of that byte with no read protection;
	// any other value protects the flash.
	RDPLevel0 byte
}

const kib = 1024

// f4Sectors is the sector layout of one RM0090 flash bank: 4 × 16 KiB,
// 1 × 64 KiB, 7 × 128 KiB.
var f4Sectors = []uint32{16 * kib, 16 * kib, 16 * kib, 16 * kib, 64 * kib, 128 * kib, 128 * kib, 128 * kib, 128 * kib, 128 * kib, 128 * kib, 128 * kib}

// families holds the product ids this backend knows. Product ids and
// flash ranges: AN2606 "Bootloader device-dependent parameters" (as
// stm32flash's dev_table.c carries them). Unique id and flash size
// register addresses: the "Device electronic signature" chapter of each
// reference manual named below. Programming units: the Flash chapter of
// the same manuals (F0/F1 "Main Flash memory programming", PM0075 for
// the F1; F4 "Programming"; L4/G0 "Flash program and erase operations").
// Read protection option byte: the "Option bytes" section of the same
// chapter: F0/F1 the RDP byte at 0x1FFFF800 (F1: 0xA5 unprotected; F0:
// 0xAA level 0, 0xCC level 2), F4 bits 15:8 of the option word at
// 0x1FFFC000, L4/G0 bits 7:0 of FLASH_OPTR's copy at 0x1FFF7800 (0xAA
// level 0, 0xCC level 2).
var families = []*Family{
	// RM0091 (STM32F0x1/x2/x8): UID at 0x1FFFF7AC, flash size at
	// 0x1FFFF7CC; F030x8/F05x: 64 KiB in 1 KiB pages.
	{PID: 0x440, Key: "f0", Name: "STM32F030x8/F05xxx", FlashBase: 0x08000000, FlashSize: 64 * kib,
		Pages: []uint32{1 * kib}, UIDAddr: 0x1FFFF7AC, FlashSizeAddr: 0x1FFFF7CC, ProgramUnit: 2,
		RDPAddr: 0x1FFFF800, RDPLevel0: 0xAA},
	// RM0008 (STM32F101/102/103/105/107): UID at 0x1FFFF7E8, flash
	// size at 0x1FFFF7E0; medium density: up to 128 KiB in 1 KiB pages.
	{PID: 0x410, Key: "f1-md", Name: "STM32F10xxx Medium-density", FlashBase: 0x08000000, FlashSize: 128 * kib,
		Pages: []uint32{1 * kib}, UIDAddr: 0x1FFFF7E8, FlashSizeAddr: 0x1FFFF7E0, ProgramUnit: 2,
		RDPAddr: 0x1FFFF800, RDPLevel0: 0xA5},
	// RM0008: high density: up to 512 KiB in 2 KiB pages.
	{PID: 0x414, Key: "f1-hd", Name: "STM32F10xxx High-density", FlashBase: 0x08000000, FlashSize: 512 * kib,
		Pages: []uint32{2 * kib}, UIDAddr: 0x1FFFF7E8, FlashSizeAddr: 0x1FFFF7E0, ProgramUnit: 2,
		RDPAddr: 0x1FFFF800, RDPLevel0: 0xA5},
	// RM0090 (STM32F405/415, F407/417, F42x/43x): UID at 0x1FFF7A10,
	// flash size at 0x1FFF7A22; F405/407: 1 MiB in sectors 0-11.
	{PID: 0x413, Key: "f4", Name: "STM32F40xxx/41xxx", FlashBase: 0x08000000, FlashSize: 1024 * kib,
		Pages: f4Sectors, UIDAddr: 0x1FFF7A10, FlashSizeAddr: 0x1FFF7A22, ProgramUnit: 1,
		RDPAddr: 0x1FFFC001, RDPLevel0: 0xAA},
	// RM0090: F42x/43x: 2 MiB in two banks, sectors 0-11 and 12-23.
	{PID: 0x419, Key: "f42", Name: "STM32F42xxx/43xxx", FlashBase: 0x08000000, FlashSize: 2048 * kib,
		Pages: slices.Concat(f4Sectors, f4Sectors), UIDAddr: 0x1FFF7A10, FlashSizeAddr: 0x1FFF7A22, ProgramUnit: 1,
		RDPAddr: 0x1FFFC001, RDPLevel0: 0xAA},
	// RM0351 (STM32L47x/48x): UID at 0x1FFF7590, flash size at
	// 0x1FFF75E0; 1 MiB in 2 KiB pages.
	{PID: 0x415, Key: "l4", Name: "STM32L47xxx/48xxx", FlashBase: 0x08000000, FlashSize: 1024 * kib,
		Pages: []uint32{2 * kib}, UIDAddr: 0x1FFF7590, FlashSizeAddr: 0x1FFF75E0, ProgramUnit: 8,
		RDPAddr: 0x1FFF7800, RDPLevel0: 0xAA},
	// RM0444 (STM32G0x1): UID at 0x1FFF7590, flash size at 0x1FFF75E0;
	// G07x/08x: 128 KiB in 2 KiB pages.
	{PID: 0x460, Key: "g0", Name: "STM32G07xxx/08xxx", FlashBase: 0x08000000, FlashSize: 128 * kib,
		Pages: []uint32{2 * kib}, UIDAddr: 0x1FFF7590, FlashSizeAddr: 0x1FFF75E0, ProgramUnit: 8,
		RDPAddr: 0x1FFF7800, RDPLevel0: 0xAA},
}

// Families returns the families the backend knows, in table order.
func Families() []Family {
	out := make([]Family, len(families))
	for i, f := range families {
		out[i] = *f
	}
	return out
}

// FamilyByPID returns the family of a product id.
func FamilyByPID(pid uint16) (Family, bool) {
	for _, f := range families {
		if f.PID == pid {
			return *f, true
		}
	}
	return Family{}, false
}

// familyByKey finds a family by key or by product id ("0x410").
func familyByKey(key string) (*Family, error) {
	k := strings.ToLower(strings.TrimSpace(key))
	for _, f := range families {
		if f.Key == k {
			return f, nil
		}
	}
	if v, err := strconv.ParseUint(k, 0, 16); err == nil {
		for _, f := range families {
			if f.PID == uint16(v) {
				return f, nil
			}
		}
	}
	keys := make([]string, len(families))
	for i, f := range families {
		keys[i] = f.Key
	}
	return nil, fmt.Errorf("STM32 family %q is not one this backend knows (%s)", key, strings.Join(keys, ", "))
}

// page is one erase unit of flash.
type page struct {
	index      int
	start, end uint32 // addresses
}

// pagesCovering returns the erase pages that [from, to) touches within
// a flash of size bytes.
func (f *Family) pagesCovering(size, from, to uint32) []page {
	var out []page
	addr := f.FlashBase
	for i := 0; addr < f.FlashBase+size; i++ {
		ps := f.Pages[min(i, len(f.Pages)-1)]
		p := page{index: i, start: addr, end: addr + ps}
		if p.end > from && p.start < to {
			out = append(out, p)
		}
		if p.start >= to {
			break
		}
		addr = p.end
	}
	return out
}

// Plan is what a slot whose fixture names family (a Config.Family; ""
// for any) offers before the chip is identified: read-out protection, and
// the largest flash of the family (the part's own size is read at
// preflight). An unknown family is an error.
func Plan(family string) (flasher.Plan, error) {
	p := flasher.Plan{Device: "the STM32", Locks: []string{LockRDP}}
	if family == "" {
		return p, nil
	}
	f, err := familyByKey(family)
	if err != nil {
		return flasher.Plan{}, err
	}
	p.Device = f.Name
	p.Flash = []flasher.Range{{Start: uint64(f.FlashBase), End: uint64(f.FlashBase) + uint64(f.FlashSize)}}
	return p, nil
}
