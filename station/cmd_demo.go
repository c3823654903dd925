package station

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
)

const demoHelp = `
station demo: the whole flow on this machine, with no hardware.

It starts an embedded device-management service (DMS) on SQLite with one
product, a firmware bundle, an activation token and a work order; N simulated
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
		locks                   string
		keep, asJSON            bool
		faults                  faultFlags
		lf                      logFlags
	)
	fs.IntVar(&devices, "devices", 8, "how many simulated devices (slots)")
	fs.StringVar(&imageSize, "image-size", "1MiB", "`size` of the generated firmware image, e.g. 512KiB, 1MiB, 2MiB")
	fs.IntVar(&baud, "baud", 921600, "serial `speed` after the bootloader handshake")
	fs.StringVar(&chip, "chip", "esp32", "the simulated `chip`: esp32 or esp32s3")
	fs.StringVar(&locks, "lock", "", "comma-separated eFuses to burn as the device lock (default: JTAG_DISABLE on esp32; DIS_PAD_JTAG,ENABLE_SECURITY_DOWNLOAD on esp32s3)")
	fs.IntVar(&parallel, "parallel", 0, "most slots working at once (default: all)")
	fs.StringVar(&dir, "dir", "", "work `folder` for the DMS, journal, ports and labels (default: a temporary folder, removed unless --keep)")
	fs.BoolVar(&keep, "keep", false, "keep the work folder")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON on stdout (progress goes to stderr)")
	fs.Var(&faults, "fault", "`SLOT=FAULT` to inject, as for station sim (repeatable): unplug@P, write-error, corrupt-link, corrupt-flash, slow=D")
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	logger, err := lf.logger(m.Stderr)
	if err != nil {
		return err
	}
	size, err := fixtures.ParseSize(imageSize)
	switch {
	case err != nil:
		return usageErr("--image-size: %v", err)
	case size < 4096 || size > 3<<20:
		return usageErr("--image-size must be between 4KiB and 3MiB (the app partition of a 4 MiB chip)")
	case devices < 1 || devices > 128:
		return usageErr("--devices must be between 1 and 128")
	}
	lockList := defaultLocks(chip)
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
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	// The firmware: a valid ESP-IDF application image whose boot banner
	// carries its version.
	const version = "2.3.1"
	img := sim.ESPAppImage(version, "thermostat", int(size), 1)
	sum := sha256.Sum256(img)
	if err := os.WriteFile(filepath.Join(dir, "thermostat-app.bin"), img, 0o644); err != nil {
		return err
	}

	// The embedded DMS, seeded as an administrator would.
	store, err := dms.OpenSQLite(ctx, filepath.Join(dir, "dms.db"))
	if err != nil {
		return fmt.Errorf("open embedded DMS: %w", err)
	}
	defer store.Close()
	svc := &dms.Service{Store: store, Logger: logger}
	woID := "WO-DEMO-0001"
	wo, err := svc.WorkOrder(ctx, woID)
	var token jobs.Secret
	if err == nil {
		// A kept folder run again: the token is in its file.
		b, rerr := os.ReadFile(filepath.Join(dir, "token"))
		if rerr != nil {
			return fmt.Errorf("demo folder %s holds a work order but no token file: use a new folder", dir)
		}
		token = jobs.NewSecret(strings.TrimSpace(string(b)))
		if err := svc.AuthorizeWorkOrder(ctx, &wo, token); err != nil {
			return err
		}
	} else {
		res, err := svc.Seed(ctx, dms.SeedSpec{
			Customer: dms.Customer{ID: "ACME", Name: "Acme Heating"},
			Product:  jobs.Product{Code: "THERMO", Name: "Smart thermostat", PartNumber: "TH-100-A", Stage: jobs.StageProduction},
			Bundle: jobs.Bundle{Version: version, Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{
				Name: "thermostat-app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Size: int64(len(img)),
				SHA256: hex.EncodeToString(sum[:]), Format: "bin", URL: "thermostat-app.bin",
			}}},
			Files: map[string][]byte{"thermostat-app.bin": img},
			WorkOrder: dms.WorkOrderSpec{ID: woID, Quantity: devices,
				Lock:    jobs.LockPolicy{DMS: true, Device: lockList},
				Label:   jobs.LabelSpec{Template: "default"},
				Flasher: jobs.FlasherSettings{Baud: baud}},
		})
		if err != nil {
			return fmt.Errorf("seed the embedded DMS: %w", err)
		}
		wo, token = res.WorkOrder, res.Token
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token.Reveal()+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := writeWorkOrderFile(filepath.Join(dir, "work-order.json"), wo); err != nil {
		return err
	}

	fleet, fx, err := startSimFleet(ctx, filepath.Join(dir, "dev"), devices, chip, faults, logger)
	if err != nil {
		return err
	}
	defer fleet.Close()
	if err := writeFixture(filepath.Join(dir, "fixture.yaml"), fx); err != nil {
		return err
	}
	j, err := journal.Open(ctx, filepath.Join(dir, "journal.db"), "demo-station", logger)
	if err != nil {
		return err
	}
	defer j.Close()
	labels := filepath.Join(dir, "labels")
	b := &batch{
		wo: wo, woDir: dir, fixture: fx, journal: j, upstream: &dms.Local{Service: svc},
		printer: &label.DirSink{Dir: labels}, station: "demo-station", operator: "demo",
		cacheDir: filepath.Join(dir, "artifact-cache"), parallel: parallel, logger: logger,
	}
	out := output{json: asJSON, stdout: m.Stdout, stderr: m.Stderr}
	res, err := b.execute(ctx, out)
	if err != nil {
		return err
	}
	ratio := zlibRatio(img)
	nLabels := countFiles(labels, ".zpl")
	extra := map[string]any{
		"journal": j.Path(), "dir": dir, "kept": keep || !temporary, "labels": nLabels, "labels_dir": labels,
		"image_bytes": len(img), "image_zlib_ratio": ratio, "baud": baud, "chip": chip,
	}
	human := [][2]string{
		{"image", fmt.Sprintf("%d bytes, zlib ratio %.2f, %d baud", len(img), ratio, baud)},
		{"journal", fmt.Sprintf("%s (%d events this run)", j.Path(), res.Events)},
		{"labels", fmt.Sprintf("%d in %s", nLabels, labels)},
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

// writeWorkOrderFile writes the work order for station run; its token is
// written as [redacted] and kept in the folder's token file instead.
func writeWorkOrderFile(path string, wo jobs.WorkOrder) error {
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
