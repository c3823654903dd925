package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on text, in bytes of UTF-8, shared by work orders, the DMS and
// its API (docs/api.md, "Text"). Ids and codes have their own pattern
// (1 to 64 letters, digits, '.', '_' or '-').
const (
	// MaxNameLen bounds a one-line name: a product's name or part
	// number, a bundle's version, an artifact's name, a label template,
	// an event's step, slot or operator.
	MaxNameLen = 256
	// MaxURLLen bounds an artifact's URL.
	MaxURLLen = 2048
	// MaxTextLen bounds free text: an event's error.
	MaxTextLen = 16 << 10
)

// CheckName reports what makes s unfit as a one-line name of at most max
// bytes: bytes that are not UTF-8, a control character (NUL, tab,
// newline, escape and the rest of U+0000-U+001F, U+007F-U+009F), or more
// than max bytes. It returns nil when s is fit. The error describes the
// problem without quoting s, so that it may be shown anywhere.
func CheckName(s string, max int) error {
	return checkText(s, max, true)
}

// CheckText is CheckName for free text, such as the error of a failed
// step: it refuses bytes that are not UTF-8, NUL and more than max
// bytes, and keeps other control characters (a tab, a newline, the
// escape sequences a device printed), which whoever displays the text
// escapes.
func CheckText(s string, max int) error {
	return checkText(s, max, false)
}

func checkText(s string, max int, oneLine bool) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes long; at most %d are allowed", len(s), max)
	}
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !validAt(s, i):
			return fmt.Errorf("is not valid UTF-8 (byte %d): send text in UTF-8", i)
		case r == 0:
			return fmt.Errorf("holds a NUL byte (byte %d): remove it", i)
		case oneLine && isControl(r):
			return fmt.Errorf("holds control character U+%04X (byte %d): a name is one line of printable text", r, i)
		}
	}
	return nil
}

// validAt reports whether the U+FFFD at byte i of s is written in s
// rather than the decoding of a bad byte.
func validAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

// isControl reports whether r is a C0 or C1 control character or DEL.
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }

// CheckJSONText walks a JSON document and returns a *FieldError naming,
// by its JSON path, the first string, key or value, that is not valid
// UTF-8 or holds a NUL (written as is or as \u0000), or nil.
// encoding/json turns bad UTF-8 into U+FFFD without a word, so a
// document is walked as it was written. A document that is not JSON is
// left to the decoder to refuse: CheckJSONText returns nil.
func CheckJSONText(doc []byte) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	type frame struct {
		array   bool
		index   int
		key     string
		wantKey bool
	}
	var stack []*frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			switch {
			case f.array:
				fmt.Fprintf(&b, "[%d]", f.index)
			default:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	next := func() {
		if len(stack) == 0 {
			return
		}
		top := stack[len(stack)-1]
		if top.array {
			top.index++
		} else {
			top.wantKey = true
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // not JSON: the decoder says so
		}
		raw := doc[start:dec.InputOffset()] // the token, after ASCII separators
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				stack = append(stack, &frame{array: v == '[', wantKey: v == '{'})
			default:
				stack = stack[:len(stack)-1]
				next()
			}
			continue
		case string:
			var top *frame
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			}
			if top != nil && !top.array && top.wantKey {
				name := v
				if !utf8.Valid(raw) || strings.IndexByte(v, 0) >= 0 {
					name = strconv.QuoteToASCII(v)
				}
				top.key, top.wantKey = name, false
				if p := textProblem(raw, v); p != "" {
					return &FieldError{Field: path(), Problem: "has a field name that " + p}
				}
				continue
			}
			if p := textProblem(raw, v); p != "" {
				return &FieldError{Field: path(), Problem: p}
			}
		}
		next()
	}
}

// textProblem says what is wrong with a JSON string token: raw as sent,
// s as decoded.
func textProblem(raw []byte, s string) string {
	if !utf8.Valid(raw) {
		return "is not valid UTF-8: send text in UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "holds a NUL character: remove it"
	}
	return ""
}
