package station

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/internal/testkit"
	"github.com/station-dev/station/station/journal"
)

// runMain runs the station command line in process.
func runMain(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb testkit.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	err = m.Run(context.Background(), args)
	return out.String(), errb.String(), err
}

// demoSummary is the part of station demo --json the tests read.
type demoSummary struct {
	Devices, Passed, Failed int
	Events                  int64
	Journal                 string
	Labels                  int
	SyncedEvents            int64   `json:"synced_events"`
	WallSeconds             float64 `json:"wall_seconds"`
	Results                 []struct {
		Slot, Device, Serial, Outcome, Step, Message string
	}
}

func TestDemo16Devices(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, err := runMain(t, "demo", "--devices", "16", "--image-size", "128KiB", "--json", "--dir", dir, "--log-level", "debug")
	if err != nil {
		t.Fatalf("station demo = %v\n%s", err, stderr)
	}
	var sum demoSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("station demo --json printed %q: %v", stdout, err)
	}
	if sum.Devices != 16 || sum.Passed != 16 || sum.Failed != 0 || sum.Labels != 16 {
		t.Fatalf("station demo = %d devices, %d passed, %d failed, %d labels; want 16, 16, 0, 16", sum.Devices, sum.Passed, sum.Failed, sum.Labels)
	}
	// The journal holds every step of every device, and nothing twice.
	j, err := journal.Open(context.Background(), sum.Journal, "demo-station", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	states, err := j.Devices(context.Background(), "WO-DEMO-0001")
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 16 {
		t.Fatalf("journal knows %d devices, want 16", len(states))
	}
	for _, st := range states {
		if !slices.Equal(st.Passed, jobs.StepNames()) || st.ActivateCount != 1 || st.DoneCount != 1 {
			t.Errorf("device %s: passed %v, activated %d, done %d; want every step once", st.Device, st.Passed, st.ActivateCount, st.DoneCount)
		}
	}
	if n, err := j.Count(context.Background()); err != nil || n != sum.Events {
		t.Errorf("journal holds %d events (%v), summary says %d", n, err, sum.Events)
	}
	if err := j.IntegrityCheck(context.Background()); err != nil {
		t.Error(err)
	}
	// Every event went to the DMS over HTTP, once.
	st, err := dms.OpenSQLite(context.Background(), filepath.Join(dir, "dms.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	remote, err := (&dms.Service{Store: st}).Events(context.Background(), dms.EventFilter{Station: demoStation})
	if err != nil {
		t.Fatal(err)
	}
	if sum.SyncedEvents != sum.Events || int64(len(remote)) != sum.Events {
		t.Errorf("summary says %d events synced, the DMS holds %d; want all %d", sum.SyncedEvents, len(remote), sum.Events)
	}
	assertNoToken(t, dir, stdout+stderr)
}

// assertNoToken checks that the demo's token appears in no file of the
// journal and in no output.
func assertNoToken(t *testing.T, dir, output string) {
	t.Helper()
	for _, name := range []string{"token", "station.key"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		secret := strings.TrimSpace(string(b))
		if strings.Contains(output, secret) {
			t.Errorf("the output shows the secret kept in %s", name)
		}
		assertSecretAbsent(t, secret, dir, map[string]bool{"token": true, "station.key": true})
	}
}

func TestDemoFaultsAreIsolatedAndRetryPasses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	faults := faultFlags{}
	for _, f := range []string{"S02=unplug@40", "S03=write-error@50", "S04=corrupt-flash"} {
		if err := faults.Set(f); err != nil {
			t.Fatal(err)
		}
	}
	env, err := setupDemo(ctx, demoSpec{dir: dir, devices: 5, imageSize: 96 << 10, baud: 921600, chip: "esp32",
		locks: []string{"JTAG_DISABLE"}, faults: faults}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	var out bytes.Buffer
	sum, err := env.batch.execute(ctx, output{stdout: &out, stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		step jobs.Step
		says string
	}{
		"S02": {jobs.StepFlash, "link to device lost"},
		"S03": {jobs.StepFlash, "flash write failed"},
		"S04": {jobs.StepVerify, "verification failed"},
	}
	for _, r := range sum.Results {
		w, faulty := want[r.Slot]
		switch {
		case !faulty && r.Outcome != jobs.OutcomePassed:
			t.Errorf("slot %s = %s (%s), want passed", r.Slot, r.Outcome, r.Message)
		case faulty && (r.Outcome != jobs.OutcomeFailed || r.Step != w.step || !strings.Contains(r.Message, w.says)):
			t.Errorf("slot %s = %s at %s: %q; want failed at %s saying %q", r.Slot, r.Outcome, r.Step, r.Message, w.step, w.says)
		case faulty && (!strings.Contains(r.Message, "slot "+r.Slot) || !strings.Contains(r.Message, string(r.Device))):
			t.Errorf("slot %s: message %q does not name the slot and the device", r.Slot, r.Message)
		}
	}

	// Clear the faults, plug the unplugged device back in, and retry
	// the failed slots: they pass, and nothing is claimed twice.
	for _, d := range env.fleet.Devices() {
		d.ESP().ClearFaults()
	}
	if err := env.fleet.Devices()[1].Replug(); err != nil {
		t.Fatal(err)
	}
	env.batch.slots = []string{"S02", "S03", "S04"}
	sum, err = env.batch.execute(ctx, output{stdout: &out, stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed != 3 {
		t.Fatalf("retry = %+v, want the 3 slots passed", sum.Results)
	}
	states, err := env.journal.Devices(ctx, "WO-DEMO-0001")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Result != journal.ResultDone || st.ActivateCount != 1 || st.DoneCount != 1 {
			t.Errorf("device %s: %s, activated %d, done %d; want done once", st.Device, st.Result, st.ActivateCount, st.DoneCount)
		}
	}
	assertNoToken(t, dir, out.String())
}

// TestDemoOtherProtocols runs the whole flow on simulated STM32 UART
// bootloaders, on STM32F405s in QEMU behind their GDB servers, and on
// simulated DfuSe bootloaders (identical boards, same USB serial) on a
// simulated USB bus, and on SD cards (loop devices when root).
func TestDemoOtherProtocols(t *testing.T) {
	for _, c := range []struct {
		protocol string
		devices  string
		size     string
	}{
		{"stm32", "4", "64KiB"},
		{"gdb", "3", "256KiB"},
		{"dfu", "4", "256KiB"},
		{"block", "3", "2MiB"},
	} {
		t.Run(c.protocol, func(t *testing.T) {
			dir := t.TempDir()
			stdout, stderr, err := runMain(t, "demo", "--protocol", c.protocol, "--devices", c.devices, "--image-size", c.size, "--json", "--dir", dir)
			if err != nil {
				t.Fatalf("station demo --protocol %s = %v\n%s", c.protocol, err, stderr)
			}
			var sum demoSummary
			if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
				t.Fatalf("station demo --json printed %q: %v", stdout, err)
			}
			if fmt.Sprint(sum.Devices) != c.devices || sum.Passed != sum.Devices || sum.Failed != 0 {
				t.Fatalf("station demo --protocol %s: %d devices, %d passed, %d failed; want all %s passed: %+v",
					c.protocol, sum.Devices, sum.Passed, sum.Failed, c.devices, sum.Results)
			}
			j, err := journal.Open(context.Background(), sum.Journal, demoStation, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			states, err := j.Devices(context.Background(), "WO-DEMO-0001")
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range states {
				if !slices.Equal(st.Passed, jobs.StepNames()) || st.DoneCount != 1 {
					t.Errorf("device %s: passed %v, done %d times; want every step once", st.Device, st.Passed, st.DoneCount)
				}
			}
		})
	}
}

// TestDemoSTM32Faults: a simulated STM32 whose flash refuses a write, and
// one unplugged mid-flash, fail with their reasons; the others pass.
func TestDemoSTM32Faults(t *testing.T) {
	stdout, stderr, err := runMain(t, "demo", "--protocol", "stm32", "--devices", "3", "--image-size", "32KiB", "--json",
		"--dir", t.TempDir(), "--fault", "S02=write-error@50", "--fault", "S03=unplug@40")
	if Code(err) != ExitFailed {
		t.Fatalf("station demo with faults = %v, want exit %d\n%s", err, ExitFailed, stderr)
	}
	var sum demoSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("station demo --json printed %q: %v", stdout, err)
	}
	want := map[string]string{"S01": "", "S02": "flash write failed", "S03": "link to device lost"}
	for _, r := range sum.Results {
		says, ok := want[r.Slot]
		switch {
		case !ok:
			t.Errorf("unexpected slot %s", r.Slot)
		case says == "" && r.Outcome != "passed":
			t.Errorf("slot %s = %s (%s), want passed", r.Slot, r.Outcome, r.Message)
		case says != "" && (r.Outcome != "failed" || r.Step != "flash" || !strings.Contains(r.Message, says)):
			t.Errorf("slot %s = %s at %s: %q; want failed at flash saying %q", r.Slot, r.Outcome, r.Step, r.Message, says)
		}
	}
}

// TestDemoLabelsDecode reads every label a demo run printed (the PNG the
// directory sink writes beside the ZPL) with zbarimg: the Code 128 holds
// the serial and the QR code the serial and the hardware id.
func TestDemoLabelsDecode(t *testing.T) {
	if _, err := exec.LookPath("zbarimg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zbarimg is missing: scripts/test installs zbar-tools")
		}
		t.Skip("zbarimg is missing: run scripts/test, which installs zbar-tools")
	}
	dir := t.TempDir()
	stdout, stderr, err := runMain(t, "demo", "--devices", "4", "--image-size", "64KiB", "--json", "--dir", dir)
	if err != nil {
		t.Fatalf("station demo = %v\n%s", err, stderr)
	}
	var sum demoSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Labels != 4 {
		t.Fatalf("the demo printed %d labels, want 4", sum.Labels)
	}
	for _, r := range sum.Results {
		png := filepath.Join(dir, "labels", r.Serial+".png")
		out, err := exec.Command("zbarimg", "--raw", "-q", png).Output()
		if err != nil {
			t.Fatalf("zbarimg %s: %v", png, err)
		}
		got := strings.Fields(string(out))
		want := []string{r.Serial, r.Serial + "|" + r.Device}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("label of %s (%s) decodes to %q, want %q", r.Slot, r.Device, got, want)
		}
	}
}

// TestExportHoldsProtocolTranscripts: QA's export of a demo run carries
// each device's bootloader transcript, and verifies.
func TestExportHoldsProtocolTranscripts(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := runMain(t, "demo", "--devices", "2", "--image-size", "64KiB", "--dir", dir); err != nil {
		t.Fatalf("station demo = %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "export")
	if _, stderr, err := runMain(t, "export", "--journal", filepath.Join(dir, "journal.db"), "--station", demoStation,
		"--work-order", "WO-DEMO-0001", "--out", out); err != nil {
		t.Fatalf("station export = %v\n%s", err, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(out, "transcripts", "*.txt"))
	if len(files) != 2 {
		t.Fatalf("%d transcripts, want 2", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "Protocol transcript") || !strings.Contains(string(b), "> SYNC") || !strings.Contains(string(b), "SPI_FLASH_MD5") {
			t.Errorf("%s holds no protocol transcript:\n%.400s", f, b)
		}
	}
	if _, stderr, err := runMain(t, "export", "verify", out); err != nil {
		t.Fatalf("station export verify = %v\n%s", err, stderr)
	}
}
