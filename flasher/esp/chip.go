package esp

import (
	"fmt"
	"strings"
)

// chip describes one ESP chip model: how to recognise it, where its
// identity and lock eFuses live and what its ROM loader expects. The
// tables below are data; each field names the source it was read from.
type chip struct {
	// Name is esptool's CHIP_NAME, for example "ESP32-S3".
	Name string
	// Key is the short name a Config.Chip gives, for example "esp32s3".
	Key string
	// Magic is the value of the register at 0x40001000, which differs on
	// every chip model (esptool loader.py CHIP_DETECT_MAGIC_REG_ADDR).
	Magic uint32
	// ChipID is the chip id GET_SECURITY_INFO returns (esptool
	// IMAGE_CHIP_ID); 0 for a chip whose ROM lacks that command.
	ChipID uint32
	// SecurityInfo reports that the ROM answers GET_SECURITY_INFO and can
	// run in Secure Download Mode.
	SecurityInfo bool
	// BeginEncryptFlag reports that FLASH_BEGIN and FLASH_DEFL_BEGIN take
	// a fifth word, the encrypted-write flag (loader.py flash_begin:
	// "ESP32 and ESP8266 ROMs do not support extended parameter format").
	BeginEncryptFlag bool
	// MACRegs are the eFuse read registers holding the factory MAC, in
	// the order mac reads them.
	MACRegs [2]uint32
	// UARTClkDiv is UART_CLKDIV_REG, from which esptool's
	// get_crystal_freq estimates the crystal.
	UARTClkDiv uint32
	// XtalMHz is the crystal frequency when it is fixed (the ESP32-S3
	// supports only 40 MHz); 0 means estimate it from UARTClkDiv.
	XtalMHz int
	// UARTDate is a harmless register that WRITE_REG targets with mask 0
	// to make the ROM wait (loader.py write_reg delay_after_us,
	// UART_DATE_REG_ADDR).
	UARTDate uint32
	// BaudFix, if set, reads the ROM's own measure of its clock so that
	// CHANGE_BAUDRATE can ask for a rate the ROM will really produce
	// (esptool targets/esp32.py change_baud, commit 00f6c55).
	BaudFix *baudFix
	// Locks are the lock eFuses the backend can read and burn.
	Locks []lockFuse

	// mac assembles the MAC from the words read at MACRegs.
	mac func(w0, w1 uint32) [6]byte
	// describe names the package from eFuse words, given a register
	// reader; nil means Name.
	describe func(read func(addr uint32) (uint32, error)) (string, error)
	// efuse drives the chip's eFuse controller.
	efuse efuseDriver
}

// lockFuse is one eFuse bit in BLOCK0 that protects the device once
// burnt. Names, words and bits are espefuse's (efuse_defs/<chip>.yaml:
// blk 0, word, pos, wr_dis).
type lockFuse struct {
	// Name is espefuse's name for the field.
	Name string
	// Word is the word of BLOCK0 that holds the bit.
	Word int
	// Bit is the bit's position in Word.
	Bit uint
	// WrDis is the WR_DIS bit that write-protects the field.
	WrDis int
	// Effect says what the ROM does as soon as the fuse is burnt.
	Effect lockEffect
	// Text says what the fuse does, for messages.
	Text string
}

// lockEffect is what burning a lock eFuse does to the bootloader link
// at once.
type lockEffect int

const (
	// effectNone: the link carries on as before.
	effectNone lockEffect = iota
	// effectSecureDownload: the ROM re-reads its eFuses after the burn
	// and from then on refuses register access (Secure Download Mode).
	// espefuse efuse/esp32s3/fields.py efuse_read reconnects for it.
	effectSecureDownload
	// effectNoDownload: the ROM may stop answering altogether once the
	// fuse is read back (download mode disabled).
	effectNoDownload
)

// baudFix locates what esptool's ESP32 change_baud reads to correct for
// the drift of the chip's 8 MHz clock, which the ROM uses to set its UART
// divider: the RTC calibration value and eFuse CK8M_FREQ.
type baudFix struct {
	// CaliReg is RTCCALICFG1; the value is TIMERS_RTC_CALI_VALUE at
	// CaliShift, CaliMask wide.
	CaliReg   uint32
	CaliShift uint
	CaliMask  uint32
	// CK8MReg holds EFUSE_RD_CK8M_FREQ in its low byte (eFuse word 4).
	CK8MReg uint32
}

// chipDetectMagicReg holds a different constant on every chip model
// (esptool loader.py CHIP_DETECT_MAGIC_REG_ADDR).
const chipDetectMagicReg = 0x40001000

// esp32Chip is the classic ESP32. Sources: esptool targets/esp32.py (MAGIC_VALUE,
// EFUSE_RD_REG_BASE, read_mac, get_pkg_version, get_major_chip_version,
// get_chip_description, UART_CLKDIV_REG, RTCCALICFG1, change_baud),
// espefuse efuse/esp32/mem_definition.py and efuse/esp32/fields.py
// (controller registers, write_efuses, efuse_read), efuse_defs/esp32.yaml
// (field words and bits).
var esp32Chip = &chip{
	Name:       "ESP32",
	Key:        "esp32",
	Magic:      0x00F01D83,
	MACRegs:    [2]uint32{0x3FF5A004, 0x3FF5A008}, // eFuse BLOCK0 words 1 and 2
	UARTClkDiv: 0x3FF40014,
	UARTDate:   0x60000078, // loader.py UART_DATE_REG_ADDR (not overridden for the ESP32)
	BaudFix: &baudFix{
		CaliReg:   0x3FF5F06C,
		CaliShift: 7,
		CaliMask:  0x01FFFFFF,
		CK8MReg:   0x3FF5A010,
	},
	Locks: []lockFuse{
		{Name: "JTAG_DISABLE", Word: 6, Bit: 6, WrDis: 14, Text: "disables JTAG"},
		{Name: "UART_DOWNLOAD_DIS", Word: 0, Bit: 27, WrDis: 2, Effect: effectNoDownload,
			Text: "disables the UART download mode (ESP32 v3 and newer)"},
	},
	// esp32.py read_mac: pack(">II", word2, word1)[2:8], so the two low
	// bytes of word 2 then the four bytes of word 1, most significant
	// first; the top half of word 2 is the CRC.
	mac: func(w1, w2 uint32) [6]byte {
		return [6]byte{byte(w2 >> 8), byte(w2), byte(w1 >> 24), byte(w1 >> 16), byte(w1 >> 8), byte(w1)}
	},
	describe: describeESP32,
	efuse: &esp32EFuse{
		readBase:  0x3FF5A000, // BLOCK0 read address
		writeBase: 0x3FF5A01C, // BLOCK0 write address (EFUSE_BLK0_WDATA0_REG)
		words:     7,
		conf:      0x3FF5A0FC, // EFUSE_REG_CONF
		cmd:       0x3FF5A104, // EFUSE_REG_CMD
		dacConf:   0x3FF5A118, // EFUSE_DAC_CONF_REG, EFUSE_DAC_CLK_DIV_MASK 0xFF
		clk:       0x3FF5A0F8, // EFUSE_CLK_REG, SEL0 0x00FF, SEL1 0xFF00
		decStatus: 0x3FF5A11C, // EFUSE_REG_DEC_STATUS
		// EFUSE_CLK_SETTINGS, "Taken from TRM chapter eFuse
		// Controller: Timing Configuration": clk_sel0, clk_sel1,
		// dac_clk_div by APB MHz.
		clock: map[int][3]uint32{26: {250, 255, 52}, 40: {160, 255, 80}, 80: {80, 128, 100}},
	},
}

// esp32s3Chip is the ESP32-S3. Sources: esptool targets/esp32s3.py
// (IMAGE_CHIP_ID, MAC_EFUSE_REG, read_mac, UART_DATE_REG_ADDR,
// UART_CLKDIV_REG; the magic value 0x9 is CHIP_DETECT_MAGIC_VALUE there
// before commit 598e07b moved detection to the chip id), espefuse
// efuse/esp32s3/mem_definition.py and efuse/esp32s3/fields.py
// (controller registers, set_efuse_timing, clear_pgm_registers,
// efuse_program, efuse_read, get_coding_scheme_warnings),
// efuse_defs/esp32s3.yaml (field words and bits).
var esp32s3Chip = &chip{
	Name:             "ESP32-S3",
	Key:              "esp32s3",
	Magic:            0x00000009,
	ChipID:           9,
	SecurityInfo:     true,
	BeginEncryptFlag: true,
	MACRegs:          [2]uint32{0x60007044, 0x60007048}, // BLOCK1 (MAC_SPI_8M_0) words 0 and 1
	UARTClkDiv:       0x60000014,
	XtalMHz:          40, // espefuse set_efuse_timing: "The eFuse supports only xtal=40M"
	UARTDate:         0x60000080,
	Locks: []lockFuse{
		{Name: "DIS_PAD_JTAG", Word: 1, Bit: 19, WrDis: 2, Text: "disables JTAG on the pads permanently"},
		{Name: "DIS_USB_JTAG", Word: 3, Bit: 22, WrDis: 2, Text: "disables JTAG over the USB-Serial-JTAG peripheral"},
		{Name: "ENABLE_SECURITY_DOWNLOAD", Word: 4, Bit: 5, WrDis: 18, Effect: effectSecureDownload,
			Text: "restricts the ROM loader to Secure Download Mode"},
		{Name: "DIS_DOWNLOAD_MODE", Word: 4, Bit: 0, WrDis: 18, Effect: effectNoDownload,
			Text: "disables download mode"},
	},
	// esp32s3.py read_mac: pack(">II", mac1, mac0)[2:], the two low
	// bytes of the second word then the four bytes of the first.
	mac: func(w0, w1 uint32) [6]byte {
		return [6]byte{byte(w1 >> 8), byte(w1), byte(w0 >> 24), byte(w0 >> 16), byte(w0 >> 8), byte(w0)}
	},
	efuse: &s3EFuse{
		readBase: 0x6000702C, // BLOCK0 read address: EFUSE_RD_WR_DIS_REG, then RD_REPEAT_DATA0..4
		pgmData:  0x60007000, // EFUSE_PGM_DATA0_REG, 8 registers
		pgmWords: 8,
		conf:     0x600071CC, // EFUSE_CONF_REG
		cmd:      0x600071D4, // EFUSE_CMD_REG
		dacConf:  0x600071E8, // EFUSE_DAC_CONF_REG
		wrTim1:   0x600071F4, // EFUSE_WR_TIM_CONF1_REG
		wrTim2:   0x600071F8, // EFUSE_WR_TIM_CONF2_REG
		// EFUSE_RD_REPEAT_ERR0_REG: ERR0..4 flag bad bits of BLOCK0
		// words 1..5.
		repeatErr: 0x6000717C,
	},
}

// chips lists the chips the backend knows, in detection order.
var chips = []*chip{esp32Chip, esp32s3Chip}

// chipByKey finds the chip a Config.Chip names: "esp32", "ESP32-S3" and
// "esp32s3" all work.
func chipByKey(name string) (*chip, error) {
	k := strings.ToLower(strings.ReplaceAll(name, "-", ""))
	for _, c := range chips {
		if c.Key == k {
			return c, nil
		}
	}
	return nil, fmt.Errorf("chip %q is not one this backend knows (%s)", name, chipKeys())
}

func chipKeys() string {
	var ks []string
	for _, c := range chips {
		ks = append(ks, c.Key)
	}
	return strings.Join(ks, ", ")
}

// lockNames returns the names of the chip's lock eFuses.
func (c *chip) lockNames() []string {
	names := make([]string, len(c.Locks))
	for i, l := range c.Locks {
		names[i] = l.Name
	}
	return names
}

func (c *chip) lock(name string) (lockFuse, bool) {
	for _, l := range c.Locks {
		if l.Name == name {
			return l, true
		}
	}
	return lockFuse{}, false
}

// describeESP32 names the ESP32's package as esptool's
// get_chip_description does, without the revision.
func describeESP32(read func(uint32) (uint32, error)) (string, error) {
	const (
		efuseWord3  = 0x3FF5A00C // EFUSE_BLK0_RDATA3_REG
		efuseWord5  = 0x3FF5A014 // EFUSE_BLK0_RDATA5_REG
		apbCtlDate  = 0x3FF6607C // APB_CTL_DATE_ADDR
		apbCtlDateS = 31
	)
	w3, err := read(efuseWord3)
	if err != nil {
		return "", err
	}
	w5, err := read(efuseWord5)
	if err != nil {
		return "", err
	}
	date, err := read(apbCtlDate)
	if err != nil {
		return "", err
	}
	pkg := (w3>>9)&0x07 | ((w3>>2)&0x1)<<3
	// get_major_chip_version: rev bits from word 3 bit 15, word 5 bit
	// 20 and APB_CTL_DATE bit 31; 0b111 is v3.
	rev3 := (w3>>15)&1 == 1 && (w5>>20)&1 == 1 && (date>>apbCtlDateS)&1 == 1
	single := w3&1 == 1 // CHIP_VER_DIS_APP_CPU
	pick := func(sc, v3, other string) string {
		switch {
		case single && sc != "":
			return sc
		case rev3 && v3 != "":
			return v3
		}
		return other
	}
	switch pkg {
	case 0:
		return pick("ESP32-S0WDQ6", "ESP32-D0WDQ6-V3", "ESP32-D0WDQ6"), nil
	case 1:
		return pick("ESP32-S0WD", "ESP32-D0WD-V3", "ESP32-D0WD"), nil
	case 2:
		return "ESP32-D2WD", nil
	case 4:
		return "ESP32-U4WDH", nil
	case 5:
		return pick("", "ESP32-PICO-V3", "ESP32-PICO-D4"), nil
	case 6:
		return "ESP32-PICO-V3-02", nil
	case 7:
		return "ESP32-D0WDR2-V3", nil
	}
	return "ESP32", nil
}
