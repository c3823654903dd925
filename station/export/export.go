// Package export writes signed, self-checking exports of the journal for
// quality assurance: a CSV of devices, every event as JSON lines, a
// human-readable transcript per device, and a manifest of every file's
// SHA-256 and size signed with the station's ed25519 key. Verify proves
// that not one byte of an export changed since the station wrote it.
package export

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/station-dev/station/station/journal"
)

// FormatVersion is the version of the export layout, recorded in the
// manifest.
const FormatVersion = 1

// Names of the files of an export.
const (
	DevicesFile     = "devices.csv"
	EventsFile      = "events.jsonl"
	TranscriptsDir  = "transcripts"
	ManifestFile    = "manifest.json"
	SignatureFile   = "manifest.sig"
	redactedValue   = "[redacted]"
	pipelineColumns = "identify,preflight,flash,verify,activate,lock,label,done"
)

// Steps are the pipeline steps that get duration and result columns in
// devices.csv, in pipeline order (jobs.Steps).
var Steps = strings.Split(pipelineColumns, ",")

// Filter selects the devices of an export. Zero fields select everything.
type Filter struct {
	WorkOrder string `json:"work_order,omitempty"`
	// Device is a hardware id.
	Device string `json:"device,omitempty"`
	// Since and Until select devices with a step event at or after
	// Since and before Until. A selected device is exported with its
	// whole history in its work order.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Result selects devices whose derived result is this one.
	Result journal.Result `json:"result,omitempty"`
	// Traces is where the station keeps the devices' protocol
	// transcripts (jobs.Runner.TraceDir); each device's is added to its
	// transcript file. Not a filter; empty adds none.
	Traces string `json:"-"`
}

// File is one exported file as the manifest lists it.
type File struct {
	// Path is relative to the export folder, with forward slashes.
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest describes an export. manifest.json holds it; manifest.sig
// holds the hex ed25519 signature of manifest.json's exact bytes.
type Manifest struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Station string    `json:"station"`
	Filter  Filter    `json:"filter"`
	// PublicKey is the hex ed25519 public key whose private half signed
	// the manifest.
	PublicKey string `json:"public_key"`
	Devices   int    `json:"devices"`
	Events    int    `json:"events"`
	Files     []File `json:"files"`
}

// pageSize is how many device histories an export reads from the
// journal at a time. An export holds one page in memory, and besides it
// one small record per transcript file (its name, running SHA-256 and
// size: what the manifest lists of it).
const pageSize = 500

// device is one selected device of one work order with its events.
type device struct {
	key    [2]string // work order, hardware id
	state  journal.DeviceState
	events []journal.Event
}

// Write exports the devices f selects from j into dir, which must not
// exist or be empty, signs the manifest with key and returns it.
//
// Write reads the journal a page of devices at a time and writes every
// file as it goes, so its memory does not grow with the journal; events
// journaled while it runs are left out. manifest.json appears last, after
// every other file is on disk: a folder without one holds no finished
// export. When Write fails it removes what it wrote, and dir if it
// created it, and its error says so.
func Write(ctx context.Context, j *journal.Journal, f Filter, dir string, key ed25519.PrivateKey) (Manifest, error) {
	return write(ctx, j, f, dir, key, pageSize)
}

// write is Write reading page device histories at a time.
func write(ctx context.Context, j *journal.Journal, f Filter, dir string, key ed25519.PrivateKey, page int) (_ Manifest, err error) {
	if len(key) != ed25519.PrivateKeySize {
		return Manifest{}, errors.New("export: no valid signing key given (see LoadOrCreateKey)")
	}
	if page < 1 {
		return Manifest{}, fmt.Errorf("export: page size %d, want at least 1", page)
	}
	created, err := prepareDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	x := newExporter(dir, f.Traces)
	defer func() {
		if err != nil {
			err = x.abandon(err, created)
		}
	}()
	m := Manifest{
		Version: FormatVersion, Created: time.Now().UTC().Truncate(time.Second), Station: j.StationID(),
		Filter: f, PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
	}
	// The journal as it is now: what is appended while the export runs
	// is left out, as one query would have left it out.
	through, err := j.LastSeq(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	if x.signs, err = signIns(ctx, j, through); err != nil {
		return Manifest{}, err
	}
	if err := x.start(); err != nil {
		return Manifest{}, err
	}
	p := journal.HistoryPage{WorkOrder: f.WorkOrder, Device: f.Device, Through: through, Limit: page}
	for more := through > 0; more; {
		hs, err := j.Histories(ctx, p)
		if err != nil {
			return Manifest{}, fmt.Errorf("export: %w", err)
		}
		for _, h := range hs {
			if err := context.Cause(ctx); err != nil {
				return Manifest{}, fmt.Errorf("export: %w", err)
			}
			d, ok := selectDevice(h, f)
			if !ok {
				continue
			}
			if err := x.device(d); err != nil {
				return Manifest{}, err
			}
			m.Devices++
			m.Events += len(d.events)
		}
		if more = len(hs) == page; more {
			p.After = hs[len(hs)-1].Events[0].Seq
		}
	}
	if m.Files, err = x.finish(); err != nil {
		return Manifest{}, err
	}
	slices.SortFunc(m.Files, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("export: encode manifest: %w", err)
	}
	raw = append(raw, '\n')
	if err := x.sign(raw, key); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// prepareDir creates dir, or checks that it is empty: an export is never
// written over another, nor into the remains of one that did not finish.
// It reports whether it created dir.
func prepareDir(dir string) (created bool, err error) {
	if dir == "" {
		return false, errors.New("export: no output folder given")
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("export: create output folder: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("export: read output folder: %w", err)
	case unfinished(entries):
		return false, fmt.Errorf("export: output folder %s holds an export that did not finish (it has no %s): delete the folder, or choose a new one", dir, ManifestFile)
	case len(entries) > 0:
		return false, fmt.Errorf("export: output folder %s is not empty: choose a new folder (an export is never written over another)", dir)
	}
	return false, nil
}

// unfinished reports whether a folder's entries are those of an export
// that stopped before its manifest was written (killed, or the machine
// lost power, before it could remove them).
func unfinished(entries []os.DirEntry) bool {
	ours := false
	for _, e := range entries {
		switch e.Name() {
		case ManifestFile:
			return false
		case DevicesFile, EventsFile, SignatureFile, manifestTemp:
			ours = true
		}
	}
	return ours
}

// writeFile creates path, which must not exist, with data, and syncs it.
func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// selectDevice scrubs a device history's events and reports whether f
// selects the device.
func selectDevice(h journal.History, f Filter) (device, bool) {
	d := device{key: [2]string{h.WorkOrder, h.Device}, events: h.Events}
	for i, e := range d.events {
		d.events[i] = scrub(e)
	}
	d.state = journal.Fold(d.events)
	if d.state.Events == 0 {
		return device{}, false // no step event: not a device of the pipeline
	}
	if f.Result != "" && d.state.Result != f.Result {
		return device{}, false
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		if !slices.ContainsFunc(d.events, func(e journal.Event) bool {
			return e.Kind == journal.KindStep && (f.Since.IsZero() || !e.Time.Before(f.Since)) &&
				(f.Until.IsZero() || e.Time.Before(f.Until))
		}) {
			return device{}, false
		}
	}
	return d, true
}

// tokenPattern matches activation tokens and API keys that reached an
// event's text despite the journal's redaction.
var tokenPattern = regexp.MustCompile(`\b(stk|dmk)_[A-Za-z0-9_\-]{4,}`)

// secretName reports whether a JSON key names a secret: token, secret,
// key or password, alone or as a part of a name such as api_key.
func secretName(name string) bool {
	for part := range strings.FieldsFuncSeq(strings.ToLower(name), func(r rune) bool {
		return r == '_' || r == '-' || r == '.' || r == ' '
	}) {
		switch part {
		case "token", "secret", "key", "password", "apikey":
			return true
		}
	}
	return false
}

// scrub redacts what looks like a secret in an event: every value of a
// data field whose name says secret, and every token-shaped string.
func scrub(e journal.Event) journal.Event {
	e.Error = tokenPattern.ReplaceAllString(e.Error, redactedValue)
	e.Operator = tokenPattern.ReplaceAllString(e.Operator, redactedValue)
	if len(e.Data) == 0 {
		return e
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		e.Data = json.RawMessage(`{"redacted":"` + redactedValue + `"}`)
		return e
	}
	raw, err := json.Marshal(scrubValue(v))
	if err != nil {
		e.Data = json.RawMessage(`{"redacted":"` + redactedValue + `"}`)
		return e
	}
	e.Data = raw
	return e
}

func scrubValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if secretName(k) {
				v[k] = redactedValue
			} else {
				v[k] = scrubValue(x)
			}
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = scrubValue(x)
		}
		return v
	case string:
		return tokenPattern.ReplaceAllString(v, redactedValue)
	}
	return v
}

// dataField returns a field of an event's data as text, "" if absent.
func dataField(data json.RawMessage, keys ...string) string {
	if len(data) == 0 {
		return ""
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return ""
	}
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			if v != "" {
				return v
			}
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	return ""
}

// signIns returns the journal's sign-in and sign-out events up to seq
// through, for the transcripts: they name no device, and a device's
// transcript shows those of its time. A shift has a few; they are held
// in memory for the whole export.
func signIns(ctx context.Context, j *journal.Journal, through int64) ([]journal.Event, error) {
	events, err := j.Events(ctx, journal.Filter{Kind: journal.KindOperator})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	out := events[:0]
	for _, e := range events {
		if e.Seq <= through && (e.Step == "signed_in" || e.Step == "signed_out") {
			out = append(out, scrub(e))
		}
	}
	return out, nil
}

// CSVHeader is the header row of devices.csv. operator names who was
// signed in when each run of the device started (one name, or several
// separated by "; " when runs had different operators); override_by and
// override_reason name the supervisor who accepted a failed device and
// why; attempts counts the runs of the pipeline.
func CSVHeader() []string {
	h := []string{"work_order", "hardware_id", "serial", "slot", "station", "operator", "firmware_version", "image_sha256"}
	for _, s := range Steps {
		h = append(h, s+"_ms")
	}
	for _, s := range Steps {
		h = append(h, s+"_result")
	}
	return append(h, "attempts", "first", "last", "last_error", "result", "override_by", "override_reason")
}

// csvRow renders a device's row of devices.csv.
func csvRow(d device) []string {
	var station, version, sha, overrideBy, overrideReason string
	var operators []string
	runOpen := false // an identify started, its outcome not seen yet
	done := false    // later runs only found the device done
	dur := map[string]time.Duration{}
	res := map[string]journal.Status{}
	for _, e := range d.events {
		if e.Station != "" {
			station = e.Station
		}
		if e.Kind == journal.KindOperator && e.Step == "override" {
			overrideBy, overrideReason = e.Operator, dataField(e.Data, "reason")
		}
		if e.Kind != journal.KindStep {
			continue
		}
		if e.Step == "identify" && (e.Status == journal.StatusStarted || !runOpen) && !done {
			// A run starts with identify: its operator is who was
			// signed in when it started. An override is of the run
			// before.
			if e.Operator != "" && !slices.Contains(operators, e.Operator) {
				operators = append(operators, e.Operator)
			}
			overrideBy, overrideReason = "", ""
		}
		runOpen = e.Step == "identify" && e.Status == journal.StatusStarted
		done = done || e.Step == "done" && e.Status == journal.StatusPassed
		if e.Step == "flash" || e.Step == "verify" || e.Step == "identify" {
			if v := dataField(e.Data, "firmware_version", "version", "bundle_version"); v != "" {
				version = v
			}
			if v := dataField(e.Data, "image_sha256", "sha256"); v != "" {
				sha = v
			}
		}
		res[e.Step] = e.Status
		if e.Status == journal.StatusPassed || e.Status == journal.StatusFailed {
			dur[e.Step] = e.Duration
		}
	}
	if d.state.Result != journal.ResultFailed {
		overrideBy, overrideReason = "", ""
	}
	row := []string{d.key[0], d.key[1], d.state.Serial, d.state.Slot, station, strings.Join(operators, "; "), version, sha}
	for _, s := range Steps {
		if v, ok := dur[s]; ok {
			row = append(row, strconv.FormatInt(v.Milliseconds(), 10))
		} else {
			row = append(row, "")
		}
	}
	for _, s := range Steps {
		row = append(row, string(res[s]))
	}
	return append(row, strconv.Itoa(d.state.Runs), d.state.First.Format(time.RFC3339Nano),
		d.state.Last.Format(time.RFC3339Nano), d.state.LastError, string(d.state.Result), overrideBy, overrideReason)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// transcriptBase is the base of the name of a device's transcript file:
// its hardware id with what is not safe in a file name replaced.
func transcriptBase(hardwareID string) string {
	base := unsafeName.ReplaceAllString(hardwareID, "_")
	if base == "" || base[0] == '.' {
		base = "_" + base
	}
	return base
}

// writeSection renders a device's section of its transcript: a heading
// and one line per event, with the sign-ins and sign-outs (signs) of its
// time and what operators did with the device (skips, retries, overrides
// with their reasons). A device seen in several work orders gets one
// section per work order, after a blank line when it is not the first.
func writeSection(b *bytes.Buffer, d device, signs []journal.Event, first bool) {
	if !first {
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "Device %s, work order %s: %s", d.key[1], d.key[0], d.state.Result)
	if d.state.Serial != "" {
		fmt.Fprintf(b, ", serial %s", d.state.Serial)
	}
	b.WriteString("\n")
	operator := ""
	events := d.events
	if len(events) > 0 {
		first, last := events[0].Seq, events[len(events)-1].Seq
		events = slices.Clone(events)
		for _, e := range signs {
			if e.Seq > first && e.Seq < last {
				events = append(events, e)
			}
		}
		slices.SortFunc(events, func(a, b journal.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	for _, e := range events {
		if e.Kind == journal.KindOperator && e.Device == "" {
			fmt.Fprintf(b, "%s  #%d  %s %s\n", e.Time.Format("2006-01-02 15:04:05.000Z07:00"), e.Seq,
				oneLine(orDash(e.Operator)), strings.ReplaceAll(e.Step, "_", " "))
			continue
		}
		fmt.Fprintf(b, "%s  #%d  slot %-4s %-10s %-8s", e.Time.Format("2006-01-02 15:04:05.000Z07:00"), e.Seq,
			orDash(e.Slot), orDash(e.Step), e.Status)
		if e.Attempt > 0 {
			fmt.Fprintf(b, "  attempt %d", e.Attempt)
		}
		if e.Duration > 0 {
			fmt.Fprintf(b, "  %s", e.Duration.Round(time.Millisecond))
		}
		switch {
		case e.Kind == journal.KindOperator && e.Operator != "":
			fmt.Fprintf(b, "  by %s", oneLine(e.Operator))
		case e.Operator != "" && e.Operator != operator:
			operator = e.Operator
			fmt.Fprintf(b, "  operator %s", oneLine(e.Operator))
		}
		if e.Error != "" {
			fmt.Fprintf(b, "  error: %s", oneLine(e.Error))
		}
		if r := dataField(e.Data, "reason"); e.Kind == journal.KindOperator && r != "" {
			fmt.Fprintf(b, "  reason: %s", oneLine(r))
		}
		b.WriteString("\n")
	}
}

// oneLine keeps a transcript entry on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
