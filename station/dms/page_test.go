package dms

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

func TestPageSize(t *testing.T) {
	tests := []struct {
		limit, want int
	}{
		{0, DefaultPageSize},
		{-1, DefaultPageSize},
		{1, 1},
		{MaxPageSize, MaxPageSize},
		{MaxPageSize + 1, MaxPageSize},
		{10_000_000_000, MaxPageSize},
	}
	for _, tt := range tests {
		if got := (Page{Limit: tt.limit}).size(DefaultPageSize, MaxPageSize); got != tt.want {
			t.Errorf("Page{Limit: %d}.size() = %d, want %d", tt.limit, got, tt.want)
		}
	}
}

// pageEvents is the number of events the page tests ingest for line-1:
// more than a page of events at most, and 4 per device, so more devices
// than a page of flash logs at most.
const pageEvents = MaxEventPage + 50

// fillLists gives every list of the DMS more items than its largest
// page: events and their flash logs through IngestEvents, the rest
// written straight to the store (MaxPageSize+5 keys, products, tokens,
// bundles and devices, half of them created in the same second, so that
// the tie-breaker of the order is walked too).
func fillLists(t *testing.T, svc *Service) {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var events []journal.Event
	for i := range pageEvents {
		st, step := journal.StatusPassed, []string{"identify", "flash", "verify", "done"}[i%4]
		if i/4%3 == 0 && step == "done" {
			st, step = journal.StatusFailed, "verify"
		}
		events = append(events, journal.Event{Seq: int64(i + 1), Station: "line-1", Time: base.Add(time.Duration(i) * time.Second),
			Kind: journal.KindStep, WorkOrder: fmt.Sprintf("WO-%d", i%2), Slot: "S01", Device: fmt.Sprintf("D%05d", i/4), Step: step, Status: st})
	}
	for len(events) > 0 {
		n := min(len(events), MaxIngestBatch)
		if _, err := svc.IngestEvents(ctx, "line-1", events[:n]); err != nil {
			t.Fatalf("IngestEvents = %v", err)
		}
		events = events[n:]
	}
	other := []journal.Event{{Seq: 1, Station: "line-0", Time: base, Kind: journal.KindStation, Status: journal.StatusInfo}}
	if _, err := svc.IngestEvents(ctx, "line-0", other); err != nil {
		t.Fatalf("IngestEvents(line-0) = %v", err)
	}
	addProduct(t, svc, "P0000", jobs.StageDevelopment)
	err := svc.Store.update(ctx, func(t *tx) error {
		const n = MaxPageSize + 5
		if err := t.insertBlob(ctx, sum([]byte("x")), []byte("x")); err != nil {
			return err
		}
		for i := range n {
			created := formatTime(base.Add(time.Duration(i/2) * time.Second))
			if _, err := t.exec(ctx, `INSERT INTO api_keys (id, role, name, hash, created) VALUES ($1, 'admin', '', $2, $3)`,
				fmt.Sprintf("K-%d", i+100), fmt.Sprintf("%064x", i), created); err != nil {
				return err
			}
			if err := t.insertProduct(ctx, jobs.Product{Code: fmt.Sprintf("P%04d", i+1), Name: "P", PartNumber: "PN", Stage: jobs.StageDevelopment}, "", created); err != nil {
				return err
			}
			tok := tokenRow{TokenInfo: TokenInfo{ID: fmt.Sprintf("T-%d", i+100), Product: "P0000", MaxClaims: 1, Created: base.Add(time.Duration(i/2) * time.Second)}, hash: fmt.Sprintf("%064x", i)}
			if err := t.insertToken(ctx, tok); err != nil {
				return err
			}
			b := jobs.Bundle{Version: fmt.Sprintf("9.%d", i), Tag: jobs.TagBeta, Artifacts: []jobs.Artifact{{
				Name: "app.bin", Target: "esp", Format: "bin", Size: 1, SHA256: sum([]byte("x")), URL: "app.bin"}}}
			if err := t.insertBundle(ctx, "P0000", b, created); err != nil {
				return err
			}
			d := Device{HardwareID: flasher.HardwareID(fmt.Sprintf("hw-%05d", i)), Product: "P0000",
				Serial: fmt.Sprintf("P0000-%06d", i/2), Activated: base, Updated: base}
			if err := t.insertDevice(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fill the lists: %v", err)
	}
}

// TestPages reads every list of the DMS by default, with a limit far
// above its maximum (10 GB's worth), and page by page to its end, on both
// stores: the default page when none is asked, the maximum when more is,
// and a cursor walk that returns every item once, in order.
func TestPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		svc, _ := newTestService(t, b)
		fillLists(t, svc)
		allLogs, err := svc.FlashLogs(ctx, FlashLogFilter{})
		if err != nil {
			t.Fatal(err)
		}
		failed, err := svc.FlashLogs(ctx, FlashLogFilter{Result: journal.ResultFailed})
		if err != nil {
			t.Fatal(err)
		}
		keys := func(n int, key func(i int) string) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = key(i)
			}
			return out
		}
		lists := []struct {
			name     string
			total    int
			def, max int
			// page reads a page and returns each item's sort key, in a
			// form whose text order is the list's order.
			page func(p Page) ([]string, Cursor, error)
		}{
			{"events", pageEvents + 1, DefaultEventPage, MaxEventPage, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.EventPage(ctx, EventFilter{}, p)
				return keys(len(got), func(i int) string { return fmt.Sprintf("%s/%09d", got[i].Station, got[i].Seq) }), next, err
			}},
			{"events of a station", pageEvents, DefaultEventPage, MaxEventPage, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.EventPage(ctx, EventFilter{Station: "line-1", AfterSeq: 0}, p)
				return keys(len(got), func(i int) string { return fmt.Sprintf("%s/%09d", got[i].Station, got[i].Seq) }), next, err
			}},
			{"flash logs", len(allLogs), DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.FlashLogPage(ctx, FlashLogFilter{}, p)
				return keys(len(got), func(i int) string { return got[i].WorkOrder + "/" + got[i].Device }), next, err
			}},
			{"failed flash logs", len(failed), DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.FlashLogPage(ctx, FlashLogFilter{Result: journal.ResultFailed}, p)
				return keys(len(got), func(i int) string { return got[i].WorkOrder + "/" + got[i].Device }), next, err
			}},
			{"keys", MaxPageSize + 5, DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.KeyPage(ctx, p)
				return keys(len(got), func(i int) string { return formatTime(got[i].Created) + "/" + fmt.Sprintf("%09s", got[i].ID) }), next, err
			}},
			{"products", MaxPageSize + 6, DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.ProductPage(ctx, "", p)
				return keys(len(got), func(i int) string { return got[i].Code }), next, err
			}},
			{"one product", 1, DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.ProductPage(ctx, "P0007", p)
				return keys(len(got), func(i int) string { return got[i].Code }), next, err
			}},
			{"tokens", MaxPageSize + 5, DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.TokenPage(ctx, "P0000", p)
				return keys(len(got), func(i int) string { return formatTime(got[i].Created) + "/" + fmt.Sprintf("%09s", got[i].ID) }), next, err
			}},
			{"bundles", MaxPageSize + 7, DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.BundlePage(ctx, "P0000", p)
				return keys(len(got), func(i int) string { return bundleKey(got[i].Version) }), next, err
			}},
			{"devices", MaxPageSize + 5, DefaultPageSize, MaxPageSize, func(p Page) ([]string, Cursor, error) {
				got, next, err := svc.DevicePage(ctx, "P0000", p)
				return keys(len(got), func(i int) string { return got[i].Serial + "/" + string(got[i].HardwareID) }), next, err
			}},
		}
		for _, l := range lists {
			t.Run(l.name, func(t *testing.T) {
				got, next, err := l.page(Page{})
				if err != nil {
					t.Fatalf("default page: %v", err)
				}
				if len(got) != min(l.def, l.total) || (next != nil) != (l.total > l.def) {
					t.Errorf("default page = %d items, next %v; want %d of %d", len(got), next, min(l.def, l.total), l.total)
				}
				got, _, err = l.page(Page{Limit: 10_000_000_000})
				if err != nil {
					t.Fatalf("page of 10^10: %v", err)
				}
				if len(got) != min(l.max, l.total) {
					t.Errorf("page of 10^10 = %d items, want the maximum %d", len(got), min(l.max, l.total))
				}
				var all []string
				p := Page{Limit: 97}
				for pages := 0; ; pages++ {
					if pages > l.total {
						t.Fatalf("the walk does not end after %d pages", pages)
					}
					got, next, err := l.page(p)
					if err != nil {
						t.Fatalf("page after %v: %v", p.After, err)
					}
					all = append(all, got...)
					if next == nil {
						break
					}
					if len(got) != p.Limit {
						t.Errorf("page after %v = %d items with a next cursor, want %d", p.After, len(got), p.Limit)
					}
					p.After = next
				}
				if len(all) != l.total {
					t.Errorf("the walk read %d items, want %d", len(all), l.total)
				}
				if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
					t.Errorf("the walk read items out of order or twice")
				}
			})
		}
		if _, _, err := svc.EventPage(ctx, EventFilter{}, Page{After: Cursor{"line-1", "x"}}); err == nil {
			t.Errorf("EventPage(cursor with seq x) = nil error, want ErrInvalid")
		}
		if _, _, err := svc.KeyPage(ctx, Page{After: Cursor{"one"}}); err == nil {
			t.Errorf("KeyPage(cursor of another list) = nil error, want ErrInvalid")
		}
	})
}

// bundleKey is a bundle's place in fillLists's order, (created,
// version), as text: version 9.i was created i/2 seconds after the
// others.
func bundleKey(version string) string {
	var i int
	if _, err := fmt.Sscanf(version, "9.%d", &i); err != nil {
		i = 0
	}
	return fmt.Sprintf("%06d/%s", i/2, version)
}
