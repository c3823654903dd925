// Package packet encodes and decodes the command and response packets of
// the ESP ROM serial bootloader, the layer inside SLIP framing. It does no
// I/O; the flasher in package esp and the simulator in fixtures/sim share it.
//
// Reference: esptool documentation, "Serial Protocol" (serial-protocol.rst),
// sections "Command Packet", "Response Packet", "Status bytes", "Commands"
// and "Checksum". All fields are little-endian.
//
//	request:  0x00 | op u8 | size u16 | checksum u32 | data[size]
//	response: 0x01 | op u8 | size u16 | value u32    | data[size]
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is a bootloader command opcode.
type Op byte

// Opcodes of the ROM loader (serial-protocol.rst, "Supported by ROM
// loader"); the flasher uses a subset.
const (
	FlashBegin      Op = 0x02 // erase size, packet count, packet size, offset [, encrypted]
	FlashData       Op = 0x03 // u32 len, u32 seq, 0, 0, data
	FlashEnd        Op = 0x04 // u32 0 to reboot, 1 to stay in the loader
	MemBegin        Op = 0x05 // total size, packet count, packet size, address
	MemEnd          Op = 0x06 // u32 0 to jump to entry, entry address
	MemData         Op = 0x07 // u32 len, u32 seq, 0, 0, data
	Sync            Op = 0x08 // 07 07 12 20 then 32 x 0x55
	WriteReg        Op = 0x09 // address, value, mask, delay in µs
	ReadReg         Op = 0x0A // address; the register comes back in Value
	SPISetParams    Op = 0x0B // id, total size, block size, sector size, page size, status mask
	SPIAttach       Op = 0x0D // pin configuration, and on the ROM 4 more zero bytes
	ChangeBaudrate  Op = 0x0F // new baud, old baud (0 when talking to the ROM)
	FlashDeflBegin  Op = 0x10 // uncompressed size, packet count, packet size, offset [, encrypted]
	FlashDeflData   Op = 0x11 // u32 len, u32 seq, 0, 0, compressed data
	FlashDeflEnd    Op = 0x12 // u32 0 to reboot, 1 to stay in the loader
	SPIFlashMD5     Op = 0x13 // address, size, 0, 0
	GetSecurityInfo Op = 0x14 // flags, key purposes, chip id (ESP32-S2 and later)
)

// String returns the name esptool's documentation uses for the opcode.
func (o Op) String() string {
	switch o {
	case FlashBegin:
		return "FLASH_BEGIN"
	case FlashData:
		return "FLASH_DATA"
	case FlashEnd:
		return "FLASH_END"
	case MemBegin:
		return "MEM_BEGIN"
	case MemEnd:
		return "MEM_END"
	case MemData:
		return "MEM_DATA"
	case Sync:
		return "SYNC"
	case WriteReg:
		return "WRITE_REG"
	case ReadReg:
		return "READ_REG"
	case SPISetParams:
		return "SPI_SET_PARAMS"
	case SPIAttach:
		return "SPI_ATTACH"
	case ChangeBaudrate:
		return "CHANGE_BAUDRATE"
	case FlashDeflBegin:
		return "FLASH_DEFL_BEGIN"
	case FlashDeflData:
		return "FLASH_DEFL_DATA"
	case FlashDeflEnd:
		return "FLASH_DEFL_END"
	case SPIFlashMD5:
		return "SPI_FLASH_MD5"
	case GetSecurityInfo:
		return "GET_SECURITY_INFO"
	}
	return fmt.Sprintf("op 0x%02X", byte(o))
}

// Direction bytes at the start of every packet.
const (
	dirRequest  = 0x00
	dirResponse = 0x01
	headerLen   = 8
)

// ROM error codes, carried in the second status byte when the first is
// non-zero (serial-protocol.rst, "ROM Loader Errors").
const (
	ErrCodeUndefined       = 0x00 // undefined error
	ErrCodeInvalidInput    = 0x01 // the input parameter is invalid
	ErrCodeMalloc          = 0x02 // failed to allocate memory
	ErrCodeSend            = 0x03 // failed to send out a message
	ErrCodeReceive         = 0x04 // failed to receive a message
	ErrCodeInvalidMessage  = 0x05 // received message is invalid (parameters or length)
	ErrCodeFailedToAct     = 0x06 // failed to act on received message
	ErrCodeInvalidCRC      = 0x07 // invalid CRC in message
	ErrCodeFlashWrite      = 0x08 // flash write error: after writing, a readback differed
	ErrCodeFlashRead       = 0x09 // flash read error: SPI read failed
	ErrCodeFlashReadLength = 0x0A // flash read length error
	ErrCodeDeflate         = 0x0B // deflate error (compressed uploads only)
	ErrCodeDeflateAdler32  = 0x0C // deflate Adler-32 error
	ErrCodeDeflateParam    = 0x0D // deflate parameter error
	ErrCodeRAMSize         = 0x0E // invalid RAM binary size
	ErrCodeRAMAddress      = 0x0F // invalid RAM binary address
	ErrCodeInvalidParam    = 0x64 // invalid parameter (e.g. flash access past the size SPI_SET_PARAMS gave)
	ErrCodeInvalidFormat   = 0x65 // invalid format
	ErrCodeDescTooLong     = 0x66 // description too long
	ErrCodeBadEncoding     = 0x67 // bad encoding description
	ErrCodeNoStorage       = 0x69 // insufficient storage
)

// SyncData is the payload of a SYNC request.
var SyncData = func() []byte {
	b := []byte{0x07, 0x07, 0x12, 0x20}
	for range 32 {
		b = append(b, 0x55)
	}
	return b
}()

// ChecksumSeed is the initial value of the data checksum.
const ChecksumSeed = 0xEF

// Checksum returns the checksum of the data part of a *_DATA request:
// 0xEF XOR every byte (serial-protocol.rst, "Checksum").
func Checksum(data []byte) uint32 {
	c := byte(ChecksumSeed)
	for _, b := range data {
		c ^= b
	}
	return uint32(c)
}

// Errors for packets that cannot be parsed.
var (
	ErrShort     = errors.New("packet shorter than its header")
	ErrDirection = errors.New("packet has the wrong direction byte")
	ErrSize      = errors.New("packet size field disagrees with its length")
)

// Request is a command from the host to the bootloader.
type Request struct {
	Op       Op
	Checksum uint32 // only meaningful for *_DATA commands
	Data     []byte
}

// Marshal returns the request's bytes, before SLIP framing.
func (r Request) Marshal() []byte {
	b := make([]byte, headerLen, headerLen+len(r.Data))
	b[0] = dirRequest
	b[1] = byte(r.Op)
	binary.LittleEndian.PutUint16(b[2:], uint16(len(r.Data)))
	binary.LittleEndian.PutUint32(b[4:], r.Checksum)
	return append(b, r.Data...)
}

// ParseRequest decodes a request. Data aliases b.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < headerLen {
		return Request{}, ErrShort
	}
	if b[0] != dirRequest {
		return Request{}, ErrDirection
	}
	if int(binary.LittleEndian.Uint16(b[2:])) != len(b)-headerLen {
		return Request{}, ErrSize
	}
	return Request{Op: Op(b[1]), Checksum: binary.LittleEndian.Uint32(b[4:]), Data: b[headerLen:]}, nil
}

// Response is the bootloader's answer to a request. Data ends with the
// status bytes.
type Response struct {
	Op    Op
	Value uint32
	Data  []byte
}

// Marshal returns the response's bytes, before SLIP framing.
func (r Response) Marshal() []byte {
	b := make([]byte, headerLen, headerLen+len(r.Data))
	b[0] = dirResponse
	b[1] = byte(r.Op)
	binary.LittleEndian.PutUint16(b[2:], uint16(len(r.Data)))
	binary.LittleEndian.PutUint32(b[4:], r.Value)
	return append(b, r.Data...)
}

// ParseResponse decodes a response. Data aliases b.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < headerLen {
		return Response{}, ErrShort
	}
	if b[0] != dirResponse {
		return Response{}, ErrDirection
	}
	if int(binary.LittleEndian.Uint16(b[2:])) != len(b)-headerLen {
		return Response{}, ErrSize
	}
	return Response{Op: Op(b[1]), Value: binary.LittleEndian.Uint32(b[4:]), Data: b[headerLen:]}, nil
}

// Status splits the response data into its payload and the trailing
// status bytes, statusLen long (4 on ESP32-family ROMs, 2 on the ESP8266 ROM
// and the flasher stub). A non-zero status byte becomes a *ROMError.
func (r Response) Status(statusLen int) (payload []byte, err error) {
	if statusLen < 2 {
		return nil, fmt.Errorf("%s: %d status bytes asked for, the protocol has 2 or 4", r.Op, statusLen)
	}
	if len(r.Data) < statusLen {
		return nil, fmt.Errorf("%s: response has %d data bytes, want at least %d status bytes: %w",
			r.Op, len(r.Data), statusLen, ErrShort)
	}
	payload, st := r.Data[:len(r.Data)-statusLen], r.Data[len(r.Data)-statusLen:]
	if st[0] != 0 {
		return payload, &ROMError{Op: r.Op, Code: st[1]}
	}
	return payload, nil
}

// ROMError is a failure the bootloader reported in its status bytes.
type ROMError struct {
	Op   Op
	Code byte
}

// Error names the command and the ROM's reason.
func (e *ROMError) Error() string {
	return fmt.Sprintf("%s refused by the ROM: %s (0x%02X)", e.Op, CodeText(e.Code), e.Code)
}

// CodeText returns what a ROM error code means.
func CodeText(code byte) string {
	switch code {
	case ErrCodeUndefined:
		return "undefined error"
	case ErrCodeInvalidInput:
		return "invalid input parameter"
	case ErrCodeMalloc:
		return "out of memory"
	case ErrCodeSend:
		return "failed to send a message"
	case ErrCodeReceive:
		return "failed to receive a message"
	case ErrCodeInvalidMessage:
		return "invalid message"
	case ErrCodeFailedToAct:
		return "failed to act on message"
	case ErrCodeInvalidCRC:
		return "invalid checksum"
	case ErrCodeFlashWrite:
		return "flash write error"
	case ErrCodeFlashRead:
		return "flash read error"
	case ErrCodeFlashReadLength:
		return "flash read length error"
	case ErrCodeDeflate:
		return "deflate error"
	case ErrCodeDeflateAdler32:
		return "deflate Adler-32 error"
	case ErrCodeDeflateParam:
		return "deflate parameter error"
	case ErrCodeRAMSize:
		return "invalid RAM binary size"
	case ErrCodeRAMAddress:
		return "invalid RAM binary address"
	case ErrCodeInvalidParam:
		return "invalid parameter"
	case ErrCodeInvalidFormat:
		return "invalid format"
	case ErrCodeDescTooLong:
		return "description too long"
	case ErrCodeBadEncoding:
		return "bad encoding description"
	case ErrCodeNoStorage:
		return "insufficient storage"
	}
	return "unknown error"
}

// Words encodes little-endian 32-bit words, the shape of most command
// payloads.
func Words(ws ...uint32) []byte {
	b := make([]byte, 4*len(ws))
	for i, w := range ws {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// Word returns the i-th little-endian 32-bit word of b, or 0 and false if
// b is too short.
func Word(b []byte, i int) (uint32, bool) {
	if len(b) < 4*(i+1) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[4*i:]), true
}

// DataHeaderLen is the length of the header in front of the data of a
// FLASH_DATA, FLASH_DEFL_DATA or MEM_DATA request.
const DataHeaderLen = 16

// DataBlock returns the request for block seq of a *_DATA command.
func DataBlock(op Op, seq uint32, data []byte) Request {
	b := make([]byte, DataHeaderLen, DataHeaderLen+len(data))
	binary.LittleEndian.PutUint32(b[0:], uint32(len(data)))
	binary.LittleEndian.PutUint32(b[4:], seq)
	return Request{Op: op, Checksum: Checksum(data), Data: append(b, data...)}
}

// ParseDataBlock splits a *_DATA request's payload into its sequence
// number and data, checking the declared length.
func ParseDataBlock(payload []byte) (seq uint32, data []byte, err error) {
	if len(payload) < DataHeaderLen {
		return 0, nil, ErrShort
	}
	n := binary.LittleEndian.Uint32(payload[0:])
	seq = binary.LittleEndian.Uint32(payload[4:])
	data = payload[DataHeaderLen:]
	if uint32(len(data)) != n {
		return seq, data, ErrSize
	}
	return seq, data, nil
}
