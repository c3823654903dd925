package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/journal"
)

// nextLink is the Link header's next page, or "".
var nextLink = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// walk reads a list from path to its end through the Link headers and
// returns its items, in order, and the number of pages.
func walk[T any](e *testEnv, path, key string) ([]T, int) {
	e.t.Helper()
	var all []T
	for pages := 1; ; pages++ {
		var page []T
		resp := e.want(200, "GET", path, key, nil, &page)
		all = append(all, page...)
		link := resp.header.Get("Link")
		if link == "" {
			return all, pages
		}
		m := nextLink.FindStringSubmatch(link)
		if m == nil {
			e.t.Fatalf("GET %s: Link %q is not a next link", path, link)
		}
		if len(page) == 0 {
			e.t.Fatalf("GET %s: an empty page with a next link", path)
		}
		path = m[1]
	}
}

// TestListPagesOverHTTP reads the events and flash logs of a DMS that
// holds more than their largest pages, on both stores: no limit gets the
// default page, a limit of 10^10 (and one too large to be a number) the
// maximum, with a Link to the next page, and the walk by Link returns
// every item once.
func TestListPagesOverHTTP(t *testing.T) {
	for name, dsn := range backendDSNs(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, dsn())
			ctx := context.Background()
			const n = dms.MaxEventPage + 40 // 4 events per device: 1260 devices
			base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
			events := make([]journal.Event, n)
			for i := range events {
				events[i] = journal.Event{Seq: int64(i + 1), Station: "line-1", Time: base.Add(time.Duration(i) * time.Second),
					Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "S01", Device: fmt.Sprintf("D%05d", i/4), Step: "flash", Status: journal.StatusPassed}
			}
			for len(events) > 0 {
				k := min(len(events), dms.MaxIngestBatch)
				if _, err := e.svc.IngestEvents(ctx, "line-1", events[:k]); err != nil {
					t.Fatal(err)
				}
				events = events[k:]
			}
			devices := (n + 3) / 4
			lists := []struct {
				path     string
				total    int
				def, max int
			}{
				{"/v1/events", n, dms.DefaultEventPage, dms.MaxEventPage},
				{"/v1/events?station=line-1&after_seq=10", n - 10, dms.DefaultEventPage, dms.MaxEventPage},
				{"/v1/flash-logs", devices, dms.DefaultPageSize, dms.MaxPageSize},
				{"/v1/flash-logs?work_order=WO-1&since=2026-03-01T09:00:00Z", devices, dms.DefaultPageSize, dms.MaxPageSize},
			}
			with := func(path, param string) string {
				if strings.Contains(path, "?") {
					return path + "&" + param
				}
				return path + "?" + param
			}
			for _, l := range lists {
				var page []json.RawMessage
				resp := e.want(200, "GET", l.path, e.admin, nil, &page)
				if len(page) != l.def || resp.header.Get("Link") == "" {
					t.Errorf("GET %s = %d items, Link %q; want the default page of %d and a next link", l.path, len(page), resp.header.Get("Link"), l.def)
				}
				for _, limit := range []string{"10000000000", "99999999999999999999999999"} {
					path := with(l.path, "limit="+limit)
					resp := e.want(200, "GET", path, e.admin, nil, &page)
					if len(page) != l.max || resp.header.Get("Link") == "" {
						t.Errorf("GET %s = %d items; want the maximum page of %d and a next link", path, len(page), l.max)
					}
				}
				all, pages := walk[json.RawMessage](e, with(l.path, "limit=700"), e.admin)
				if len(all) != l.total || pages != (l.total+699)/700 {
					t.Errorf("walk of %s = %d items in %d pages, want %d in %d", l.path, len(all), pages, l.total, (l.total+699)/700)
				}
				seen := map[string]bool{}
				for _, it := range all {
					if seen[string(it)] {
						t.Fatalf("walk of %s: an item twice: %s", l.path, it)
					}
					seen[string(it)] = true
				}
			}
			for _, bad := range []string{"limit=0", "limit=-1", "limit=ten", "cursor=not-a-cursor", "cursor=WyJhIl0"} {
				for _, path := range []string{"/v1/events?", "/v1/flash-logs?", "/v1/keys?", "/v1/products?", "/v1/products/THERMO/devices?"} {
					e.wantError(400, dmsapi.CodeInvalid, "GET", path+bad, e.admin, nil)
				}
			}
		})
	}
}

// TestCatalogPagesOverHTTP walks the other lists page by page.
func TestCatalogPagesOverHTTP(t *testing.T) {
	e := newEnv(t)
	s := e.seed()
	for i := range 4 {
		e.want(201, "POST", "/v1/products/THERMO/tokens", e.admin, map[string]any{"max_claims": 1}, nil)
		e.want(201, "POST", "/v1/products/THERMO/bundles", e.admin, bundleBody(fmt.Sprintf("2.%d", i), s.sum, len(s.image)), nil)
		e.want(200, "POST", "/v1/activate", e.admin, activateBody("OTHER", fmt.Sprintf("aa:%02d", i), s.otherToken), nil) // an admin may claim without a work order
	}
	lists := []struct {
		path  string
		key   string
		total int
	}{
		{"/v1/keys", e.admin, 4},
		{"/v1/products", e.admin, 2},
		{"/v1/products", s.support, 1},
		{"/v1/products/THERMO/tokens", s.support, 5},
		{"/v1/products/THERMO/bundles", s.support, 5},
		{"/v1/products/OTHER/devices", e.admin, 4},
	}
	for _, l := range lists {
		all, pages := walk[json.RawMessage](e, l.path+"?limit=2", l.key)
		if len(all) != l.total || pages != (l.total+1)/2 {
			t.Errorf("walk of %s = %d items in %d pages, want %d in %d", l.path, len(all), pages, l.total, (l.total+1)/2)
		}
		var page []json.RawMessage
		e.want(http.StatusOK, "GET", l.path+"?limit=10000000000", l.key, nil, &page)
		if len(page) != l.total {
			t.Errorf("GET %s?limit=10000000000 = %d items, want all %d", l.path, len(page), l.total)
		}
	}
}
