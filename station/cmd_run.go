package station

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
	"github.com/station-dev/station/station/upstream"
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

The DMS is either embedded (--dms sqlite:FILE) or a "station dms" elsewhere
(--dms http://HOST:PORT), reached with the station's API key (--key-file or
STATION_KEY). With a remote DMS, --work-order may name a work order by its id:
the station pulls it, downloads and checks its artifacts, and pushes every
journal event upstream as it goes. While the DMS is down the station keeps
flashing and verifying; the steps that need the DMS wait and say so, and the
journal keeps every event until the DMS has stored it.

Examples:
  station run --work-order WO-1042 --dms http://dms.line:8080 --key-file station.key \
      --token-file token --fixture fixture.yaml
  station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db
  station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db --slots A3
  STATION_TOKEN=stk_... station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db --json
`

// runCmd is "station run".
func (m *Main) runCmd(ctx context.Context, args []string) error {
	fs := m.newFlagSet("run", runHelp)
	var (
		woPath, fixturePath, journalPath, dmsURL, stationID, operator string
		slots, labels, tokenFile, cacheDir, keyFile                   string
		parallel                                                      int
		syncWait                                                      time.Duration
		asJSON                                                        bool
	)
	fs.StringVar(&woPath, "work-order", "", "work order `file` (JSON; see docs/work-order.md), or its id on the DMS")
	fs.StringVar(&fixturePath, "fixture", "", "fixture `file` (YAML) naming the slots and their ports")
	fs.StringVar(&journalPath, "journal", "station-journal.db", "journal `file` (SQLite) that records every step")
	fs.StringVar(&dmsURL, "dms", "", "the device-management service: `http://HOST:PORT` of a station dms, or sqlite:FILE for an embedded one")
	fs.StringVar(&keyFile, "key-file", "", "`file` holding the station's API key for the DMS (or set STATION_KEY)")
	fs.DurationVar(&syncWait, "sync-wait", 30*time.Second, "at the end, how long to wait for the DMS to store the journal's last events (the rest goes up on the next run)")
	fs.StringVar(&stationID, "station", "", "this station's `id` (default: the host name)")
	fs.StringVar(&operator, "operator", "", "`name` of the operator, recorded with every step")
	fs.StringVar(&slots, "slots", "", "comma-separated `slots` to run (default: all); use it to retry a slot")
	fs.IntVar(&parallel, "parallel", 0, "most slots working at once (default: all)")
	fs.StringVar(&labels, "labels", "labels", "where labels go: a `folder` (ZPL and PNG), tcp://HOST:9100 (a ZPL printer; out of paper, head open or paused holds the label and the slot says why) or cups:QUEUE")
	fs.StringVar(&tokenFile, "token-file", "", "`file` holding the activation token, if the work order does not (or set STATION_TOKEN)")
	fs.StringVar(&cacheDir, "cache", "", "artifact cache `folder` (default: next to the journal)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON on stdout (progress goes to stderr)")
	logger, err := m.parseWithLogger(fs, args, "warn")
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
	token, err := readSecret(tokenFile, "STATION_TOKEN", m.Getenv)
	if err != nil {
		return err
	}
	key, err := readSecret(keyFile, "STATION_KEY", m.Getenv)
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
	// The kill harness's hook; unset outside tests.
	kill, err := parseKillSwitch(m.Getenv(killEnv))
	if err != nil {
		return err
	}
	link, err := openDMS(ctx, dmsURL, key, stationID, kill.httpClient(), logger)
	if err != nil {
		return err
	}
	defer link.close()
	say := func(s string) { fmt.Fprintln(m.Stderr, s) }
	woDir := filepath.Dir(woPath)
	var wo jobs.WorkOrder
	if _, serr := os.Stat(woPath); serr != nil && link.client != nil {
		fetched, err := fetchWorkOrder(ctx, link, woPath, workOrderCache{filepath.Join(filepath.Dir(journalPath), "work-orders")}, say)
		if err != nil {
			return err
		}
		if wo, err = authorize(fetched, token); err != nil {
			return err
		}
		woDir = ""
	} else if wo, err = readWorkOrder(woPath, token.Reveal()); err != nil {
		return err
	}
	j, err := journal.Open(ctx, journalPath, stationID, logger)
	if err != nil {
		return err
	}
	defer j.Close()
	if cacheDir == "" {
		cacheDir = filepath.Join(filepath.Dir(journalPath), "artifact-cache")
	}
	printer, err := label.OpenPrinter(labels)
	if err != nil {
		return usageErr("--labels: %v", err)
	}
	b := &batch{
		wo: wo, woDir: woDir, fixture: fx, journal: j, upstream: link.upstream, http: link.http(),
		printer: printer, station: stationID, operator: operator,
		cacheDir: cacheDir, parallel: parallel, logger: logger, wrapJournal: kill.journal,
	}
	if slots != "" {
		b.slots = strings.Split(slots, ",")
	}
	out := output{json: asJSON, stdout: m.Stdout, stderr: m.Stderr}
	stopSync := startSync(ctx, link, b, syncWait, logger)
	sum, err := b.execute(ctx, out)
	synced := stopSync()
	if err != nil {
		return err
	}
	extra := map[string]any{"journal": j.Path(), "labels": labels}
	human := [][2]string{{"journal", j.Path()}, {"labels", labels}}
	if synced != nil {
		extra["synced_events"], extra["unsynced_events"] = synced.Acked, synced.Lag
		if synced.Refused > 0 {
			extra["refused_events"] = synced.Refused
		}
		human = append(human, [2]string{"sync", syncLine(synced)})
	}
	return report(out, sum, extra, human)
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

// syncLine says in the summary how far the journal's sync came.
func syncLine(st *upstream.SyncStatus) string {
	line := fmt.Sprintf("%d events stored by the DMS, %d still waiting in the journal (they go up on the next run)", st.Acked, st.Lag)
	switch {
	case st.Lag == 0 && st.Refused == 0:
		return fmt.Sprintf("every event stored by the DMS (%d)", st.Acked)
	case st.Lag == 0:
		line = fmt.Sprintf("%d events synced, none waiting", st.Acked)
	}
	if st.Refused > 0 {
		line += fmt.Sprintf("; %d refused by the DMS and kept in the journal for QA (last: %s)", st.Refused, st.LastRefused)
	}
	return line
}
