package journal

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
)

// redacted replaces a secret wherever Append finds one. It is the same
// placeholder as jobs.Redacted.
const redacted = "[redacted]"

// withheld replaces an event's data when a secret in it cannot be cut out
// of its JSON values alone.
const withheld = `{"redacted":"` + redacted + `"}`

// redactor holds the secrets that must never be stored, longest first so
// that a secret containing another is replaced whole.
type redactor struct {
	mu      sync.RWMutex
	secrets []string
}

// add registers s and reports whether it is new.
func (r *redactor) add(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s == "" || slices.Contains(r.secrets, s) {
		return false
	}
	// Copy on write: list hands the slice out to readers.
	next := append(slices.Clip(r.secrets), s)
	slices.SortStableFunc(next, func(a, b string) int { return len(b) - len(a) })
	r.secrets = next
	return true
}

// list returns the secrets, nil if none. The slice is never changed
// afterwards.
func (r *redactor) list() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.secrets
}

// Redact registers a secret (an activation token, a key) that must never
// be stored. From now on Append replaces every occurrence of it in every
// text field of an event, and in every key, string and number of its
// data, with "[redacted]", and logs a warning that names the event but
// not the value. It is defence in depth: callers must keep secrets out of
// events in the first place. An empty secret is ignored; registering a
// secret again is harmless. Keep secrets long: a secret of a few
// characters would be cut out of ordinary words too.
func (j *Journal) Redact(secret string) {
	if j.secrets.add(secret) {
		j.logger.Debug("journal redacts a newly registered secret")
	}
}

// redactEvent replaces the registered secrets in the fields of e a caller
// fills in and returns the names of the fields it changed.
func redactEvent(secrets []string, e *Event) []string {
	if len(secrets) == 0 {
		return nil
	}
	var fields []string
	text := func(name string, s *string) {
		if out, ok := redactText(secrets, *s); ok {
			*s = out
			fields = append(fields, name)
		}
	}
	kind, status := string(e.Kind), string(e.Status)
	text("kind", &kind)
	text("status", &status)
	e.Kind, e.Status = Kind(kind), Status(status)
	text("work_order", &e.WorkOrder)
	text("slot", &e.Slot)
	text("device", &e.Device)
	text("operator", &e.Operator)
	text("step", &e.Step)
	text("error", &e.Error)
	if out, ok := redactData(secrets, e.Data); ok {
		e.Data = out
		fields = append(fields, "data")
	}
	return fields
}

// redactText replaces every secret in s.
func redactText(secrets []string, s string) (string, bool) {
	changed := false
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
			changed = true
		}
	}
	return s, changed
}

// redactData replaces every secret in the keys, strings and numbers of a
// JSON document, whether the document spells it plainly or with escapes.
// A secret still found in the text afterwards (it spans JSON syntax, or
// the document does not parse) withholds the whole document.
func redactData(secrets []string, raw json.RawMessage) (json.RawMessage, bool) {
	if len(raw) == 0 {
		return raw, false
	}
	out := raw
	changed := false
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil {
		if w, ok := redactValue(secrets, v); ok {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(w); err == nil {
				out, changed = bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
			} else {
				return json.RawMessage(withheld), true
			}
		}
	}
	for _, sec := range secrets {
		if bytes.Contains(out, []byte(sec)) {
			return json.RawMessage(withheld), true
		}
	}
	return out, changed
}

// redactValue walks a decoded JSON value.
func redactValue(secrets []string, v any) (any, bool) {
	switch v := v.(type) {
	case string:
		return redactText(secrets, v)
	case json.Number:
		if _, ok := redactText(secrets, v.String()); ok {
			return redacted, true
		}
		return v, false
	case []any:
		changed := false
		for i, x := range v {
			if y, ok := redactValue(secrets, x); ok {
				v[i], changed = y, true
			}
		}
		return v, changed
	case map[string]any:
		changed := false
		out := make(map[string]any, len(v))
		for k, x := range v {
			if k2, ok := redactText(secrets, k); ok {
				k, changed = k2, true
			}
			if y, ok := redactValue(secrets, x); ok {
				x, changed = y, true
			}
			out[k] = x
		}
		return out, changed
	}
	return v, false
}
