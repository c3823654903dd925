package block

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/station-dev/station/flasher"
)

// Defaults for Options fields left zero.
const (
	// DefaultChunkSize is the size of one write: large enough that a card
	// reader sees long sequential writes.
	DefaultChunkSize = 4 << 20
	// DefaultQueueDepth is the number of chunks each target may lag
	// behind the reader.
	DefaultQueueDepth = 8
	// DefaultStallTimeout is how long the reader waits on one target's
	// full queue before it gives the target up as hung.
	DefaultStallTimeout = 60 * time.Second
	// align is the buffer and offset alignment O_DIRECT needs.
	align = 4096
)

// Target is what MultiWrite writes to: a block device or a file, or a test
// wrapper around one.
type Target interface {
	io.WriterAt
	io.ReaderAt
	// Name names the target in messages, for example "/dev/sdb".
	Name() string
	// Size is the target's capacity in bytes.
	Size() int64
	// Discard tells the device that [off, off+n) holds nothing.
	Discard(off, n int64) error
	// Zero makes [off, off+n) read as zeros.
	Zero(off, n int64) error
	// Flush makes written data durable and drops the device's buffers.
	Flush() error
	// DropCache drops cached pages so that reads come from the device.
	DropCache() error
}

// Options tunes MultiWrite. The zero value writes every mapped byte and
// verifies nothing.
type Options struct {
	// ChunkSize is the size of one write, a multiple of 4096;
	// 0 means DefaultChunkSize.
	ChunkSize int
	// QueueDepth is the chunks a target may lag; 0 means DefaultQueueDepth.
	QueueDepth int
	// StallTimeout gives up a target whose queue stays full this long;
	// 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	// Discard discards the bmap's unmapped ranges before writing. Cards
	// need not read discarded blocks as zeros; ZeroUnmapped guarantees it.
	Discard bool
	// ZeroUnmapped writes zeros over the bmap's unmapped ranges.
	ZeroUnmapped bool
	// Verify reads every target back after the write.
	Verify bool
	// AllowFixed lets OpenTarget open a disk that is not removable.
	AllowFixed bool
	// Direct opens block devices with O_DIRECT, bypassing the page cache
	// for aligned writes and reads.
	Direct bool
	// Progress, if set, receives each target's bytes written; target is
	// the index into the targets slice. It is called from one goroutine
	// per target and must not block.
	Progress func(target int, done, total int64)
}

func (o Options) withDefaults() Options {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	o.ChunkSize = (o.ChunkSize + align - 1) / align * align
	if o.QueueDepth <= 0 {
		o.QueueDepth = DefaultQueueDepth
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	return o
}

// Result is the outcome for one target.
type Result struct {
	// Target is the target's name.
	Target string
	// Written is the number of image bytes written.
	Written int64
	// SHA256 is the hex sha256 of the whole decompressed image, computed
	// only without a bmap (whose ranges carry their own checksums).
	SHA256 string
	// Verified reports that the readback matched.
	Verified bool
	// Err is nil on success.
	Err error
	// WriteTime, FlushTime and VerifyTime measure the phases.
	WriteTime, FlushTime, VerifyTime time.Duration
}

// chunk is one aligned buffer of image data shared read-only by every
// target; the last target to finish with it returns it to the pool.
type chunk struct {
	off  int64
	data []byte
	buf  *[]byte
	refs atomic.Int32
	pool *sync.Pool
}

func (c *chunk) release() {
	if c.refs.Add(-1) == 0 && c.buf != nil {
		c.pool.Put(c.buf)
	}
}

// alignedBuf returns a slice of n bytes whose first byte is 4096-aligned.
func alignedBuf(n int) []byte {
	b := make([]byte, n+align)
	o := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1))
	if o != 0 {
		o = align - o
	}
	return b[o : o+n : o+n]
}

type worker struct {
	idx    int
	t      Target
	q      chan *chunk
	dead   chan struct{} // closed when the target failed
	fin    chan struct{} // closed when run returns
	once   sync.Once
	err    error
	done   atomic.Int64
	result Result
}

func (w *worker) fail(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.dead)
	})
}

func (w *worker) failed() bool {
	select {
	case <-w.dead:
		return true
	default:
		return false
	}
}

// MultiWrite writes src to every target, reading and decompressing the
// image once. With a bmap only mapped ranges are written, and Discard or
// ZeroUnmapped clear the rest first. A failing target is dropped while the
// others carry on; each is flushed, then verified if opts.Verify, before
// its Result is final. Results are in the order of targets.
func MultiWrite(ctx context.Context, src Source, targets []Target, opts Options) []Result {
	opts = opts.withDefaults()
	results := make([]Result, len(targets))
	total, imageSize := int64(-1), int64(-1)
	if src.Bmap != nil {
		total, imageSize = src.Bmap.MappedBytes(), src.Bmap.ImageSize
	}
	workers := make([]*worker, len(targets))
	for i, t := range targets {
		w := &worker{idx: i, t: t, q: make(chan *chunk, opts.QueueDepth), dead: make(chan struct{}), fin: make(chan struct{})}
		w.result.Target = t.Name()
		if imageSize > t.Size() {
			w.fail(fmt.Errorf("%s holds %d bytes, too small for the %d-byte image: use a larger card", t.Name(), t.Size(), imageSize))
		}
		workers[i] = w
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()

	for _, w := range workers {
		go func() {
			defer close(w.fin)
			w.run(ctx, src, total, opts)
		}()
	}
	sum, n, srcErr := feed(ctx, src, workers, opts)
	for _, w := range workers {
		close(w.q)
	}
	// Wait for the live workers only: a failed one may hang in a write
	// to a device that will never answer.
	for _, w := range workers {
		select {
		case <-w.fin:
		case <-w.dead:
		}
	}

	for i, w := range workers {
		r := w.result
		r.Written = w.done.Load()
		r.SHA256 = sum
		r.WriteTime = time.Since(start)
		switch {
		case w.err != nil:
			r.Err = w.err
		case srcErr != nil:
			r.Err = fmt.Errorf("%s: write stopped: %w", w.t.Name(), srcErr)
		}
		results[i] = r
	}
	if srcErr != nil {
		return results
	}
	// Flush and verify every surviving target in parallel.
	var wg sync.WaitGroup
	for i, w := range workers {
		if results[i].Err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if err := w.t.Flush(); err != nil {
				results[i].Err = fmt.Errorf("flush %s: %w: %w", w.t.Name(), flasher.ErrWrite, err)
				return
			}
			results[i].FlushTime = time.Since(t0)
			if !opts.Verify {
				return
			}
			t0 = time.Now()
			defer func() { results[i].VerifyTime = time.Since(t0) }()
			var err error
			if src.Bmap != nil {
				err = VerifyBmap(ctx, w.t, src.Bmap)
			} else {
				err = VerifyHash(ctx, w.t, n, sum)
			}
			results[i].Err = err
			results[i].Verified = err == nil
		}()
	}
	wg.Wait()
	return results
}

// run writes the chunks of its queue; after a failure it drains the queue
// so that buffers go back to the pool.
func (w *worker) run(ctx context.Context, src Source, total int64, opts Options) {
	if bm := src.Bmap; bm != nil && !w.failed() && (opts.Discard || opts.ZeroUnmapped) {
		next := int64(0)
		clear := func(off, n int64) {
			if n <= 0 || w.failed() {
				return
			}
			var err error
			if opts.ZeroUnmapped {
				err = w.t.Zero(off, n)
			} else {
				err = w.t.Discard(off, n)
			}
			if err != nil {
				w.fail(fmt.Errorf("clear %s at %d+%d: %w", w.t.Name(), off, n, err))
			}
		}
		for _, r := range bm.Ranges {
			off, n := bm.Span(r)
			clear(next, off-next)
			next = off + n
		}
		clear(next, bm.ImageSize-next)
	}
	for c := range w.q {
		if !w.failed() {
			if err := ctx.Err(); err != nil {
				w.fail(fmt.Errorf("%s: %w", w.t.Name(), err))
			} else if _, err := w.t.WriteAt(c.data, c.off); err != nil {
				w.fail(fmt.Errorf("write %s at offset %d: %w: %w", w.t.Name(), c.off, flasher.ErrWrite, err))
			} else {
				done := w.done.Add(int64(len(c.data)))
				if opts.Progress != nil {
					opts.Progress(w.idx, done, total)
				}
			}
		}
		c.release()
	}
}

// feed reads src once and hands each chunk to every live worker. It returns
// the sha256 of the whole decompressed image and its length.
func feed(ctx context.Context, src Source, workers []*worker, opts Options) (string, int64, error) {
	rc, err := src.Open()
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	pool := &sync.Pool{New: func() any { b := alignedBuf(opts.ChunkSize); return &b }}
	var whole hash.Hash = sha256.New()
	if src.Bmap != nil {
		whole = nopHash{} // ranges carry their own checksums
	}
	var pos int64
	timer := time.NewTimer(opts.StallTimeout)
	defer timer.Stop()

	send := func(off int64, data []byte, buf *[]byte) error {
		c := &chunk{off: off, data: data, buf: buf, pool: pool}
		c.refs.Store(1) // the reader's own reference
		for _, w := range workers {
			if w.failed() {
				continue
			}
			c.refs.Add(1)
			select {
			case w.q <- c:
				continue
			default:
			}
			timer.Reset(opts.StallTimeout)
			select {
			case w.q <- c:
			case <-w.dead:
				c.release()
			case <-timer.C:
				w.fail(fmt.Errorf("%s accepted no data for %s: the device hangs or was removed", w.t.Name(), opts.StallTimeout))
				c.release()
			case <-ctx.Done():
				c.release()
				c.release()
				return ctx.Err()
			}
		}
		c.release()
		return nil
	}
	live := func() bool {
		for _, w := range workers {
			if !w.failed() {
				return true
			}
		}
		return false
	}

	// readRange reads n bytes at the stream's position into chunks, sends
	// them, and feeds h (the range's checksum) if not nil.
	readRange := func(n int64, h hash.Hash) error {
		for n > 0 {
			if !live() {
				return errors.New("every target failed")
			}
			buf := pool.Get().(*[]byte)
			m := min(int64(len(*buf)), n)
			data := (*buf)[:m]
			k, err := io.ReadFull(rc, data)
			whole.Write(data[:k])
			if h != nil {
				h.Write(data[:k])
			}
			if err != nil {
				pool.Put(buf)
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return fmt.Errorf("read image %s: it ends at byte %d, before the %d bytes it should hold: the file is truncated: %w",
						src.Path, pos+int64(k), pos+n, io.ErrUnexpectedEOF)
				}
				return fmt.Errorf("read image %s at byte %d: %w", src.Path, pos+int64(k), err)
			}
			if err := send(pos, data, buf); err != nil {
				return err
			}
			pos += m
			n -= m
		}
		return nil
	}
	skip := func(n int64) error {
		if s, ok := rc.(skipper); ok {
			k, err := s.Skip(n)
			pos += k
			if err != nil {
				return fmt.Errorf("read image %s: %w", src.Path, err)
			}
			return nil
		}
		k, err := io.CopyN(hashDiscard{whole}, rc, n)
		pos += k
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("read image %s: it ends at byte %d, before the end of a hole at %d: the file is truncated: %w",
					src.Path, pos, pos-k+n, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read image %s at byte %d: %w", src.Path, pos, err)
		}
		return nil
	}

	if bm := src.Bmap; bm != nil {
		for _, r := range bm.Ranges {
			off, n := bm.Span(r)
			if err := skip(off - pos); err != nil {
				return "", pos, err
			}
			h := bm.NewHash()
			if r.Checksum == "" {
				h = nil
			}
			if err := readRange(n, h); err != nil {
				return "", pos, err
			}
			if h != nil {
				if got := hex.EncodeToString(h.Sum(nil)); got != r.Checksum {
					return "", pos, fmt.Errorf("image %s blocks %d-%d: %s is %s but the bmap says %s: the image or the bmap is corrupt",
						src.Path, r.First, r.Last, bm.ChecksumType, got, r.Checksum)
				}
			}
		}
		if err := skip(bm.ImageSize - pos); err != nil {
			return "", pos, err
		}
	} else {
		for {
			if !live() {
				return "", pos, errors.New("every target failed")
			}
			buf := pool.Get().(*[]byte)
			k, err := io.ReadFull(rc, *buf)
			whole.Write((*buf)[:k])
			if k > 0 {
				if err := send(pos, (*buf)[:k], buf); err != nil {
					return "", pos, err
				}
				pos += int64(k)
			} else {
				pool.Put(buf)
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return "", pos, fmt.Errorf("read image %s at byte %d: %w", src.Path, pos, err)
			}
		}
	}
	// A stream must end where the bmap says; reading on also makes the
	// decompressor check its trailer (gzip CRC, xz check).
	if k, err := io.Copy(io.Discard, rc); err != nil {
		return "", pos, fmt.Errorf("read image %s at byte %d: %w", src.Path, pos+k, err)
	} else if k > 0 {
		return "", pos, fmt.Errorf("image %s is %d bytes longer than its bmap says (%d): wrong bmap for this image", src.Path, k, pos)
	}
	if src.Bmap != nil {
		return "", pos, nil
	}
	return hex.EncodeToString(whole.Sum(nil)), pos, nil
}

// skipper is a stream that can jump over n bytes without reading them.
type skipper interface {
	Skip(n int64) (int64, error)
}

// nopHash stands in for the whole-image hash when a bmap is used.
type nopHash struct{ hash.Hash }

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }

type hashDiscard struct{ h hash.Hash }

func (d hashDiscard) Write(p []byte) (int, error) { return d.h.Write(p) }

// VerifyHash reads the first size bytes of t back and compares their sha256
// with want (hex).
func VerifyHash(ctx context.Context, t Target, size int64, want string) error {
	if err := t.DropCache(); err != nil {
		return fmt.Errorf("verify %s: drop cache: %w", t.Name(), err)
	}
	h := sha256.New()
	pieces := split(nil, 0, 0, size)
	if err := readPieces(ctx, t, pieces, func(_ piece, data []byte) error { h.Write(data); return nil }); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("verify %s: the first %d bytes hash to %s, the image to %s: %w", t.Name(), size, got, want, flasher.ErrVerify)
	}
	return nil
}

// VerifyBmap reads back every mapped range of bm from t and checks it
// against the range's checksum.
func VerifyBmap(ctx context.Context, t Target, bm *Bmap) error {
	if bm.NewHash() == nil {
		return fmt.Errorf("verify %s: the bmap has no checksums: %w", t.Name(), flasher.ErrUnsupported)
	}
	if err := t.DropCache(); err != nil {
		return fmt.Errorf("verify %s: drop cache: %w", t.Name(), err)
	}
	var pieces []piece
	for i, r := range bm.Ranges {
		if r.Checksum != "" {
			off, n := bm.Span(r)
			pieces = split(pieces, i, off, n)
		}
	}
	h := bm.NewHash()
	return readPieces(ctx, t, pieces, func(p piece, data []byte) error {
		h.Write(data)
		if !p.last {
			return nil
		}
		r := bm.Ranges[p.rng]
		got := hex.EncodeToString(h.Sum(nil))
		h.Reset()
		if got != r.Checksum {
			off, n := bm.Span(r)
			return fmt.Errorf("verify %s: blocks %d-%d (bytes %d+%d) read back with %s %s, the bmap says %s: %w",
				t.Name(), r.First, r.Last, off, n, bm.ChecksumType, got, r.Checksum, flasher.ErrVerify)
		}
		return nil
	})
}

// piece is one read of at most DefaultChunkSize bytes; last marks the
// final piece of range rng.
type piece struct {
	rng  int
	off  int64
	n    int64
	last bool
}

func split(ps []piece, rng int, off, n int64) []piece {
	for n > 0 {
		m := min(n, DefaultChunkSize)
		ps = append(ps, piece{rng: rng, off: off, n: m, last: m == n})
		off += m
		n -= m
	}
	return ps
}

// readDepth is the number of reads in flight during readback: a card
// reader or loop device reads faster with a queue than one at a time.
const readDepth = 4

// readPieces reads the pieces with readDepth reads in flight and calls fn
// with each piece's data in order.
func readPieces(ctx context.Context, t Target, pieces []piece, fn func(piece, []byte) error) error {
	type result struct {
		buf []byte
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make([]chan result, len(pieces))
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	free := make(chan []byte, readDepth)
	for range readDepth {
		free <- alignedBuf(DefaultChunkSize)
	}
	go func() {
		for i, p := range pieces {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			go func() {
				k, err := t.ReadAt(buf[:p.n], p.off)
				if int64(k) == p.n {
					err = nil
				} else if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				if err != nil {
					err = fmt.Errorf("verify %s: read at offset %d: %w", t.Name(), p.off+int64(k), err)
				}
				slots[i] <- result{buf, err}
			}()
		}
	}()
	for i, p := range pieces {
		var r result
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			return fmt.Errorf("verify %s: %w", t.Name(), ctx.Err())
		}
		if r.err != nil {
			return r.err
		}
		if err := fn(p, r.buf[:p.n]); err != nil {
			return err
		}
		free <- r.buf
	}
	return nil
}
