// Package artifact fetches a bundle's artifacts and keeps them in a cache
// keyed by their content hash, never by file name: two bundles that name
// different files "firmware.bin" never collide, and a file whose bytes do
// not match the work order's sha256 is never used.
//
// In the pipeline it runs once per work order, before any device is
// touched: a corrupt or wrong artifact stops the work order with a clear
// error and nothing is flashed.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cavaliergopher/grab/v3"

	"github.com/station-dev/station/jobs"
)

// ErrChecksum means an artifact's bytes do not match its sha256.
var ErrChecksum = errors.New("artifact checksum mismatch")

// ErrTooLarge means an artifact's source holds more bytes than the work
// order declares. Every copy reads at most the declared size and one byte
// more, so a source without end (/dev/zero, a server that never stops)
// is refused there and never fills the disk. An error wrapping it wraps
// ErrChecksum too: the source is not the artifact.
var ErrTooLarge = errors.New("artifact larger than its declared size")

// Cache downloads artifacts into a folder, one file per content hash.
type Cache struct {
	// Dir is the cache folder.
	Dir string
	// HTTP is the client used for http(s) URLs; nil means a default one.
	// It carries the station's credentials where the DMS needs them.
	HTTP *http.Client
	// Logger receives one line per download.
	Logger *slog.Logger
	// Progress, if not nil, is called during a download with the bytes
	// on disk so far (a resumed download starts at what was kept) and
	// the artifact's size, about every 100 ms and once more at the end
	// of a successful download with done == total. It must not block.
	Progress func(name string, done, total int64)
}

// Fetch returns the path of a cached copy of a, downloading it or copying
// it from a local file first. base is the folder relative URLs are taken
// from (the work order file's folder).
func (c *Cache) Fetch(ctx context.Context, a jobs.Artifact, base string) (string, error) {
	// The hash names the cached file: check it is one before it names
	// anything.
	if _, err := hex.DecodeString(a.SHA256); err != nil || len(a.SHA256) != 2*sha256.Size || strings.ToLower(a.SHA256) != a.SHA256 {
		return "", fmt.Errorf("artifact %s: sha256 %q is not 64 lowercase hexadecimal digits: fix the work order; nothing was flashed", a.Name, a.SHA256)
	}
	if a.Size < 0 {
		return "", fmt.Errorf("artifact %s: size %d is negative: fix the work order; nothing was flashed", a.Name, a.Size)
	}
	dst := filepath.Join(c.Dir, a.SHA256)
	if ok, err := c.cached(dst, a); err != nil || ok {
		return dst, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", fmt.Errorf("create artifact cache: %w", err)
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return "", fmt.Errorf("artifact %s: url %q: %w", a.Name, a.URL, err)
	}
	switch u.Scheme {
	case "http", "https":
		err = c.download(ctx, a, dst)
	case "file", "":
		p := u.Path
		if u.Scheme == "" {
			p = a.URL
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		err = c.copyFile(ctx, a, p, dst)
	default:
		err = fmt.Errorf("artifact %s: url scheme %q is not supported; use http, https or a file path", a.Name, u.Scheme)
	}
	if err != nil {
		return "", err
	}
	return dst, nil
}

// Load fetches a and returns its bytes, checking them against its sha256
// and size once more as they are read.
func (c *Cache) Load(ctx context.Context, a jobs.Artifact, base string) ([]byte, error) {
	p, err := c.Fetch(ctx, a, base)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: read cached copy: %w", a.Name, err)
	}
	if err := check(a, data); err != nil {
		os.Remove(p)
		return nil, err
	}
	return data, nil
}

func check(a jobs.Artifact, data []byte) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != a.SHA256 {
		return fmt.Errorf("artifact %s: its sha256 is %s but the work order says %s: %w (the file is corrupt or the work order names another file; nothing was flashed)",
			a.Name, got, a.SHA256, ErrChecksum)
	}
	if int64(len(data)) != a.Size {
		return fmt.Errorf("artifact %s: it has %d bytes but the work order says %d: %w", a.Name, len(data), a.Size, ErrChecksum)
	}
	return nil
}

// cached reports whether dst already holds the artifact.
func (c *Cache) cached(dst string, a jobs.Artifact) (bool, error) {
	fi, err := os.Stat(dst)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("artifact cache: %w", err)
	case fi.Size() != a.Size:
		// A partial or foreign file: fetch again.
		return false, os.Remove(dst)
	}
	return true, nil
}

// progressEvery is how often Progress is called during a download.
const progressEvery = 100 * time.Millisecond

// errResumeRefused means the server answered a Range request with
// something other than the missing bytes.
var errResumeRefused = errors.New("the server did not resume the download where it stopped")

// download fetches a over http(s) into dst. The bytes go to dst+".part"
// first: an interrupted download (context cancelled, connection dropped)
// leaves it behind, and the next download resumes it with a Range
// request when the server accepts ranges, or starts over when it does
// not. Only a file of the right size and sha256 is renamed to dst.
func (c *Cache) download(ctx context.Context, a jobs.Artifact, dst string) error {
	tmp := dst + ".part"
	if fi, err := os.Stat(tmp); err == nil && fi.Size() > a.Size {
		os.Remove(tmp) // longer than the artifact: not a part of it
	}
	resumed, err := c.transfer(ctx, a, tmp)
	if err != nil && resumed && ctx.Err() == nil &&
		(errors.Is(err, grab.ErrBadLength) || errors.Is(err, errResumeRefused) || errors.Is(err, grab.ErrBadChecksum)) {
		// The part kept from an earlier attempt could not be completed:
		// drop it and start over, once.
		if c.Logger != nil {
			c.Logger.Warn("cannot resume artifact download; starting over", "name", a.Name, "err", err)
		}
		os.Remove(tmp)
		_, err = c.transfer(ctx, a, tmp)
	}
	if err != nil {
		return c.downloadError(ctx, a, tmp, err)
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	if fi.Size() != a.Size {
		os.Remove(tmp)
		return fmt.Errorf("artifact %s: the download has %d bytes but the work order says %d: %w (nothing was flashed)", a.Name, fi.Size(), a.Size, ErrChecksum)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	return nil
}

// downloadError words a failed download and decides what is kept of it:
// the part of an interrupted download stays, to be resumed; a file that
// cannot be the artifact goes.
func (c *Cache) downloadError(ctx context.Context, a jobs.Artifact, tmp string, err error) error {
	u := redactURL(a.URL)
	switch {
	case errors.Is(err, grab.ErrBadChecksum):
		os.Remove(tmp)
		return fmt.Errorf("artifact %s: the downloaded file does not match the work order's sha256 %s: %w (the server holds another file or the bytes were damaged on the way; nothing was flashed)", a.Name, a.SHA256, ErrChecksum)
	case errors.Is(err, ErrTooLarge):
		os.Remove(tmp)
		return fmt.Errorf("artifact %s: %s serves more than the %d bytes the work order declares; the download was stopped there: %w: %w (the server holds another file under this URL; nothing was flashed)", a.Name, u, a.Size, err, ErrChecksum)
	case errors.Is(err, grab.ErrBadLength), errors.Is(err, errResumeRefused):
		os.Remove(tmp)
		return fmt.Errorf("artifact %s: %s does not serve the %d bytes the work order names: %w (the server holds another file under this URL; nothing was flashed)", a.Name, u, a.Size, ErrChecksum)
	case ctx.Err() != nil:
		return fmt.Errorf("artifact %s: download of %s stopped (%v); what arrived is kept and the next run resumes it: %w", a.Name, u, context.Cause(ctx), ctx.Err())
	}
	var sc grab.StatusCodeError
	if errors.As(err, &sc) {
		return fmt.Errorf("artifact %s: download %s: %w (check the work order's URL and the station's key; nothing was flashed)", a.Name, u, err)
	}
	got := int64(0)
	if fi, serr := os.Stat(tmp); serr == nil {
		got = fi.Size()
	}
	return fmt.Errorf("artifact %s: download of %s broke off after %d of %d bytes: %w (what arrived is kept and the next try resumes it; nothing was flashed)", a.Name, u, got, a.Size, err)
}

// transfer runs one download of a into tmp, calling Progress while it runs.
// resumed reports that it continued an existing part.
func (c *Cache) transfer(ctx context.Context, a jobs.Artifact, tmp string) (resumed bool, err error) {
	sum, _ := hex.DecodeString(a.SHA256) // checked by Fetch
	req, err := grab.NewRequest(tmp, a.URL)
	if err != nil {
		return false, fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	req = req.WithContext(ctx)
	req.SetChecksum(sha256.New(), sum, true)
	req.Size = a.Size
	req.IgnoreRemoteTime = true
	req.BeforeCopy = func(resp *grab.Response) error {
		if !resp.DidResume {
			return nil
		}
		// grab does not check that a Range request was honoured.
		from := resp.BytesComplete()
		if resp.HTTPResponse.StatusCode != http.StatusPartialContent ||
			!strings.HasPrefix(resp.HTTPResponse.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", from)) {
			return fmt.Errorf("asked for bytes from %d, got %s %q: %w", from, resp.HTTPResponse.Status, resp.HTTPResponse.Header.Get("Content-Range"), errResumeRefused)
		}
		return nil
	}
	client := grab.NewClient()
	client.UserAgent = "station"
	client.HTTPClient = boundedClient(c.HTTP, a.Size)
	resp := client.Do(req)
	if c.Logger != nil {
		if resp.DidResume && resp.BytesComplete() > 0 {
			c.Logger.Info("resuming artifact download", "name", a.Name, "url", redactURL(a.URL), "size", a.Size, "from", resp.BytesComplete())
		} else {
			c.Logger.Info("downloading artifact", "name", a.Name, "url", redactURL(a.URL), "size", a.Size)
		}
	}
	if c.Progress != nil {
		t := time.NewTicker(progressEvery)
		c.Progress(a.Name, resp.BytesComplete(), a.Size)
	wait:
		for {
			select {
			case <-resp.Done:
				break wait
			case <-t.C:
				c.Progress(a.Name, resp.BytesComplete(), a.Size)
			}
		}
		t.Stop()
	}
	err = resp.Err()
	if err == nil && c.Progress != nil {
		c.Progress(a.Name, a.Size, a.Size)
	}
	return resp.DidResume && resp.BytesComplete() > 0, err
}

// copyFile copies the local file src (a path or a device such as
// /dev/zero) into dst, reading at most a.Size+1 bytes: a larger source is
// refused at its declared size. The copy goes to a temporary file first,
// which Clean removes if the process dies during the copy.
func (c *Cache) copyFile(ctx context.Context, a jobs.Artifact, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer in.Close()
	unlock, err := lockShared(c.Dir)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer unlock()
	tmp, err := os.CreateTemp(c.Dir, a.SHA256+copyPartInfix+"*"+partSuffix)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(readerCtx{ctx, in}, a.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("artifact %s: copy %s: %w", a.Name, src, err)
	}
	if n > a.Size {
		return fmt.Errorf("artifact %s: %s holds more than the %d bytes the work order declares; the copy was stopped there: %w: %w (is the URL the right file? nothing was flashed)",
			a.Name, src, a.Size, ErrTooLarge, ErrChecksum)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 || n != a.Size {
		return fmt.Errorf("artifact %s: %s has sha256 %s and %d bytes but the work order says %s and %d: %w (nothing was flashed)",
			a.Name, src, got, n, a.SHA256, a.Size, ErrChecksum)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	return nil
}

type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// redactURL drops credentials and query strings, which may carry tokens.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unreadable url)"
	}
	u.User, u.RawQuery = nil, ""
	return strings.TrimSuffix(u.String(), "?")
}
