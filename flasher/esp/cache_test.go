package esp

import (
	"bytes"
	"compress/zlib"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// image returns n bytes that compress about as an application image does:
// code-like bytes, zero runs and 0xFF padding.
func image(n int) []byte {
	rnd := rand.New(rand.NewPCG(42, 7))
	b := make([]byte, 0, n)
	for len(b) < n {
		switch rnd.IntN(10) {
		case 0:
			b = append(b, bytes.Repeat([]byte{0xFF}, rnd.IntN(256))...)
		case 1:
			b = append(b, make([]byte, rnd.IntN(64))...)
		default:
			for range rnd.IntN(64) {
				b = append(b, byte(rnd.IntN(48)))
			}
		}
	}
	return b[:n]
}

func TestCompressRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"one byte", []byte{7}},
		{"erased", bytes.Repeat([]byte{0xFF}, 1<<20)},
		{"image", image(300_000)},
		{"random", func() []byte {
			r := rand.NewChaCha8([32]byte{1})
			b := make([]byte, 50_000)
			r.Read(b)
			return b
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compress(tt.data)
			if err != nil {
				t.Fatalf("compress() = %v", err)
			}
			zr, err := zlib.NewReader(bytes.NewReader(c.data))
			if err != nil {
				t.Fatalf("zlib.NewReader(compress()) = %v", err)
			}
			back, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(back, tt.data) {
				t.Fatalf("inflate(compress(%d bytes)) = %d bytes, %v", len(tt.data), len(back), err)
			}
			if len(c.ends) != c.blocks() || c.ends[len(c.ends)-1] != len(tt.data) {
				t.Fatalf("ends = %d entries ending %d, want %d ending %d", len(c.ends), c.ends[len(c.ends)-1], c.blocks(), len(tt.data))
			}
			for i := 1; i < len(c.ends); i++ {
				if c.ends[i] < c.ends[i-1] {
					t.Fatalf("ends[%d] = %d < ends[%d] = %d", i, c.ends[i], i-1, c.ends[i-1])
				}
			}
		})
	}
}

// TestBlockTimeouts checks that a block that inflates to a lot gets a
// longer wait, as esptool's per-block timeout does.
func TestBlockTimeouts(t *testing.T) {
	c, err := compress(bytes.Repeat([]byte{0xFF}, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	if got := timeoutPerMB(eraseWritePerMB, c.ends[0]); got <= defaultTimeout {
		t.Errorf("timeout for a block inflating to %d bytes = %v, want more than %v", c.ends[0], got, defaultTimeout)
	}
	tests := []struct {
		perMB float64
		size  int
		want  time.Duration
	}{
		{40, 0, defaultTimeout},
		{40, 1024, defaultTimeout},
		{40, 1_000_000, 40 * time.Second},
		{8, 4_000_000, 32 * time.Second},
		{40, 16 << 20, maxTimeout},
	}
	for _, tt := range tests {
		if got := timeoutPerMB(tt.perMB, tt.size); got != tt.want {
			t.Errorf("timeoutPerMB(%v, %d) = %v, want %v", tt.perMB, tt.size, got, tt.want)
		}
	}
}

func TestCacheConcurrent(t *testing.T) {
	var c Cache
	data := image(200_000)
	var wg sync.WaitGroup
	results := make([]*compressed, 8)
	for i := range results {
		wg.Go(func() {
			z, err := c.get(bytes.Clone(data))
			if err != nil {
				t.Errorf("get() = %v", err)
			}
			results[i] = z
		})
	}
	wg.Wait()
	if n := c.Compressions(); n != 1 {
		t.Errorf("Compressions() = %d after 8 concurrent gets of one segment, want 1", n)
	}
	for i, z := range results {
		if z != results[0] {
			t.Errorf("get() %d returned another result", i)
		}
	}
}

func TestCacheEvicts(t *testing.T) {
	c := Cache{Max: 2}
	a, b, d := []byte{1}, []byte{2}, []byte{3}
	for _, s := range [][]byte{a, b, a, d, a, b} {
		if _, err := c.get(s); err != nil {
			t.Fatal(err)
		}
	}
	// a, b compressed; a hit; d evicts b; a hit; b again.
	if n := c.Compressions(); n != 4 {
		t.Errorf("Compressions() = %d, want 4", n)
	}
}

func BenchmarkCompress(b *testing.B) {
	data := image(1 << 20)
	b.SetBytes(int64(len(data)))
	var size int
	for b.Loop() {
		c, err := compress(data)
		if err != nil {
			b.Fatal(err)
		}
		size = len(c.data)
	}
	b.ReportMetric(float64(size)/float64(len(data)), "ratio")
}
