package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/station"
	"github.com/station-dev/station/station/daemon"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

const (
	pinOperator   = "4711"
	pinSupervisor = "9999"
	stationID     = "st-test"
)

// bench is a station under test: a simulation (chips on PTYs, an
// embedded DMS on loopback HTTP) and a daemon on it, restartable.
type bench struct {
	t    *testing.T
	sim  *station.Simulation
	cfg  daemon.Config
	d    *daemon.Daemon
	stop context.CancelFunc
	done chan error
}

func newBench(t *testing.T, devices, quantity int, empty bool) *bench {
	t.Helper()
	dir := t.TempDir()
	simu, err := station.StartSimulation(t.Context(), filepath.Join(dir, "sim"), stationID,
		daemon.Simulate{Devices: devices, ImageSize: 64 << 10, Quantity: quantity}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simu.Close)
	if empty {
		if err := simu.EmptySlots(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := daemon.Config{
		Station: stationID, Journal: filepath.Join(dir, "journal.db"), API: daemon.API{Socket: filepath.Join(dir, "api.sock")},
		Operators: []daemon.Operator{
			{Name: "Olga", PINSHA256: daemon.HashSecret(pinOperator)},
			{Name: "Sam", PINSHA256: daemon.HashSecret(pinSupervisor), BadgeSHA256: daemon.HashSecret("BADGE-7"), Supervisor: true},
		},
	}
	simu.Configure(&cfg)
	cfg.WorkOrder = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := &bench{t: t, sim: simu, cfg: cfg}
	b.start()
	t.Cleanup(b.shutdown)
	return b
}

// start runs a new daemon on the bench's configuration.
func (b *bench) start() {
	b.t.Helper()
	backend, err := station.OpenBackend(b.t.Context(), b.cfg, func(string) string { return "" }, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	d, err := daemon.New(b.t.Context(), b.cfg, daemon.Options{Backend: backend, Version: "test"})
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.d, b.stop, b.done = d, cancel, make(chan error, 1)
	go func() { b.done <- d.Run(ctx) }()
}

// shutdown stops the daemon and waits for it.
func (b *bench) shutdown() {
	if b.stop == nil {
		return
	}
	b.stop()
	if err := <-b.done; err != nil {
		b.t.Errorf("Run() = %v", err)
	}
	b.stop = nil
}

func (b *bench) signIn(pin string) {
	b.t.Helper()
	if _, err := b.d.SignIn(b.t.Context(), localapi.SignInRequest{PIN: pin}); err != nil {
		b.t.Fatalf("SignIn() = %v", err)
	}
}

// waitFor follows the daemon's events until cond holds on its state.
func waitFor(t *testing.T, c interface {
	Watch(context.Context) <-chan localapi.Event
	State(context.Context) localapi.State
}, what string, cond func(localapi.State) bool) localapi.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	events := c.Watch(ctx)
	for range events {
		if st := c.State(ctx); cond(st) {
			return st
		}
	}
	st := c.State(context.Background())
	t.Fatalf("waiting for %s: timed out; state: run %s, counts %+v, slots %s", what, st.Run, st.Counts, slotLine(st))
	return st
}

// apiClient follows the daemon through the local API.
type apiClient struct{ c *localapi.Client }

func (a apiClient) Watch(ctx context.Context) <-chan localapi.Event { return a.c.Watch(ctx) }

func (a apiClient) State(ctx context.Context) localapi.State {
	st, _ := a.c.State(ctx)
	return st
}

func slotLine(st localapi.State) string {
	var b strings.Builder
	for _, s := range st.Slots {
		fmt.Fprintf(&b, "[%s %s %s %s] ", s.Name, s.Status, s.Step, s.Reason)
	}
	return b.String()
}

func slot(st localapi.State, name string) localapi.Slot {
	for _, s := range st.Slots {
		if s.Name == name {
			return s
		}
	}
	return localapi.Slot{}
}

func allStatus(want localapi.SlotStatus) func(localapi.State) bool {
	return func(st localapi.State) bool {
		for _, s := range st.Slots {
			if s.Status != want {
				return false
			}
		}
		return true
	}
}

// doneOnce checks that the journal completed every device at most once.
func doneOnce(t *testing.T, j string, wo string) int {
	t.Helper()
	jr, err := journal.Open(t.Context(), j, stationID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer jr.Close()
	devs, err := jr.Devices(t.Context(), wo)
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	for _, d := range devs {
		if d.DoneCount > 1 || d.ActivateCount > 1 {
			t.Errorf("device %s: done %d times, activated %d times; want once", d.Device, d.DoneCount, d.ActivateCount)
		}
		done += d.DoneCount
	}
	return done
}

func TestDevicesPluggedOneAfterAnotherAreFlashed(t *testing.T) {
	b := newBench(t, 3, 10, true)
	ctx := t.Context()
	if err := b.d.Load(ctx, b.sim.WorkOrder); !errors.Is(err, localapi.ErrSignIn) {
		t.Fatalf("Load() before sign-in = %v, want ErrSignIn", err)
	}
	b.signIn(pinOperator)
	if err := b.d.Start(ctx); !errors.Is(err, localapi.ErrNoWorkOrder) {
		t.Fatalf("Start() before Load = %v, want ErrNoWorkOrder", err)
	}
	if err := b.d.Load(ctx, "]C1WO:"+b.sim.WorkOrder); err != nil {
		t.Fatalf("Load() = %v", err)
	}
	st := b.d.State(ctx)
	if st.Run != localapi.RunReady || st.WorkOrder == nil || st.WorkOrder.ID != b.sim.WorkOrder || st.WorkOrder.Quantity != 10 {
		t.Fatalf("after Load: run %s, work order %+v; want ready with %s", st.Run, st.WorkOrder, b.sim.WorkOrder)
	}
	if !allStatus(localapi.SlotEmpty)(st) {
		t.Fatalf("slots before plugging: %s, want all empty", slotLine(st))
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	for i, name := range []string{"S01", "S02", "S03"} {
		if err := b.sim.Bench.Plug(i); err != nil {
			t.Fatal(err)
		}
		waitFor(t, b.d, name+" passed", func(st localapi.State) bool { return slot(st, name).Status == localapi.SlotPassed })
	}
	st = b.d.State(ctx)
	if want := (localapi.Counts{Done: 3, Passed: 3, Yield: 1}); st.Counts != want {
		t.Errorf("counts = %+v, want %+v", st.Counts, want)
	}
	for _, s := range st.Slots {
		if s.Device == "" || s.Serial == "" {
			t.Errorf("slot %s passed without device or serial: %+v", s.Name, s)
		}
	}

	// The operator takes a finished device out: the slot is empty; the
	// next device plugged in starts by itself.
	if err := b.sim.Bench.Unplug(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b.d, "S02 empty", func(st localapi.State) bool { return slot(st, "S02").Status == localapi.SlotEmpty })
	old := slot(st, "S02").Device
	if err := b.sim.Bench.Plug(1); err != nil {
		t.Fatal(err)
	}
	st = waitFor(t, b.d, "the new S02 passed", func(st localapi.State) bool {
		s := slot(st, "S02")
		return s.Status == localapi.SlotPassed && s.Device != old
	})
	if st.Counts.Done != 4 {
		t.Errorf("done = %d after the fourth device, want 4", st.Counts.Done)
	}

	// Pause: a device plugged in waits; Start takes it.
	if err := b.d.Pause(ctx); err != nil {
		t.Fatalf("Pause() = %v", err)
	}
	if err := b.sim.Bench.Plug(0); err != nil {
		t.Fatal(err)
	}
	st = waitFor(t, b.d, "S01 ready", func(st localapi.State) bool { return slot(st, "S01").Status == localapi.SlotReady })
	if st.Run != localapi.RunPaused {
		t.Errorf("run = %s, want paused", st.Run)
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatalf("Start() after Pause = %v", err)
	}
	waitFor(t, b.d, "S01 passed after resume", func(st localapi.State) bool {
		return slot(st, "S01").Status == localapi.SlotPassed && st.Counts.Done == 5
	})

	// Reprint rebuilds the last label of S01 from the journal.
	labels := filepath.Join(filepath.Dir(b.cfg.Journal), "labels")
	serial := slot(b.d.State(ctx), "S01").Serial
	file := filepath.Join(labels, serial+".zpl")
	first, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("label of %s: %v", serial, err)
	}
	os.Remove(file)
	if err := b.d.Reprint(ctx, "S01"); err != nil {
		t.Fatalf("Reprint() = %v", err)
	}
	again, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reprinted label: %v", err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("reprinted label differs from the first print:\n%s\nwant\n%s", again, first)
	}
	b.shutdown()
	if n := doneOnce(t, b.cfg.Journal, b.sim.WorkOrder); n != 5 {
		t.Errorf("journal holds %d devices done, want 5", n)
	}
}

func TestOperatorsAndSupervisors(t *testing.T) {
	b := newBench(t, 1, 5, false)
	ctx := t.Context()
	if _, err := b.d.SignIn(ctx, localapi.SignInRequest{PIN: "0000"}); !errors.Is(err, localapi.ErrWrongPIN) {
		t.Fatalf("SignIn(wrong PIN) = %v, want ErrWrongPIN", err)
	}
	if st := b.d.State(ctx); st.Operator != nil {
		t.Errorf("operator after a wrong PIN = %+v", st.Operator)
	}
	b.signIn(pinOperator)
	if err := b.d.Load(ctx, b.sim.WorkOrder); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Stop(ctx, localapi.Credential{PIN: pinOperator}); !errors.Is(err, localapi.ErrSupervisor) {
		t.Fatalf("Stop() with an operator's PIN = %v, want ErrSupervisor", err)
	}
	if err := b.d.Load(ctx, "WO-NOPE"); !errors.Is(err, localapi.ErrAlreadyRuns) && !errors.Is(err, localapi.ErrNotFound) {
		t.Fatalf("Load(unknown) = %v, want ErrNotFound", err)
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Load(ctx, b.sim.WorkOrder); !errors.Is(err, localapi.ErrAlreadyRuns) {
		t.Fatalf("Load() while running = %v, want ErrAlreadyRuns", err)
	}
	op, err := b.d.SignIn(ctx, localapi.SignInRequest{Badge: "BADGE-7"})
	if err != nil || !op.Supervisor || op.Name != "Sam" {
		t.Fatalf("SignIn(badge) = %+v, %v; want supervisor Sam", op, err)
	}
	if err := b.d.Stop(ctx, localapi.Credential{}); !errors.Is(err, localapi.ErrSupervisor) {
		t.Fatalf("Stop() by a signed-in supervisor without their credential = %v, want ErrSupervisor", err)
	}
	if err := b.d.Stop(ctx, localapi.Credential{Badge: "BADGE-7"}); err != nil {
		t.Fatalf("Stop() with a supervisor's badge = %v", err)
	}
	if st := b.d.State(ctx); st.Run != localapi.RunIdle || st.WorkOrder != nil {
		t.Errorf("after Stop: run %s, work order %+v; want idle, none", st.Run, st.WorkOrder)
	}
	if err := b.d.SignOut(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Start(ctx); !errors.Is(err, localapi.ErrSignIn) {
		t.Fatalf("Start() signed out = %v, want ErrSignIn", err)
	}
	b.shutdown()

	j, err := journal.Open(t.Context(), b.cfg.Journal, stationID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	events, err := j.Events(ctx, journal.Filter{Kind: journal.KindOperator})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range events {
		steps = append(steps, e.Operator+":"+e.Step)
		raw := strings.Join([]string{e.Operator, e.Step, e.Error, e.Slot, e.Device, string(e.Data)}, " ")
		for _, secret := range []string{"0000", pinOperator, "BADGE-7"} {
			if strings.Contains(raw, secret) {
				t.Errorf("journal event %d holds a PIN or badge: %s", e.Seq, raw)
			}
		}
	}
	want := ":sign_in_refused Olga:signed_in Olga:load_work_order Olga:signed_out Sam:signed_in Sam:stop Sam:signed_out"
	if got := strings.Join(steps, " "); got != want {
		t.Errorf("operator events = %s\nwant %s", got, want)
	}
}

// runToFailure makes every simulated device refuse writes from half its
// flash, runs the work order as the operator and waits until every slot
// failed.
func (b *bench) runToFailure(ctx context.Context) localapi.State {
	b.t.Helper()
	for _, d := range b.sim.Fleet.Devices() {
		d.ESP().SetFaults(sim.Faults{FailWritesFrom: 50})
	}
	b.signIn(pinOperator)
	if err := b.d.Load(ctx, b.sim.WorkOrder); err != nil {
		b.t.Fatal(err)
	}
	if err := b.d.Start(ctx); err != nil {
		b.t.Fatal(err)
	}
	return waitFor(b.t, b.d, "every slot failed", allStatus(localapi.SlotFailed))
}

func TestFailedDeviceRetryAndOverride(t *testing.T) {
	b := newBench(t, 2, 5, false)
	ctx := t.Context()
	st := b.runToFailure(ctx)
	codes := map[string]int{}
	for _, a := range st.Alerts {
		codes[a.Code]++
	}
	if codes["device_failed"] != 2 {
		t.Errorf("alerts = %+v, want device_failed for both slots", st.Alerts)
	}
	if want := (localapi.Counts{Failed: 2}); st.Counts != want {
		t.Errorf("counts = %+v, want %+v", st.Counts, want)
	}

	// S01: the fault is gone; a retry passes.
	b.sim.Fleet.Devices()[0].ESP().ClearFaults()
	if err := b.d.Retry(ctx, "S01"); err != nil {
		t.Fatalf("Retry() = %v", err)
	}
	waitFor(t, b.d, "S01 passed on retry", func(st localapi.State) bool { return slot(st, "S01").Status == localapi.SlotPassed })
	if err := b.d.Retry(ctx, "S01"); !errors.Is(err, localapi.ErrNothingToDo) {
		t.Errorf("Retry(passed slot) = %v, want ErrNothingToDo", err)
	}

	// S02: a supervisor accepts it.
	if err := b.d.Override(ctx, "S02", "rework ticket 17", localapi.Credential{PIN: pinOperator}); !errors.Is(err, localapi.ErrSupervisor) {
		t.Fatalf("Override() with an operator's PIN = %v, want ErrSupervisor", err)
	}
	if err := b.d.Override(ctx, "S02", "rework ticket 17", localapi.Credential{PIN: pinSupervisor}); err != nil {
		t.Fatalf("Override() = %v", err)
	}
	st = b.d.State(ctx)
	if s := slot(st, "S02"); s.Status != localapi.SlotOverridden || !strings.Contains(s.Reason, "rework ticket 17") || !strings.Contains(s.Reason, "Sam") {
		t.Errorf("S02 after Override = %+v, want overridden, with who and why", s)
	}
	// An override is not a pass: one passed (S01), one overridden.
	if want := (localapi.Counts{Done: 1, Passed: 1, Overridden: 1, Failed: 0, Yield: 0.5}); st.Counts != want {
		t.Errorf("counts = %+v, want %+v", st.Counts, want)
	}
	if err := b.d.Skip(ctx, "NOPE"); !errors.Is(err, localapi.ErrNotFound) {
		t.Errorf("Skip(unknown slot) = %v, want ErrNotFound", err)
	}
}

func TestRestartResumesTheRun(t *testing.T) {
	b := newBench(t, 2, 10, false)
	ctx := t.Context()
	b.signIn(pinOperator)
	if err := b.d.Load(ctx, b.sim.WorkOrder); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Stop the daemon while the devices are being flashed.
	waitFor(t, b.d, "a device flashing", func(st localapi.State) bool {
		for _, s := range st.Slots {
			if s.Step == "flash" || s.Step == "verify" {
				return true
			}
		}
		return false
	})
	b.shutdown()

	b.start()
	st := waitFor(t, b.d, "both passed after the restart", allStatus(localapi.SlotPassed))
	if st.Run != localapi.RunRunning || st.WorkOrder == nil || st.WorkOrder.ID != b.sim.WorkOrder {
		t.Errorf("after restart: run %s, work order %+v; want running %s", st.Run, st.WorkOrder, b.sim.WorkOrder)
	}
	if st.Counts.Done != 2 {
		t.Errorf("done = %d, want 2", st.Counts.Done)
	}

	// Another restart: the devices still plugged in are not run again.
	b.shutdown()
	b.start()
	st = waitFor(t, b.d, "both shown passed", allStatus(localapi.SlotPassed))
	for _, s := range st.Slots {
		if !strings.Contains(s.Reason, "already done") {
			t.Errorf("slot %s after the second restart: %q, want already done", s.Name, s.Reason)
		}
	}
	b.shutdown()
	if n := doneOnce(t, b.cfg.Journal, b.sim.WorkOrder); n != 2 {
		t.Errorf("journal holds %d devices done, want 2", n)
	}
}

func TestLocalAPIOverUnixSocket(t *testing.T) {
	b := newBench(t, 2, 2, false)
	ctx := t.Context()
	c, err := localapi.NewClient("unix:"+b.cfg.API.Socket, "")
	if err != nil {
		t.Fatal(err)
	}
	var st localapi.State
	for {
		// The daemon's socket comes up as Run starts.
		if st, err = c.State(ctx); err == nil {
			break
		}
		if !errors.Is(err, localapi.ErrDaemonDown) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if st.Station != stationID || len(st.Slots) != 2 {
		t.Fatalf("State() = station %s, %d slots; want %s, 2", st.Station, len(st.Slots), stationID)
	}
	if _, err := c.SignIn(ctx, localapi.SignInRequest{PIN: "1"}); !errors.Is(err, localapi.ErrWrongPIN) {
		t.Fatalf("SignIn(wrong) over HTTP = %v, want ErrWrongPIN", err)
	}
	if _, err := c.SignIn(ctx, localapi.SignInRequest{PIN: pinOperator}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, "WO:"+b.sim.WorkOrder); err != nil {
		t.Fatalf("Load() over HTTP = %v", err)
	}
	if _, err := c.Stop(ctx, localapi.Credential{PIN: pinOperator}); !errors.Is(err, localapi.ErrSupervisor) {
		t.Fatalf("Stop() by an operator over HTTP = %v, want ErrSupervisor", err)
	}
	if _, err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st = waitFor(t, apiClient{c}, "complete", func(st localapi.State) bool { return st.Run == localapi.RunComplete })
	if want := (localapi.Counts{Done: 2, Passed: 2, Yield: 1}); st.Counts != want {
		t.Errorf("counts = %+v, want %+v", st.Counts, want)
	}
	rows, err := c.Devices(ctx, localapi.DeviceQuery{WorkOrder: b.sim.WorkOrder})
	if err != nil || len(rows) != 2 {
		t.Fatalf("Devices() = %d rows, %v; want 2", len(rows), err)
	}
	for _, r := range rows {
		if r.Result != "done" || r.Serial == "" {
			t.Errorf("device row %+v, want done with a serial", r)
		}
	}
	lines, err := c.DeviceLog(ctx, rows[0].Serial)
	if err != nil || len(lines) == 0 || lines[len(lines)-1].Step != "done" {
		t.Fatalf("DeviceLog(serial) = %d lines, %v; want the steps up to done", len(lines), err)
	}
	var export bytes.Buffer
	if err := c.Export(ctx, localapi.DeviceQuery{WorkOrder: b.sim.WorkOrder}, &export); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(b.cfg.DMS.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(export.Bytes(), []byte("\n")); n < 2*8 {
		t.Errorf("export holds %d lines, want every step of both devices", n)
	}
	if bytes.Contains(export.Bytes(), bytes.TrimSpace(token)) || bytes.Contains(export.Bytes(), []byte("stk_")) {
		t.Error("export holds the activation token")
	}
}

// TestWatchCarriesALoadedWorkOrder: a client watching before a work order
// is loaded (a kiosk that reconnected to a daemon still restoring its run,
// a second kiosk while another loads) receives a whole state with the
// work order once it is loaded; slot and alert events do not carry it.
func TestWatchCarriesALoadedWorkOrder(t *testing.T) {
	b := newBench(t, 2, 10, true)
	b.signIn(pinSupervisor)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	events := b.d.Watch(ctx)
	first := <-events
	if first.Type != localapi.EventState || first.State.WorkOrder != nil {
		t.Fatalf("first event %s with work order %+v; want a state with none loaded", first.Type, first.State)
	}
	if err := b.d.Load(ctx, b.sim.WorkOrder); err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if ev.Type == localapi.EventState && ev.State.WorkOrder != nil {
			if ev.State.WorkOrder.ID != b.sim.WorkOrder {
				t.Fatalf("state event with work order %q, want %q", ev.State.WorkOrder.ID, b.sim.WorkOrder)
			}
			return
		}
	}
	t.Fatalf("the watch ended (%v) without a state carrying work order %s", ctx.Err(), b.sim.WorkOrder)
}
