// Package dupkey finds object keys that appear twice in one JSON object.
// encoding/json accepts them and keeps the last value, so a work order or
// a DMS request that names a field twice would silently mean the other
// value to whoever reads the first; the station refuses such documents.
// The package does no I/O: it reads a document held in memory.
//
// Reference: RFC 8259, section 4 ("The names within an object SHOULD be
// unique").
package dupkey

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrDuplicate is wrapped by the error Check returns for a duplicate key.
var ErrDuplicate = errors.New("duplicate JSON object key")

// Error names a duplicate key by its path in the document, as
// "bundle.artifacts[1].sha256".
type Error struct {
	// Path is the key's path: object keys joined by dots, array indexes
	// in brackets.
	Path string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s appears twice in its object", e.Path)
}

// Unwrap makes an Error match ErrDuplicate.
func (e *Error) Unwrap() error { return ErrDuplicate }

// frame is an object or array being read.
type frame struct {
	object  bool
	keys    map[string]struct{}
	key     string // the object's current key
	wantKey bool   // the object's next string token is a key
	n       int    // the array's elements so far
}

// Check returns an *Error for the first key that appears twice in one
// object of data, and nil when there is none. A document that is not
// valid JSON is not Check's to refuse: it stops looking where the syntax
// breaks and returns nil, leaving the error to the decoder.
func Check(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return nil
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				valueSeen(top)
				stack = append(stack, &frame{object: d == '{', keys: map[string]struct{}{}, wantKey: d == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top != nil && top.object && top.wantKey {
			k, _ := tok.(string)
			if _, dup := top.keys[k]; dup {
				return &Error{Path: path(stack, k)}
			}
			top.keys[k] = struct{}{}
			top.key, top.wantKey = k, false
			continue
		}
		valueSeen(top)
	}
}

// valueSeen moves f past one value.
func valueSeen(f *frame) {
	switch {
	case f == nil:
	case f.object:
		f.wantKey = true
	default:
		f.n++
	}
}

// path names key in the innermost object of stack.
func path(stack []*frame, key string) string {
	var b strings.Builder
	for _, f := range stack[:len(stack)-1] {
		if f.object {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		} else {
			b.WriteString("[" + strconv.Itoa(f.n-1) + "]")
		}
	}
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(key)
	return b.String()
}
