package image

import "testing"

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
