package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// pageOf reads a list call's limit and cursor. A limit above the list's
// maximum, however large, asks for the maximum; the cursor is the one a
// previous page's Link header gave.
func pageOf(r *http.Request) (dms.Page, error) {
	q := r.URL.Query()
	var p dms.Page
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil && isDigits(v):
			n = math.MaxInt32 // too large to read: the most there is
		case err != nil || n < 1:
			return p, apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "limit=%q must be a positive number of items", v)
		}
		p.Limit = int(min(n, math.MaxInt32))
	}
	if v := q.Get("cursor"); v != "" {
		c, err := decodeCursor(r.URL.Path, v)
		if err != nil {
			return p, apiError(http.StatusBadRequest, dmsapi.CodeInvalid,
				"cursor=%q is not a cursor this DMS gave: follow the Link header of the previous page, or start without a cursor", v)
		}
		p.After = c
	}
	return p, nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// wireCursor is a cursor as the API passes it: the list's path, so that
// a cursor serves only the list that gave it, and the sort key.
type wireCursor struct {
	Path string   `json:"p"`
	Key  []string `json:"k"`
}

// encodeCursor writes the cursor of the list at path as an opaque string
// for a URL.
func encodeCursor(path string, c dms.Cursor) string {
	b, _ := json.Marshal(wireCursor{Path: path, Key: c})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor that encodeCursor wrote for the list at
// path.
func decodeCursor(path, s string) (dms.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode cursor: %w", err)
	}
	var c wireCursor
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode cursor: %w", err)
	}
	if c.Path != path || len(c.Key) == 0 {
		return nil, fmt.Errorf("decode cursor: a cursor of %q, not of %q", c.Path, path)
	}
	return dms.Cursor(c.Key), nil
}

// writePage answers one page of a list: the items as a JSON list and,
// when more follow, a Link header (RFC 8288) to the next page: the same
// call with the cursor of this page's end.
func writePage[T any](w http.ResponseWriter, r *http.Request, items []T, next dms.Cursor) error {
	if next != nil {
		q := r.URL.Query()
		q.Set("cursor", encodeCursor(r.URL.Path, next))
		u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		w.Header().Set("Link", "<"+u.String()+`>; rel="next"`)
	}
	return writeJSON(w, http.StatusOK, orEmpty(items))
}
