package jobs

import (
	"encoding/json"
	"log/slog"
)

// Redacted is what a secret prints as everywhere: logs, the journal,
// exports, error messages and JSON.
const Redacted = "[redacted]"

// Secret holds an activation token or key. It reads its value from JSON
// but never writes, prints or logs it; only Reveal hands it out, for the
// one call that must send it upstream.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret's value. Call it only where the value leaves
// the process for the DMS.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether no secret is held.
func (s Secret) IsZero() bool { return s.v == "" }

// String returns Redacted, or "" for an empty secret.
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return "jobs.Secret{" + s.String() + "}" }

// LogValue keeps log/slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes Redacted, never the value.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the value from a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &s.v) }
