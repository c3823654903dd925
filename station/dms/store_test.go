package dms

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
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
	ctx := context.Background()
	s, _ := newTestService(t)
	var got string
	err := s.Store.view(ctx, func(t *tx) error {
		return t.queryRow(ctx, "SELECT $2 || $1 || $2", "a", "b").Scan(&got)
	})
	if err != nil || got != "bab" {
		t.Errorf("SELECT $2 || $1 || $2 with (a, b) = %q, %v; want bab", got, err)
	}
}

// TestReopen: migrations run once, and what was stored is there after
// the store is closed and opened again.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "dms.db")
	for i := range 3 {
		st, err := OpenSQLite(ctx, path)
		if err != nil {
			t.Fatalf("OpenSQLite(%s) #%d = %v", path, i, err)
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
}

// TestSchemaGuards: the database itself refuses what the rules forbid,
// should a statement ever get past the Service.
func TestSchemaGuards(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
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
}

// TestUniqueViolation: an insert that races past the Service's check for
// a taken id is still reported as ErrExists.
func TestUniqueViolation(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
	if err := s.CreateCustomer(ctx, Customer{ID: "ACME", Name: "Acme"}); err != nil {
		t.Fatalf("CreateCustomer = %v", err)
	}
	err := s.Store.update(ctx, func(t *tx) error {
		return t.unique(t.insertCustomer(ctx, Customer{ID: "ACME", Name: "Acme again"}, formatTime(s.now())), "customer ACME already exists")
	})
	if !errors.Is(err, ErrExists) {
		t.Errorf("insert of a taken customer id = %v, want ErrExists", err)
	}
}
