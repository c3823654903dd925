package block

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression names how an image file is compressed.
type Compression string

// Compressions Source understands.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	XZ   Compression = "xz"
	Zstd Compression = "zstd"
)

// Magic numbers at the start of compressed files (RFC 1952, xz-file-format
// 2.1.1.1, RFC 8878 3.1.1).
var magics = []struct {
	c     Compression
	magic []byte
}{
	{Gzip, []byte{0x1f, 0x8b}},
	{XZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
}

// Source is a disk image file, maybe compressed, maybe with a bmap.
type Source struct {
	// Path is the image file.
	Path string
	// Compression is how the file is compressed, from its magic bytes
	// or, failing those, its extension.
	Compression Compression
	// Bmap is the image's block map, nil to write every byte.
	Bmap *Bmap
}

// OpenSource looks at the image at path, detects its compression and, if
// bmapPath is not "", parses that bmap. It checks that the compressed
// stream starts well, so a file that is not what its name says fails here,
// before any device is touched.
func OpenSource(path, bmapPath string) (Source, error) {
	src := Source{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return Source{}, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Source{}, fmt.Errorf("read image %s: %w", path, err)
	}
	src.Compression = detect(head[:n], path)
	if bmapPath != "" {
		bf, err := os.Open(bmapPath)
		if err != nil {
			return Source{}, fmt.Errorf("open bmap: %w", err)
		}
		src.Bmap, err = ParseBmap(bf)
		bf.Close()
		if err != nil {
			return Source{}, fmt.Errorf("bmap %s: %w", bmapPath, err)
		}
	}
	rc, err := src.Open()
	if err != nil {
		return Source{}, err
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1)); err != nil {
		return Source{}, fmt.Errorf("image %s (%s) is corrupt or empty: %w", path, src.Compression, err)
	}
	return src, nil
}

func detect(head []byte, path string) Compression {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return m.c
		}
	}
	switch {
	case strings.HasSuffix(path, ".gz"):
		return Gzip
	case strings.HasSuffix(path, ".xz"):
		return XZ
	case strings.HasSuffix(path, ".zst"):
		return Zstd
	}
	return None
}

// Open returns the image's decompressed bytes as a stream.
func (s Source) Open() (io.ReadCloser, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader
	closeFn := func() error { return f.Close() }
	switch s.Compression {
	case None, "":
		return &rawFile{f}, nil
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("image %s is not valid gzip: %w", s.Path, err)
		}
		r = zr
	case XZ:
		zr, err := xz.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("image %s is not valid xz: %w", s.Path, err)
		}
		r = zr
	case Zstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("image %s is not valid zstd: %w", s.Path, err)
		}
		r = zr
		closeFn = func() error { zr.Close(); return f.Close() }
	default:
		f.Close()
		return nil, fmt.Errorf("image %s: compression %q is not supported", s.Path, s.Compression)
	}
	return readCloser{r, closeFn}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (rc readCloser) Close() error { return rc.close() }

// rawFile is an uncompressed image: holes are skipped with a seek.
type rawFile struct{ *os.File }

// Skip moves n bytes on, failing if that passes the end of the file.
func (r *rawFile) Skip(n int64) (int64, error) {
	cur, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	st, err := r.Stat()
	if err != nil {
		return 0, err
	}
	if cur+n > st.Size() {
		r.Seek(0, io.SeekEnd)
		return st.Size() - cur, fmt.Errorf("it ends at byte %d, before the end of a hole at %d: the file is truncated: %w", st.Size(), cur+n, io.ErrUnexpectedEOF)
	}
	_, err = r.Seek(n, io.SeekCurrent)
	return n, err
}
