package station

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/journal"
)

// killEnv names the environment variable of the kill harness's hook
// (kill_test.go). Set to POINT:N, it makes "station run" SIGKILL itself
// right after the Nth durable write of kind POINT, so that a test can
// stop the station between any two durable writes and check that the
// next run finishes every device exactly once. The points:
//
//	journal:STEP   the journal has committed the passed event of STEP
//	               (identify, preflight, flash, verify, activate, lock,
//	               label, done)
//	dms:activate   the DMS has answered a claim (POST /v1/activate)
//	dms:lock       the DMS has answered a lock record (POST /v1/lock)
//	dms:done       the DMS has answered a completion (POST /v1/complete)
//	sync           the DMS has stored a batch of journal events (POST
//	               /v1/stations/{station}/events), before the journal
//	               moves its sync cursor
//
// The dms and sync points need a DMS over HTTP. Unset, as it is outside
// tests, nothing is wrapped and the hook costs one look-up at start.
const killEnv = "STATION_TEST_KILL"

// killSwitch counts the writes of one kind and kills the process at the
// chosen one.
type killSwitch struct {
	point string
	at    int64
	seen  atomic.Int64
}

// parseKillSwitch reads the hook's setting; "" means none (nil).
func parseKillSwitch(s string) (*killSwitch, error) {
	if s == "" {
		return nil, nil
	}
	point, n, ok := cutLast(s, ":")
	at, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || at < 1 || point == "" {
		return nil, fmt.Errorf("%s=%q: want POINT:N, as in journal:flash:3", killEnv, s)
	}
	return &killSwitch{point: point, at: at}, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// hit counts a write of kind point and, at the chosen one, kills the
// process with SIGKILL: no deferred function, no flush, no exit handler
// runs, as with a power cut (the journal's committed writes are on disk:
// synchronous=FULL).
func (k *killSwitch) hit(point string) {
	if k == nil || point != k.point || k.seen.Add(1) != k.at {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal ends every thread; this one waits for it
}

// journal wraps j so that its step writes are counted.
func (k *killSwitch) journal(j jobs.Journal) jobs.Journal {
	if k == nil {
		return j
	}
	return killJournal{Journal: j, k: k}
}

// killJournal counts the passed step events the pipeline journals.
type killJournal struct {
	jobs.Journal
	k *killSwitch
}

func (j killJournal) Append(ctx context.Context, events ...journal.Event) ([]journal.Event, error) {
	out, err := j.Journal.Append(ctx, events...)
	if err == nil {
		for _, e := range out {
			if e.Kind == journal.KindStep && e.Status == journal.StatusPassed {
				j.k.hit("journal:" + e.Step)
			}
		}
	}
	return out, err
}

// httpClient returns the client the DMS is reached through: nil (the
// default) without the hook.
func (k *killSwitch) httpClient() *http.Client {
	if k == nil {
		return nil
	}
	return &http.Client{Transport: killTransport{next: http.DefaultTransport, k: k}}
}

// killTransport counts the DMS's answers to the station's writes.
type killTransport struct {
	next http.RoundTripper
	k    *killSwitch
}

func (t killTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	point := ""
	if req.Method == http.MethodPost {
		switch path := req.URL.Path; {
		case strings.HasSuffix(path, dmsapi.PathActivate):
			point = "dms:activate"
		case strings.HasSuffix(path, dmsapi.PathLock):
			point = "dms:lock"
		case strings.HasSuffix(path, dmsapi.PathComplete):
			point = "dms:done"
		case strings.HasSuffix(path, "/events") && req.Body != nil:
			// Only a batch that carries events counts, not the
			// syncer's empty probe.
			body, err := io.ReadAll(req.Body)
			req.Body.Close()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"seq"`)) {
				point = "sync"
			}
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil && point != "" && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		t.k.hit(point)
	}
	return resp, err
}
