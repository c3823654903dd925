package dms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// addWorkOrder creates work order id of product (bundle 1.0) with token
// and stations.
func addWorkOrder(t testing.TB, s *Service, id, product, token string, stations ...string) {
	t.Helper()
	_, err := s.CreateWorkOrder(context.Background(), WorkOrderSpec{ID: id, Product: product, Bundle: "1.0", Quantity: 5, TokenID: token, Stations: stations})
	if err != nil {
		t.Fatalf("CreateWorkOrder(%s) = %v", id, err)
	}
}

// TestStationWorkOrder walks the life of work orders' station lists,
// step by step: each step is a call and what it must answer.
func TestStationWorkOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageDevelopment)
		tok, _ := addToken(t, s, "P", 10, time.Time{})
		addWorkOrder(t, s, "WO-A", "P", tok, "line-1", "line-2", "line-1")
		addWorkOrder(t, s, "WO-OPEN", "P", tok)

		use := func(station, id string) func() error {
			return func() error { _, err := s.StationWorkOrder(ctx, station, id); return err }
		}
		steps := []struct {
			name     string
			do       func() error
			want     error
			wo       string   // then the stations of wo are
			stations []string // (when wo is set)
		}{
			{"listed at creation, once", use("line-1", "WO-A"), nil, "WO-A", []string{"line-1", "line-2"}},
			{"the second listed", use("line-2", "WO-A"), nil, "", nil},
			{"not listed", use("line-3", "WO-A"), jobs.ErrNotFound, "WO-A", []string{"line-1", "line-2"}},
			{"unknown work order", use("line-1", "WO-NONE"), jobs.ErrNotFound, "", nil},
			{"malformed id", use("line-1", "WO A"), jobs.ErrNotFound, "", nil},
			{"never listed: taken by the first", use("line-3", "WO-OPEN"), nil, "WO-OPEN", []string{"line-3"}},
			{"taken: the first again", use("line-3", "WO-OPEN"), nil, "", nil},
			{"taken: another", use("line-4", "WO-OPEN"), jobs.ErrNotFound, "WO-OPEN", []string{"line-3"}},
			{"assigned by an administrator", func() error { return s.AssignStations(ctx, "WO-OPEN", []string{"line-4"}) }, nil, "WO-OPEN", []string{"line-3", "line-4"}},
			{"now the other", use("line-4", "WO-OPEN"), nil, "", nil},
			{"assign nothing", func() error { return s.AssignStations(ctx, "WO-OPEN", nil) }, ErrInvalid, "", nil},
			{"assign a bad id", func() error { return s.AssignStations(ctx, "WO-OPEN", []string{"line 5"}) }, ErrInvalid, "", nil},
			{"assign to no work order", func() error { return s.AssignStations(ctx, "WO-NONE", []string{"line-5"}) }, jobs.ErrNotFound, "", nil},
			{"take one off", func() error { return s.UnassignStation(ctx, "WO-OPEN", "line-3") }, nil, "WO-OPEN", []string{"line-4"}},
			{"taken off: refused", use("line-3", "WO-OPEN"), jobs.ErrNotFound, "", nil},
			{"take off one not listed", func() error { return s.UnassignStation(ctx, "WO-OPEN", "line-3") }, jobs.ErrNotFound, "", nil},
			{"take the last off", func() error { return s.UnassignStation(ctx, "WO-OPEN", "line-4") }, nil, "WO-OPEN", nil},
			{"all taken off: not taken again", use("line-9", "WO-OPEN"), jobs.ErrNotFound, "WO-OPEN", nil},
			{"assigned again", func() error { return s.AssignStations(ctx, "WO-OPEN", []string{"line-3"}) }, nil, "WO-OPEN", []string{"line-3"}},
			{"listed again", use("line-3", "WO-OPEN"), nil, "", nil},
			{"bad station at creation", func() error {
				_, err := s.CreateWorkOrder(ctx, WorkOrderSpec{ID: "WO-BAD", Product: "P", Bundle: "1.0", Quantity: 1, TokenID: tok, Stations: []string{""}})
				return err
			}, ErrInvalid, "", nil},
		}
		for _, st := range steps {
			err := st.do()
			if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
				t.Fatalf("%s: got %v, want %v", st.name, err, st.want)
			}
			if st.wo == "" {
				continue
			}
			got, err := s.Stations(ctx, st.wo)
			if err != nil || !slices.Equal(got, st.stations) {
				t.Fatalf("%s: Stations(%s) = %q, %v; want %q", st.name, st.wo, got, err, st.stations)
			}
			spec, err := s.WorkOrderSpec(ctx, st.wo)
			if err != nil || !slices.Equal(spec.Stations, st.stations) {
				t.Fatalf("%s: WorkOrderSpec(%s).Stations = %q, %v; want %q", st.name, st.wo, spec.Stations, err, st.stations)
			}
		}

		// Refused and unknown read alike, but for the id.
		_, notListed := s.StationWorkOrder(ctx, "line-3", "WO-A")
		_, unknown := s.StationWorkOrder(ctx, "line-3", "WO-NONE")
		if a, b := strings.ReplaceAll(notListed.Error(), "WO-A", "{id}"), strings.ReplaceAll(unknown.Error(), "WO-NONE", "{id}"); a != b {
			t.Errorf("StationWorkOrder of another station's work order = %q, of none = %q: they must read alike", a, b)
		}
	})
}

// TestStationWorkOrderFirstUse races stations for a work order that has
// never listed one, from two stores on one database (two DMS processes):
// exactly one takes it.
func TestStationWorkOrderFirstUse(t *testing.T) {
	const stations = 8
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		svcs := []*Service{{Store: openStore(t, dsn), TokenKey: testKey}, {Store: openStore(t, dsn), TokenKey: testKey}}
		addProduct(t, svcs[0], "P", jobs.StageDevelopment)
		tok, _ := addToken(t, svcs[0], "P", 10, time.Time{})
		addWorkOrder(t, svcs[0], "WO-RACE", "P", tok)

		errs := make([]error, stations)
		var wg sync.WaitGroup
		for i := range stations {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = svcs[i%2].StationWorkOrder(ctx, fmt.Sprintf("line-%d", i), "WO-RACE")
			}()
		}
		wg.Wait()
		var won []string
		for i, err := range errs {
			switch {
			case err == nil:
				won = append(won, fmt.Sprintf("line-%d", i))
			case !errors.Is(err, jobs.ErrNotFound):
				t.Errorf("StationWorkOrder(line-%d) = %v, want it taken or refused as not found", i, err)
			}
		}
		got, err := svcs[0].Stations(ctx, "WO-RACE")
		if len(won) != 1 || err != nil || !slices.Equal(got, won) {
			t.Errorf("%d stations raced for WO-RACE: %q took it, Stations = %q, %v; want one, listed alone", stations, won, got, err)
		}
	})
}

// TestStationReach checks what a station key reaches besides its work
// orders: their products, the artifacts of bundles, and the devices each
// work order worked on.
func TestStationReach(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageDevelopment)
		addProduct(t, s, "Q", jobs.StageDevelopment)
		addProduct(t, s, "R", jobs.StageDevelopment)
		tokP, secretP := addToken(t, s, "P", 10, time.Time{})
		tokQ, _ := addToken(t, s, "Q", 10, time.Time{})
		addWorkOrder(t, s, "WO-P", "P", tokP, "line-1")
		addWorkOrder(t, s, "WO-Q", "Q", tokQ, "line-1", "line-2")
		addWorkOrder(t, s, "WO-Q2", "Q", tokQ, "line-1")
		addWorkOrder(t, s, "WO-P2", "P", tokP, "line-3")
		if err := s.UnassignStation(ctx, "WO-P2", "line-3"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Activate(ctx, jobs.ActivateRequest{WorkOrder: "WO-P", Product: "P", HardwareID: hwID(1), FirmwareVersion: "1.0", Token: secretP}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, "P", secretP, hwID(2), "", ""); err != nil {
			t.Fatal(err)
		}
		_, files := testBundle("1.0")
		shared := sum(files["app.bin"])

		products := []struct {
			station string
			want    []string
		}{
			{"line-1", []string{"P", "Q"}},
			{"line-2", []string{"Q"}},
			{"line-3", nil},
			{"line-9", nil},
		}
		for _, tt := range products {
			if got, err := s.StationProducts(ctx, tt.station); err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("StationProducts(%s) = %q, %v; want %q", tt.station, got, err, tt.want)
			}
		}
		artifacts := []struct {
			sum  string
			want []string
		}{
			{shared, []string{"P", "Q", "R"}}, // testBundle's bytes are the version's
			{strings.Repeat("0", 64), nil},
		}
		for _, tt := range artifacts {
			if got, err := s.ArtifactProducts(ctx, tt.sum); err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ArtifactProducts(%s) = %q, %v; want %q", tt.sum, got, err, tt.want)
			}
		}
		worked := []struct {
			workOrder string
			n         int
			want      bool
		}{
			{"WO-P", 1, true},
			{"WO-P", 2, false}, // claimed outside any work order
			{"WO-P2", 1, false},
			{"WO-P", 3, false},
		}
		for _, tt := range worked {
			if got, err := s.WorkedOn(ctx, tt.workOrder, hwID(tt.n)); err != nil || got != tt.want {
				t.Errorf("WorkedOn(%s, %s) = %v, %v; want %v", tt.workOrder, hwID(tt.n), got, err, tt.want)
			}
		}
	})
}

// TestMigrationAssignsHistory: a DMS upgraded to station lists assigns
// each work order to the stations that already worked under it, by its
// devices' history and by the stations' journals; a work order none
// worked under stays open to its first station.
func TestMigrationAssignsHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		st := openStore(t, dsn)
		s := &Service{Store: st, TokenKey: testKey}
		addProduct(t, s, "P", jobs.StageDevelopment)
		tok, secret := addToken(t, s, "P", 10, time.Time{})
		addWorkOrder(t, s, "WO-H", "P", tok)
		addWorkOrder(t, s, "WO-E", "P", tok)
		if _, err := s.Activate(ctx, jobs.ActivateRequest{WorkOrder: "WO-H", Product: "P", HardwareID: hwID(1), FirmwareVersion: "1.0", Token: secret, Station: "line-7"}); err != nil {
			t.Fatal(err)
		}
		ev := journal.Event{Seq: 1, Station: "line-8", Time: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Kind: journal.KindStep,
			WorkOrder: "WO-H", Slot: "S01", Device: string(hwID(1)), Step: "identify", Status: journal.StatusPassed}
		if _, err := s.IngestEvents(ctx, "line-8", []journal.Event{ev}); err != nil {
			t.Fatal(err)
		}
		// Back to the schema before station lists.
		err := st.update(ctx, func(t *tx) error {
			if _, err := t.exec(ctx, "DROP TABLE work_order_stations"); err != nil {
				return err
			}
			_, err := t.exec(ctx, "DELETE FROM schema_migrations WHERE version = 3")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}

		s = &Service{Store: openStore(t, dsn), TokenKey: testKey}
		for id, want := range map[string][]string{"WO-H": {"line-7", "line-8"}, "WO-E": nil} {
			if got, err := s.Stations(ctx, id); err != nil || !slices.Equal(got, want) {
				t.Errorf("after the migration, Stations(%s) = %q, %v; want %q", id, got, err, want)
			}
		}
		if _, err := s.StationWorkOrder(ctx, "line-9", "WO-H"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("StationWorkOrder(line-9, WO-H) = %v, want not found: the work order has its stations", err)
		}
		if _, err := s.StationWorkOrder(ctx, "line-9", "WO-E"); err != nil {
			t.Errorf("StationWorkOrder(line-9, WO-E) = %v, want it taken by its first station", err)
		}
	})
}
