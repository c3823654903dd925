package image

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

func TestSegments(t *testing.T) {
	segs, err := Segments("app.bin", "bin", 0x10000, []byte{1, 2, 3})
	if err != nil || len(segs) != 1 || segs[0].Addr != 0x10000 || len(segs[0].Data) != 3 {
		t.Fatalf("Segments(bin) = %+v, %v", segs, err)
	}
	if _, err := Segments("app.bin", "bin", 0, nil); err == nil {
		t.Errorf("Segments(empty) = nil error, want one")
	}
	if _, err := Segments("app.elf", "elf", 0, []byte{1}); err == nil {
		t.Errorf("Segments(elf) = nil error, want an unsupported-format error")
	}
}

func TestDiskImages(t *testing.T) {
	raw := bytes.Repeat([]byte("disk image block "), 4096)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	var xzb bytes.Buffer
	xw, err := xz.NewWriter(&xzb)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(raw)
	xw.Close()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := enc.EncodeAll(raw, nil)
	for _, c := range []struct {
		format string
		data   []byte
		ok     bool
	}{
		{"img", raw, true},
		{"img.gz", gz.Bytes(), true},
		{"img.xz", xzb.Bytes(), true},
		{"img.zst", zst, true},
		{"img.gz", gz.Bytes()[:gz.Len()/2], false},
		{"img.xz", raw, false},
		{"img.zst", zst[:len(zst)-8], false},
	} {
		segs, err := Segments("card", c.format, 0, c.data)
		switch {
		case c.ok && (err != nil || len(segs) != 1 || !bytes.Equal(segs[0].Data, raw)):
			t.Errorf("Segments(%s) = %d segments, %v; want the raw image", c.format, len(segs), err)
		case !c.ok && err == nil:
			t.Errorf("Segments(%s) of a damaged file = nil error, want one", c.format)
		}
	}
}
