package station

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/upstream"
)

// dmsLink is the station's connection to its device-management service:
// an embedded one on a SQLite file, or a DMS over HTTP.
type dmsLink struct {
	// upstream answers the pipeline's calls.
	upstream jobs.Upstream
	// client is the HTTP client of a remote DMS; nil for an embedded
	// one, which needs no sync: it is this process.
	client *upstream.Client
	// url names the DMS in messages, without credentials.
	url   string
	close func()
}

// http returns the client artifact downloads go through: the DMS's, which
// carries the station's key to the DMS and to no one else.
func (l *dmsLink) http() *http.Client {
	if l.client == nil {
		return nil
	}
	return l.client.HTTPClient()
}

// openDMS connects to the device-management service named by url:
// "sqlite:FILE" is an embedded DMS in this process, on a SQLite file;
// "http://…" or "https://…" is a DMS elsewhere ("station dms"), reached
// with the station's API key, through hc (nil means the default client).
func openDMS(ctx context.Context, url string, key jobs.Secret, stationID string, hc *http.Client, logger *slog.Logger) (*dmsLink, error) {
	scheme, rest, _ := strings.Cut(url, ":")
	switch scheme {
	case "sqlite":
		if rest == "" {
			return nil, usageErr("--dms sqlite: needs a file, as in sqlite:dms.db")
		}
		store, err := dms.OpenSQLite(ctx, rest, dms.WithLogger(logger))
		if err != nil {
			return nil, fmt.Errorf("open embedded DMS: %w", err)
		}
		return &dmsLink{upstream: &dms.Local{Service: &dms.Service{Store: store, Logger: logger}},
			url: url, close: func() { store.Close() }}, nil
	case "http", "https":
		if key.IsZero() {
			return nil, usageErr("--dms %s needs the station's API key: put it in a file given with --key-file, or in STATION_KEY (an administrator creates it with POST /v1/keys, role station)", url)
		}
		c, err := upstream.New(upstream.Config{URL: url, Key: key, Station: stationID, HTTP: hc, Logger: logger})
		if err != nil {
			return nil, usageErr("--dms %s: %v", url, err)
		}
		return &dmsLink{upstream: c, client: c, url: url, close: func() {}}, nil
	}
	return nil, usageErr("--dms %q: use sqlite:FILE for an embedded DMS, or the http:// or https:// address of a station dms", url)
}

// readSecret reads a secret from a file, or from the environment variable
// when no file is named. The value is trimmed of surrounding space.
func readSecret(file, env string, getenv func(string) string) (jobs.Secret, error) {
	v := getenv(env)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return jobs.Secret{}, fmt.Errorf("read %s: %w", file, err)
		}
		v = string(b)
	}
	return jobs.NewSecret(strings.TrimSpace(v)), nil
}

// workOrderCache keeps the work orders fetched from the DMS next to the
// journal, without their tokens, so that a station restarted while the DMS
// is down carries on with the work order it was running.
type workOrderCache struct{ dir string }

func (c workOrderCache) path(id string) string {
	return filepath.Join(c.dir, id+".json")
}

func (c workOrderCache) save(wo dmsapi.WorkOrder) error {
	wo.Authorization.Token = jobs.Secret{}
	b, err := json.MarshalIndent(wo, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("keep work order %s: %w", wo.ID, err)
	}
	tmp := c.path(wo.ID) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("keep work order %s: %w", wo.ID, err)
	}
	return os.Rename(tmp, c.path(wo.ID))
}

func (c workOrderCache) load(id string) (dmsapi.WorkOrder, bool) {
	b, err := os.ReadFile(c.path(id))
	if err != nil {
		return dmsapi.WorkOrder{}, false
	}
	var wo dmsapi.WorkOrder
	if err := json.Unmarshal(b, &wo); err != nil || wo.ID != id {
		return dmsapi.WorkOrder{}, false
	}
	return wo, true
}

// fetchWorkOrder pulls work order id from the DMS. While the DMS cannot be
// reached it uses the copy kept from an earlier fetch, if there is one
// (the DMS owns the work order, but a station that was running it keeps
// running it through an outage); without one it waits and tries again,
// saying so, until the DMS answers or ctx ends. Any other refusal (no such
// work order, a refused key) ends the wait at once.
func fetchWorkOrder(ctx context.Context, l *dmsLink, id string, cache workOrderCache, say func(string)) (dmsapi.WorkOrder, error) {
	delay := 500 * time.Millisecond
	var since time.Time
	for {
		wo, err := l.client.WorkOrder(ctx, id)
		if err == nil {
			if err := cache.save(wo); err != nil {
				say(fmt.Sprintf("warning: %v", err))
			}
			if !since.IsZero() {
				say(fmt.Sprintf("the DMS answered after %s", time.Since(since).Round(time.Second)))
			}
			return wo, nil
		}
		if !errors.Is(err, jobs.ErrUnavailable) {
			return dmsapi.WorkOrder{}, fmt.Errorf("fetch work order %s from %s: %w", id, l.url, err)
		}
		if kept, ok := cache.load(id); ok {
			say(fmt.Sprintf("the DMS cannot be reached (%v); running work order %s as fetched before, from %s; steps that need the DMS wait for it", err, id, cache.path(id)))
			return kept, nil
		}
		if since.IsZero() {
			since = time.Now()
			say(fmt.Sprintf("waiting for the DMS to fetch work order %s: %v (Ctrl-C stops)", id, err))
		}
		wait := time.Duration(rand.Int64N(int64(delay))) + 250*time.Millisecond
		delay = min(2*delay, 15*time.Second)
		select {
		case <-ctx.Done():
			return dmsapi.WorkOrder{}, fmt.Errorf("fetch work order %s: stopped while the DMS at %s could not be reached: %w", id, l.url, err)
		case <-time.After(wait):
		}
	}
}

// authorize gives a work order fetched from the DMS the token that
// authorizes it. The DMS never sends a token's secret: whoever runs the
// work order supplies it.
func authorize(wo dmsapi.WorkOrder, token jobs.Secret) (jobs.WorkOrder, error) {
	w := wo.WorkOrder
	if !token.IsZero() {
		w.Authorization = jobs.Authorization{Token: token}
	} else if wo.TokenID != "" {
		return jobs.WorkOrder{}, usageErr("work order %s is authorized by activation token %s: give its secret with --token-file FILE or STATION_TOKEN", wo.ID, wo.TokenID)
	}
	if err := w.Validate(); err != nil {
		return jobs.WorkOrder{}, fmt.Errorf("work order %s from the DMS: %w", wo.ID, err)
	}
	return w, nil
}

// startSync pushes the journal upstream while the batch runs, when the DMS
// is remote. The returned function stops it after a last flush of at most
// wait, and returns how far the sync came.
func startSync(ctx context.Context, l *dmsLink, b *batch, wait time.Duration, logger *slog.Logger) func() *upstream.SyncStatus {
	if l.client == nil {
		return func() *upstream.SyncStatus { return nil }
	}
	s := upstream.NewSyncer(l.client, b.journal, upstream.SyncConfig{Logger: logger})
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(sctx)
	}()
	return func() *upstream.SyncStatus {
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
		err := s.Flush(fctx)
		fcancel()
		cancel()
		<-done
		st := s.State()
		if err != nil && logger != nil {
			logger.Warn("journal not fully synced; the rest goes up on the next run", "waiting", st.Lag, "err", err)
		}
		return &st
	}
}
