package export

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/station/journal"
)

const (
	testToken   = "stk_live_9fA7bQ2xZk4Lm8Np3Rs6"
	plainSecret = "hunter2-plain-value-xyz"
	trickyOp    = "Doe, \"Jane\"\nshift B"
	trickyErr   = "flash failed at 0x1000, \"timeout\"\nreplug the cable, then retry"
)

var base = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// buildJournal journals n devices of WO-1, 8 steps each (started and
// passed), the last device failing at verify with a tricky error. The
// activation token is registered for redaction and then journaled in
// places a careless step might put it.
func buildJournal(tb testing.TB, n int) *journal.Journal {
	tb.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, filepath.Join(tb.TempDir(), "journal.db"), "line-1", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { j.Close() })
	j.Redact(testToken)
	at := base
	var batch []journal.Event
	for d := range n {
		dev := fmt.Sprintf("24:0a:c4:%02x:%02x:%02x", d>>16&0xff, d>>8&0xff, d&0xff)
		slot := fmt.Sprintf("S%02d", d%32+1)
		for _, step := range Steps {
			data := map[string]any{}
			switch step {
			case "identify":
				data["chip"] = "esp32"
			case "flash":
				data["bytes"] = 1048576
				data["firmware_version"] = "1.4.2"
				data["image_sha256"] = strings.Repeat("ab", 32)
				data["api_key"] = plainSecret
			case "activate", "label", "done":
				data["serial"] = fmt.Sprintf("SN-%06d", d)
				data["note"] = "token " + testToken
			}
			raw, _ := json.Marshal(data)
			e := journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Slot: slot, Device: dev,
				Operator: trickyOp, Step: step, Attempt: 1}
			e.Time, e.Status = at, journal.StatusStarted
			batch = append(batch, e)
			at = at.Add(time.Second)
			e.Time, e.Status, e.Duration, e.Data = at, journal.StatusPassed, 1500*time.Millisecond, raw
			if d == n-1 && step == "verify" {
				e.Status, e.Error = journal.StatusFailed, trickyErr+" "+testToken
				batch = append(batch, e)
				break
			}
			batch = append(batch, e)
		}
		if len(batch) > 800 || d == n-1 {
			if _, err := j.Append(ctx, batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := j.Append(ctx, journal.Event{Kind: journal.KindWorkOrder, WorkOrder: "WO-1", Step: "completed",
		Status: journal.StatusInfo, Time: at}); err != nil {
		tb.Fatal(err)
	}
	return j
}

func testKey(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	k, err := LoadOrCreateKey(filepath.Join(tb.TempDir(), DefaultKeyName))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestExport1000DevicesVerifies(t *testing.T) {
	j := buildJournal(t, 1000)
	key := testKey(t)
	dir := filepath.Join(t.TempDir(), "out")
	m, err := Write(context.Background(), j, Filter{WorkOrder: "WO-1"}, dir, key)
	if err != nil {
		t.Fatal(err)
	}
	if m.Devices != 1000 || m.Events != 999*16+8 {
		t.Errorf("manifest counts %d devices, %d events; want 1000, %d", m.Devices, m.Events, 999*16+8)
	}
	if len(m.Files) != 2+1000 {
		t.Errorf("manifest lists %d files, want %d", len(m.Files), 2+1000)
	}
	rep, err := Check(dir, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if rep.KeyFromManifest {
		t.Error("Check with a given key says it used the manifest's key")
	}
	rep, err = Check(dir, nil)
	if err != nil || !rep.KeyFromManifest {
		t.Fatalf("Check(nil) = %+v, %v; want the manifest's key used", rep.KeyFromManifest, err)
	}
	// Another station's key must not verify it.
	if err := Verify(dir, testKey(t).Public().(ed25519.PublicKey)); !IsVerifyError(err) {
		t.Errorf("Verify with another key = %v, want a verification error", err)
	}

	rows := readCSV(t, filepath.Join(dir, DevicesFile))
	if len(rows) != 1001 {
		t.Fatalf("devices.csv has %d rows, want 1001", len(rows))
	}
	col := func(name string) int { return slices.Index(rows[0], name) }
	first := rows[1]
	for name, want := range map[string]string{
		"hardware_id": "24:0a:c4:00:00:00", "serial": "SN-000000", "slot": "S01", "station": "line-1",
		"firmware_version": "1.4.2", "image_sha256": strings.Repeat("ab", 32), "flash_ms": "1500",
		"done_result": "passed", "attempts": "1", "result": "done",
	} {
		if got := first[col(name)]; got != want {
			t.Errorf("first row %s = %q, want %q", name, got, want)
		}
	}
	last := rows[1000]
	if last[col("result")] != "failed" || last[col("verify_result")] != "failed" || last[col("lock_result")] != "" {
		t.Errorf("last row result/verify/lock = %q/%q/%q, want failed/failed/empty",
			last[col("result")], last[col("verify_result")], last[col("lock_result")])
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("devices.csv is not RFC 4180: %v", err)
	}
	return rows
}

func TestCSVRoundTripsTrickyValues(t *testing.T) {
	j := buildJournal(t, 3)
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Write(context.Background(), j, Filter{}, dir, testKey(t)); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, filepath.Join(dir, DevicesFile))
	if !slices.Equal(rows[0], CSVHeader()) {
		t.Errorf("header = %q, want %q", rows[0], CSVHeader())
	}
	for i, r := range rows[1:] {
		if len(r) != len(CSVHeader()) {
			t.Errorf("row %d has %d fields, want %d", i+1, len(r), len(CSVHeader()))
		}
		if got := r[slices.Index(rows[0], "operator")]; got != trickyOp {
			t.Errorf("row %d operator = %q, want %q", i+1, got, trickyOp)
		}
	}
	want := trickyErr + " [redacted]"
	if got := rows[3][slices.Index(rows[0], "last_error")]; got != want {
		t.Errorf("last_error = %q, want %q", got, want)
	}
}

func TestTamperingIsNamed(t *testing.T) {
	j := buildJournal(t, 5)
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	src := filepath.Join(t.TempDir(), "src")
	if _, err := Write(context.Background(), j, Filter{}, src, key); err != nil {
		t.Fatal(err)
	}
	transcript := TranscriptsDir + "/24_0a_c4_00_00_02.txt"
	tests := []struct {
		name   string
		file   string
		change func(t *testing.T, dir string)
	}{
		{"csv", DevicesFile, flipByte(DevicesFile)},
		{"jsonl", EventsFile, flipByte(EventsFile)},
		{"transcript", transcript, flipByte(transcript)},
		{"manifest", ManifestFile, flipByte(ManifestFile)},
		{"signature", SignatureFile, flipByte(SignatureFile)},
		{"truncated", EventsFile, func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, EventsFile), 10); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed", transcript, func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(transcript))); err != nil {
				t.Fatal(err)
			}
		}},
		{"extra file", "transcripts/extra.txt", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "transcripts", "extra.txt"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, src)
			if err := Verify(dir, pub); err != nil {
				t.Fatalf("copy does not verify before the change: %v", err)
			}
			tt.change(t, dir)
			for _, k := range []ed25519.PublicKey{pub, nil} {
				err := Verify(dir, k)
				var ve *VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("Verify(key %v) = %v, want a *VerifyError", k != nil, err)
				}
				if !strings.Contains(err.Error(), tt.file) {
					t.Errorf("Verify(key %v) = %q, want it to name %s", k != nil, err, tt.file)
				}
			}
		})
	}
}

// flipByte changes one byte in the middle of a file, keeping it text.
func flipByte(rel string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		i := len(data) / 2
		for data[i] == '\n' || data[i] == '"' {
			i++
		}
		data[i] ^= 0x01
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestSecretsNeverExported(t *testing.T) {
	j := buildJournal(t, 4)
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Write(context.Background(), j, Filter{}, dir, testKey(t)); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		for _, s := range []string{testToken, plainSecret} {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds the secret %q", p, s[:6]+"…")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2+4+2 {
		t.Errorf("checked %d files, want %d", n, 8)
	}
	events, err := os.ReadFile(filepath.Join(dir, EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(events, []byte(`"api_key":"[redacted]"`)) {
		t.Error("events.jsonl does not show api_key as [redacted]")
	}
}

func TestFilter(t *testing.T) {
	j := buildJournal(t, 10)
	// Device d's events run from base+8d s to base+8d+8 s.
	tests := []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 10},
		{"work order", Filter{WorkOrder: "WO-1"}, 10},
		{"other work order", Filter{WorkOrder: "WO-2"}, 0},
		{"device", Filter{Device: "24:0a:c4:00:00:03"}, 1},
		{"failed", Filter{Result: journal.ResultFailed}, 1},
		{"done", Filter{Result: journal.ResultDone}, 9},
		{"since", Filter{Since: base.Add(64*time.Second + 500*time.Millisecond)}, 2},
		{"until", Filter{Until: base.Add(16*time.Second + 500*time.Millisecond)}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			m, err := Write(context.Background(), j, tt.f, dir, testKey(t))
			if err != nil {
				t.Fatal(err)
			}
			if m.Devices != tt.want {
				t.Errorf("exported %d devices, want %d", m.Devices, tt.want)
			}
			if err := Verify(dir, nil); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestWriteRefusesNonEmptyFolder(t *testing.T) {
	j := buildJournal(t, 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "old"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(context.Background(), j, Filter{}, dir, testKey(t)); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Write into a non-empty folder = %v, want refused", err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), DefaultKeyName)
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !k1.Equal(k2) {
		t.Errorf("second load = %v (equal %v), want the same key", err, k1.Equal(k2))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key = %v, want refused", err)
	}
}

func BenchmarkExport1000Devices(b *testing.B) {
	j := buildJournal(b, 1000)
	key := testKey(b)
	root := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		if _, err := Write(context.Background(), j, Filter{WorkOrder: "WO-1"}, filepath.Join(root, fmt.Sprint(i)), key); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "export_1000_devices_s")
}

func TestTranscriptOneLinePerEvent(t *testing.T) {
	j := buildJournal(t, 3)
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Write(context.Background(), j, Filter{}, dir, testKey(t)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, TranscriptsDir, "24_0a_c4_00_00_02.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 1+8 {
		t.Fatalf("transcript has %d lines, want a heading and 8 events:\n%s", len(lines), data)
	}
	if !strings.HasPrefix(lines[0], "Device 24:0a:c4:00:00:02, work order WO-1: failed") {
		t.Errorf("heading %q", lines[0])
	}
	last := lines[8]
	for _, want := range []string{"slot S03", "verify", "failed", "1.5s", `error: flash failed at 0x1000, "timeout" replug the cable, then retry [redacted]`} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q lacks %q", last, want)
		}
	}
}

func TestWriteRefusesUnfinishedExport(t *testing.T) {
	j := buildJournal(t, 1)
	dir := t.TempDir()
	// What a killed export leaves: files, no manifest.
	for _, name := range []string{DevicesFile, EventsFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Write(context.Background(), j, Filter{}, dir, testKey(t))
	if err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("Write into an unfinished export = %v, want refused as unfinished", err)
	}
	err = Verify(dir, nil)
	if !IsVerifyError(err) || !strings.Contains(err.Error(), ManifestFile+": missing") {
		t.Errorf("Verify(unfinished export) = %v, want %s named missing", err, ManifestFile)
	}
}

func TestWriteFailureRemovesExport(t *testing.T) {
	j := buildJournal(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t.Run("new folder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		_, err := write(ctx, j, Filter{}, dir, testKey(t), 3)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "unfinished export was removed") {
			t.Errorf("Write(cancelled) = %v, want context.Canceled, saying the export was removed", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the folder Write created is still there (%v)", err)
		}
	})
	t.Run("empty folder", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := write(ctx, j, Filter{}, dir, testKey(t), 3); !errors.Is(err, context.Canceled) {
			t.Errorf("Write(cancelled) = %v, want context.Canceled", err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) > 0 {
			t.Errorf("the folder given holds %v (%v) after a failed export, want it kept empty", entries, err)
		}
	})
}

// TestOperatorsOverridesAndRuns: a device run by Ann, retried by Bob after
// a shift change and then accepted by a supervisor. The CSV names both
// operators who started its runs, the override's supervisor and reason,
// and two runs; the transcript shows the sign-in and sign-out of its time
// and the override with its reason. Events of the supervisor (the
// override) do not make them the device's operator.
func TestOperatorsOverridesAndRuns(t *testing.T) {
	ctx := context.Background()
	j, err := journal.Open(ctx, filepath.Join(t.TempDir(), "journal.db"), "line-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const dev, other = "24:0a:c4:00:00:01", "24:0a:c4:00:00:02"
	at := base
	ev := func(e journal.Event) journal.Event {
		at = at.Add(time.Second)
		e.Time = at
		if e.Kind == "" {
			e.Kind, e.WorkOrder, e.Slot = journal.KindStep, "WO-1", "S01"
		}
		return e
	}
	step := func(device, op, name string, status journal.Status) journal.Event {
		return ev(journal.Event{Device: device, Operator: op, Step: name, Status: status, Attempt: 1})
	}
	operator := func(op, action string, data string) journal.Event {
		e := ev(journal.Event{Kind: journal.KindOperator, Operator: op, Step: action, Status: journal.StatusInfo})
		if data != "" {
			e.Data = json.RawMessage(data)
		}
		return e
	}
	events := []journal.Event{
		operator("Ann", "signed_in", `{"method":"pin"}`),
		step(dev, "Ann", "identify", journal.StatusStarted), step(dev, "Ann", "identify", journal.StatusPassed),
		step(dev, "Ann", "flash", journal.StatusStarted), step(dev, "Ann", "flash", journal.StatusFailed),
		operator("Ann", "signed_out", `{"by":"Bob"}`), operator("Bob", "signed_in", `{"method":"badge"}`),
		step(dev, "Bob", "identify", journal.StatusStarted), step(dev, "Bob", "identify", journal.StatusPassed),
		step(dev, "Bob", "flash", journal.StatusStarted), step(dev, "Bob", "flash", journal.StatusFailed),
		step(other, "Bob", "identify", journal.StatusStarted), step(other, "Bob", "identify", journal.StatusPassed),
		step(other, "Bob", "done", journal.StatusStarted), step(other, "Bob", "done", journal.StatusPassed),
	}
	override := operator("Sam", "override", `{"reason":"cosmetic scratch, QA ticket 17","failed_step":"flash"}`)
	override.WorkOrder, override.Slot, override.Device = "WO-1", "S01", dev
	events = append(events, override)
	if _, err := j.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Write(ctx, j, Filter{WorkOrder: "WO-1"}, dir, testKey(t)); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, filepath.Join(dir, DevicesFile))
	col := func(name string) int {
		i := slices.Index(rows[0], name)
		if i < 0 {
			t.Fatalf("devices.csv has no column %s: %q", name, rows[0])
		}
		return i
	}
	want := map[string]map[string]string{
		dev:   {"operator": "Ann; Bob", "attempts": "2", "result": "failed", "override_by": "Sam", "override_reason": "cosmetic scratch, QA ticket 17"},
		other: {"operator": "Bob", "attempts": "1", "result": "done", "override_by": "", "override_reason": ""},
	}
	for _, r := range rows[1:] {
		w, ok := want[r[col("hardware_id")]]
		if !ok {
			t.Fatalf("unexpected row %q", r)
		}
		for name, v := range w {
			if got := r[col(name)]; got != v {
				t.Errorf("device %s: %s = %q, want %q", r[col("hardware_id")], name, got, v)
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, TranscriptsDir, "24_0a_c4_00_00_01.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, w := range []string{"Ann signed out", "Bob signed in", "override", "by Sam", "reason: cosmetic scratch, QA ticket 17", "operator Ann", "operator Bob"} {
		if !strings.Contains(text, w) {
			t.Errorf("transcript lacks %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, "Ann signed in") {
		t.Errorf("transcript shows a sign-in from before the device's first event:\n%s", text)
	}
}
