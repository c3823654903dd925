package dms

import (
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// Service is the DMS's rules over a Store: the production lock, archived
// products, activation tokens and their claims, serial numbers. Every
// operation that changes something runs in one write transaction. It is
// safe for concurrent use.
type Service struct {
	// Store keeps the rows.
	Store *Store
	// Clock tells the time; nil means time.Now. Tests set it to move
	// tokens past their expiry.
	Clock func() time.Time
	// Logger receives one line per change; nil discards. Token secrets
	// are never logged, only token ids.
	Logger *slog.Logger
	// TokenKey keys the hash under which token secrets are stored
	// (HMAC-SHA256). Keep it outside the database, in the DMS's own
	// configuration, so that a copy of the database alone cannot even
	// confirm a guessed token. Changing it invalidates every token. Empty
	// is allowed: the secrets are 256 random bits, so an unkeyed hash
	// already cannot be reversed.
	TokenKey []byte
}

func (s *Service) now() time.Time {
	if s.Clock != nil {
		return s.Clock().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Customer is who a product is made for.
type Customer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// idPattern is what the DMS accepts as an id or a code, as jobs does for
// work orders and product codes.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkID(what, id string) error {
	if id == "" {
		return fail(ErrInvalid, "%s is missing", what)
	}
	if !idPattern.MatchString(id) {
		return fail(ErrInvalid, "%s %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", what, id)
	}
	return nil
}

// checkHardwareID accepts what a chip reports: MAC addresses, hex UIDs,
// USB serial strings, eMMC CIDs; printable ASCII, at most 128 bytes.
func checkHardwareID(hw flasher.HardwareID) error {
	s := string(hw)
	if s == "" {
		return fail(ErrInvalid, "the device's hardware id is missing")
	}
	if len(s) > 128 || strings.TrimSpace(s) != s {
		return fail(ErrInvalid, "hardware id %q must be at most 128 characters, without leading or trailing spaces", s)
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return fail(ErrInvalid, "hardware id %q must be printable ASCII", s)
		}
	}
	return nil
}

// jobsProblems runs the jobs package's own validation on a work order
// built around the part to check, and returns the problems of the fields
// under prefix ("product." or "bundle."), so that the rules for a product
// or a bundle are written once.
func jobsProblems(wo jobs.WorkOrder, prefix string) []string {
	var inv *jobs.InvalidError
	if err := wo.Validate(); !errors.As(err, &inv) {
		return nil
	}
	var out []string
	for _, p := range inv.Problems {
		if strings.HasPrefix(p.Field, prefix) {
			out = append(out, p.Error())
		}
	}
	return out
}
