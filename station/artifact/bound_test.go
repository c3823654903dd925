package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/station-dev/station/jobs"
)

// endless serves zeros without a Content-Length until the client goes.
func endless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	buf := make([]byte, 32<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

// TestTooLarge fetches sources larger than the artifact's declared size,
// among them ones without end: each is refused with ErrTooLarge at the
// declared size and leaves nothing in the cache.
func TestTooLarge(t *testing.T) {
	const size = 1 << 20
	zeros := make([]byte, size)
	sum := sha256.Sum256(zeros)
	srv := httptest.NewServer(http.HandlerFunc(endless))
	defer srv.Close()
	base := t.TempDir()
	big := filepath.Join(base, "big.bin")
	if err := os.WriteFile(big, make([]byte, size+4096), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, url string }{
		{"/dev/zero", "/dev/zero"},
		{"file url of /dev/zero", "file:///dev/zero"},
		{"larger file", "big.bin"},
		{"endless download", srv.URL + "/zero.bin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cache{Dir: t.TempDir()}
			a := jobs.Artifact{Name: "app.bin", Target: "esp", Size: size, SHA256: hex.EncodeToString(sum[:]), Format: "bin", URL: tc.url}
			_, err := c.Fetch(context.Background(), a, base)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Fetch(%s) = %v, want ErrTooLarge", tc.url, err)
			}
			if ents, _ := os.ReadDir(c.Dir); len(ents) != 0 {
				t.Errorf("cache keeps %d files after the refusal, want none", len(ents))
			}
		})
	}
}

// TestBoundedBody reads bodies around the bound: exactly the size passes,
// one byte more is ErrTooLarge, and a resumed body may carry what is left.
func TestBoundedBody(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int64
		rangeFrom string
		body      int
		tooLarge  bool
	}{
		{"exact", 10, "", 10, false},
		{"short", 10, "", 4, false},
		{"one more", 10, "", 11, true},
		{"empty artifact, one byte", 0, "", 1, true},
		{"resumed rest", 10, "bytes=6-", 4, false},
		{"resumed whole", 10, "bytes=6-", 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write(make([]byte, tc.body))
			}))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			if tc.rangeFrom != "" {
				req.Header.Set("Range", tc.rangeFrom)
			}
			resp, err := boundedClient(nil, tc.size).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 64)
			n := 0
			for err == nil {
				var k int
				k, err = resp.Body.Read(buf)
				n += k
			}
			if errors.Is(err, ErrTooLarge) != tc.tooLarge {
				t.Fatalf("body of %d bytes for size %d (%s): read %d, err %v; want ErrTooLarge %v", tc.body, tc.size, tc.rangeFrom, n, err, tc.tooLarge)
			}
		})
	}
}

// TestClean removes the copies a killed process left and keeps the
// cached artifacts and the downloads kept for resuming; a copy in
// progress (the cache's lock held) keeps everything.
func TestClean(t *testing.T) {
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("x"))
	h := hex.EncodeToString(sum[:])
	files := []string{h, h + ".copy-123.part", h + ".copy-456.part", h + ".part"} // sorted
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cache{Dir: dir}
	unlock, err := lockShared(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Clean(); err != nil {
		t.Fatalf("Clean() with a copy in progress = %v", err)
	}
	if got := names(t, dir); !slices.Equal(got, files) {
		t.Errorf("Clean() with a copy in progress left %v, want all of %v", got, files)
	}
	unlock()
	if err := c.Clean(); err != nil {
		t.Fatalf("Clean() = %v", err)
	}
	if got, want := names(t, dir), []string{h, h + ".part"}; !slices.Equal(got, want) {
		t.Errorf("Clean() left %v, want %v", got, want)
	}
	if err := (&Cache{Dir: filepath.Join(dir, "missing")}).Clean(); err != nil {
		t.Errorf("Clean() of a cache not made yet = %v, want nil", err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}
