package journal

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/station-dev/station/station/internal/dbfile"
	"github.com/station-dev/station/station/migrate"

	// The SQLite driver: importing it registers "sqlite3".
	_ "github.com/mattn/go-sqlite3"
)

// migrations are the schema versions, applied in order by Open. File
// NNNN_name.sql takes the schema to version NNNN (PRAGMA user_version).
//
//go:embed migrations/*.sql
var migrations embed.FS

// writeParams are the writer connection's pragmas. They go in the DSN so
// that every connection the driver opens gets them, not just one pooled
// connection. WAL with synchronous=FULL syncs the WAL at each commit: a
// committed event survives a power cut. _txlock=immediate makes every
// write transaction BEGIN IMMEDIATE, so it waits busy_timeout for the
// write lock instead of failing with SQLITE_BUSY when it first writes.
const writeParams = "_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000&_txlock=immediate&_foreign_keys=1"

// readParams are the read pool's: the database opened read-only. The WAL
// mode is a property of the file, set by the writer.
const readParams = "mode=ro&_busy_timeout=5000&_foreign_keys=1&_query_only=1"

// readConns bounds the read pool.
const readConns = 8

// Journal is the station's SQLite journal. It is safe for concurrent use:
// writes are serialised on one writer connection, reads run on a separate
// read-only pool and never wait for a write in progress.
type Journal struct {
	path    string
	station string
	logger  *slog.Logger
	write   *sql.DB // exactly one connection
	read    *sql.DB // read-only pool
	insert  *sql.Stmt
	secrets redactor
	group   group
}

// Open opens the journal at path for the station stationID, creating the
// file (mode 0600, and so its -wal and -shm files) and its folder if
// missing and bringing the schema up to date. An existing file that group
// or others may access (an older version created it 0644) is made 0600,
// its -wal and -shm files too, and that is logged once at info level;
// when that fails (Open is not run by the file's owner) a warning says
// so and the journal opens all the same. A
// journal belongs to one station for life: opening it with another
// station id is an error. The file must be on a local disk (WAL needs
// shared memory between connections); Open refuses the network file
// systems it can recognise. A nil logger discards.
func Open(ctx context.Context, path, stationID string, logger *slog.Logger) (*Journal, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("open journal: no path given")
	}
	if stationID == "" {
		return nil, fmt.Errorf("open journal %s: no station id given", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create journal folder: %w", err)
	}
	if err := checkLocalDisk(dir); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", abs, err)
	}
	// The journal holds who did what on the line: the station's alone.
	// SQLite gives its -wal and -shm files the database's mode.
	if err := createPrivate(abs); err != nil {
		return nil, fmt.Errorf("create journal %s: %w", abs, err)
	}
	switch changed, err := dbfile.MakePrivate(abs); {
	case err != nil:
		logger.Warn("the journal's files may be read by other users, and could not be made private: run chmod 600 on them as their owner",
			"path", abs, "made_private", changed, "err", err)
	case len(changed) > 0:
		logger.Info("the journal's files could be read by other users: made them private (0600)", "path", abs, "files", changed)
	}
	j := &Journal{path: abs, station: stationID, logger: logger}
	if err := j.open(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open journal %s: %w", abs, err), j.Close())
	}
	logger.Debug("journal open", "path", abs, "station", stationID)
	return j, nil
}

func (j *Journal) open(ctx context.Context) error {
	var err error
	j.write, err = sql.Open("sqlite3", dsn(j.path, writeParams))
	if err != nil {
		return fmt.Errorf("open writer: %w", err)
	}
	// One writer connection, kept open for the journal's life: callers
	// queue for it, and their transactions run one after another.
	j.write.SetMaxOpenConns(1)
	j.write.SetMaxIdleConns(1)
	j.write.SetConnMaxLifetime(0)
	j.write.SetConnMaxIdleTime(0)
	var mode string
	if err := j.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, want wal (is the file on a local disk?)", mode)
	}
	if err := j.migrate(ctx); err != nil {
		return err
	}
	if err := j.claim(ctx); err != nil {
		return err
	}
	j.insert, err = j.write.PrepareContext(ctx, `INSERT INTO events
		(seq, station, time, kind, work_order, slot, device, operator, step, status, attempt, duration_ns, error, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	j.read, err = sql.Open("sqlite3", dsn(j.path, readParams))
	if err != nil {
		return fmt.Errorf("open readers: %w", err)
	}
	j.read.SetMaxOpenConns(readConns)
	j.read.SetMaxIdleConns(readConns)
	if err := j.read.PingContext(ctx); err != nil {
		return fmt.Errorf("open readers: %w", err)
	}
	return nil
}

// dsn builds a SQLite URI for path. The driver splits the DSN at the
// first '?', and SQLite decodes %HH escapes in the path, so the
// characters that would end the path are escaped.
func dsn(path, params string) string {
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + p + "?" + params
}

// migrate applies the embedded migrations the database has not seen, each
// in its own transaction with the new PRAGMA user_version.
func (j *Journal) migrate(ctx context.Context) error {
	return migrate.Run(ctx, j.write, migrations, "migrations", migrate.UserVersion{}, j.logger)
}

// claim records the station id in a new journal, or checks that an
// existing journal belongs to this station.
func (j *Journal) claim(ctx context.Context) (err error) {
	tx, err := j.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin station check: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	var have string
	err = tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'station_id'").Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('station_id', ?)", j.station); err != nil {
			return fmt.Errorf("record station id: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read station id: %w", err)
	case have != j.station:
		return fmt.Errorf("journal belongs to station %q, not %q: each station keeps its own journal", have, j.station)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit station id: %w", err)
	}
	return nil
}

// ignoreDone drops the error of a rollback after the transaction already
// ended (committed, or rolled back when its context was cancelled).
func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// StationOf returns the id of the station the journal at path belongs
// to, read without opening it for writing: what a tool that reads another
// station's journal (station export) checks against. A file that is no
// journal, or a journal that names no station yet, is an error.
func StationOf(ctx context.Context, path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("read the journal's station: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("read the journal's station: %w", err)
	}
	db, err := sql.Open("sqlite3", dsn(abs, readParams))
	if err != nil {
		return "", fmt.Errorf("read the station of journal %s: %w", abs, err)
	}
	defer db.Close()
	var id string
	err = db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'station_id'").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) || id == "" {
		return "", fmt.Errorf("journal %s names no station yet", abs)
	}
	if err != nil {
		return "", fmt.Errorf("read the station of journal %s (is it a station journal?): %w", abs, err)
	}
	return id, nil
}

// Path returns the journal file's absolute path.
func (j *Journal) Path() string { return j.path }

// StationID returns the id of the station the journal belongs to.
func (j *Journal) StationID() string { return j.station }

// IntegrityCheck runs SQLite's PRAGMA integrity_check and returns an
// error listing the problems unless the database is sound.
func (j *Journal) IntegrityCheck(ctx context.Context) error {
	problems, err := j.integrity(ctx)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("check journal integrity: %w", err)
	}
	if err != nil {
		// Damage bad enough that the check itself stops (SQLITE_CORRUPT),
		// or a disk that fails to read.
		return fmt.Errorf("journal %s is damaged or unreadable: %w", j.path, err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	return fmt.Errorf("journal %s is damaged: %s", j.path, strings.Join(problems, "; "))
}

// integrity returns the rows of PRAGMA integrity_check: "ok", or up to
// 100 problems.
func (j *Journal) integrity(ctx context.Context) ([]string, error) {
	rows, err := j.read.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		problems = append(problems, s)
	}
	return problems, rows.Err()
}

// Close closes the journal. The last connection to close checkpoints the
// WAL into the database file.
func (j *Journal) Close() error {
	var errs []error
	if j.insert != nil {
		errs = append(errs, j.insert.Close())
	}
	if j.read != nil {
		errs = append(errs, j.read.Close())
	}
	if j.write != nil {
		errs = append(errs, j.write.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close journal %s: %w", j.path, err)
	}
	return nil
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
