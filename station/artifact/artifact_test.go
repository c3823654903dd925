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
	"strings"
	"sync/atomic"
	"testing"

	"github.com/station-dev/station/jobs"
)

func artifactOf(name string, data []byte, url string) jobs.Artifact {
	sum := sha256.Sum256(data)
	return jobs.Artifact{Name: name, Target: "esp", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Format: "bin", URL: url}
}

func TestLoad(t *testing.T) {
	good := []byte("firmware bytes, version 2.3.1")
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/good.bin":
			w.Write(good)
		case "/corrupt.bin":
			w.Write(append([]byte("X"), good[1:]...))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "local.bin"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		a       jobs.Artifact
		wantErr string
		isSum   bool
	}{
		{"http", artifactOf("good.bin", good, srv.URL+"/good.bin"), "", false},
		{"relative file", artifactOf("local.bin", good, "local.bin"), "", false},
		{"file url", artifactOf("local.bin", good, "file://"+filepath.Join(base, "local.bin")), "", false},
		{"corrupt download", artifactOf("corrupt.bin", good, srv.URL+"/corrupt.bin"), "does not match", true},
		{"corrupt file", artifactOf("local.bin", []byte("something else"), "local.bin"), "nothing was flashed", true},
		{"missing on server", artifactOf("gone.bin", good, srv.URL+"/gone.bin"), "404", false},
		{"missing file", artifactOf("gone.bin", good, "gone.bin"), "no such file", false},
		{"bad scheme", artifactOf("x.bin", good, "ftp://host/x.bin"), "not supported", false},
		{"bad sha256", jobs.Artifact{Name: "x.bin", SHA256: "../../x", Size: 1, URL: srv.URL + "/good.bin"}, "64 lowercase hexadecimal", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cache{Dir: t.TempDir()}
			data, err := c.Load(context.Background(), tc.a, base)
			if tc.wantErr == "" {
				if err != nil || string(data) != string(good) {
					t.Fatalf("Load(%s) = %q, %v; want the file", tc.a.URL, data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, ErrChecksum) != tc.isSum {
				t.Fatalf("Load(%s) = %v; want an error saying %q (checksum error: %v)", tc.a.URL, err, tc.wantErr, tc.isSum)
			}
			if ents, _ := os.ReadDir(c.Dir); len(ents) != 0 {
				t.Errorf("cache keeps %d files after a failed fetch, want none", len(ents))
			}
		})
	}
}

func TestCacheIsKeyedByContent(t *testing.T) {
	good := []byte("image")
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(good)
	}))
	defer srv.Close()
	c := &Cache{Dir: t.TempDir()}
	// Two names, two URLs, one content: one download.
	for _, a := range []jobs.Artifact{artifactOf("a.bin", good, srv.URL+"/a.bin"), artifactOf("b.bin", good, srv.URL+"/b.bin")} {
		if _, err := c.Load(context.Background(), a, ""); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("downloads = %d, want 1 for one content", hits.Load())
	}
	// A cached file that was altered is refused and removed.
	a := artifactOf("a.bin", good, srv.URL+"/a.bin")
	p := filepath.Join(c.Dir, a.SHA256)
	if err := os.WriteFile(p, []byte("IMAGE"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(context.Background(), a, ""); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Load(altered cache) = %v, want ErrChecksum", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("altered cached file kept: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("https://user:pw@dms.example/a.bin?token=stk_x"); strings.Contains(got, "pw") || strings.Contains(got, "stk_x") {
		t.Errorf("redactURL() = %q, keeps credentials", got)
	}
}
