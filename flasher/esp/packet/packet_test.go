package packet

import (
	"bytes"
	"errors"
	"testing"
)

func TestRequestMarshal(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want []byte
	}{
		{
			name: "read reg",
			req:  Request{Op: ReadReg, Data: Words(0x40001000)},
			// The READ_REG example in serial-protocol.rst, "Tracing".
			want: []byte{0x00, 0x0A, 0x04, 0x00, 0, 0, 0, 0, 0x00, 0x10, 0x00, 0x40},
		},
		{
			name: "sync",
			req:  Request{Op: Sync, Data: SyncData},
			want: append([]byte{0x00, 0x08, 0x24, 0x00, 0, 0, 0, 0}, SyncData...),
		},
		{
			name: "checksum field",
			req:  Request{Op: FlashData, Checksum: 0xEF},
			want: []byte{0x00, 0x03, 0x00, 0x00, 0xEF, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.req.Marshal()
			if !bytes.Equal(got, tt.want) {
				t.Errorf("%v.Marshal() = % X, want % X", tt.req.Op, got, tt.want)
			}
			back, err := ParseRequest(got)
			if err != nil || back.Op != tt.req.Op || back.Checksum != tt.req.Checksum || !bytes.Equal(back.Data, tt.req.Data) {
				t.Errorf("ParseRequest(Marshal()) = %+v, %v, want %+v", back, err, tt.req)
			}
		})
	}
}

func TestSyncData(t *testing.T) {
	if len(SyncData) != 36 || !bytes.Equal(SyncData[:4], []byte{0x07, 0x07, 0x12, 0x20}) ||
		!bytes.Equal(SyncData[4:], bytes.Repeat([]byte{0x55}, 32)) {
		t.Errorf("SyncData = % X, want 07 07 12 20 then 32 x 55", SyncData)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Response
		wantErr error
	}{
		{
			// The READ_REG answer in serial-protocol.rst, "Tracing".
			name: "read reg",
			in:   []byte{0x01, 0x0A, 0x02, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00},
			want: Response{Op: ReadReg, Value: 9, Data: []byte{0, 0}},
		},
		{
			name: "sync",
			in:   []byte{0x01, 0x08, 0x04, 0x00, 0x07, 0x07, 0x12, 0x20, 0, 0, 0, 0},
			want: Response{Op: Sync, Value: 0x20120707, Data: []byte{0, 0, 0, 0}},
		},
		{name: "short", in: []byte{0x01, 0x08, 0x00}, wantErr: ErrShort},
		{name: "request direction", in: []byte{0x00, 0x08, 0, 0, 0, 0, 0, 0}, wantErr: ErrDirection},
		{name: "size too big", in: []byte{0x01, 0x08, 0x05, 0, 0, 0, 0, 0, 1, 2, 3, 4}, wantErr: ErrSize},
		{name: "size too small", in: []byte{0x01, 0x08, 0x01, 0, 0, 0, 0, 0, 1, 2}, wantErr: ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseResponse(% X) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Op != tt.want.Op || got.Value != tt.want.Value || !bytes.Equal(got.Data, tt.want.Data) {
				t.Errorf("ParseResponse(% X) = %+v, want %+v", tt.in, got, tt.want)
			}
			if back := got.Marshal(); !bytes.Equal(back, tt.in) {
				t.Errorf("ParseResponse(% X).Marshal() = % X", tt.in, back)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short", []byte{0x00}, ErrShort},
		{"response direction", []byte{0x01, 0x08, 0, 0, 0, 0, 0, 0}, ErrDirection},
		{"size", []byte{0x00, 0x08, 0x02, 0, 0, 0, 0, 0, 1}, ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseRequest(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("ParseRequest(% X) error = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	md5 := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name        string
		data        []byte
		statusLen   int
		wantPayload []byte
		wantCode    int // -1: no ROM error
		wantErr     error
	}{
		{"rom ok", []byte{0, 0, 0, 0}, 4, []byte{}, -1, nil},
		{"stub ok", []byte{0, 0}, 2, []byte{}, -1, nil},
		{"rom payload", append(append([]byte(nil), md5...), 0, 0, 0, 0), 4, md5, -1, nil},
		{"stub payload", []byte{0xAA, 0xBB, 0, 0}, 2, []byte{0xAA, 0xBB}, -1, nil},
		{"rom bad crc", []byte{1, ErrCodeInvalidCRC, 0, 0}, 4, []byte{}, ErrCodeInvalidCRC, nil},
		{"stub flash write", []byte{1, ErrCodeFlashWrite}, 2, []byte{}, ErrCodeFlashWrite, nil},
		{"reserved bytes ignored", []byte{0, 0, 0xFF, 0xFF}, 4, []byte{}, -1, nil},
		{"too short for rom", []byte{0, 0}, 4, nil, -1, ErrShort},
		{"empty", nil, 2, nil, -1, ErrShort},
		{"status length zero", []byte{1, 2, 3, 4}, 0, nil, -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Response{Op: SPIFlashMD5, Data: tt.data}
			payload, err := r.Status(tt.statusLen)
			if tt.statusLen < 2 {
				if err == nil {
					t.Errorf("Status(%d) = nil error, want one", tt.statusLen)
				}
				return
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Status(%d) on % X error = %v, want %v", tt.statusLen, tt.data, err, tt.wantErr)
				}
				return
			}
			if !bytes.Equal(payload, tt.wantPayload) {
				t.Errorf("Status(%d) on % X payload = % X, want % X", tt.statusLen, tt.data, payload, tt.wantPayload)
			}
			var re *ROMError
			switch {
			case tt.wantCode < 0 && err != nil:
				t.Errorf("Status(%d) on % X = %v, want no error", tt.statusLen, tt.data, err)
			case tt.wantCode >= 0 && (!errors.As(err, &re) || int(re.Code) != tt.wantCode || re.Op != SPIFlashMD5):
				t.Errorf("Status(%d) on % X = %v, want ROM error 0x%02X", tt.statusLen, tt.data, err, tt.wantCode)
			}
		})
	}
}

func TestROMErrorText(t *testing.T) {
	tests := []struct {
		err  ROMError
		want string
	}{
		{ROMError{Op: FlashData, Code: ErrCodeInvalidCRC}, "FLASH_DATA refused by the ROM: invalid checksum (0x07)"},
		{ROMError{Op: FlashDeflData, Code: ErrCodeFlashWrite}, "FLASH_DEFL_DATA refused by the ROM: flash write error (0x08)"},
		{ROMError{Op: ReadReg, Code: ErrCodeInvalidMessage}, "READ_REG refused by the ROM: invalid message (0x05)"},
		{ROMError{Op: FlashBegin, Code: ErrCodeInvalidParam}, "FLASH_BEGIN refused by the ROM: invalid parameter (0x64)"},
		{ROMError{Op: Op(0x55), Code: 0x42}, "op 0x55 refused by the ROM: unknown error (0x42)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("(&ROMError{%v, %#x}).Error() = %q, want %q", tt.err.Op, tt.err.Code, got, tt.want)
		}
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{
		FlashBegin: "FLASH_BEGIN", FlashData: "FLASH_DATA", FlashEnd: "FLASH_END",
		MemBegin: "MEM_BEGIN", MemEnd: "MEM_END", MemData: "MEM_DATA", Sync: "SYNC",
		WriteReg: "WRITE_REG", ReadReg: "READ_REG", SPISetParams: "SPI_SET_PARAMS",
		SPIAttach: "SPI_ATTACH", ChangeBaudrate: "CHANGE_BAUDRATE",
		FlashDeflBegin: "FLASH_DEFL_BEGIN", FlashDeflData: "FLASH_DEFL_DATA",
		FlashDeflEnd: "FLASH_DEFL_END", SPIFlashMD5: "SPI_FLASH_MD5",
		GetSecurityInfo: "GET_SECURITY_INFO", Op(0xD0): "op 0xD0",
	} {
		if got := op.String(); got != want {
			t.Errorf("Op(%#x).String() = %q, want %q", byte(op), got, want)
		}
	}
}

func TestChecksum(t *testing.T) {
	tests := []struct {
		data []byte
		want uint32
	}{
		{nil, 0xEF},
		{[]byte{0xEF}, 0x00},
		{[]byte{0x01, 0x02, 0x04}, 0xEF ^ 0x07},
		{bytes.Repeat([]byte{0xFF}, 1024), 0xEF},
		{bytes.Repeat([]byte{0xFF}, 1023), 0x10},
	}
	for _, tt := range tests {
		if got := Checksum(tt.data); got != tt.want {
			t.Errorf("Checksum(%d bytes) = %#x, want %#x", len(tt.data), got, tt.want)
		}
	}
}

func TestWords(t *testing.T) {
	b := Words(1, 0x12345678)
	if want := []byte{1, 0, 0, 0, 0x78, 0x56, 0x34, 0x12}; !bytes.Equal(b, want) {
		t.Errorf("Words(1, 0x12345678) = % X, want % X", b, want)
	}
	for i, want := range []uint32{1, 0x12345678} {
		if got, ok := Word(b, i); !ok || got != want {
			t.Errorf("Word(b, %d) = %#x, %v, want %#x, true", i, got, ok, want)
		}
	}
	if _, ok := Word(b, 2); ok {
		t.Errorf("Word(b, 2) ok = true, want false past the end")
	}
}

func TestDataBlock(t *testing.T) {
	data := []byte{0xC0, 0xDB, 0x00, 0x11}
	req := DataBlock(FlashDeflData, 17, data)
	if req.Op != FlashDeflData || req.Checksum != Checksum(data) {
		t.Errorf("DataBlock() = op %v checksum %#x, want %v %#x", req.Op, req.Checksum, FlashDeflData, Checksum(data))
	}
	wantHead := []byte{4, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(req.Data[:DataHeaderLen], wantHead) {
		t.Errorf("DataBlock() header = % X, want % X", req.Data[:DataHeaderLen], wantHead)
	}
	seq, got, err := ParseDataBlock(req.Data)
	if err != nil || seq != 17 || !bytes.Equal(got, data) {
		t.Errorf("ParseDataBlock(DataBlock()) = %d, % X, %v, want 17, % X, nil", seq, got, err, data)
	}
}

func TestParseDataBlockErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short header", make([]byte, 15), ErrShort},
		{"length too big", append(Words(5, 0, 0, 0), 1, 2, 3, 4), ErrSize},
		{"length too small", append(Words(3, 0, 0, 0), 1, 2, 3, 4), ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseDataBlock(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("ParseDataBlock(% X) error = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func FuzzPacket(f *testing.F) {
	f.Add([]byte{0x01, 0x0A, 0x02, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Add(Request{Op: Sync, Data: SyncData}.Marshal())
	f.Add(DataBlock(FlashData, 3, []byte{1, 2, 3}).Marshal())
	f.Add([]byte{0x01, 0x13, 0x04, 0x00, 0, 0, 0, 0, 1, 7, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if resp, err := ParseResponse(b); err == nil {
			if back := resp.Marshal(); !bytes.Equal(back, b) {
				t.Errorf("ParseResponse(% X).Marshal() = % X", b, back)
			}
			for _, n := range []int{2, 4} {
				payload, err := resp.Status(n)
				var re *ROMError
				if err != nil && !errors.Is(err, ErrShort) && !errors.As(err, &re) {
					t.Errorf("Status(%d) = %v, want nil, ErrShort or *ROMError", n, err)
				}
				if err == nil && len(payload) != len(resp.Data)-n {
					t.Errorf("Status(%d) payload %d bytes of %d", n, len(payload), len(resp.Data))
				}
			}
		}
		if req, err := ParseRequest(b); err == nil {
			if back := req.Marshal(); !bytes.Equal(back, b) {
				t.Errorf("ParseRequest(% X).Marshal() = % X", b, back)
			}
			if seq, data, err := ParseDataBlock(req.Data); err == nil {
				again := DataBlock(req.Op, seq, data)
				if !bytes.Equal(again.Data[:8], req.Data[:8]) || !bytes.Equal(again.Data[DataHeaderLen:], data) {
					t.Errorf("DataBlock(ParseDataBlock(% X)) = % X", req.Data, again.Data)
				}
			}
		}
	})
}
