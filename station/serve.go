package station

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/daemon"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/upstream"
)

// serveBackend is what the daemon needs of the DMS, built from the same
// pieces as station run: openDMS, fetchWorkOrder with its cache,
// authorize and the batch's runner.
type serveBackend struct {
	link     *dmsLink
	token    jobs.Secret
	woCache  workOrderCache
	cacheDir string
	closers  []func()
}

var _ daemon.Backend = (*serveBackend)(nil)

// OpenBackend connects to the DMS that cfg names and returns the daemon's
// backend. An embedded DMS (sqlite:FILE) is served on loopback HTTP in
// this process, with a station key it keeps next to its file, so that the
// daemon talks to it as to a remote one. getenv reads STATION_KEY and
// STATION_TOKEN when the files are not given; nil means os.Getenv.
func OpenBackend(ctx context.Context, cfg daemon.Config, getenv func(string) string, logger *slog.Logger) (daemon.Backend, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	token, err := readSecret(cfg.Path(cfg.DMS.TokenFile), "STATION_TOKEN", getenv)
	if err != nil {
		return nil, fmt.Errorf("dms.token_file: %w", err)
	}
	b := &serveBackend{
		token:    token,
		woCache:  workOrderCache{filepath.Join(filepath.Dir(cfg.Path(cfg.Journal)), "work-orders")},
		cacheDir: cfg.CacheDir(),
	}
	url := cfg.DMS.URL
	var key jobs.Secret
	if file, ok := strings.CutPrefix(url, "sqlite:"); ok {
		file = cfg.Path(file)
		store, err := dms.OpenSQLite(ctx, file, dms.WithLogger(logger))
		if err != nil {
			return nil, fmt.Errorf("open embedded DMS: %w", err)
		}
		b.closers = append(b.closers, func() { store.Close() })
		svc := &dms.Service{Store: store, Logger: logger}
		keyFile := cfg.Path(cfg.DMS.KeyFile)
		if keyFile == "" {
			keyFile = file + "." + cfg.Station + ".key"
		}
		if key, err = stationKey(ctx, svc, cfg.Station, keyFile); err != nil {
			b.Close()
			return nil, err
		}
		if url, err = serveDMS(svc, logger, &b.closers); err != nil {
			b.Close()
			return nil, err
		}
	} else if key, err = readSecret(cfg.Path(cfg.DMS.KeyFile), "STATION_KEY", getenv); err != nil {
		return nil, fmt.Errorf("dms.key_file: %w", err)
	}
	if b.link, err = openDMS(ctx, url, key, cfg.Station, nil, logger); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// WorkOrder fetches the work order and gives it the token.
func (b *serveBackend) WorkOrder(ctx context.Context, id string, say func(string)) (jobs.WorkOrder, error) {
	fetched, err := fetchWorkOrder(ctx, b.link, id, b.woCache, say)
	if err != nil {
		return jobs.WorkOrder{}, err
	}
	if b.token.IsZero() && fetched.TokenID != "" {
		return jobs.WorkOrder{}, fmt.Errorf("work order %s is authorized by activation token %s, and the station has no token: put its secret in the file named by dms.token_file: %w",
			id, fetched.TokenID, jobs.ErrTokenInvalid)
	}
	return authorize(fetched, b.token)
}

// Runner builds the work order's runner as station run does.
func (b *serveBackend) Runner(ctx context.Context, req daemon.RunnerRequest) (*jobs.Runner, error) {
	bt := &batch{
		wo: req.WorkOrder, fixture: req.Fixture, journal: req.Journal, upstream: b.link.upstream,
		http: b.link.http(), printer: req.Printer, station: req.Station, operator: req.Operator,
		cacheDir: b.cacheDir, logger: req.Logger,
	}
	reserveProcs(len(req.Fixture.Slots))
	return bt.runner(ctx, req.Bus, req.Progress)
}

// SyncClient is the DMS client the journal goes up to.
func (b *serveBackend) SyncClient() *upstream.Client { return b.link.client }

// Close closes the DMS connection and an embedded DMS.
func (b *serveBackend) Close() error {
	if b.link != nil {
		b.link.close()
	}
	for _, c := range slices.Backward(b.closers) {
		c()
	}
	b.closers = nil
	return nil
}

// serveDMS serves an embedded DMS on a loopback port and returns its URL;
// closing it is added to closers.
func serveDMS(svc *dms.Service, logger *slog.Logger, closers *[]func()) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("serve the embedded DMS: %w", err)
	}
	srv := &http.Server{Handler: server.New(server.Config{Service: svc, Logger: logger}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	*closers = append(*closers, func() { srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// stationKey returns the station's API key for an embedded DMS, kept in
// path (mode 0600); it is created the first time.
func stationKey(ctx context.Context, svc *dms.Service, station, path string) (jobs.Secret, error) {
	if b, err := os.ReadFile(path); err == nil {
		return jobs.NewSecret(strings.TrimSpace(string(b))), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return jobs.Secret{}, fmt.Errorf("read the station key: %w", err)
	}
	_, secret, err := svc.CreateKey(ctx, dms.Key{Role: dms.RoleStation, Station: station, Name: "station " + station})
	if err != nil {
		return jobs.Secret{}, fmt.Errorf("create the station's API key in the embedded DMS: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret.Reveal()+"\n"), 0o600); err != nil {
		return jobs.Secret{}, fmt.Errorf("keep the station key: %w", err)
	}
	return secret, nil
}

// Simulation is a demo station's world: simulated chips on
// pseudo-terminals in a fixture, a pair of hands to swap them, and an
// embedded DMS on loopback HTTP seeded as station demo seeds it.
type Simulation struct {
	// Dir holds the DMS, the ports, the fixture and the token.
	Dir string
	// Fixture is the fixture file of the simulated slots.
	Fixture string
	// DMSURL is the embedded DMS's address; KeyFile and TokenFile hold
	// the station's key and the work order's token.
	DMSURL    string
	KeyFile   string
	TokenFile string
	// WorkOrder is the seeded work order's id.
	WorkOrder string
	// Fleet holds the chips, Bench the hands that swap them.
	Fleet *sim.Fleet
	Bench *sim.Bench
	// Control is the path of the control socket Run serves.
	Control string

	closers []func()
}

// StartSimulation starts a simulation in dir for station: spec.Devices
// chips (all plugged in) and a DMS seeded with a work order of
// spec.Quantity devices. A folder used before keeps its DMS and token.
func StartSimulation(ctx context.Context, dir, station string, spec daemon.Simulate, logger *slog.Logger) (_ *Simulation, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if spec.Chip == "" {
		spec.Chip = "esp32"
	}
	if spec.ImageSize == 0 {
		spec.ImageSize = 256 << 10
	}
	if spec.Quantity == 0 {
		spec.Quantity = 100 * spec.Devices
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Simulation{Dir: dir, Fixture: filepath.Join(dir, "fixture.yaml"), TokenFile: filepath.Join(dir, "token"),
		KeyFile: filepath.Join(dir, "station-"+station+".key"), Control: filepath.Join(dir, "control")}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	seed, err := seedDemo(ctx, demoSpec{dir: dir, devices: spec.Quantity, imageSize: int(spec.ImageSize), baud: 921600,
		chip: spec.Chip, locks: defaultLocks(spec.Chip)}, logger)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { seed.store.Close() })
	s.WorkOrder = seed.wo.ID
	if _, err := stationKey(ctx, seed.svc, station, s.KeyFile); err != nil {
		return nil, err
	}
	if s.DMSURL, err = serveDMS(seed.svc, logger, &s.closers); err != nil {
		return nil, err
	}
	faults := faultFlags{}
	for _, f := range spec.Faults {
		if err := faults.Set(f); err != nil {
			return nil, fmt.Errorf("simulate.faults: %w", err)
		}
	}
	fleet, fx, err := startSimFleet(ctx, filepath.Join(dir, "dev"), spec.Devices, spec.Chip, faults, logger)
	if err != nil {
		return nil, err
	}
	s.Fleet = fleet
	s.closers = append(s.closers, func() { fleet.Close() })
	if err := writeFixture(s.Fixture, fx); err != nil {
		return nil, err
	}
	model, err := parseModel(spec.Chip)
	if err != nil {
		return nil, err
	}
	// New chips get seeds no earlier run handed out.
	seeds := &sim.Seeds{Next: time.Now().UnixNano()}
	s.Bench = sim.NewBench(fleet.Devices(), func(int) sim.Config {
		return sim.Config{Model: model, Seed: seeds.Take()}
	}, logger)
	return s, nil
}

// Configure points cfg at the simulation: its fixture, DMS, key, token
// and (unless cfg names one) work order.
func (s *Simulation) Configure(cfg *daemon.Config) {
	cfg.Fixture = s.Fixture
	cfg.DMS = daemon.DMS{URL: s.DMSURL, KeyFile: s.KeyFile, TokenFile: s.TokenFile}
	if cfg.WorkOrder == "" {
		cfg.WorkOrder = s.WorkOrder
	}
}

// Run plays the operator of spec until ctx ends: the control socket at
// Dir/control, plugging devices in turn (spec.PlugDelay; the slots
// start empty) and swapping finished devices (spec.Cycle). Call it after
// the slots are empty if spec.PlugDelay is set: see EmptySlots.
func (s *Simulation) Run(ctx context.Context, spec daemon.Simulate, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	ln, err := sim.ListenControl(s.Control)
	if err != nil {
		logger.Error("simulation control socket", "err", err)
		close(done)
	} else {
		go func() {
			defer close(done)
			if err := s.Bench.ServeControl(ctx, ln); err != nil {
				logger.Error("simulation control socket", "err", err)
			}
		}()
	}
	if d := time.Duration(spec.PlugDelay); d > 0 {
		go func() {
			if err := s.Bench.PlugInTurn(ctx, d); err != nil && ctx.Err() == nil {
				logger.Error("simulation: plug devices in turn", "err", err)
			}
		}()
	}
	if c := time.Duration(spec.Cycle); c > 0 {
		go s.Bench.Cycle(ctx, c, max(10*time.Second, 2*c))
	}
	<-done
}

// EmptySlots unplugs every device, for a run that plugs them in turn.
func (s *Simulation) EmptySlots() error {
	for i := range s.Fleet.Devices() {
		if err := s.Bench.Unplug(i); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the chips and the DMS.
func (s *Simulation) Close() {
	for _, c := range slices.Backward(s.closers) {
		c()
	}
	s.closers = nil
}
