package dms

import (
	"database/sql"
	"errors"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// dialect holds everything that differs between the SQL databases the
// store runs on. The queries themselves are written once, in the subset
// SQLite and PostgreSQL share: $N placeholders, ON CONFLICT, RETURNING,
// integers for booleans, fixed-width UTC text for times, JSON as text.
type dialect struct {
	// name is the dialect's name, for messages.
	name string
	// driver is the database/sql driver name.
	driver string
	// migrations is the folder of the embedded migrations.
	migrations string
	// rebind turns a query written with $N placeholders into the
	// driver's own.
	rebind func(query string) string
	// forUpdate is appended to a SELECT that reads a row the transaction
	// is about to change. SQLite needs nothing (BEGIN IMMEDIATE holds the
	// write lock from the start); PostgreSQL needs " FOR UPDATE".
	forUpdate string
	// isUnique reports whether err is a unique-constraint violation.
	isUnique func(err error) bool
	// retryable reports whether a write transaction that failed with err
	// should be run again from the start; nil: never (SQLite's writers
	// take turns, so nothing aborts one for another).
	retryable func(err error) bool
	// viewIsolation is the isolation of read-only transactions: one
	// snapshot for the whole transaction. SQLite gives that by default.
	viewIsolation sql.IsolationLevel
}

// sqliteDialect is SQLite through mattn/go-sqlite3.
var sqliteDialect = dialect{
	name:       "sqlite",
	driver:     "sqlite3",
	migrations: "migrations/sqlite",
	rebind:     numberedParams,
	isUnique: func(err error) bool {
		var e sqlite3.Error
		return errors.As(err, &e) && (e.ExtendedCode == sqlite3.ErrConstraintUnique || e.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
	},
}

// numberedParams rewrites $N placeholders as ?N. SQLite accepts $1, but
// as a named parameter whose index is its order of first appearance, so
// "SET a = $2 WHERE id = $1" would bind the arguments the wrong way
// round; ?N has index N exactly. Text inside '...' literals and "..."
// identifiers is left alone.
func numberedParams(q string) string {
	if !strings.Contains(q, "$") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}
