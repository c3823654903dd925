package jobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
)

var zeroTime time.Time

// rig is a runner over fake devices with the real journal, DMS and label
// sink.
type rig struct {
	t       *testing.T
	fixture *fakeFixture
	journal *journal.Journal
	dms     *testDMS
	runner  *jobs.Runner
	labels  string
}

func newRig(t *testing.T, slots, quantity int, change func(wo *jobs.WorkOrder)) *rig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	j, err := journal.Open(ctx, filepath.Join(dir, "journal.db"), "st-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	fx, specs := newFakeFixture(slots)
	data := []byte("firmware image bytes")
	sum := sha256.Sum256(data)
	wo := jobs.WorkOrder{
		ID:       "WO-1",
		Product:  jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageProduction},
		Bundle:   jobs.Bundle{Version: "2.3.1", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Format: "bin", URL: "app.bin"}}},
		Quantity: quantity,
		Lock:     jobs.LockPolicy{DMS: true, Device: []string{"JTAG_DISABLE"}},
	}
	if change != nil {
		change(&wo)
	}
	up, wo := seedDMS(t, dir, wo, map[string][]byte{"app.bin": data})
	if err := wo.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, fixture: fx, journal: j, dms: up, labels: filepath.Join(dir, "labels")}
	r.runner = &jobs.Runner{
		WorkOrder: wo,
		Images:    map[string]flasher.Image{"esp": {Version: wo.Bundle.Version, Segments: []flasher.Segment{{Name: "app.bin", Addr: 0x10000, Data: data}}}},
		Slots:     specs, Connector: fx, Upstream: up, Printer: &label.DirSink{Dir: r.labels},
		Journal: j, Station: "st-1", RetryDelay: time.Millisecond,
	}
	return r
}

// steps returns "step:status" of every step event of a device, in order.
func (r *rig) steps(device flasher.HardwareID) []string {
	r.t.Helper()
	evs, err := r.journal.Events(context.Background(), journal.Filter{WorkOrder: "WO-1", Device: string(device), Kind: journal.KindStep})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Step+":"+string(e.Status))
	}
	return out
}

func (r *rig) state(device flasher.HardwareID) journal.DeviceState {
	r.t.Helper()
	st, ok, err := r.journal.Device(context.Background(), "WO-1", string(device))
	if err != nil || !ok {
		r.t.Fatalf("journal.Device(%s) = %v, %v", device, ok, err)
	}
	return st
}

// fullPass is a device's journal through the whole pipeline. (Identify's
// started event names the slot only: the device is not known yet.)
var fullPass = []string{
	"identify:passed", "preflight:started", "preflight:passed",
	"flash:started", "flash:passed", "verify:started", "verify:passed",
	"activate:started", "activate:passed", "lock:started", "lock:passed",
	"label:started", "label:passed", "done:started", "done:passed",
}

func TestRunAllPass(t *testing.T) {
	r := newRig(t, 4, 10, nil)
	sum, err := r.runner.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed != 4 || sum.Failed != 0 {
		t.Fatalf("Run() = %d passed, %d failed, want 4 and 0: %+v", sum.Passed, sum.Failed, sum.Results)
	}
	for _, res := range sum.Results {
		if got := strings.Join(r.steps(res.Device), " "); got != strings.Join(fullPass, " ") {
			t.Errorf("journal of %s = %s, want %s", res.Device, got, strings.Join(fullPass, " "))
		}
		if res.Serial == "" {
			t.Errorf("result %s has no serial", res.Slot)
		}
		var steps time.Duration
		for _, d := range res.Steps {
			steps += d
		}
		if res.Link <= 0 || res.Link > res.Duration {
			t.Errorf("result %s: link time %v, want within (0, %v]", res.Slot, res.Link, res.Duration)
		}
		if len(res.Steps) != len(jobs.Steps) || res.Duration < steps {
			t.Errorf("result %s: %d step times summing to %v, duration %v; want %d steps within the duration", res.Slot, len(res.Steps), steps, res.Duration, len(jobs.Steps))
		}
		if !r.fixture.device(res.Slot).locked.Load() {
			t.Errorf("device in %s not locked", res.Slot)
		}
	}
	if sum.Events != 2+4*16 {
		t.Errorf("Summary.Events = %d, want %d", sum.Events, 2+4*16)
	}
	r.assertNoSecret()
}

func TestFailedDeviceDoesNotStopOthers(t *testing.T) {
	r := newRig(t, 4, 10, nil)
	r.fixture.device("S2").configure = func(b *fakeBackend) {
		b.flash = func(ctx context.Context, img flasher.Image, p flasher.Progress) error {
			p(img.Size()/2, img.Size())
			return fmt.Errorf("FLASH_DEFL_DATA block 3: %w", flasher.ErrLinkLost)
		}
	}
	r.fixture.device("S3").configure = func(b *fakeBackend) {
		b.verify = func(context.Context, flasher.Image) error { return fmt.Errorf("md5 differs: %w", flasher.ErrVerify) }
	}
	sum, err := r.runner.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]jobs.Step{"S2": jobs.StepFlash, "S3": jobs.StepVerify}
	for _, res := range sum.Results {
		step, bad := want[res.Slot]
		switch {
		case bad && (res.Outcome != jobs.OutcomeFailed || res.Step != step):
			t.Errorf("slot %s = %s at %s, want failed at %s", res.Slot, res.Outcome, res.Step, step)
		case bad && !strings.Contains(res.Message, "slot "+res.Slot) || bad && !strings.Contains(res.Message, string(res.Device)):
			t.Errorf("slot %s message %q does not name the slot and the device", res.Slot, res.Message)
		case !bad && res.Outcome != jobs.OutcomePassed:
			t.Errorf("slot %s = %s (%s), want passed", res.Slot, res.Outcome, res.Message)
		}
	}
	if st := r.state("aa:bb:cc:00:00:02"); st.Result != journal.ResultFailed || !strings.Contains(st.LastError, "Reseat the device") {
		t.Errorf("journal state of S2 = %s %q, want failed with advice", st.Result, st.LastError)
	}
	if n := r.dms.claims("aa:bb:cc:00:00:02"); n != 0 {
		t.Errorf("failed device claimed %d times, want 0", n)
	}
}

// TestLockJournalsReadBack: the lock step journals what the device read
// back, passed or failed, not only what the work order asked.
func TestLockJournalsReadBack(t *testing.T) {
	r := newRig(t, 2, 10, nil)
	r.fixture.device("S2").configure = func(b *fakeBackend) {
		b.lock = func(context.Context, []string) error {
			return fmt.Errorf("JTAG_DISABLE not set: FAKE_LOCK_REG reads 0x00000000: %w", flasher.ErrLockNotSet)
		}
	}
	sum, err := r.runner.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The operator reads that the lock did not take, not a write error.
	for _, res := range sum.Results {
		if res.Slot == "S2" && (res.Step != jobs.StepLock || !strings.Contains(res.Message, "did not take")) {
			t.Errorf("S2 failed at %s with %q, want the lock step and the advice for a lock that did not take", res.Step, res.Message)
		}
	}
	for _, tc := range []struct {
		device flasher.HardwareID
		status journal.Status
		data   string
	}{
		{"aa:bb:cc:00:00:01", journal.StatusPassed, `"lock_state":{"JTAG_DISABLE":true},"read_back":[{"stage":"after burn 1","register":"FAKE_LOCK_REG","addr":"0x1000","value":"0x00000040"}]`},
		{"aa:bb:cc:00:00:02", journal.StatusFailed, `"lock_state":{"JTAG_DISABLE":false},"read_back":[{"stage":"after burn 1","register":"FAKE_LOCK_REG","addr":"0x1000","value":"0x00000000"}]`},
	} {
		evs, err := r.journal.Events(context.Background(), journal.Filter{WorkOrder: "WO-1", Device: string(tc.device), Kind: journal.KindStep})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(evs, func(e journal.Event) bool { return e.Step == "lock" && e.Status == tc.status })
		if i < 0 {
			t.Fatalf("journal of %s has no lock:%s event", tc.device, tc.status)
		}
		if got := string(evs[i].Data); !strings.Contains(got, tc.data) {
			t.Errorf("lock:%s data of %s = %s, want it to hold %s", tc.status, tc.device, got, tc.data)
		}
	}
}

func TestRetryResumesFromLastPassedStep(t *testing.T) {
	r := newRig(t, 2, 10, nil)
	dev := r.fixture.device("S1")
	// The device is stopped in the middle of the lock step (the station
	// dies, as far as this device knows).
	ctx, cancel := context.WithCancel(context.Background())
	dev.configure = func(b *fakeBackend) {
		b.lock = func(ctx context.Context, _ []string) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}
	}
	res := r.runner.RunSlot(ctx, "S1")
	if res.Outcome != jobs.OutcomeFailed || res.Step != jobs.StepLock || !errors.Is(res.Err, jobs.ErrStopped) {
		t.Fatalf("RunSlot(stopped in lock) = %s at %s (%v), want failed at lock, stopped", res.Outcome, res.Step, res.Err)
	}
	dev.configure = nil
	res = r.runner.RunSlot(context.Background(), "S1")
	if res.Outcome != jobs.OutcomePassed {
		t.Fatalf("RunSlot(retry) = %s: %s", res.Outcome, res.Message)
	}
	if got := dev.flashes.Load(); got != 1 {
		t.Errorf("device flashed %d times, want 1 (the retry resumes after flash)", got)
	}
	st := r.state(res.Device)
	if st.ActivateCount != 1 || st.DoneCount != 1 || r.dms.claims(res.Device) != 1 {
		t.Errorf("activations %d, done %d, claims %d; want 1 each", st.ActivateCount, st.DoneCount, r.dms.claims(res.Device))
	}
	if st.Attempts["lock"] != 2 {
		t.Errorf("lock attempts = %d, want 2", st.Attempts["lock"])
	}
	if res.Serial == "" || res.Serial != st.Serial {
		t.Errorf("serial after resume = %q, journal says %q", res.Serial, st.Serial)
	}
}

func TestVerifyFailureReflashesOnRetry(t *testing.T) {
	r := newRig(t, 1, 10, nil)
	dev := r.fixture.device("S1")
	dev.configure = func(b *fakeBackend) {
		b.verify = func(context.Context, flasher.Image) error { return fmt.Errorf("md5: %w", flasher.ErrVerify) }
	}
	if res := r.runner.RunSlot(context.Background(), "S1"); res.Outcome != jobs.OutcomeFailed {
		t.Fatalf("RunSlot(verify fault) = %s, want failed", res.Outcome)
	}
	dev.configure = nil
	if res := r.runner.RunSlot(context.Background(), "S1"); res.Outcome != jobs.OutcomePassed {
		t.Fatalf("RunSlot(cleared) = %s: %s", res.Outcome, res.Message)
	}
	if got := dev.flashes.Load(); got != 2 {
		t.Errorf("device flashed %d times, want 2: a failed verify must send it back to flash", got)
	}
}

func TestAutomaticRetries(t *testing.T) {
	r := newRig(t, 1, 10, func(wo *jobs.WorkOrder) { wo.Flasher.Retries = 2 })
	dev := r.fixture.device("S1")
	fails := 2
	dev.configure = func(b *fakeBackend) {
		b.flash = func(ctx context.Context, img flasher.Image, p flasher.Progress) error {
			if fails > 0 {
				fails--
				return fmt.Errorf("block 1: %w", flasher.ErrLinkLost)
			}
			return nil
		}
	}
	res := r.runner.RunSlot(context.Background(), "S1")
	if res.Outcome != jobs.OutcomePassed || res.Attempts != 3 {
		t.Fatalf("RunSlot() = %s after %d attempts, want passed after 3", res.Outcome, res.Attempts)
	}
}

func TestRefusalIsNotRetriedAndNothingWritten(t *testing.T) {
	r := newRig(t, 1, 10, func(wo *jobs.WorkOrder) { wo.Flasher.Retries = 3 })
	r.dms.lockElsewhere("aa:bb:cc:00:00:01", "OTHER")
	res := r.runner.RunSlot(context.Background(), "S1")
	if res.Outcome != jobs.OutcomeFailed || res.Step != jobs.StepPreflight || res.Attempts != 1 {
		t.Fatalf("RunSlot(locked elsewhere) = %s at %s after %d attempts, want failed at preflight once", res.Outcome, res.Step, res.Attempts)
	}
	if !strings.Contains(res.Message, "Set this device aside") {
		t.Errorf("message %q does not tell the operator what to do", res.Message)
	}
	if n := r.fixture.device("S1").flashes.Load(); n != 0 {
		t.Errorf("refused device flashed %d times, want 0", n)
	}
}

func TestAlreadyDoneIsLeftAlone(t *testing.T) {
	r := newRig(t, 3, 10, nil)
	if sum, err := r.runner.Run(context.Background()); err != nil || sum.Passed != 3 {
		t.Fatalf("first Run() = %+v, %v", sum, err)
	}
	sum, err := r.runner.Run(context.Background())
	if err != nil || sum.AlreadyDone != 3 {
		t.Fatalf("second Run() = %+v, %v; want 3 already done", sum, err)
	}
	for _, res := range sum.Results {
		if n := r.fixture.device(res.Slot).flashes.Load(); n != 1 {
			t.Errorf("%s flashed %d times, want 1", res.Slot, n)
		}
		if st := r.state(res.Device); st.ActivateCount != 1 || st.DoneCount != 1 {
			t.Errorf("%s activated %d, done %d times; want 1 each", res.Device, st.ActivateCount, st.DoneCount)
		}
	}
}

func TestQuantityLimitsDevices(t *testing.T) {
	r := newRig(t, 4, 2, nil)
	sum, err := r.runner.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed != 2 || sum.Skipped != 2 || sum.Done != 2 {
		t.Fatalf("Run(quantity 2, 4 slots) = %d passed, %d skipped, %d done; want 2, 2, 2", sum.Passed, sum.Skipped, sum.Done)
	}
}

func TestStepTimeout(t *testing.T) {
	r := newRig(t, 1, 10, func(wo *jobs.WorkOrder) {
		wo.Flasher.Timeouts = map[string]jobs.Duration{"flash": jobs.NewDuration(20 * time.Millisecond)}
	})
	r.fixture.device("S1").configure = func(b *fakeBackend) {
		b.flash = func(ctx context.Context, _ flasher.Image, _ flasher.Progress) error {
			<-ctx.Done()
			return fmt.Errorf("waiting for FLASH_DEFL_DATA response: %w", ctx.Err())
		}
	}
	res := r.runner.RunSlot(context.Background(), "S1")
	if res.Outcome != jobs.OutcomeFailed || !strings.Contains(res.Message, "flash took longer than 20ms") {
		t.Fatalf("RunSlot(stuck flash) = %s: %q, want a timeout naming the step", res.Outcome, res.Message)
	}
}

func TestSharedResourceLimitsConcurrency(t *testing.T) {
	r := newRig(t, 4, 10, nil)
	for i := range r.runner.Slots {
		r.runner.Slots[i].Uses = []string{"probe"}
	}
	r.runner.Resources = map[string]int64{"probe": 1}
	for _, name := range []string{"S1", "S2", "S3", "S4"} {
		r.fixture.device(name).configure = func(b *fakeBackend) {
			b.flash = func(ctx context.Context, img flasher.Image, p flasher.Progress) error {
				time.Sleep(5 * time.Millisecond) // hold the probe a moment
				return nil
			}
		}
	}
	if sum, err := r.runner.Run(context.Background()); err != nil || sum.Passed != 4 {
		t.Fatalf("Run() = %+v, %v", sum, err)
	}
	if got := r.fixture.maxBusy.Load(); got != 1 {
		t.Errorf("devices open at once = %d, want 1 with one shared probe", got)
	}
}

func TestLockedDeviceResumedFromSlot(t *testing.T) {
	r := newRig(t, 1, 10, nil)
	dev := r.fixture.device("S1")
	// The station dies after lock: stop it in the label step.
	ctx, cancel := context.WithCancel(context.Background())
	r.runner.Printer = printerFunc(func(ctx context.Context, _ jobs.Label) error { cancel(); <-ctx.Done(); return ctx.Err() })
	if res := r.runner.RunSlot(ctx, "S1"); res.Step != jobs.StepLabel {
		t.Fatalf("RunSlot() = %s at %s, want failed at label", res.Outcome, res.Step)
	}
	// Now the device hides its identity (secure download mode).
	dev.configure = func(b *fakeBackend) {
		b.identify = func(context.Context) (flasher.Device, error) {
			return flasher.Device{Chip: "FAKE", Locked: true}, fmt.Errorf("secure download mode: %w", flasher.ErrLocked)
		}
	}
	r.runner.Printer = &label.DirSink{Dir: r.labels}
	res := r.runner.RunSlot(context.Background(), "S1")
	if res.Outcome != jobs.OutcomePassed || res.Device != dev.hw {
		t.Fatalf("RunSlot(locked, unreadable) = %s as %q: %s; want passed as %s", res.Outcome, res.Device, res.Message, dev.hw)
	}
	// A different locked device in a slot with no such history is refused.
	r2 := newRig(t, 1, 10, nil)
	r2.fixture.device("S1").configure = dev.configure
	if res := r2.runner.RunSlot(context.Background(), "S1"); res.Outcome != jobs.OutcomeFailed || res.Step != jobs.StepIdentify {
		t.Fatalf("RunSlot(unknown locked device) = %s at %s, want failed at identify", res.Outcome, res.Step)
	}
}

func TestStopRecordsEveryDevice(t *testing.T) {
	r := newRig(t, 3, 10, nil)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 3)
	for _, name := range []string{"S1", "S2", "S3"} {
		r.fixture.device(name).configure = func(b *fakeBackend) {
			b.flash = func(ctx context.Context, _ flasher.Image, _ flasher.Progress) error {
				started <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
		}
	}
	go func() {
		for range 3 {
			<-started
		}
		cancel()
	}()
	sum, err := r.runner.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range sum.Results {
		if res.Outcome != jobs.OutcomeFailed || !errors.Is(res.Err, jobs.ErrStopped) {
			t.Errorf("slot %s = %s (%v), want failed: stopped", res.Slot, res.Outcome, res.Err)
		}
		if st := r.state(res.Device); st.LastStep != "flash" || st.LastStatus != journal.StatusFailed {
			t.Errorf("journal of %s ends at %s %s, want flash failed", res.Device, st.LastStep, st.LastStatus)
		}
	}
}

type printerFunc func(ctx context.Context, l jobs.Label) error

func (f printerFunc) Print(ctx context.Context, l jobs.Label) error { return f(ctx, l) }

// assertNoSecret checks that the token is nowhere in the journal.
func (r *rig) assertNoSecret() {
	r.t.Helper()
	token := r.runner.WorkOrder.Authorization.Token.Reveal()
	if token == "" {
		r.t.Fatal("work order has no token")
	}
	evs, err := r.journal.Events(context.Background(), journal.Filter{})
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range evs {
		if strings.Contains(fmt.Sprintf("%+v %s", e, e.Data), token) {
			r.t.Fatalf("journal event %d holds the token", e.Seq)
		}
	}
}

func TestDoneOnAnotherStationIsRecognised(t *testing.T) {
	r := newRig(t, 2, 10, nil)
	if sum, err := r.runner.Run(context.Background()); err != nil || sum.Passed != 2 {
		t.Fatalf("Run() on station 1 = %+v, %v", sum, err)
	}
	// The same devices reach a second station with its own, empty
	// journal: the DMS tells it they are done.
	j2, err := journal.Open(context.Background(), filepath.Join(t.TempDir(), "j2.db"), "st-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	r1 := r.runner
	r2 := &jobs.Runner{WorkOrder: r1.WorkOrder, Images: r1.Images, Slots: r1.Slots, Connector: r1.Connector,
		Upstream: r1.Upstream, Printer: r1.Printer, Journal: j2, Station: "st-2"}
	sum, err := r2.Run(context.Background())
	if err != nil || sum.AlreadyDone != 2 || sum.Done != 2 {
		t.Fatalf("Run() on station 2 = %+v, %v; want 2 already done, 2 done", sum, err)
	}
	for _, res := range sum.Results {
		// Station 2's journal records what the DMS knows.
		if st, ok, err := j2.Device(context.Background(), "WO-1", string(res.Device)); err != nil || !ok || st.Result != journal.ResultDone || st.DoneCount != 1 {
			t.Errorf("station 2's journal: %s = %+v, %v, %v; want done once", res.Device, st, ok, err)
		}
		if n := r.fixture.device(res.Slot).flashes.Load(); n != 1 {
			t.Errorf("%s flashed %d times, want 1", res.Slot, n)
		}
		if n := r.dms.claims(res.Device); n != 1 {
			t.Errorf("%s claimed %d times, want 1", res.Device, n)
		}
	}
}

// flakyUpstream is the real DMS behind a switch that makes it unreachable.
type flakyUpstream struct {
	jobs.Upstream
	down    atomic.Bool
	refused atomic.Int32
}

func (f *flakyUpstream) Activate(ctx context.Context, req jobs.ActivateRequest) (jobs.Activation, error) {
	if f.down.Load() {
		f.refused.Add(1)
		return jobs.Activation{}, fmt.Errorf("%w: connection refused", jobs.ErrUnavailable)
	}
	return f.Upstream.Activate(ctx, req)
}

func TestDMSOutageWaitsAndLosesNothing(t *testing.T) {
	r := newRig(t, 2, 10, nil)
	up := &flakyUpstream{Upstream: r.runner.Upstream}
	up.down.Store(true)
	r.runner.Upstream = up
	waited := make(chan string, 1)
	onWaiting(t, r.runner, func(msg string) {
		select {
		case waited <- msg:
		default:
		}
		up.down.Store(false) // the DMS comes back
	})
	sum, err := r.runner.Run(context.Background())
	if err != nil || sum.Passed != 2 {
		t.Fatalf("Run() during an outage = %+v, %v; want both devices passed once the DMS is back", sum, err)
	}
	msg := <-waited
	if !strings.Contains(msg, "waiting for the DMS") || !strings.Contains(msg, "activation needs it") {
		t.Errorf("slot said %q while waiting, want it to say it waits for the DMS and why", msg)
	}
	if up.refused.Load() == 0 {
		t.Fatal("the outage was never seen")
	}
	for _, res := range sum.Results {
		if st := r.state(res.Device); st.ActivateCount != 1 || st.Attempts["activate"] != 1 {
			t.Errorf("%s: activated %d times in %d attempts; want one of each (waiting is no retry)", res.Device, st.ActivateCount, st.Attempts["activate"])
		}
	}
}

// onWaiting gives the runner a live-state bus and calls f with what a
// slot says it waits for, each time one does, until the test ends.
func onWaiting(t *testing.T, r *jobs.Runner, f func(msg string)) {
	r.Bus = &jobs.Bus{}
	sub := r.Bus.Subscribe()
	t.Cleanup(sub.Close)
	go func() {
		for range sub.C() {
			for _, s := range sub.Changes() {
				if s.Waiting != "" {
					f(s.Waiting)
				}
			}
		}
	}()
}

func TestStopWhileWaitingForDMS(t *testing.T) {
	r := newRig(t, 1, 10, nil)
	up := &flakyUpstream{Upstream: r.runner.Upstream}
	up.down.Store(true)
	r.runner.Upstream = up
	ctx, cancel := context.WithCancel(context.Background())
	onWaiting(t, r.runner, func(string) { cancel() })
	res := r.runner.RunSlot(ctx, "S1")
	if res.Outcome != jobs.OutcomeFailed || res.Step != jobs.StepActivate || !errors.Is(res.Err, jobs.ErrStopped) {
		t.Fatalf("RunSlot(stopped while waiting) = %s at %s: %v", res.Outcome, res.Step, res.Err)
	}
	// Flashed and verified: the retry resumes at activation.
	if st := r.state(res.Device); !slices.Contains(st.Passed, "verify") || st.LastStep != "activate" {
		t.Errorf("journal: passed %v, last %s; want verify passed and activate last", st.Passed, st.LastStep)
	}
}

// TestPrinterOutOfPaperHoldsTheLabel: the printer refuses labels (out of
// paper) until the test sees a slot say it waits for it; then it prints.
// Every device passes with its label printed once, and the label step
// counts one attempt: waiting for the printer is no retry.
func TestPrinterOutOfPaperHoldsTheLabel(t *testing.T) {
	r := newRig(t, 2, 10, nil)
	var down atomic.Bool
	down.Store(true)
	var printed atomic.Int32
	r.runner.Printer = printerFunc(func(ctx context.Context, l jobs.Label) error {
		if down.Load() {
			return fmt.Errorf("the label printer is out of paper: load a new roll: %w", jobs.ErrPrinterUnavailable)
		}
		printed.Add(1)
		return nil
	})
	waited := make(chan string, 1)
	onWaiting(t, r.runner, func(msg string) {
		select {
		case waited <- msg:
		default:
		}
		down.Store(false) // paper loaded
	})
	sum, err := r.runner.Run(context.Background())
	if err != nil || sum.Passed != 2 || printed.Load() != 2 {
		t.Fatalf("Run() with the printer out of paper = %+v, %v, %d labels; want both passed and 2 labels", sum, err, printed.Load())
	}
	if msg := <-waited; !strings.Contains(msg, "waiting for the label printer") || !strings.Contains(msg, "out of paper") {
		t.Errorf("slot said %q while waiting, want it to say it waits for the printer and why", msg)
	}
	for _, res := range sum.Results {
		if st := r.state(res.Device); st.Attempts["label"] != 1 {
			t.Errorf("%s: %d label attempts, want 1", res.Device, st.Attempts["label"])
		}
	}
}

// TestTranscriptsKeptAfterTheRun: each run's protocol transcript is
// appended to its device's file after the run, in order; Run returns
// once its devices' are written, and Flush waits for RunSlot's.
func TestTranscriptsKeptAfterTheRun(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 2, 10, nil)
	r.runner.TraceDir = t.TempDir()
	file := func(slot string) string {
		return filepath.Join(r.runner.TraceDir, "WO-1", jobs.TraceFileName(string(r.fixture.device(slot).hw)))
	}
	if _, err := r.runner.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for _, slot := range []string{"S1", "S2"} {
		if b, err := os.ReadFile(file(slot)); err != nil || !strings.HasPrefix(string(b), "# st-1 slot "+slot+", run started ") {
			t.Errorf("%s's transcript when Run returned = %q, %v", slot, b, err)
		}
	}
	// S1 again: already done, but identified, so its transcript grows.
	if res := r.runner.RunSlot(ctx, "S1"); res.Outcome != jobs.OutcomeAlreadyDone {
		t.Fatalf("RunSlot(S1) again = %s (%s), want already done", res.Outcome, res.Message)
	}
	r.runner.Flush()
	b, err := os.ReadFile(file("S1"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "# st-1 slot S1, run started "); n != 2 || strings.Count(string(b), "> IDENTIFY\n") != 2 {
		t.Errorf("S1's transcript after two runs = %q, want two runs, each with its header and identify", b)
	}
}
