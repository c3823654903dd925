package dms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testKey keys token hashes in tests.
var testKey = []byte("test token key")

// newTestService opens a real SQLite database in a temporary folder.
func newTestService(t *testing.T) (*Service, *fakeClock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dms.db")
	st, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatalf("OpenSQLite(%s) = %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	clock := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	return &Service{Store: st, Clock: clock.Now, TokenKey: testKey}, clock
}

// image returns n bytes of firmware that differ by version.
func image(version string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ version[0]
	}
	copy(b, "firmware "+version)
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testBundle is a one-artifact bundle with its bytes.
func testBundle(version string) (jobs.Bundle, map[string][]byte) {
	data := image(version, 4096)
	return jobs.Bundle{
		Version: version, Tag: jobs.TagRelease,
		Artifacts: []jobs.Artifact{{
			Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Format: "bin",
			URL: "app-" + version + ".bin",
		}},
	}, map[string][]byte{"app.bin": data}
}

// addProduct creates a product with bundles 1.0 and 2.0.
func addProduct(t *testing.T, s *Service, code string, stage jobs.Stage) {
	t.Helper()
	ctx := context.Background()
	p := jobs.Product{Code: code, Name: "Product " + code, PartNumber: "PN-" + code, Stage: stage}
	if err := s.CreateProduct(ctx, "", p); err != nil {
		t.Fatalf("CreateProduct(%s) = %v", code, err)
	}
	for _, v := range []string{"1.0", "2.0"} {
		b, files := testBundle(v)
		if _, err := s.CreateBundle(ctx, code, b, files); err != nil {
			t.Fatalf("CreateBundle(%s, %s) = %v", code, v, err)
		}
	}
}

// addToken issues a token for product and returns its id and secret.
func addToken(t *testing.T, s *Service, product string, claims int, expiry time.Time) (string, jobs.Secret) {
	t.Helper()
	id, secret, err := s.CreateToken(context.Background(), product, claims, expiry)
	if err != nil {
		t.Fatalf("CreateToken(%s, %d) = %v", product, claims, err)
	}
	return id, secret
}

// archive sets the product's archived flag.
func archive(t *testing.T, s *Service, code string, archived bool) {
	t.Helper()
	ctx := context.Background()
	p, err := s.Product(ctx, code)
	if err != nil {
		t.Fatalf("Product(%s) = %v", code, err)
	}
	p.Archived = archived
	if err := s.UpdateProduct(ctx, p.Product); err != nil {
		t.Fatalf("UpdateProduct(%s archived=%v) = %v", code, archived, err)
	}
}

func hwID(n int) flasher.HardwareID {
	return flasher.HardwareID(fmt.Sprintf("aa:bb:cc:00:%02x:%02x", n>>8, n&0xff))
}
