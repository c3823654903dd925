package station

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/station-dev/station/station/localapi"
)

// The text format 0.0.4, line by line: a sample is name{labels} value,
// labels name="value" with \\, \" and \n escaped; comments are HELP and
// TYPE lines.
var (
	promSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? (\S+)$`)
	promHelp   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$`)
	promType   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
)

// parseMetrics reads the text format strictly: every line is a HELP, a
// TYPE or a sample of a family typed before it. It returns the samples by
// series (name and labels, as written).
func parseMetrics(text string) (map[string]float64, error) {
	typed := map[string]string{}
	out := map[string]float64{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if m := promType.FindStringSubmatch(line); m != nil {
			typed[m[1]] = m[2]
			continue
		}
		if promHelp.MatchString(line) {
			continue
		}
		m := promSample.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d %q is not name{labels} value", i+1, line)
		}
		family := m[1]
		if typed[family] == "" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(family, suffix); ok && typed[base] == "histogram" {
					family = base
				}
			}
		}
		if typed[family] == "" {
			return nil, fmt.Errorf("line %d %q: no # TYPE line before it", i+1, line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: value: %w", i+1, line, err)
		}
		key := m[1] + m[2]
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: series %s given twice", i+1, key)
		}
		out[key] = v
	}
	return out, nil
}

// TestMetrics is issue 8's acceptance test: "station serve --simulate 4
// --cycle" runs devices one after another, and GET /metrics on its unix
// socket shows the counts go up while the run goes on.
func TestMetrics(t *testing.T) {
	ctx, line := startServe(t, "--simulate", "4", "--cycle", "1s", "--image-size", "64KiB", "--dir", t.TempDir(), "--json")
	var info struct {
		Socket string
		Slots  int
	}
	if err := json.Unmarshal([]byte(line), &info); err != nil || info.Slots != 4 {
		t.Fatalf("startup line %q (%v): want 4 slots and a socket", line, err)
	}

	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", info.Socket)
		},
	}}
	defer hc.CloseIdleConnections()
	scrapeMetrics := func() map[string]float64 {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, "GET", "http://station/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET /metrics: read: %v", err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != localapi.MetricsContentType {
			t.Fatalf("GET /metrics = %d %s %q, want 200 %s", resp.StatusCode, resp.Header.Get("Content-Type"), body,
				localapi.MetricsContentType)
		}
		samples, err := parseMetrics(string(body))
		if err != nil {
			t.Fatalf("GET /metrics: %v\n%s", err, body)
		}
		return samples
	}

	const (
		passed  = `station_devices_total{result="passed"}`
		written = `station_bytes_written_total{protocol="esp"}`
		flashes = `station_step_duration_seconds_count{step="flash",result="passed"}`
		busy    = `station_slots_busy`
	)
	first := scrapeMetrics()
	if first["station_slots"] != 4 {
		t.Errorf("station_slots = %v, want 4", first["station_slots"])
	}
	if first[passed] != 0 || first[written] != 0 || first[flashes] != 0 {
		t.Errorf("before Start: passed %v, bytes %v, flashes %v; want 0", first[passed], first[written], first[flashes])
	}

	c := signInAndStart(ctx, t, info.Socket)

	// Scrape as the run goes on, until more devices passed than there
	// are slots: the cycle swapped some for new ones.
	prev, scrapes := first, 1
	follow(t, c, "more devices passed than slots", func(localapi.State) bool {
		cur := scrapeMetrics()
		scrapes++
		for _, series := range []string{passed, written, flashes, "station_journal_events_total"} {
			if cur[series] < prev[series] {
				t.Errorf("%s went down from %v to %v", series, prev[series], cur[series])
			}
		}
		if b := cur[busy]; b < 0 || b > cur["station_slots"] {
			t.Errorf("%s = %v, want 0 to %v", busy, b, cur["station_slots"])
		}
		prev = cur
		return cur[passed] > 4
	})
	last := scrapeMetrics()
	if scrapes < 3 {
		t.Errorf("scraped %d times during the run, want several", scrapes)
	}
	for _, series := range []string{passed, written, flashes} {
		if last[series] <= first[series] {
			t.Errorf("%s = %v after the run, want more than %v", series, last[series], first[series])
		}
	}
	if last[flashes] < last[passed] {
		t.Errorf("%s = %v, fewer than the %v devices passed", flashes, last[flashes], last[passed])
	}
	if last[written] < last[passed]*64*1024 {
		t.Errorf("%s = %v, less than %v devices of 64 KiB", written, last[written], last[passed])
	}
}
