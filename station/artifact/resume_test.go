package artifact

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

// fileServer serves one file over real HTTP and can be told to misbehave.
type fileServer struct {
	data []byte

	cutAfter atomic.Int64 // > 0: the next GET drops the connection after this many body bytes
	noRanges atomic.Bool  // serve like a server that knows nothing of ranges
	ignore   atomic.Bool  // advertise ranges but answer every GET with the whole file
	corrupt  atomic.Bool  // flip a byte in the middle
	short    atomic.Int64 // > 0: serve only this many bytes, with a matching Content-Length
	chunked  atomic.Bool  // no Content-Length
	slow     atomic.Bool  // pace the body, so progress is seen mid-way

	mu     sync.Mutex
	ranges []string // Range header of every GET, "" when none
}

func (s *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
	}
	data := s.data
	if s.corrupt.Load() {
		data = bytes.Clone(data)
		data[len(data)/2] ^= 0xff
	}
	if n := s.short.Load(); n > 0 {
		data = data[:n]
	}
	if k := s.cutAfter.Swap(0); k > 0 && r.Method == http.MethodGet {
		w = &cutWriter{ResponseWriter: w, left: k}
	}
	if s.slow.Load() && r.Method == http.MethodGet {
		w = &slowWriter{ResponseWriter: w}
	}
	switch {
	case s.chunked.Load():
		w.Header().Set("Content-Type", "application/octet-stream")
		w.(http.Flusher).Flush() // headers out, no length: chunked
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	case s.noRanges.Load() || s.ignore.Load():
		if s.ignore.Load() {
			w.Header().Set("Accept-Ranges", "bytes")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	default:
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
}

func (s *fileServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ranges)
}

// cutWriter writes left bytes of the body, then drops the connection.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= w.left {
		w.left -= int64(len(p))
		return w.ResponseWriter.Write(p)
	}
	w.ResponseWriter.Write(p[:w.left])
	w.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

func (w *cutWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// slowWriter writes in small pieces with pauses between them.
type slowWriter struct{ http.ResponseWriter }

func (w *slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 4096)
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		w.ResponseWriter.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		p = p[k:]
	}
	return n, nil
}

func (w *slowWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

func testImage(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func startFileServer(t *testing.T, data []byte) (*fileServer, jobs.Artifact) {
	t.Helper()
	fs := &fileServer{data: data}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return fs, artifactOf("app.bin", data, srv.URL+"/v1/artifacts/app")
}

// cacheFiles lists the cache folder.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestFetchResumes(t *testing.T) {
	const size, cut = 300_000, 100_000
	tests := []struct {
		name       string
		noRanges   bool // the server knows nothing of ranges
		ignore     bool // the server says it takes ranges but does not
		wantRanges []string
	}{
		{"range request continues the part", false, false, []string{"", "bytes=100000-"}},
		{"server without ranges starts over", true, false, []string{"", ""}},
		{"server ignoring ranges starts over", false, true, []string{"", "bytes=100000-", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := testImage(size)
			fs, a := startFileServer(t, data)
			c := &Cache{Dir: t.TempDir()}
			ctx := context.Background()

			fs.cutAfter.Store(cut)
			if p, err := c.Fetch(ctx, a, ""); err == nil {
				t.Fatalf("Fetch(cut after %d bytes) = %s, nil; want an error", cut, p)
			}
			part := filepath.Join(c.Dir, a.SHA256+".part")
			fi, err := os.Stat(part)
			if err != nil || fi.Size() != cut {
				t.Fatalf("after an interrupted download, %s: %v (size %d); want %d bytes kept", part, err, sizeOf(fi), cut)
			}
			if _, err := os.Stat(filepath.Join(c.Dir, a.SHA256)); !os.IsNotExist(err) {
				t.Fatalf("an interrupted download is in the cache: %v", err)
			}

			fs.noRanges.Store(tc.noRanges)
			fs.ignore.Store(tc.ignore)
			got, err := c.Load(ctx, a, "")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Load(after interruption) = %d bytes, %v; want the %d bytes", len(got), err, size)
			}
			if r := fs.seen(); !slices.Equal(r, tc.wantRanges) {
				t.Errorf("Range headers of the GETs = %q, want %q", r, tc.wantRanges)
			}
			if names := cacheFiles(t, c.Dir); !slices.Equal(names, []string{a.SHA256}) {
				t.Errorf("cache holds %q, want only %s", names, a.SHA256)
			}
		})
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

func TestFetchCancelledKeepsPart(t *testing.T) {
	data := testImage(400_000)
	fs, a := startFileServer(t, data)
	fs.slow.Store(true)
	c := &Cache{Dir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	c.Progress = func(_ string, done, _ int64) {
		if done >= 50_000 {
			once.Do(cancel)
		}
	}
	if _, err := c.Fetch(ctx, a, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch(cancelled) = %v, want context.Canceled", err)
	}
	part := filepath.Join(c.Dir, a.SHA256+".part")
	fi, err := os.Stat(part)
	if err != nil || fi.Size() == 0 || fi.Size() >= int64(len(data)) {
		t.Fatalf("after cancel, %s: %v, size %d; want a part kept", part, err, sizeOf(fi))
	}
	kept := fi.Size()
	fs.slow.Store(false)
	c.Progress = nil
	if got, err := c.Load(context.Background(), a, ""); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load(after cancel) = %d bytes, %v; want the file", len(got), err)
	}
	if r := fs.seen(); len(r) != 2 || r[1] != "bytes="+strconv.FormatInt(kept, 10)+"-" {
		t.Errorf("Range headers = %q, want the second GET to ask from %d", r, kept)
	}
}

func TestFetchRefusesBadBytes(t *testing.T) {
	const size = 200_000
	tests := []struct {
		name    string
		setup   func(*fileServer)
		isSum   bool
		tries   int
		keepPrt bool // the part of an interrupted download stays
	}{
		{"corrupt bytes", func(s *fileServer) { s.corrupt.Store(true) }, true, 1, false},
		{"short file with matching Content-Length", func(s *fileServer) { s.short.Store(size - 100) }, true, 1, false},
		{"short file with no Content-Length", func(s *fileServer) { s.short.Store(size - 100); s.chunked.Store(true) }, true, 1, false},
		{"connection cut every time", func(s *fileServer) { s.cutAfter.Store(size / 2) }, false, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, a := startFileServer(t, testImage(size))
			tc.setup(fs)
			c := &Cache{Dir: t.TempDir()}
			_, err := c.Load(context.Background(), a, "")
			if err == nil || errors.Is(err, ErrChecksum) != tc.isSum {
				t.Fatalf("Load() = %v; want an error (checksum error: %v)", err, tc.isSum)
			}
			if tc.isSum && !bytes.Contains([]byte(err.Error()), []byte("nothing was flashed")) {
				t.Errorf("Load() = %q; want it to say nothing was flashed", err)
			}
			want := []string(nil)
			if tc.keepPrt {
				want = []string{a.SHA256 + ".part"}
			}
			if names := cacheFiles(t, c.Dir); !slices.Equal(names, want) {
				t.Errorf("cache holds %q after a refused download, want %q", names, want)
			}
		})
	}
}

func TestFetchProgress(t *testing.T) {
	data := testImage(256 * 1024)
	fs, a := startFileServer(t, data)
	fs.slow.Store(true)
	var mu sync.Mutex
	var calls [][2]int64
	c := &Cache{Dir: t.TempDir(), Progress: func(name string, done, total int64) {
		if name != a.Name {
			t.Errorf("Progress name = %q, want %q", name, a.Name)
		}
		mu.Lock()
		calls = append(calls, [2]int64{done, total})
		mu.Unlock()
	}}
	if _, err := c.Fetch(context.Background(), a, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 3 {
		t.Fatalf("Progress called %d times, want several during a paced download", len(calls))
	}
	mid := 0
	for i, c := range calls {
		if c[1] != a.Size {
			t.Errorf("call %d: total = %d, want %d", i, c[1], a.Size)
		}
		if i > 0 && c[0] < calls[i-1][0] {
			t.Errorf("call %d: done = %d after %d: progress went back", i, c[0], calls[i-1][0])
		}
		if c[0] > 0 && c[0] < a.Size {
			mid++
		}
	}
	if mid == 0 {
		t.Errorf("Progress calls %v: none mid-way", calls)
	}
	if last := calls[len(calls)-1]; last != [2]int64{a.Size, a.Size} {
		t.Errorf("last Progress call = %v, want done = total = %d", last, a.Size)
	}
	// A cached artifact is not downloaded again, and reports nothing.
	n := len(calls)
	mu.Unlock()
	_, err := c.Fetch(context.Background(), a, "")
	mu.Lock()
	if err != nil || len(calls) != n {
		t.Errorf("second Fetch = %v with %d more progress calls; want the cached file and none", err, len(calls)-n)
	}
}
