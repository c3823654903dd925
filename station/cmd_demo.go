package station

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
)

const demoHelp = `
station demo: the whole flow on this machine, with no hardware.

It starts a device-management service (DMS) on SQLite, served over real HTTP
on loopback, with one product, a firmware bundle, an activation token and a
work order; the station pulls the work order and its firmware from it with
its own API key, claims every device through it and pushes its journal to it,
as it would with a "station dms" elsewhere on the line. N simulated
ESP32 chips that speak the real ROM bootloader protocol on pseudo-terminals,
paced at the real baud rate; and runs the work order on them end to end:

  identify → preflight → flash → verify → activate → lock → label → done

Every step is recorded in a SQLite journal; labels are written as ZPL files.
The exit status is 0 when every device passed and 1 when one failed.

Examples:
  station demo
  station demo --devices 16 --image-size 2MiB --json
  station demo --fault S03=unplug@40 --fault S05=corrupt-flash
  station demo --chip esp32s3 --keep --dir /tmp/demo
`

// demo is "station demo".
func (m *Main) demo(ctx context.Context, args []string) error {
	fs := m.newFlagSet("demo", demoHelp)
	var (
		devices, baud, parallel int
		imageSize, chip, dir    string
		protocol                string
		locks                   string
		keep, asJSON            bool
		faults                  faultFlags
	)
	fs.IntVar(&devices, "devices", 8, "how many simulated devices (slots)")
	fs.StringVar(&imageSize, "image-size", "1MiB", "`size` of the generated firmware image, e.g. 512KiB, 1MiB, 2MiB")
	fs.IntVar(&baud, "baud", 921600, "serial `speed` after the bootloader handshake")
	fs.StringVar(&protocol, "protocol", "esp", "the devices' `protocol`: esp (ESP32 ROM bootloader), stm32 (STM32 UART bootloader) gdb (STM32F405 in QEMU, over the GDB remote protocol), dfu (STM32 DfuSe bootloaders on a simulated USB bus) or block (disk images to SD cards: loop devices)")
	fs.StringVar(&chip, "chip", "", "the simulated `chip`: esp32 (default) or esp32s3; for stm32 f4 (default), f1, f0, l4 or g0")
	fs.StringVar(&locks, "lock", "", "comma-separated eFuses to burn as the device lock (default: JTAG_DISABLE on esp32; DIS_PAD_JTAG,ENABLE_SECURITY_DOWNLOAD on esp32s3)")
	fs.IntVar(&parallel, "parallel", 0, "most slots working at once (default: all)")
	fs.StringVar(&dir, "dir", "", "work `folder` for the DMS, journal, ports and labels (default: a temporary folder, removed unless --keep)")
	fs.BoolVar(&keep, "keep", false, "keep the work folder")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON on stdout (progress goes to stderr)")
	fs.Var(&faults, "fault", "`SLOT=FAULT` to inject, as for station sim (repeatable): unplug@P, write-error, corrupt-link, corrupt-flash, slow=D")
	logger, err := m.parseWithLogger(fs, args, "warn")
	if err != nil {
		return err
	}
	sizeSet := false
	fs.Visit(func(f *flag.Flag) { sizeSet = sizeSet || f.Name == "image-size" })
	if protocol == "stm32" && !sizeSet {
		// The UART bootloader runs at 115200 baud: 1 MiB would take
		// a minute and a half per device.
		imageSize = "64KiB"
	}
	target, err := targetFor(protocol)
	if err != nil {
		return err
	}
	size, err := target.imageSize(imageSize)
	switch {
	case err != nil:
		return err
	case devices < 1 || devices > 128:
		return usageErr("--devices must be between 1 and 128")
	}
	if chip == "" && protocol == "esp" {
		chip = "esp32"
	}
	lockList := target.locks(chip)
	if locks != "" {
		lockList = strings.Split(locks, ",")
	}
	temporary := dir == ""
	if temporary {
		if dir, err = os.MkdirTemp("", "station-demo-"); err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	env, err := setupDemo(ctx, demoSpec{dir: dir, devices: devices, imageSize: int(size), baud: baud,
		protocol: protocol, chip: chip, locks: lockList, faults: faults, parallel: parallel}, logger)
	if err != nil {
		return err
	}
	defer env.close()
	b, j, img, labels := env.batch, env.journal, env.image, env.labels
	out := output{json: asJSON, stdout: m.Stdout, stderr: m.Stderr}
	stopSync := startSync(ctx, env.link, b, 30*time.Second, logger)
	res, err := b.execute(ctx, out)
	synced := stopSync()
	if err != nil {
		return err
	}
	ratio := zlibRatio(img)
	nLabels := countFiles(labels, ".zpl")
	extra := map[string]any{
		"journal": j.Path(), "dir": dir, "kept": keep || !temporary, "labels": nLabels, "labels_dir": labels,
		"image_bytes": len(img), "image_zlib_ratio": ratio, "baud": baud, "chip": chip, "protocol": protocol,
		"dms": env.link.url, "synced_events": synced.Acked, "unsynced_events": synced.Lag,
	}
	human := [][2]string{
		{"image", fmt.Sprintf("%d bytes, zlib ratio %.2f, %d baud", len(img), ratio, baud)},
		{"journal", fmt.Sprintf("%s (%d events this run)", j.Path(), res.Events)},
		{"labels", fmt.Sprintf("%d in %s", nLabels, labels)},
		{"dms", env.link.url},
		{"sync", syncLine(synced)},
	}
	if temporary && !keep {
		human = append(human, [2]string{"folder", dir + " (removed at exit; --keep keeps it)"})
	}
	return report(out, res, extra, human)
}

func defaultLocks(chip string) []string {
	if m, err := parseModel(chip); err == nil && m == sim.ESP32S3 {
		return []string{"DIS_PAD_JTAG", "ENABLE_SECURITY_DOWNLOAD"}
	}
	return []string{"JTAG_DISABLE"}
}

// writeWorkOrderFile writes the work order for station run without its
// token, which stays in the folder's token file (mode 0600).
func writeWorkOrderFile(path string, wo jobs.WorkOrder) error {
	wo.Authorization.Token = jobs.Secret{}
	b, err := json.MarshalIndent(wo, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func zlibRatio(b []byte) float64 {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return float64(buf.Len()) / float64(len(b))
}

func countFiles(dir, suffix string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			n++
		}
	}
	return n
}

// demoSpec says what station demo sets up.
type demoSpec struct {
	dir       string
	devices   int
	imageSize int
	// protocol is the devices' protocol: esp (the default), stm32, gdb.
	protocol string
	baud     int
	chip     string
	locks    []string
	faults   faultFlags
	parallel int
	// workOrder is the seeded work order's id (default WO-DEMO-0001);
	// dms the seeded DMS's database (default sqlite:DIR/dms.db). Tests
	// set them to seed the examples of the README.
	workOrder string
	dms       string
}

// demoEnv is a demo ready to run: an embedded DMS seeded with a work order,
// simulated devices on pseudo-terminals and their fixture, a journal.
type demoEnv struct {
	dir     string
	image   []byte
	dms     *dms.Service
	store   *dms.Store
	fleet   *sim.Fleet // the simulated ESP chips, for tests; nil for other protocols
	sim     *simulated
	journal *journal.Journal
	batch   *batch
	labels  string
	link    *dmsLink
	// stopDMS stops serving the DMS over HTTP.
	stopDMS []func()
}

func (e *demoEnv) close() {
	e.journal.Close()
	e.sim.close()
	for _, stop := range e.stopDMS {
		stop()
	}
	e.store.Close()
}

// setupDemo builds the demo in spec.dir. Run again on a kept folder, it
// reuses the DMS, the work order and its token, and the journal.
func setupDemo(ctx context.Context, spec demoSpec, logger *slog.Logger) (_ *demoEnv, err error) {
	if err := os.MkdirAll(spec.dir, 0o755); err != nil {
		return nil, err
	}
	env := &demoEnv{dir: spec.dir, labels: filepath.Join(spec.dir, "labels")}
	var closers []func()
	defer func() {
		if err != nil {
			for _, c := range slices.Backward(closers) {
				c()
			}
		}
	}()

	seed, err := seedDemo(ctx, spec, logger)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { seed.store.Close() })
	env.image, env.store, env.dms = seed.image, seed.store, seed.svc

	// The DMS over HTTP on loopback, and the station's own key for it.
	url, err := serveDMS(seed.svc, logger, &env.stopDMS)
	closers = append(closers, env.stopDMS...)
	if err != nil {
		return nil, err
	}
	key, err := stationKey(ctx, seed.svc, demoStation, filepath.Join(spec.dir, "station.key"))
	if err != nil {
		return nil, err
	}
	env.link, err = openDMS(ctx, url, key, demoStation, nil, logger)
	if err != nil {
		return nil, err
	}
	fetched, err := env.link.client.WorkOrder(ctx, seed.wo.ID)
	if err != nil {
		return nil, fmt.Errorf("fetch the demo's work order over HTTP: %w", err)
	}
	wo, err := authorize(fetched, seed.wo.Authorization.Token)
	if err != nil {
		return nil, err
	}

	var fx *fixtures.Fixture
	if spec.protocol == "" || spec.protocol == "esp" {
		fleet, f, err := startSimFleet(ctx, filepath.Join(spec.dir, "dev"), spec.devices, spec.chip, spec.faults, logger)
		if err != nil {
			return nil, err
		}
		env.fleet, env.sim, fx = fleet, &simulated{fixture: f, close: fleet.Close}, f
	} else {
		if env.sim, err = startSimulated(ctx, spec.protocol, filepath.Join(spec.dir, "dev"), spec.devices, spec.chip, spec.faults, logger); err != nil {
			return nil, err
		}
		fx = env.sim.fixture
	}
	closers = append(closers, func() { env.sim.close() })
	if err := writeFixture(filepath.Join(spec.dir, "fixture.yaml"), fx); err != nil {
		return nil, err
	}
	j, err := journal.Open(ctx, filepath.Join(spec.dir, "journal.db"), demoStation, logger)
	if err != nil {
		return nil, err
	}
	env.journal = j
	env.batch = &batch{
		wo: wo, fixture: fx, journal: j, upstream: env.link.upstream, http: env.link.http(),
		dfuBus: env.sim.dfuBus, printer: &label.DirSink{Dir: env.labels}, station: demoStation, operator: "demo",
		cacheDir: filepath.Join(spec.dir, "artifact-cache"), parallel: spec.parallel, logger: logger,
	}
	return env, nil
}

// demoStation is the demo station's id.
const demoStation = "demo-station"

// demoSeed is the demo's embedded DMS and what it holds.
type demoSeed struct {
	image []byte
	store *dms.Store
	svc   *dms.Service
	wo    jobs.WorkOrder
}

// seedDemo writes the demo's firmware image, opens the embedded DMS in
// spec.dir and seeds it with the work order as an administrator would,
// then writes the work order file (without its token) and the token file
// for station run. A folder seeded before is reused.
func seedDemo(ctx context.Context, spec demoSpec, logger *slog.Logger) (_ demoSeed, err error) {
	// The firmware: for ESP a valid ESP-IDF application image whose
	// boot banner carries its version; for microcontrollers a raw image
	// with its version stamped in.
	const version = "2.3.1"
	target, err := targetFor(spec.protocol)
	if err != nil {
		return demoSeed{}, err
	}
	img := target.image(version, spec.imageSize)
	sum := sha256.Sum256(img)
	if err := os.WriteFile(filepath.Join(spec.dir, "thermostat-app.bin"), img, 0o644); err != nil {
		return demoSeed{}, err
	}
	store, err := dms.Open(ctx, cmp.Or(spec.dms, "sqlite:"+filepath.Join(spec.dir, "dms.db")), dms.WithLogger(logger))
	if err != nil {
		return demoSeed{}, fmt.Errorf("open embedded DMS: %w", err)
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	svc := &dms.Service{Store: store, Logger: logger}
	woID := cmp.Or(spec.workOrder, "WO-DEMO-0001")
	wo, err := svc.WorkOrder(ctx, woID)
	if err == nil {
		// A kept folder run again: the token is in its file.
		b, rerr := os.ReadFile(filepath.Join(spec.dir, "token"))
		if rerr != nil {
			return demoSeed{}, fmt.Errorf("demo folder %s holds a work order but no token file: use a new folder", spec.dir)
		}
		if err := svc.AuthorizeWorkOrder(ctx, &wo, jobs.NewSecret(strings.TrimSpace(string(b)))); err != nil {
			return demoSeed{}, err
		}
	} else {
		res, err := svc.Seed(ctx, dms.SeedSpec{
			Customer: dms.Customer{ID: "ACME", Name: "Acme Heating"},
			Product:  jobs.Product{Code: "THERMO", Name: "Smart thermostat", PartNumber: "TH-100-A", Stage: jobs.StageProduction},
			Bundle: jobs.Bundle{Version: version, Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{
				Name: "thermostat-app.bin", Target: target.protocol, Address: jobs.NewAddress(target.address), Size: int64(len(img)),
				SHA256: hex.EncodeToString(sum[:]), Format: cmp.Or(target.format, "bin"), URL: "thermostat-app.bin",
			}}},
			Files: map[string][]byte{"thermostat-app.bin": img},
			WorkOrder: dms.WorkOrderSpec{ID: woID, Quantity: spec.devices,
				Lock:    jobs.LockPolicy{DMS: true, Device: spec.locks},
				Label:   jobs.LabelSpec{Template: "default"},
				Flasher: jobs.FlasherSettings{Baud: spec.baud}},
		})
		if err != nil {
			return demoSeed{}, fmt.Errorf("seed the embedded DMS: %w", err)
		}
		wo = res.WorkOrder
		if err := os.WriteFile(filepath.Join(spec.dir, "token"), []byte(res.Token.Reveal()+"\n"), 0o600); err != nil {
			return demoSeed{}, err
		}
	}
	if err := writeWorkOrderFile(filepath.Join(spec.dir, "work-order.json"), wo); err != nil {
		return demoSeed{}, err
	}
	return demoSeed{image: img, store: store, svc: svc, wo: wo}, nil
}
