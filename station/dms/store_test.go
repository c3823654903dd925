package dms

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/station-dev/station/jobs"
)

func TestNumberedParams(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT a FROM t WHERE id = $1", "SELECT a FROM t WHERE id = ?1"},
		{"UPDATE t SET a = $2 WHERE id = $1", "UPDATE t SET a = ?2 WHERE id = ?1"},
		{"SELECT '$1' || $1", "SELECT '$1' || ?1"},
		{`SELECT "$2" FROM t WHERE a = $12`, `SELECT "$2" FROM t WHERE a = ?12`},
		{"SELECT $ FROM t", "SELECT $ FROM t"},
	}
	for _, tt := range tests {
		if got := numberedParams(tt.in); got != tt.want {
			t.Errorf("numberedParams(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestPlaceholderOrder checks on the real driver that $N binds argument
// N wherever it first appears in the query.
func TestPlaceholderOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		var got string
		err := s.Store.view(ctx, func(t *tx) error {
			// The casts tell PostgreSQL the parameters' type.
			return t.queryRow(ctx, "SELECT CAST($2 AS TEXT) || CAST($1 AS TEXT) || CAST($2 AS TEXT)", "a", "b").Scan(&got)
		})
		if err != nil || got != "bab" {
			t.Errorf("SELECT $2 || $1 || $2 with (a, b) = %q, %v; want bab", got, err)
		}
	})
}

// TestReopen: migrations run once, and what was stored is there after
// the store is closed and opened again.
func TestReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		if b.name == "sqlite" {
			// The folder is created too.
			dsn = "sqlite:" + filepath.Join(t.TempDir(), "sub", "dms.db")
		}
		for i := range 3 {
			st, err := Open(ctx, dsn)
			if err != nil {
				t.Fatalf("Open(%s) #%d = %v", dsn, i, err)
			}
			s := &Service{Store: st}
			if i == 0 {
				addProduct(t, s, "P", jobs.StageProduction)
			}
			// Each migration is applied once, however often the file is
			// opened.
			want, err := fs.Glob(migrations, st.d.migrations+"/*.sql")
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := st.view(ctx, func(t *tx) error {
				return t.queryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n)
			}); err != nil || n != len(want) {
				t.Errorf("open #%d: schema_migrations has %d rows, %v; want %d", i, n, err, len(want))
			}
			if p, err := s.Product(ctx, "P"); err != nil || p.Stage != jobs.StageProduction {
				t.Errorf("open #%d: Product(P) = %+v, %v; want the production product", i, p, err)
			}
			if err := st.Close(); err != nil {
				t.Errorf("Close #%d = %v", i, err)
			}
		}
	})
}

// TestConcurrentOpen: DMS processes that start together on a new
// database take turns to migrate it; each migration is applied once.
func TestConcurrentOpen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		const n = 6
		stores := make([]*Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { stores[i], errs[i] = Open(ctx, dsn) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Open #%d of %d at once = %v", i, n, errs[i])
			}
			defer stores[i].Close()
		}
		want, err := fs.Glob(migrations, stores[0].d.migrations+"/*.sql")
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := stores[0].view(ctx, func(t *tx) error {
			return t.queryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&got)
		}); err != nil || got != len(want) {
			t.Errorf("schema_migrations has %d rows, %v; want %d", got, err, len(want))
		}
	})
}

// TestOpen: Open picks the database from the address, and refuses one
// it does not know without repeating it (it may hold a password).
func TestOpen(t *testing.T) {
	ctx := context.Background()
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "dms.db")
		st := openStore(t, "sqlite:"+path)
		if st.d.name != "sqlite" || st.Path() != path {
			t.Errorf("Open(sqlite:%s) = %s store at %s, want sqlite at %s", path, st.d.name, st.Path(), path)
		}
	})
	for _, dsn := range []string{"mysql://u:hunter2@h/db", "/var/lib/dms.db", "postgress://u:hunter2@h/db", ""} {
		t.Run(dsn, func(t *testing.T) {
			_, err := Open(ctx, dsn)
			if err == nil || !strings.Contains(err.Error(), "sqlite:PATH") || !strings.Contains(err.Error(), "postgres://") {
				t.Errorf("Open(%q) = %v, want an error naming both forms", dsn, err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open(%q) = %v: the error holds the password", dsn, err)
			}
		})
	}
}

// TestRedactURL: a PostgreSQL store's Path and errors never hold the
// password, given in the URL or as a parameter.
func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://dms:hunter2@db.example:5432/dms?sslmode=require", "postgres://dms@db.example:5432/dms?sslmode=require"},
		{"postgresql://dms@db/dms", "postgresql://dms@db/dms"},
		{"postgres://db/dms?password=hunter2&sslmode=disable", "postgres://db/dms?sslmode=disable"},
	}
	for _, tt := range tests {
		if got, err := redactURL(tt.in); err != nil || got != tt.want {
			t.Errorf("redactURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// A server that is not there: the error names it, not the password.
	_, err := OpenPostgres(context.Background(), "postgres://dms:hunter2@127.0.0.1:1/dms?sslmode=disable&connect_timeout=5")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("OpenPostgres(no server) = %v, want an error naming the server without the password", err)
	}
}

// TestSchemaGuards: the database itself refuses what the rules forbid,
// should a statement ever get past the Service.
func TestSchemaGuards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		claimOne(t, s, "P", 1)
		tests := []struct {
			name string
			sql  string
		}{
			{"production never returns to development", "UPDATE products SET stage = 'development' WHERE code = 'P'"},
			{"a product with devices is never deleted", "DELETE FROM products WHERE code = 'P'"},
			{"a token never claims past its count", "UPDATE tokens SET claims_used = max_claims + 1"},
			{"a work order has exactly one authorization", "INSERT INTO work_orders (id, product, bundle, quantity, lock_policy, label, flasher, created) VALUES ('W', 'P', '1.0', 1, '{}', '{}', '{}', 'x')"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := s.Store.update(ctx, func(t *tx) error {
					_, err := t.exec(ctx, tt.sql)
					return err
				})
				if err == nil {
					t.Errorf("%s = nil, want the database to refuse", tt.sql)
				}
			})
		}
	})
}

// TestUniqueViolation: an insert that races past the Service's check for
// a taken id is still reported as ErrExists.
func TestUniqueViolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		if err := s.CreateCustomer(ctx, Customer{ID: "ACME", Name: "Acme"}); err != nil {
			t.Fatalf("CreateCustomer = %v", err)
		}
		err := s.Store.update(ctx, func(t *tx) error {
			return t.unique(t.insertCustomer(ctx, Customer{ID: "ACME", Name: "Acme again"}, formatTime(s.now())), "customer ACME already exists")
		})
		if !errors.Is(err, ErrExists) {
			t.Errorf("insert of a taken customer id = %v, want ErrExists", err)
		}
	})
}
