package station

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
)

const runHelp = `
station run: run a work order on the devices of a fixture, unattended.

Every slot of the fixture that holds a device goes through the pipeline
identify → preflight → flash → verify → activate → lock → label → done, in
parallel. Progress is shown live; a summary follows. The exit status is 0 when
every device passed, 1 when a device failed, 2 for a wrong command line and 3
when the work could not start (bad work order, missing file, DMS down).

Run it again to retry: devices the work order already completed are
recognised and left alone, and failed devices resume from their last passed
step. Every step is recorded in the journal.

Examples:
  station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db
  station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db --slots A3
  STATION_TOKEN=stk_... station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db --json
`

// runCmd is "station run".
func (m *Main) runCmd(ctx context.Context, args []string) error {
	fs := m.newFlagSet("run", runHelp)
	var (
		woPath, fixturePath, journalPath, dmsURL, stationID, operator string
		slots, labels, tokenFile, cacheDir                            string
		parallel                                                      int
		asJSON                                                        bool
		lf                                                            logFlags
	)
	fs.StringVar(&woPath, "work-order", "", "work order `file` (JSON); see docs/work-order.md")
	fs.StringVar(&fixturePath, "fixture", "", "fixture `file` (YAML) naming the slots and their ports")
	fs.StringVar(&journalPath, "journal", "station-journal.db", "journal `file` (SQLite) that records every step")
	fs.StringVar(&dmsURL, "dms", "", "the device-management service: sqlite:`FILE` for an embedded DMS")
	fs.StringVar(&stationID, "station", "", "this station's `id` (default: the host name)")
	fs.StringVar(&operator, "operator", "", "`name` of the operator, recorded with every step")
	fs.StringVar(&slots, "slots", "", "comma-separated `slots` to run (default: all); use it to retry a slot")
	fs.IntVar(&parallel, "parallel", 0, "most slots working at once (default: all)")
	fs.StringVar(&labels, "labels", "labels", "`folder` that receives the labels (ZPL)")
	fs.StringVar(&tokenFile, "token-file", "", "`file` holding the activation token, if the work order does not (or set STATION_TOKEN)")
	fs.StringVar(&cacheDir, "cache", "", "artifact cache `folder` (default: next to the journal)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON on stdout (progress goes to stderr)")
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	logger, err := lf.logger(m.Stderr)
	if err != nil {
		return err
	}
	switch {
	case woPath == "":
		return usageErr("--work-order is required (a JSON file; see docs/work-order.md)")
	case fixturePath == "":
		return usageErr("--fixture is required (a YAML file naming the slots)")
	case dmsURL == "":
		return usageErr("--dms is required (sqlite:FILE for an embedded DMS)")
	}
	token := m.Getenv("STATION_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	wo, err := readWorkOrder(woPath, token)
	if err != nil {
		return err
	}
	fx, err := fixtures.Load(fixturePath)
	if err != nil {
		return err
	}
	if stationID == "" {
		if stationID, err = os.Hostname(); err != nil {
			return fmt.Errorf("station id: %w", err)
		}
	}
	up, closeDMS, err := openDMS(ctx, dmsURL)
	if err != nil {
		return err
	}
	defer closeDMS()
	j, err := journal.Open(ctx, journalPath, stationID, logger)
	if err != nil {
		return err
	}
	defer j.Close()
	if cacheDir == "" {
		cacheDir = filepath.Join(filepath.Dir(journalPath), "artifact-cache")
	}
	b := &batch{
		wo: wo, woDir: filepath.Dir(woPath), fixture: fx, journal: j, upstream: up,
		printer: &label.DirSink{Dir: labels}, station: stationID, operator: operator,
		cacheDir: cacheDir, parallel: parallel, logger: logger,
	}
	if slots != "" {
		b.slots = strings.Split(slots, ",")
	}
	out := output{json: asJSON, stdout: m.Stdout, stderr: m.Stderr}
	sum, err := b.execute(ctx, out)
	if err != nil {
		return err
	}
	return report(out, sum, map[string]any{"journal": j.Path(), "labels": labels},
		[][2]string{{"journal", j.Path()}, {"labels", labels}})
}

// readWorkOrder reads and validates a work order file. A token given
// outside the file takes the place of the file's authorization.
func readWorkOrder(path, token string) (jobs.WorkOrder, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return jobs.WorkOrder{}, fmt.Errorf("read work order: %w", err)
	}
	wo, err := jobs.DecodeWorkOrder(data)
	if err == nil {
		if token != "" {
			wo.Authorization = jobs.Authorization{Token: jobs.NewSecret(token)}
		}
		err = wo.Validate()
	}
	var inv *jobs.InvalidError
	if errors.As(err, &inv) {
		hint := ""
		if token == "" && wo.Authorization.PurchaseOrder == "" {
			hint = " (a token kept apart from the file goes in --token-file or STATION_TOKEN)"
		}
		return jobs.WorkOrder{}, fmt.Errorf("%s: %w%s", path, err, hint)
	}
	return wo, err
}
