package dms

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/station-dev/station/station/internal/dbfile"
	"github.com/station-dev/station/station/migrate"

	// The SQLite driver: importing it registers "sqlite3".
	_ "github.com/mattn/go-sqlite3"
)

// migrations are the schema versions, one folder per dialect. File
// NNNN_name.sql takes the schema to version NNNN; the versions applied are
// rows of schema_migrations.
//
//go:embed migrations
var migrations embed.FS

// sqliteWrite are the writer connection's pragmas, in the DSN so that the
// driver applies them to every connection it opens. WAL with
// synchronous=FULL syncs the WAL at each commit: a claim that returned
// survives a power cut. _txlock=immediate makes every transaction BEGIN
// IMMEDIATE: it takes the write lock before its first read, so a claim
// reads the token's count and writes it back with no other writer in
// between, even from another process.
const sqliteWrite = "_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000&_txlock=immediate&_foreign_keys=1"

// sqliteRead are the read pool's: read-only connections that never wait
// for a write in progress.
const sqliteRead = "mode=ro&_busy_timeout=5000&_foreign_keys=1&_query_only=1"

// readConns bounds the read pool.
const readConns = 4

// Store is the DMS's database. On SQLite: one writer connection, on which
// every write runs as one transaction after another, and a read pool. On
// PostgreSQL: one pool for both, with row locks (see postgres.go). The
// rules live in Service; Store only keeps the rows. Open one with Open,
// OpenSQLite or OpenPostgres.
type Store struct {
	d     *dialect
	write *sql.DB
	read  *sql.DB
	path  string
}

// OpenOption changes how Open and OpenSQLite open a database.
type OpenOption func(*openConfig)

// openConfig is what the OpenOptions set.
type openConfig struct {
	logger *slog.Logger
}

// WithLogger has the opening log what it changes on the way (a SQLite
// file that other users could read, made private) to logger. Without it
// nothing is logged.
func WithLogger(logger *slog.Logger) OpenOption {
	return func(c *openConfig) { c.logger = logger }
}

// OpenSQLite opens the SQLite database at path, creating it (mode 0600,
// and so its -wal and -shm files) and its folder if missing, and brings
// its schema up to date. An existing file that group or others may access
// (an older version created it 0644) is made 0600, its -wal and -shm
// files too, logged once at info level (WithLogger); when that fails (not
// run by the file's owner) a warning says so and the database opens all
// the same. The file must be on a
// local disk: WAL needs memory shared between connections.
func OpenSQLite(ctx context.Context, path string, opts ...OpenOption) (*Store, error) {
	cfg := openConfig{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("open dms database: no path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open dms database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("create dms database folder: %w", err)
	}
	// Keys' hashes, tokens' HMACs, customers: the file is the DMS's
	// alone. SQLite gives its -wal and -shm files the database's mode.
	if err := createPrivate(abs); err != nil {
		return nil, fmt.Errorf("create dms database %s: %w", abs, err)
	}
	switch changed, err := dbfile.MakePrivate(abs); {
	case err != nil:
		cfg.logger.Warn("the DMS database's files may be read by other users, and could not be made private: run chmod 600 on them as their owner",
			"path", abs, "made_private", changed, "err", err)
	case len(changed) > 0:
		cfg.logger.Info("the DMS database's files could be read by other users: made them private (0600)", "path", abs, "files", changed)
	}
	s := &Store{d: &sqliteDialect, path: abs}
	if err := s.openSQLite(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open dms database %s: %w", abs, err), s.Close())
	}
	return s, nil
}

func (s *Store) openSQLite(ctx context.Context) error {
	var err error
	s.write, err = sql.Open(s.d.driver, sqliteDSN(s.path, sqliteWrite))
	if err != nil {
		return fmt.Errorf("open writer: %w", err)
	}
	// One writer connection for the store's life: writers queue for it
	// in the pool, and their transactions run one after another.
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)
	var mode string
	if err := s.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, want wal (is the file on a local disk?)", mode)
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	s.read, err = sql.Open(s.d.driver, sqliteDSN(s.path, sqliteRead))
	if err != nil {
		return fmt.Errorf("open readers: %w", err)
	}
	s.read.SetMaxOpenConns(readConns)
	s.read.SetMaxIdleConns(readConns)
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("open readers: %w", err)
	}
	return nil
}

// sqliteDSN builds a SQLite URI for path. The driver splits the DSN at
// the first '?', and SQLite decodes %HH escapes in the path, so the
// characters that would end the path are escaped.
func sqliteDSN(path, params string) string {
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + p + "?" + params
}

// Path returns the database file's path, or for PostgreSQL its URL
// without the password.
func (s *Store) Path() string { return s.path }

// Close closes the database. A closed store cannot be used again.
func (s *Store) Close() error {
	var errs []error
	if s.read != nil {
		errs = append(errs, s.read.Close())
	}
	if s.write != nil && s.write != s.read {
		errs = append(errs, s.write.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close dms database: %w", err)
	}
	return nil
}

// migrate applies the embedded migrations the database has not seen, each
// in its own write transaction with its row in schema_migrations.
func (s *Store) migrate(ctx context.Context) error {
	return migrate.Run(ctx, s.write, migrations, s.d.migrations,
		migrate.Table{Rebind: s.d.rebind, Now: func() string { return formatTime(time.Now()) }}, nil)
}

// tx is one transaction with the store's dialect.
type tx struct {
	*sql.Tx
	d     *dialect
	write bool
}

// forUpdate is the dialect's row-lock clause in a write transaction, and
// nothing in a read-only one (where PostgreSQL refuses it).
func (t *tx) forUpdate() string {
	if t.write {
		return t.d.forUpdate
	}
	return ""
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if err := checkArgs(args); err != nil {
		return nil, err
	}
	return t.ExecContext(ctx, t.d.rebind(q), args...)
}

func (t *tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := checkArgs(args); err != nil {
		return nil, err
	}
	return t.QueryContext(ctx, t.d.rebind(q), args...)
}

// queryRow runs a query that returns at most one row. Text the stores
// cannot both keep (see checkArgs) is sought with a query that matches
// nothing, so the caller gets sql.ErrNoRows, as SQLite would answer.
func (t *tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if checkArgs(args) != nil {
		return t.QueryRowContext(ctx, "SELECT 1 WHERE 1 = 0")
	}
	return t.QueryRowContext(ctx, t.d.rebind(q), args...)
}

// errText refuses a text value that PostgreSQL cannot store (a NUL) or
// that is not UTF-8, whichever store runs: SQLite would keep both, and the
// two stores must answer alike. The rules in front of the store name the
// field; this is the net behind them.
var errText = fail(ErrInvalid, "a text value holds a NUL character or is not valid UTF-8: send UTF-8 text without NUL")

// checkArgs returns errText if a text argument holds a NUL or is not
// UTF-8.
func checkArgs(args []any) error {
	for _, a := range args {
		var s string
		switch v := a.(type) {
		case string:
			s = v
		case sql.NullString:
			s = v.String
		default:
			continue
		}
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			return errText
		}
	}
	return nil
}

// update runs fn in a write transaction (BEGIN IMMEDIATE on SQLite) and
// commits it if fn returns nil. On PostgreSQL a transaction aborted by a
// concurrent one (serialization failure, deadlock, or a unique violation
// from two transactions inserting the same new row: see postgres.go) is
// run again from the start, a few times at most, so fn must set what it
// returns on each run rather than add to it.
func (s *Store) update(ctx context.Context, fn func(*tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.run(ctx, s.write, true, nil, fn)
		if err == nil || s.d.retryable == nil || !s.d.retryable(err) || attempt == updateAttempts {
			return err
		}
		// A short, growing, random pause lets the other transaction
		// finish first.
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return errors.Join(err, context.Cause(ctx))
		case <-time.After(pause):
		}
	}
}

// view runs fn in a read-only transaction on the read pool: one
// consistent snapshot.
func (s *Store) view(ctx context.Context, fn func(*tx) error) error {
	return s.run(ctx, s.read, false, &sql.TxOptions{ReadOnly: true, Isolation: s.d.viewIsolation}, fn)
}

func (s *Store) run(ctx context.Context, db *sql.DB, write bool, opts *sql.TxOptions, fn func(*tx) error) (err error) {
	sqlTx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := sqlTx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
				err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
			}
		}
	}()
	if err := fn(&tx{Tx: sqlTx, d: s.d, write: write}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// timeLayout is how times are stored: UTC, nine fraction digits, fixed
// width, so that text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("read stored time %q: %w", s, err)
	}
	return t, nil
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(t), Valid: true}
}

func parseNullTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return parseTime(s.String)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// createPrivate creates an empty file at path with mode 0600 if there is
// none; an existing file keeps its mode (see dbfile.MakePrivate).
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}
