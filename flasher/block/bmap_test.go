package block

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// bmapXML builds a bmap 2.0 file with a correct BmapFileChecksum.
func bmapXML(size, blocks, mapped int, ranges string) string {
	s := `<?xml version="1.0" ?>
<bmap version="2.0">
    <ImageSize> ` + itoa(size) + ` </ImageSize>
    <BlockSize> 4096 </BlockSize>
    <BlocksCount> ` + itoa(blocks) + ` </BlocksCount>
    <MappedBlocksCount> ` + itoa(mapped) + ` </MappedBlocksCount>
    <ChecksumType> sha256 </ChecksumType>
    <BmapFileChecksum> ` + strings.Repeat("0", 64) + ` </BmapFileChecksum>
    <BlockMap>
` + ranges + `
    </BlockMap>
</bmap>
`
	h := sha256.Sum256([]byte(s))
	return strings.Replace(s, strings.Repeat("0", 64), hex.EncodeToString(h[:]), 1)
}

func itoa(i int) string { return strconv.Itoa(i) }

const sumA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParseBmap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		xml     string
		wantErr string
		ranges  []Range
		mapped  int64
	}{
		{
			name:   "v2 ranges and single blocks",
			xml:    bmapXML(10*4096-100, 10, 4, `<Range chksum="`+sumA+`"> 0-1 </Range><Range chksum="`+sumA+`"> 5 </Range><Range chksum="`+sumA+`"> 9 </Range>`),
			ranges: []Range{{0, 1, sumA}, {5, 5, sumA}, {9, 9, sumA}},
			mapped: 3*4096 + 4096 - 100,
		},
		{
			name: "v1.4 sha1 attributes",
			xml: `<bmap version="1.4"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlocksCount>2</BlocksCount>
<MappedBlocksCount>1</MappedBlocksCount><BlockMap><Range sha1="da39a3ee5e6b4b0d3255bfef95601890afd80709">1</Range></BlockMap></bmap>`,
			ranges: []Range{{1, 1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"}},
			mapped: 4096,
		},
		{name: "file checksum wrong", xml: strings.Replace(bmapXML(8192, 2, 1, `<Range>1</Range>`), "<Range>1", "<Range>0", 1), wantErr: "bmap file checksum"},
		{name: "mapped count wrong", xml: bmapXML(8192, 2, 2, `<Range>1</Range>`), wantErr: "MappedBlocksCount"},
		{name: "overlap", xml: bmapXML(4*4096, 4, 4, `<Range>0-2</Range><Range>2</Range>`), wantErr: "overlaps"},
		{name: "past end", xml: bmapXML(4*4096, 4, 1, `<Range>4</Range>`), wantErr: "past block"},
		{name: "reversed", xml: bmapXML(4*4096, 4, 1, `<Range>3-1</Range>`), wantErr: "invalid"},
		{name: "blocks count", xml: bmapXML(4*4096, 5, 0, ``), wantErr: "blocks but an image"},
		{name: "version 3", xml: `<bmap version="3.0"></bmap>`, wantErr: "not supported"},
		{name: "not xml", xml: `hello`, wantErr: "parse bmap XML"},
		{name: "bad hex", xml: bmapXML(8192, 2, 1, `<Range chksum="zz">1</Range>`), wantErr: "not hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bm, err := ParseBmap(strings.NewReader(tc.xml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(bm.Ranges) != len(tc.ranges) {
				t.Fatalf("ranges %+v, want %+v", bm.Ranges, tc.ranges)
			}
			for i := range tc.ranges {
				if bm.Ranges[i] != tc.ranges[i] {
					t.Errorf("range %d %+v, want %+v", i, bm.Ranges[i], tc.ranges[i])
				}
			}
			if bm.MappedBytes() != tc.mapped {
				t.Errorf("mapped bytes %d, want %d", bm.MappedBytes(), tc.mapped)
			}
		})
	}
}

func FuzzParseBmap(f *testing.F) {
	f.Add(bmapXML(10*4096, 10, 3, `<Range>0-1</Range><Range>7</Range>`))
	f.Add(`<bmap version="1.2"><ImageSize>1</ImageSize><BlockSize>1</BlockSize><BlocksCount>1</BlocksCount><MappedBlocksCount>1</MappedBlocksCount><BlockMap><Range>0</Range></BlockMap></bmap>`)
	f.Fuzz(func(t *testing.T, s string) {
		bm, err := ParseBmap(strings.NewReader(s))
		if err != nil {
			return
		}
		var next int64
		for _, r := range bm.Ranges {
			off, n := bm.Span(r)
			if r.First < next || n <= 0 || off+n > bm.ImageSize {
				t.Fatalf("accepted bad range %+v in %+v", r, bm)
			}
			next = r.Last + 1
		}
	})
}
