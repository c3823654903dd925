package migrate

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	_ "github.com/mattn/go-sqlite3"
)

func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRun(t *testing.T) {
	v1 := fstest.MapFS{"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")}}
	v2 := fstest.MapFS{
		"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")},
		"m/0002_b.sql": {Data: []byte("CREATE TABLE b (y INTEGER);")},
	}
	for _, tr := range []Tracker{UserVersion{}, Table{}} {
		t.Run(typeName(tr), func(t *testing.T) {
			ctx := context.Background()
			db := open(t)
			for i, files := range []fstest.MapFS{v1, v1, v2, v2} {
				if err := Run(ctx, db, files, "m", tr, nil); err != nil {
					t.Fatalf("Run #%d = %v", i, err)
				}
			}
			if _, err := db.Exec("INSERT INTO b VALUES (1)"); err != nil {
				t.Errorf("migration 2 not applied: %v", err)
			}
			// A program that knows only version 1 refuses the newer schema.
			if err := Run(ctx, db, v1, "m", tr, nil); err == nil || !strings.Contains(err.Error(), "newer than this program knows") {
				t.Errorf("Run(older program) = %v, want a refusal", err)
			}
		})
	}
}

func TestRunRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"gap", fstest.MapFS{"m/0001_a.sql": {Data: []byte("SELECT 1;")}, "m/0003_c.sql": {Data: []byte("SELECT 1;")}}, "version 3 follows 1"},
		{"bad name", fstest.MapFS{"m/first.sql": {Data: []byte("SELECT 1;")}}, "must start with its version"},
		{"bad sql", fstest.MapFS{"m/0001_a.sql": {Data: []byte("CREATE TABLEX;")}}, "apply migration 0001_a.sql"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), open(t), tc.files, "m", UserVersion{}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func typeName(tr Tracker) string {
	switch tr.(type) {
	case UserVersion:
		return "UserVersion"
	case Table:
		return "Table"
	}
	return "?"
}
