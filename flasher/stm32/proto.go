package stm32

import (
	"encoding/binary"
	"fmt"
)

// Command is a bootloader command byte (AN3155 section 2, "Bootloader
// command set"). On the wire it is followed by its complement.
type Command byte

// Bootloader commands.
const (
	CmdGet              Command = 0x00 // Get: version and the commands supported
	CmdGetVersion       Command = 0x01 // Get Version: version and two option bytes
	CmdGetID            Command = 0x02 // Get ID: the product id (PID)
	CmdReadMemory       Command = 0x11 // Read Memory: up to 256 bytes
	CmdGo               Command = 0x21 // Go: jump to an address
	CmdWriteMemory      Command = 0x31 // Write Memory: up to 256 bytes
	CmdErase            Command = 0x43 // Erase: 1-byte page numbers (bootloaders before v3.0)
	CmdExtendedErase    Command = 0x44 // Extended Erase: 2-byte page numbers (v3.0 and later)
	CmdWriteProtect     Command = 0x63 // Write Protect: sectors
	CmdWriteUnprotect   Command = 0x73 // Write Unprotect: all sectors
	CmdReadoutProtect   Command = 0x82 // Readout Protect: sets RDP level 1, then resets
	CmdReadoutUnprotect Command = 0x92 // Readout Unprotect: mass-erases, clears RDP, then resets
	CmdGetChecksum      Command = 0xA1 // Get Checksum: CRC-32 of a memory range (newer bootloaders)
)

var commandNames = map[Command]string{
	CmdGet: "GET", CmdGetVersion: "GET VERSION", CmdGetID: "GET ID", CmdReadMemory: "READ MEMORY",
	CmdGo: "GO", CmdWriteMemory: "WRITE MEMORY", CmdErase: "ERASE", CmdExtendedErase: "EXTENDED ERASE",
	CmdWriteProtect: "WRITE PROTECT", CmdWriteUnprotect: "WRITE UNPROTECT", CmdReadoutProtect: "READOUT PROTECT",
	CmdReadoutUnprotect: "READOUT UNPROTECT", CmdGetChecksum: "GET CHECKSUM",
}

// String names the command as AN3155 does.
func (c Command) String() string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return fmt.Sprintf("command %#02x", byte(c))
}

// Answers and the init byte (AN3155 section 2).
const (
	// Init is the byte the host sends first; the bootloader measures the
	// baud rate from it and answers ACK.
	Init = 0x7F
	// ACK accepts a command or its arguments.
	ACK = 0x79
	// NACK refuses one: unknown or protected command, bad checksum, bad
	// address.
	NACK = 0x1F
	// Busy is sent by some bootloaders while a long operation runs
	// (stm32flash STM32_BUSY); the host keeps waiting.
	Busy = 0x76
)

// Extended erase special codes (AN3155 "Extended Erase Memory command").
const (
	// MassErase erases all of the flash.
	MassErase = 0xFFFF
	// BlockSize is the most WRITE MEMORY and READ MEMORY move at once.
	BlockSize = 256
	// maxErasePages is how many pages one erase command carries:
	// stm32flash splits at 512 because some devices (STM32L152) refuse
	// more; the 1-byte ERASE carries at most 255.
	maxErasePages = 512
)

// xorSum is the XOR of b, the checksum AN3155 appends to addresses, page
// lists and data blocks.
func xorSum(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

// AddressFrame is the 5 bytes that carry an address: 4 bytes big-endian
// and their XOR (AN3155, Read Memory, Go and Write Memory commands).
func AddressFrame(addr uint32) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 5), addr)
	return append(b, xorSum(b))
}

// WriteFrame is the data part of WRITE MEMORY: N-1, the N bytes and the
// XOR of both. data is padded with 0xFF to a multiple of 4 bytes, as the
// bootloader wants; it must not be longer than BlockSize.
func WriteFrame(data []byte) []byte {
	n := (len(data) + 3) &^ 3
	b := make([]byte, 0, n+2)
	b = append(b, byte(n-1))
	b = append(b, data...)
	for len(b) < n+1 {
		b = append(b, 0xFF)
	}
	return append(b, xorSum(b))
}

// ExtendedEraseFrame is the argument of EXTENDED ERASE for pages: N-1 and
// each page number as 2 bytes big-endian, then the XOR of all of them.
func ExtendedEraseFrame(pages []uint16) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2*len(pages)+3), uint16(len(pages)-1))
	for _, p := range pages {
		b = binary.BigEndian.AppendUint16(b, p)
	}
	return append(b, xorSum(b))
}

// EraseFrame is the argument of the 1-byte ERASE for pages: N-1, the page
// numbers and their XOR. At most 255 pages below 256.
func EraseFrame(pages []uint16) []byte {
	b := make([]byte, 0, len(pages)+2)
	b = append(b, byte(len(pages)-1))
	for _, p := range pages {
		b = append(b, byte(p))
	}
	return append(b, xorSum(b))
}

// CRC computes the CRC of the STM32 CRC unit over data, as the
// bootloader's GET CHECKSUM and stm32flash's stm32_sw_crc do: polynomial
// 0x04C11DB7, initial value 0xFFFFFFFF, MSB first, no final XOR, fed one
// 32-bit little-endian word at a time (the unit takes words as the CPU
// reads them from flash). A length that is not a multiple of 4 is padded
// with 0xFF, the erased value.
func CRC(data []byte) uint32 {
	return crcUpdate(0xFFFFFFFF, data)
}

func crcUpdate(crc uint32, data []byte) uint32 {
	var w [4]byte
	for i := 0; i < len(data); i += 4 {
		n := copy(w[:], data[i:])
		for j := n; j < 4; j++ {
			w[j] = 0xFF
		}
		crc ^= binary.LittleEndian.Uint32(w[:])
		for range 32 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04C11DB7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
