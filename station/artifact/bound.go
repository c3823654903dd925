package artifact

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// boundedClient returns a client like base (nil means
// http.DefaultClient) whose response bodies end with ErrTooLarge once
// they carry more than the artifact's size: grab reads a body without a
// Content-Length to its end, which a server that never stops would make
// endless. A body answering a Range request "bytes=N-" may carry size-N
// bytes. At most one byte more than allowed is read.
func boundedClient(base *http.Client, size int64) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &boundedTransport{base: rt, size: size}
	return &c
}

// boundedTransport wraps every response body in a boundedBody.
type boundedTransport struct {
	base http.RoundTripper
	size int64
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	allowed := t.size - rangeStart(req.Header.Get("Range"))
	resp.Body = &boundedBody{rc: resp.Body, left: max(allowed, 0), size: t.size}
	return resp, nil
}

// rangeStart returns N of a "bytes=N-" Range header, 0 for any other.
func rangeStart(h string) int64 {
	from, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0
	}
	from, ok = strings.CutSuffix(from, "-")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// boundedBody passes on at most left bytes; a byte beyond them is the
// error ErrTooLarge.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
	size int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("the server sent more than %d bytes: %w", b.size, ErrTooLarge)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }
