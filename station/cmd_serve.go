package station

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/station/daemon"
)

const serveHelp = `
station serve: the station daemon. It serves the local API that the kiosk
(the operator's screen) uses, and does the work the operator asks for:

  1. an operator signs in (PIN or badge) and scans a work order: the station
     fetches it from the DMS with its firmware;
  2. Start: every device plugged into a slot of the fixture goes through
     identify → preflight → flash → verify → activate → lock → label → done;
     a device plugged in later starts by itself;
  3. a finished slot shows passed or failed until its device is unplugged;
     plug the next one in and it starts.

Everything is recorded in the journal and pushed to the DMS. After a crash
or a restart the station loads the same work order, returns to the same
state, and devices resume where they stopped (a device already done is not
run again).

The configuration is one YAML file (docs/station-yaml.md has a full example):
station id, fixture, DMS, journal, API socket, operators.

Try it with no hardware: --simulate N runs N simulated devices and an
embedded DMS with a work order in this process; the operators are "Operator"
(PIN 1234) and "Supervisor" (PIN 0000) unless a config names others. A
control socket in the simulation folder takes "unplug N", "plug N" (a new
device) and "replug N" lines (socat - UNIX-CONNECT:DIR/control, or nc -U).

Examples:
  station serve --config /etc/station/station.yaml
  station serve --simulate 16 --socket /tmp/station.sock
  station serve --simulate 8 --cycle 5s --plug-delay 1s --dir /tmp/demo --json
`

// demoOperators may sign in to a simulated station without a config.
var demoOperators = []daemon.Operator{
	{Name: "Operator", PINSHA256: daemon.HashSecret("1234")},
	{Name: "Supervisor", PINSHA256: daemon.HashSecret("0000"), Supervisor: true},
}

// serve is "station serve".
func (m *Main) serve(ctx context.Context, args []string) error {
	fs := m.newFlagSet("serve", serveHelp)
	var (
		configPath, socket, workOrder, dir string
		simulate                           int
		cycle, plugDelay                   time.Duration
		imageSize                          string
		faults                             multiFlag
		asJSON, idle                       bool
	)
	fs.StringVar(&configPath, "config", "", "the station's configuration `file` (YAML; see docs/station-yaml.md)")
	fs.StringVar(&socket, "socket", "", "`path` of the local API's unix socket (overrides api.socket)")
	fs.IntVar(&simulate, "simulate", 0, "run `N` simulated devices and an embedded DMS (a demo station; no hardware)")
	fs.DurationVar(&cycle, "cycle", 0, "with --simulate: swap each device for a new one this `long` after it booted its new firmware")
	fs.DurationVar(&plugDelay, "plug-delay", 0, "with --simulate: start with empty slots and plug a device in every `interval`")
	fs.StringVar(&imageSize, "image-size", "", "with --simulate: `size` of the demo firmware (default 256KiB)")
	fs.Var(&faults, "fault", "with --simulate: `SLOT=FAULT` to inject, as for station sim (repeatable)")
	fs.StringVar(&dir, "dir", "", "with --simulate and no --config: the `folder` for the journal, the simulation and the socket (default: a new temporary folder)")
	fs.BoolVar(&idle, "idle", false, "with --simulate: start with no work order loaded, for the operator to scan one")
	fs.StringVar(&workOrder, "work-order", "", "load this work order `id` at start (unless the station was running another before a restart)")
	fs.BoolVar(&asJSON, "json", false, "print the startup line as JSON (socket path, station, slots)")
	logger, err := m.parseWithLogger(fs, args, "warn")
	if err != nil {
		return err
	}
	var cfg daemon.Config
	switch {
	case configPath != "":
		if cfg, err = daemon.LoadConfig(configPath); err != nil {
			return err
		}
	case simulate > 0:
		if dir == "" {
			if dir, err = os.MkdirTemp("", "station-serve-"); err != nil {
				return err
			}
		}
		if dir, err = filepath.Abs(dir); err != nil {
			return err
		}
		cfg = daemon.Config{Station: demoStation, Journal: "journal.db", API: daemon.API{Socket: "api.sock"},
			Operators: demoOperators, Dir: dir}
	default:
		return usageErr("--config is required (see docs/station-yaml.md), or --simulate N for a demo station")
	}
	if simulate > 0 {
		if cfg.Simulate == nil {
			cfg.Simulate = &daemon.Simulate{}
		}
		cfg.Simulate.Devices, cfg.Fixture = simulate, ""
	}
	if s := cfg.Simulate; s != nil {
		if cycle > 0 {
			s.Cycle = fixtures.Duration(cycle)
		}
		if plugDelay > 0 {
			s.PlugDelay = fixtures.Duration(plugDelay)
		}
		if imageSize != "" {
			t, _ := targetFor("esp") // station serve simulates ESP chips
			size, err := t.imageSize(imageSize)
			if err != nil {
				return err
			}
			s.ImageSize = size
		}
		s.Faults = append(s.Faults, faults...)
	} else if cycle > 0 || plugDelay > 0 || imageSize != "" || len(faults) > 0 {
		return usageErr("--cycle, --plug-delay, --image-size and --fault go with --simulate")
	}
	if socket != "" {
		if socket, err = filepath.Abs(socket); err != nil {
			return err
		}
		cfg.API.Socket = socket
	}
	if workOrder != "" {
		cfg.WorkOrder = workOrder
	}

	var simu *Simulation
	var spec daemon.Simulate
	if s := cfg.Simulate; s != nil {
		spec = *s
		if err := cfg.Validate(); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		simu, err = StartSimulation(ctx, cfg.SimDir(), cfg.Station, *s, logger)
		if err != nil {
			return err
		}
		defer simu.Close()
		simu.Configure(&cfg)
		if idle && workOrder == "" {
			cfg.WorkOrder = ""
		}
		cfg.Simulate = nil // the simulation stands in for the fixture and the DMS
		if s.PlugDelay > 0 {
			if err := simu.EmptySlots(); err != nil {
				return err
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	backend, err := OpenBackend(ctx, cfg, m.Getenv, logger)
	if err != nil {
		return err
	}
	d, err := daemon.New(ctx, cfg, daemon.Options{Backend: backend, Logger: logger, Version: m.Version})
	if err != nil {
		backend.Close()
		return err
	}
	if err := d.Listen(); err != nil {
		d.Journal().Close()
		backend.Close()
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	simDone := make(chan struct{})
	if simu != nil {
		go func() {
			defer close(simDone)
			simu.Run(rctx, spec, logger)
		}()
	} else {
		close(simDone)
	}
	if err := m.serveBanner(asJSON, configPath, cfg, d, simu); err != nil {
		return err
	}
	err = d.Run(rctx)
	cancel()
	<-simDone
	return err
}

// serveBanner prints where the daemon listens.
func (m *Main) serveBanner(asJSON bool, configPath string, cfg daemon.Config, d *daemon.Daemon, simu *Simulation) error {
	info := map[string]any{
		"socket": d.SocketPath(), "station": cfg.Station, "slots": len(d.Fixture().Slots),
		"journal": d.Journal().Path(), "fixture": cfg.Path(cfg.Fixture),
	}
	if cfg.API.Listen != "" {
		info["listen"] = cfg.API.Listen
	}
	if simu != nil {
		info["simulation"], info["control"], info["work_order"] = simu.Dir, simu.Control, simu.WorkOrder
	}
	if asJSON {
		return json.NewEncoder(m.Stdout).Encode(info)
	}
	fmt.Fprintf(m.Stdout, "station %s serving %d slots; local API on unix:%s (Ctrl-C stops)\n", cfg.Station, len(d.Fixture().Slots), d.SocketPath())
	if simu != nil {
		fmt.Fprintf(m.Stdout, "simulation in %s: work order %s; control socket %s\n", simu.Dir, simu.WorkOrder, simu.Control)
		if configPath == "" {
			fmt.Fprintln(m.Stdout, `operators: "Operator" PIN 1234, "Supervisor" PIN 0000`)
		}
	}
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (f *multiFlag) String() string { return strings.Join(*f, ",") }

// Set adds one value.
func (f *multiFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}
