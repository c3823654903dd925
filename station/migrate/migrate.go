// Package migrate applies a program's embedded SQL migrations in order,
// each in its own write transaction. The journal and the DMS store use it;
// they differ only in where they keep the schema version, which a Tracker
// hides.
//
// Files are named NNNN_name.sql: file NNNN takes the schema to version
// NNNN. Versions start at 1 and have no gaps.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Tracker keeps the schema version.
type Tracker interface {
	// Init prepares what the tracker needs (a table), outside any
	// migration's transaction.
	Init(ctx context.Context, db *sql.DB) error
	// Version returns the schema's version inside a migration's
	// transaction; 0 for a new database.
	Version(ctx context.Context, tx *sql.Tx) (int, error)
	// Record sets the version after migration name was applied.
	Record(ctx context.Context, tx *sql.Tx, v int, name string) error
}

// Run applies the migrations in dir of files that the database has not
// seen. The version is read inside each migration's write transaction, so
// two processes opening the same new database do not both apply it. A
// database newer than the newest migration is refused.
func Run(ctx context.Context, db *sql.DB, files fs.FS, dir string, t Tracker, logger *slog.Logger) error {
	if err := t.Init(ctx, db); err != nil {
		return fmt.Errorf("prepare schema version: %w", err)
	}
	names, err := fs.Glob(files, path.Join(dir, "*.sql"))
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	slices.Sort(names)
	latest := 0
	for _, name := range names {
		v, err := version(name)
		if err != nil {
			return err
		}
		if v != latest+1 {
			return fmt.Errorf("migration %s: version %d follows %d", name, v, latest)
		}
		latest = v
		script, err := fs.ReadFile(files, name)
		if err != nil {
			return fmt.Errorf("read migration %s: %w", name, err)
		}
		applied, err := apply(ctx, db, t, v, path.Base(name), string(script))
		if err != nil {
			return err
		}
		if applied && logger != nil {
			logger.Info("schema migrated", "migration", path.Base(name), "version", v)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	defer tx.Rollback()
	have, err := t.Version(ctx, tx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > latest {
		return fmt.Errorf("schema version %d is newer than this program knows (%d): use a newer station", have, latest)
	}
	return nil
}

// apply runs one migration unless the schema already has it.
func apply(ctx context.Context, db *sql.DB, t Tracker, v int, name, script string) (applied bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin migration %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
				err = errors.Join(err, rerr)
			}
		}
	}()
	have, err := t.Version(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("read schema version: %w", err)
	}
	if have >= v {
		return false, tx.Commit()
	}
	if have != v-1 {
		return false, fmt.Errorf("migration %s: schema is at version %d, want %d", name, have, v-1)
	}
	if _, err := tx.ExecContext(ctx, script); err != nil {
		return false, fmt.Errorf("apply migration %s: %w", name, err)
	}
	if err := t.Record(ctx, tx, v, name); err != nil {
		return false, fmt.Errorf("record migration %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit migration %s: %w", name, err)
	}
	return true, nil
}

func version(name string) (int, error) {
	base := path.Base(name)
	num, _, ok := strings.Cut(base, "_")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v <= 0 {
		return 0, fmt.Errorf("migration %s: name must start with its version, as 0001_", base)
	}
	return v, nil
}

// UserVersion keeps the version in SQLite's PRAGMA user_version.
type UserVersion struct{}

// Init does nothing: the pragma always exists.
func (UserVersion) Init(context.Context, *sql.DB) error { return nil }

// Version reads PRAGMA user_version.
func (UserVersion) Version(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Record sets PRAGMA user_version.
func (UserVersion) Record(ctx context.Context, tx *sql.Tx, v int, _ string) error {
	// PRAGMA takes no bound parameters; v is an int parsed from a name.
	_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
	return err
}

// Table keeps the versions applied in a schema_migrations table, which
// works on any SQL database. Rebind turns $N placeholders into the
// driver's; nil keeps them.
type Table struct {
	Rebind func(query string) string
	// Now formats the time a migration was applied.
	Now func() string
}

func (t Table) q(s string) string {
	if t.Rebind != nil {
		return t.Rebind(s)
	}
	return s
}

// Init creates schema_migrations if missing.
func (t Table) Init(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name    TEXT NOT NULL,
		applied TEXT NOT NULL
	)`)
	return err
}

// Version returns the highest version applied.
func (t Table) Version(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// Record adds the migration's row.
func (t Table) Record(ctx context.Context, tx *sql.Tx, v int, name string) error {
	applied := ""
	if t.Now != nil {
		applied = t.Now()
	}
	_, err := tx.ExecContext(ctx, t.q("INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)"), v, name, applied)
	return err
}
