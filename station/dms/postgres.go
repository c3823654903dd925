package dms

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL: one pool for reads and writes, READ COMMITTED, and rows
// locked with SELECT ... FOR UPDATE before they are changed.
//
// Why claims stay exact. Every write transaction that reads a row it is
// about to change locks it first (tx.forUpdate): the product, the token,
// the purchase order, the device. Counters move with conditional UPDATEs
// (claims_used < max_claims, serials + 1 ... RETURNING), which PostgreSQL
// re-checks against the newest committed row after waiting for its lock.
// What no lock covers is a row that does not exist yet: two transactions
// that both find no device X and both insert it (the same new hardware id
// claimed at once for two products). The second fails with a unique
// violation; update then runs the whole transaction again, which now sees
// the device and applies the rules to it. Serialization failures and
// deadlocks are retried the same way. A unique violation the Service
// expects (a taken product code) is turned into ErrExists by tx.unique
// before it reaches update, and is not retried.

// postgresConns bounds the pool.
const postgresConns = 16

// migrationLock is the key of the session-level advisory lock held while
// migrations run, so that DMS processes starting together take turns.
// Any constant works as long as nothing else on the database uses it.
const migrationLock int64 = 0x53_54_41_44_4d_53_01 // "STADMS" 1

// updateAttempts bounds how often update runs a transaction that
// PostgreSQL aborted for a reason another attempt can get past.
const updateAttempts = 10

// postgresDialect is PostgreSQL through pgx.
var postgresDialect = dialect{
	name:          "postgres",
	driver:        "pgx",
	migrations:    "migrations/postgres",
	rebind:        func(q string) string { return q },
	forUpdate:     " FOR UPDATE",
	isUnique:      func(err error) bool { return pgCode(err) == "23505" },
	retryable:     pgRetryable,
	viewIsolation: sql.LevelRepeatableRead,
}

// pgCode returns the SQLSTATE of a PostgreSQL error in err's chain, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// pgRetryable reports whether the transaction that failed with err may
// succeed if run again: serialization failure, deadlock, or a unique
// violation from two transactions inserting the same new row.
func pgRetryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01", "23505":
		return true
	}
	return false
}

// Open opens the DMS database named by dsn: "sqlite:PATH" for a SQLite
// file, "postgres://user@host/db" (or "postgresql://...") for PostgreSQL.
// opts apply to a SQLite file (OpenSQLite).
func Open(ctx context.Context, dsn string, opts ...OpenOption) (*Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), opts...)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn)
	}
	// dsn is not echoed: a mistyped PostgreSQL URL may hold a password.
	return nil, errors.New(`open dms database: the database must be given as "sqlite:PATH" or "postgres://USER@HOST:PORT/DATABASE"`)
}

// OpenPostgres connects to the PostgreSQL database at rawURL
// ("postgres://user:password@host:port/db?sslmode=..."), which must
// exist, and brings its schema up to date. Several DMS processes may
// share the database. The password never appears in errors or in Path.
func OpenPostgres(ctx context.Context, rawURL string) (*Store, error) {
	safe, err := redactURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx's message quotes the URL; only its redacted form is shown.
		return nil, fmt.Errorf("open dms database %s: the address is not a valid PostgreSQL URL: check its host, port and parameters", safe)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresConns)
	db.SetMaxIdleConns(postgresConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{d: &postgresDialect, write: db, read: db, path: safe}
	if err := s.openPostgres(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open dms database %s: %w", safe, err), s.Close())
	}
	return s, nil
}

func (s *Store) openPostgres(ctx context.Context) (err error) {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("connect (is the server running and the database created?): %w", err)
	}
	// The advisory lock belongs to one session: hold one connection for
	// the whole migration, while the migrations run on others.
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("wait for other DMS processes to finish migrating: %w", err)
	}
	defer func() {
		// A fresh context: the lock must go even if ctx is done.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, "SELECT pg_advisory_unlock($1)", migrationLock); uerr != nil {
			// Closing the session releases it anyway; make sure it closes.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("release migration lock: %w", uerr))
		}
	}()
	return s.migrate(ctx)
}

// redactURL returns rawURL without its password, for messages and Path.
func redactURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("open dms database: the PostgreSQL address is not a valid URL: check it")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.User(u.User.Username())
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}
