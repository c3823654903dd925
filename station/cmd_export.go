package station

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/station-dev/station/station/export"
	"github.com/station-dev/station/station/journal"
)

const exportHelp = `
station export: write a signed export of the journal for quality assurance.

The export folder receives devices.csv (one row per device: serial, slot,
operator, firmware, per-step durations and results, runs, final result,
override),
events.jsonl (every event of the exported devices), transcripts/DEVICE.txt
(a readable log per device) and manifest.json, which lists every file with
its SHA-256 and size, signed with the station's ed25519 key in manifest.sig.
Secrets never leave the station: fields named token, secret or key are
written as [redacted]. The journal is read a few hundred devices at a
time, so an export of any size needs little memory; events journaled while
it runs are left out. manifest.json is written last: a folder without it
holds no finished export, and an export that fails removes what it wrote.

The signing key lives in --key (default: station-export.key next to the
journal; created on first use, mode 0600). The summary prints its public key:
give it to QA once, so that they can check exports with --pub. The export is
signed for the station the journal names; --station, when given, must be
that station.

"station export verify DIR" checks an export: the signature, every file's
SHA-256 and size, and that no file was added. Exit status: 0 intact, 1 a file
was changed, added or removed (the message names it), 2 wrong command line,
3 the export could not be read or written.

Examples:
  station export --journal station-journal.db --work-order WO-1042 --out qa/WO-1042
  station export --journal station-journal.db --result failed --since 2026-11-30 --out qa/failed
  station export verify qa/WO-1042 --pub line-1.pub
`

const exportVerifyHelp = `
station export verify: check that an export is exactly as the station wrote it.

Usage: station export verify DIR [--pub FILE] [--json]

Without --pub the key recorded in the manifest is used: that proves the files
are unchanged since they were signed, not which station signed them. With
--pub (a file holding the station's public key in hex, as "station export"
prints it) it proves both.
`

// exportCmd is "station export".
func (m *Main) exportCmd(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return m.exportVerify(args[1:])
	}
	fs := m.newFlagSet("export", exportHelp)
	var (
		journalPath, stationID, out, keyPath, since, until string
		f                                                  export.Filter
		result                                             string
		asJSON                                             bool
	)
	fs.StringVar(&journalPath, "journal", "station-journal.db", "journal `file` (SQLite) to export from")
	fs.StringVar(&stationID, "station", "", "the `id` of the station the journal must belong to (default: the station the journal names)")
	fs.StringVar(&f.WorkOrder, "work-order", "", "export only this work order (`id`)")
	fs.StringVar(&f.Device, "device", "", "export only this device (hardware `id`)")
	fs.StringVar(&since, "since", "", "export devices with a step at or after this `time` (RFC 3339, or a date YYYY-MM-DD in UTC)")
	fs.StringVar(&until, "until", "", "export devices with a step before this `time` (RFC 3339, or a date YYYY-MM-DD in UTC)")
	fs.StringVar(&result, "result", "", "export only devices with this `result`: done, failed, interrupted, in_progress or skipped")
	fs.StringVar(&out, "out", "", "new or empty `folder` that receives the export")
	fs.StringVar(&keyPath, "key", "", "signing key `file` (default: "+export.DefaultKeyName+" next to the journal)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON on stdout")
	logger, err := m.parseWithLogger(fs, args, "warn")
	if err != nil {
		return err
	}
	if out == "" {
		return usageErr("--out is required: a new folder for the export")
	}
	if f.Since, err = parseExportTime("--since", since); err != nil {
		return err
	}
	if f.Until, err = parseExportTime("--until", until); err != nil {
		return err
	}
	switch r := journal.Result(result); r {
	case "", journal.ResultDone, journal.ResultFailed, journal.ResultInterrupted, journal.ResultInProgress, journal.ResultSkipped:
		f.Result = r
	default:
		return usageErr("--result %q: use done, failed, interrupted, in_progress or skipped", result)
	}
	if _, err := os.Stat(journalPath); err != nil {
		return fmt.Errorf("no journal at %s: give the station's journal with --journal", journalPath)
	}
	if stationID == "" {
		// The journal knows its station: the export is signed for it.
		// --station, when given, is checked against it.
		if stationID, err = journal.StationOf(ctx, journalPath); err != nil {
			return fmt.Errorf("%w: name the journal's station with --station", err)
		}
	}
	if keyPath == "" {
		keyPath = filepath.Join(filepath.Dir(journalPath), export.DefaultKeyName)
	}
	key, err := export.LoadOrCreateKey(keyPath)
	if err != nil {
		return err
	}
	j, err := journal.Open(ctx, journalPath, stationID, logger)
	if err != nil {
		return fmt.Errorf("%w (name the journal's station with --station)", err)
	}
	defer j.Close()
	f.Traces = traceDir(journalPath)
	man, err := export.Write(ctx, j, f, out, key)
	if err != nil {
		return err
	}
	logger.Info("journal exported", "out", out, "devices", man.Devices, "events", man.Events, "files", len(man.Files)+2)
	if asJSON {
		return json.NewEncoder(m.Stdout).Encode(map[string]any{
			"out": out, "station": man.Station, "devices": man.Devices, "events": man.Events,
			"files": len(man.Files) + 2, "public_key": man.PublicKey, "key_file": keyPath,
		})
	}
	fmt.Fprintf(m.Stdout, "exported %d devices, %d events to %s (%d files, signed)\n", man.Devices, man.Events, out, len(man.Files)+2)
	fmt.Fprintf(m.Stdout, "station %s, public key %s\n", man.Station, man.PublicKey)
	fmt.Fprintf(m.Stdout, "check it with: station export verify %s\n", out)
	return nil
}

// exportVerify is "station export verify DIR".
func (m *Main) exportVerify(args []string) error {
	fs := m.newFlagSet("export verify", exportVerifyHelp)
	var (
		pubPath string
		asJSON  bool
	)
	fs.StringVar(&pubPath, "pub", "", "`file` holding the station's public key (hex); default: the key in the manifest")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON on stdout")
	var dir string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		dir, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if dir == "" && fs.NArg() > 0 {
		dir = fs.Arg(0)
		if err := parse(fs, fs.Args()[1:]); err != nil {
			return err
		}
	} else if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if dir == "" {
		return usageErr("name the export folder: station export verify DIR")
	}
	var pub ed25519.PublicKey
	if pubPath != "" {
		var err error
		if pub, err = export.ReadPublicKey(pubPath); err != nil {
			return err
		}
	}
	rep, err := export.Check(dir, pub)
	if asJSON {
		line := map[string]any{"export": dir, "ok": err == nil}
		if err != nil {
			line["error"] = err.Error()
		} else {
			line["station"], line["devices"], line["events"] = rep.Manifest.Station, rep.Manifest.Devices, rep.Manifest.Events
			line["files"], line["public_key"], line["key_from_manifest"] = len(rep.Manifest.Files)+2, rep.PublicKey, rep.KeyFromManifest
		}
		if jerr := json.NewEncoder(m.Stdout).Encode(line); jerr != nil && err == nil {
			return jerr
		}
	}
	if err != nil {
		if export.IsVerifyError(err) {
			return &ExitError{Code: ExitFailed, Err: err}
		}
		return err
	}
	if !asJSON {
		fmt.Fprintf(m.Stdout, "export %s is intact: %d devices, %d events, %d files, signed by station %s\n",
			dir, rep.Manifest.Devices, rep.Manifest.Events, len(rep.Manifest.Files)+2, rep.Manifest.Station)
		if rep.KeyFromManifest {
			fmt.Fprintf(m.Stdout, "checked with the key in the manifest (%s); pass --pub to check which station signed it\n", rep.PublicKey)
		} else {
			fmt.Fprintf(m.Stdout, "checked with the key given (%s)\n", rep.PublicKey)
		}
	}
	return nil
}

// parseExportTime reads --since or --until: RFC 3339 or a UTC date.
func parseExportTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, usageErr("%s %q: use a time like 2026-11-30T08:00:00Z or a date like 2026-11-30", flagName, s)
}
