package dms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms/pgtest"
	"github.com/station-dev/station/station/internal/testkit"
)

// testKey keys token hashes in tests.
var testKey = []byte("test token key")

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend is a database the store runs on. Every test that uses the
// store runs once per backend, as subtests .../sqlite and .../postgres.
type backend struct {
	name string
	// dsn returns the address, for Open, of a new empty database that
	// lives as long as t.
	dsn func(t testing.TB) string
}

// backends are SQLite in a temporary folder and a fresh database on the
// test binary's throwaway PostgreSQL cluster (see pgtest).
var backends = []backend{
	{"sqlite", func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "dms.db") }},
	{"postgres", func(t testing.TB) string { return pgtest.NewDatabase(t) }},
}

// forEachBackend runs fn as one subtest per backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// openStore opens the database dsn, closed when t ends.
func openStore(t testing.TB, dsn string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dsn, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newTestService opens a new database on backend b.
func newTestService(t *testing.T, b backend) (*Service, *testkit.Clock) {
	t.Helper()
	st := openStore(t, b.dsn(t))
	clock := testkit.NewClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	return &Service{Store: st, Clock: clock.Now, TokenKey: testKey}, clock
}

// storedBytes returns everything the store has written, by where it is:
// for SQLite the raw bytes of the database file, its WAL and shared
// memory; for PostgreSQL the text of every row of every table, read over
// a new connection (the store may be closed).
func storedBytes(t *testing.T, st *Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if st.d.name == sqliteDialect.name {
		for _, f := range []string{st.Path(), st.Path() + "-wal", st.Path() + "-shm"} {
			raw, err := os.ReadFile(f)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				t.Fatalf("read %s: %v", f, err)
			}
			out[f] = raw
		}
		return out
	}
	ctx := context.Background()
	// The test databases have no password: Path is their whole URL.
	conn, err := pgx.Connect(ctx, st.Path())
	if err != nil {
		t.Fatalf("connect to %s: %v", st.Path(), err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		var text string
		q := "SELECT coalesce(string_agg(CAST(x AS TEXT), E'\\n'), '') FROM " + pgx.Identifier{tbl}.Sanitize() + " x"
		if err := conn.QueryRow(ctx, q).Scan(&text); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out["table "+tbl] = []byte(text)
	}
	return out
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
func addProduct(t testing.TB, s *Service, code string, stage jobs.Stage) {
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
func addToken(t testing.TB, s *Service, product string, claims int, expiry time.Time) (string, jobs.Secret) {
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
