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

	"github.com/cavaliergopher/grab/v3"

	"github.com/station-dev/station/jobs"
)

// ErrChecksum means an artifact's bytes do not match its sha256.
var ErrChecksum = errors.New("artifact checksum mismatch")

// Cache downloads artifacts into a folder, one file per content hash.
type Cache struct {
	// Dir is the cache folder.
	Dir string
	// HTTP is the client used for http(s) URLs; nil means a default one.
	// It carries the station's credentials where the DMS needs them.
	HTTP *http.Client
	// Logger receives one line per download.
	Logger *slog.Logger
}

// Fetch returns the path of a cached copy of a, downloading it or copying
// it from a local file first. base is the folder relative URLs are taken
// from (the work order file's folder).
func (c *Cache) Fetch(ctx context.Context, a jobs.Artifact, base string) (string, error) {
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

func (c *Cache) download(ctx context.Context, a jobs.Artifact, dst string) error {
	sum, _ := hex.DecodeString(a.SHA256)
	tmp := dst + ".part"
	req, err := grab.NewRequest(tmp, a.URL)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	req = req.WithContext(ctx)
	req.SetChecksum(sha256.New(), sum, true)
	req.Size = a.Size
	client := grab.NewClient()
	client.UserAgent = "station"
	if c.HTTP != nil {
		client.HTTPClient = c.HTTP
	}
	if c.Logger != nil {
		c.Logger.Info("downloading artifact", "name", a.Name, "url", redactURL(a.URL), "size", a.Size)
	}
	resp := client.Do(req)
	if err := resp.Err(); err != nil {
		if errors.Is(err, grab.ErrBadChecksum) {
			return fmt.Errorf("artifact %s: the downloaded file does not match the work order's sha256 %s: %w (nothing was flashed)", a.Name, a.SHA256, ErrChecksum)
		}
		return fmt.Errorf("artifact %s: download %s: %w", a.Name, redactURL(a.URL), err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	return nil
}

func (c *Cache) copyFile(ctx context.Context, a jobs.Artifact, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(c.Dir, a.SHA256+".*.part")
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), readerCtx{ctx, in})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("artifact %s: copy %s: %w", a.Name, src, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 || n != a.Size {
		return fmt.Errorf("artifact %s: %s has sha256 %s and %d bytes but the work order says %s and %d: %w (nothing was flashed)",
			a.Name, src, got, n, a.SHA256, a.Size, ErrChecksum)
	}
	return os.Rename(tmp.Name(), dst)
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
