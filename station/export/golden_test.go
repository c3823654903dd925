package export

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

var update = flag.Bool("update", false, "rewrite the golden exports in testdata/export")

// goldenRun is one device's run through the pipeline in the golden
// journal: its steps' outcomes in order.
type goldenRun struct {
	wo, dev, slot string
	steps         []goldenStep
}

type goldenStep struct {
	step    string
	status  journal.Status // the outcome; "" leaves the step started
	attempt int
	err     string
	data    map[string]any
}

// passAll is a run of every pipeline step, passed.
func passAll(serial string) []goldenStep {
	var out []goldenStep
	for _, s := range Steps {
		st := goldenStep{step: s, status: journal.StatusPassed, attempt: 1}
		switch s {
		case "identify":
			st.data = map[string]any{"chip": "esp32", "firmware_version": "0.9.0"}
		case "flash":
			st.data = map[string]any{"bytes": 1048576, "firmware_version": "1.4.2", "image_sha256": "ab12",
				"cert":  map[string]any{"private_key": plainSecret, "subject": "CN=" + serial},
				"notes": []any{"uses " + testToken, 7.5, "dmk_admin_key_1"}}
		case "activate", "done":
			st.data = map[string]any{"serial": serial}
		}
		out = append(out, st)
	}
	return out
}

// goldenJournal journals runs that make every rule of the export show:
// runs of several devices interleaved (slots in parallel), a device in two
// work orders, hardware ids whose file names collide once made safe, a
// device with no step event, a retry, an interrupted and a failed run,
// secrets, text that CSV and JSON must quote, and protocol transcripts in
// traces. Events go in round robin over the runs, in a fixed time, so
// the journal is the same on every run of the test.
func goldenJournal(t *testing.T) (*journal.Journal, string) {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, filepath.Join(t.TempDir(), "journal.db"), "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	j.Redact(testToken)

	failFlash := passAll("SN-0002")
	failFlash = append([]goldenStep{failFlash[0], failFlash[1],
		{step: "flash", status: journal.StatusFailed, attempt: 1, err: "write at 0x8000: <timeout> & \"no answer\"\nreplug, then retry " + testToken}},
		failFlash[2:]...)
	failFlash[3].attempt = 2
	failVerify := passAll("SN-0003")[:4]
	failVerify[3] = goldenStep{step: "verify", status: journal.StatusFailed, attempt: 1, err: "Prüfsumme falsch, token dmk_live_zz99"}
	interrupted := passAll("")[:3]
	interrupted[2].status = ""
	runs := []goldenRun{
		{"WO-1", "dev/a", "A1", passAll("SN-0001")},
		{"WO-1", "dev:a", "A2", failVerify},
		{"WO-1", "dev_a-2", "A3", passAll("SN-0004")},
		{"WO-1", ".hidden", "A1", passAll("SN-0005")},
		{"WO-1", "24:0a:c4:00:00:02", "A2", failFlash},
		{"WO-1", "x y", "A3", interrupted},
		{"WO-2", "dev/a", "B1", passAll("SN-0006")},
		{"WO-2", "dev_a", "B2", passAll("SN-0007")},
		{"WO-2", "24:0a:c4:00:00:02", "B3", passAll("SN-0008")},
		{"WO-2", "new-1", "B1", interrupted},
		{"WO-1", "late", "A1", passAll("SN-0009")[:5]},
	}
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var events []journal.Event
	add := func(e journal.Event) {
		at = at.Add(1500 * time.Millisecond)
		e.Time = at
		events = append(events, e)
	}
	add(journal.Event{Kind: journal.KindWorkOrder, WorkOrder: "WO-1", Step: "loaded", Status: journal.StatusInfo})
	add(journal.Event{Kind: journal.KindOperator, WorkOrder: "WO-1", Device: "dev_a", Slot: "A3", Step: "inspected",
		Status: journal.StatusInfo, Operator: "Ada"})
	// Three runs at a time, one event each in turn, as three slots would.
	next := make([]int, len(runs)) // next event of each run: 2 per step
	for lo := 0; lo < len(runs); lo += 3 {
		for more := true; more; {
			more = false
			for i := lo; i < min(lo+3, len(runs)); i++ {
				r := runs[i]
				k := next[i]
				if k >= 2*len(r.steps) {
					continue
				}
				more = true
				next[i]++
				s := r.steps[k/2]
				op := "Doe, \"Jane\"\nshift B"
				if r.wo == "WO-2" {
					op = "Ada"
				}
				e := journal.Event{Kind: journal.KindStep, WorkOrder: r.wo, Slot: r.slot, Device: r.dev, Operator: op,
					Step: s.step, Attempt: s.attempt, Status: journal.StatusStarted}
				if k%2 == 1 {
					if s.status == "" {
						continue
					}
					e.Status, e.Error, e.Duration = s.status, s.err, time.Duration(k)*250*time.Millisecond
					if s.data != nil {
						raw, err := json.Marshal(s.data)
						if err != nil {
							t.Fatal(err)
						}
						e.Data = raw
					}
				}
				add(e)
			}
		}
		if lo == 3 {
			add(journal.Event{Kind: journal.KindWorkOrder, WorkOrder: "WO-2", Step: "loaded", Status: journal.StatusInfo})
		}
	}
	if _, err := j.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}

	traces := t.TempDir()
	for _, tr := range []struct{ wo, dev, text string }{
		{"WO-1", "dev/a", "# line-1 slot A1\n> SYNC\n< OK stk_live_abcd1234\n> FLASH_BEGIN\n< OK"},
		{"WO-2", "24:0a:c4:00:00:02", "# line-1 slot B3\n> GET_ID dmk_x-y_z0\n< 0x0413 tokenstk_notone\n"},
	} {
		p := filepath.Join(traces, tr.wo, jobs.TraceFileName(tr.dev))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(tr.text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return j, traces
}

// goldenKey is a fixed signing key, so that the manifest's public key is
// the same on every run.
func goldenKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

// goldenFilters are the golden cases: testdata/export/NAME holds what an
// export of the golden journal with the filter writes.
func goldenFilters() map[string]Filter {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	return map[string]Filter{
		"all":        {},
		"work-order": {WorkOrder: "WO-2"},
		"device":     {Device: "dev/a"},
		"failed":     {Result: journal.ResultFailed},
		"window":     {Since: t0.Add(60 * time.Second), Until: t0.Add(90 * time.Second)},
	}
}

// createdLine is the manifest's creation time, the one line of an export
// that differs between two runs.
var createdLine = regexp.MustCompile(`(?m)^  "created": "[^"]*",$`)

// readExport reads every file of an export but the signature, with the
// manifest's creation time blanked.
func readExport(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == SignatureFile {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == ManifestFile {
			data = createdLine.ReplaceAll(data, []byte(`  "created": "2026-12-01T00:00:00Z",`))
		}
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestGolden checks that an export of the golden journal is, byte for
// byte, the one in testdata/export (go test -update rewrites it), read
// from the journal in one page and one, two, three devices at a time.
// The golden files were written by the export that read its whole
// selection in one query.
func TestGolden(t *testing.T) {
	j, traces := goldenJournal(t)
	for name, f := range goldenFilters() {
		for _, page := range []int{pageSize, 1, 2, 3} {
			t.Run(fmt.Sprintf("%s/page=%d", name, page), func(t *testing.T) {
				testGolden(t, j, name, f, traces, page)
			})
		}
	}
}

// testGolden exports the golden journal with f, page devices at a time,
// and compares the export with testdata/export/NAME.
func testGolden(t *testing.T, j *journal.Journal, name string, f Filter, traces string, page int) {
	t.Helper()
	f.Traces = traces
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := write(context.Background(), j, f, dir, goldenKey(), page); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir, goldenKey().Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	got := readExport(t, dir)
	golden := filepath.Join("testdata", "export", name)
	if *update && page == pageSize {
		if err := os.RemoveAll(golden); err != nil {
			t.Fatal(err)
		}
		for rel, data := range got {
			p := filepath.Join(golden, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	compareExport(t, got, readExport(t, golden))
}

// compareExport reports every file that differs between two exports.
func compareExport(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for rel, w := range want {
		g, ok := got[rel]
		switch {
		case !ok:
			t.Errorf("%s missing from the export", rel)
		case !bytes.Equal(g, w):
			t.Errorf("%s differs from the golden file:\n%s", rel, firstDiff(g, w))
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s is in the export, not in the golden files", rel)
		}
	}
}

// firstDiff shows where two files part.
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-80)
	return fmt.Sprintf("at byte %d (got %d bytes, want %d):\ngot:  %q\nwant: %q", i, len(got), len(want),
		got[from:min(len(got), i+80)], want[from:min(len(want), i+80)])
}
