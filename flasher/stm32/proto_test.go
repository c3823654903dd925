package stm32

import (
	"bytes"
	"testing"
)

func TestFrames(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"address", AddressFrame(0x08000000), []byte{0x08, 0, 0, 0, 0x08}},
		{"address uid f4", AddressFrame(0x1FFF7A10), []byte{0x1F, 0xFF, 0x7A, 0x10, 0x1F ^ 0xFF ^ 0x7A ^ 0x10}},
		{"write padded", WriteFrame([]byte{1, 2, 3, 4, 5}), []byte{7, 1, 2, 3, 4, 5, 0xFF, 0xFF, 0xFF, 7 ^ 1 ^ 2 ^ 3 ^ 4 ^ 5 ^ 0xFF ^ 0xFF ^ 0xFF}},
		{"extended erase", ExtendedEraseFrame([]uint16{0, 1, 0x102}), []byte{0, 2, 0, 0, 0, 1, 1, 2, 2 ^ 1 ^ 1 ^ 2}},
		{"erase", EraseFrame([]uint16{3, 4}), []byte{1, 3, 4, 1 ^ 3 ^ 4}},
	}
	for _, tc := range cases {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s = % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestCRC(t *testing.T) {
	cases := []struct {
		data []byte
		want uint32
	}{
		// The STM32 CRC unit fed the word 0x12345678 (reference manuals'
		// CRC chapter example; bytes little-endian in memory).
		{[]byte{0x78, 0x56, 0x34, 0x12}, 0xDF8A8A2B},
		{nil, 0xFFFFFFFF},
		// A short tail is padded with 0xFF, as erased flash after it.
		{[]byte{0x78, 0x56}, CRC([]byte{0x78, 0x56, 0xFF, 0xFF})},
	}
	for _, tc := range cases {
		if got := CRC(tc.data); got != tc.want {
			t.Errorf("CRC(% x) = %#08x, want %#08x", tc.data, got, tc.want)
		}
	}
}

func TestPagesCovering(t *testing.T) {
	f4, _ := familyByKey("f4")
	f1, _ := familyByKey("0x410")
	cases := []struct {
		fam      *Family
		from, to uint32
		want     []int
	}{
		{f1, 0x08000000, 0x08000001, []int{0}},
		{f1, 0x080003FF, 0x08000801, []int{0, 1, 2}},
		{f4, 0x08000000, 0x08014006, []int{0, 1, 2, 3, 4}},
		{f4, 0x08020000, 0x08020004, []int{5}},
	}
	for _, tc := range cases {
		var got []int
		for _, p := range tc.fam.pagesCovering(tc.fam.FlashSize, tc.from, tc.to) {
			got = append(got, p.index)
		}
		if !equalInts(got, tc.want) {
			t.Errorf("%s.pagesCovering(%#x, %#x) = %v, want %v", tc.fam.Key, tc.from, tc.to, got, tc.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
