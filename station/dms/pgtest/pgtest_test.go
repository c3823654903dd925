package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestNewDatabase: each test gets its own empty database on a running
// server, which takes connections and keeps what is written.
func TestNewDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase twice = %s both times, want two databases", a)
	}
	for _, url := range []string{a, b} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connect %s: %v", url, err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d tables, %v; want an empty database", url, n, err)
		}
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE x (v TEXT); INSERT INTO x VALUES ('kept')"); err != nil {
		t.Fatalf("write to %s: %v", a, err)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM x").Scan(&v); err != nil || v != "kept" {
		t.Errorf("SELECT v FROM x = %q, %v; want kept", v, err)
	}
}
