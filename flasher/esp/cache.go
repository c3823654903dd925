package esp

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// blockSize is the data size of one FLASH_DATA or FLASH_DEFL_DATA packet
// the ROM loader takes (esptool loader.py FLASH_WRITE_SIZE = 0x400 for
// the ROM; only the stub takes 0x4000).
const blockSize = 0x400

// DefaultCacheEntries is how many compressed segments a zero Cache keeps.
const DefaultCacheEntries = 16

// Cache keeps compressed segments keyed by their content, so that a
// station flashing one image into many devices compresses each segment
// once, whichever backend asks first. Its zero value is ready, and it is
// safe for concurrent use: a backend asking for a segment that another is
// compressing waits for that result.
type Cache struct {
	// Max is the number of segments kept; 0 means DefaultCacheEntries.
	// The least recently used segment goes first.
	Max int

	mu           sync.Mutex
	entries      map[[sha256.Size]byte]*cacheEntry
	order        [][sha256.Size]byte // least recently used first
	compressions atomic.Int64
}

type cacheEntry struct {
	once sync.Once
	c    *compressed
	err  error
}

// compressed is a segment in zlib form, cut into ROM blocks.
type compressed struct {
	data []byte
	// ends[i] is how many bytes of the segment the ROM has inflated once
	// it has received blocks 0..i; the per-block write timeout and the
	// progress are scaled by it.
	ends []int
}

// blocks returns the number of FLASH_DEFL_DATA blocks.
func (c *compressed) blocks() int { return (len(c.data) + blockSize - 1) / blockSize }

// Compressions returns how many segments the cache has compressed since
// it was made.
func (c *Cache) Compressions() int64 { return c.compressions.Load() }

// get returns data compressed, compressing it only if no backend has.
func (c *Cache) get(data []byte) (*compressed, error) {
	key := sha256.Sum256(data)
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[[sha256.Size]byte]*cacheEntry{}
	}
	e, ok := c.entries[key]
	if ok {
		i := slices.Index(c.order, key)
		c.order = append(slices.Delete(c.order, i, i+1), key)
	} else {
		e = &cacheEntry{}
		c.entries[key] = e
		c.order = append(c.order, key)
		max := c.Max
		if max <= 0 {
			max = DefaultCacheEntries
		}
		for len(c.order) > max {
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.mu.Unlock()
	e.once.Do(func() {
		c.compressions.Add(1)
		e.c, e.err = compress(data)
	})
	return e.c, e.err
}

// compress deflates data in zlib form (RFC 1950) at the best level, as
// esptool does (zlib.compress(image, 9)), and records how far the ROM
// will have inflated after each block.
func compress(data []byte) (*compressed, error) {
	var buf bytes.Buffer
	buf.Grow(len(data) / 2)
	zw, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	c := &compressed{data: buf.Bytes()}
	ends, err := inflateEnds(c.data, c.blocks(), len(data))
	if err != nil {
		return nil, err
	}
	c.ends = ends
	return c, nil
}

// inflateEnds inflates z and notes, for each block of z, how much output
// exists once the inflater has consumed that block: what esptool learns
// by feeding each block to a zlib.decompressobj.
func inflateEnds(z []byte, blocks, size int) ([]int, error) {
	src := &countingReader{b: z}
	zr, err := zlib.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("check compressed data: %w", err)
	}
	ends := make([]int, blocks)
	out := make([]byte, 1024)
	total, next := 0, 0
	for {
		n, err := zr.Read(out)
		total += n
		for next < blocks && src.off >= (next+1)*blockSize {
			ends[next] = total
			next++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("check compressed data: %w", err)
		}
	}
	if total != size {
		return nil, fmt.Errorf("check compressed data: inflates to %d bytes, want %d", total, size)
	}
	for ; next < blocks; next++ {
		ends[next] = total
	}
	return ends, nil
}

// countingReader is a byte reader over b that counts what was taken, so
// the inflater reads exactly what it needs (flate reads byte-wise from an
// io.ByteReader).
type countingReader struct {
	b   []byte
	off int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *countingReader) ReadByte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	r.off++
	return r.b[r.off-1], nil
}
