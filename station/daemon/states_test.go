package daemon_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/station-dev/station/fixtures/sim"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/localapi"
)

// red counts the slots a kiosk shows red: failed or removed.
func red(st localapi.State) int {
	n := 0
	for _, s := range st.Slots {
		if s.Status == localapi.SlotFailed || s.Status == localapi.SlotRemoved {
			n++
		}
	}
	return n
}

// alertSlots returns the slots the alerts name.
func alertSlots(st localapi.State) string {
	var out []string
	for _, a := range st.Alerts {
		if a.Slot != "" {
			out = append(out, a.Code+":"+a.Slot)
		}
	}
	return strings.Join(out, " ")
}

// TestSlotStatesCountsAndRestart runs four devices: one fails, one is
// pulled out mid-flash, one fails and a supervisor accepts it, one
// passes. Each slot shows its own state (failed, removed, overridden,
// passed), the counts follow the same states (an override is no pass; a
// failed count is a red slot), and a restart of the daemon shows the same
// slots and counts again from the journal, without running the failed
// device again. Taking the failed device out sets it aside.
func TestSlotStatesCountsAndRestart(t *testing.T) {
	b := newBench(t, 4, 10, false)
	ctx := t.Context()
	devs := b.sim.Fleet.Devices()
	devs[0].ESP().SetFaults(sim.Faults{FailWritesFrom: 50})
	devs[1].ESP().SetFaults(sim.Faults{UnplugAt: 40})
	devs[2].ESP().SetFaults(sim.Faults{FailWritesFrom: 50})
	b.signIn(pinOperator)
	if err := b.d.Load(ctx, b.sim.WorkOrder); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]localapi.SlotStatus{"S01": localapi.SlotFailed, "S02": localapi.SlotRemoved, "S03": localapi.SlotFailed, "S04": localapi.SlotPassed}
	states := func(want map[string]localapi.SlotStatus) func(localapi.State) bool {
		return func(st localapi.State) bool {
			for name, w := range want {
				if slot(st, name).Status != w {
					return false
				}
			}
			return st.Counts.Done == 1
		}
	}
	st := waitFor(t, b.d, "S01 failed, S02 removed, S03 failed, S04 passed", states(want))
	s02 := slot(st, "S02")
	if s02.Device == "" || s02.Step != "flash" || !strings.Contains(s02.Reason, "plug it back in") {
		t.Errorf("S02 = %+v, want the removed device, during flash, with what to do", s02)
	}
	if got, want := alertSlots(st), "device_removed:S02 device_failed:S01 device_failed:S03"; !sameWords(got, want) {
		t.Errorf("alerts name %q, want %q", got, want)
	}
	if want := (localapi.Counts{Done: 1, Passed: 1, Failed: 3, Yield: 0.25}); st.Counts != want || red(st) != st.Counts.Failed {
		t.Errorf("counts = %+v with %d red slots, want %+v", st.Counts, red(st), want)
	}
	if c := slot(st, "S03").Can; c.Retry.OK != true || c.Override.OK || !strings.Contains(c.Override.Why, "supervisor") {
		t.Errorf("S03 commands for an operator = %+v, want retry, and override refused for want of a supervisor", c)
	}
	if c := slot(st, "S02").Can; c.Retry.OK || !strings.Contains(c.Retry.Why, "plug") {
		t.Errorf("S02 commands = %+v, want no retry until it is plugged back in", c)
	}
	if c := slot(st, "S04").Can; c.Retry.OK || c.Override.OK || !c.Reprint.OK {
		t.Errorf("S04 commands = %+v, want reprint only", c)
	}

	// A supervisor accepts S03; the operator skips S01.
	if err := b.d.Override(ctx, "S03", "scratch on the case only", localapi.Credential{PIN: pinSupervisor}); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Skip(ctx, "S01"); err != nil {
		t.Fatal(err)
	}
	want["S03"] = localapi.SlotOverridden
	st = b.d.State(ctx)
	if s := slot(st, "S03"); s.Status != localapi.SlotOverridden || !strings.Contains(s.Reason, "Sam") || !strings.Contains(s.Reason, "scratch on the case only") {
		t.Errorf("S03 after the override = %+v, want overridden by Sam with the reason", s)
	}
	if s := slot(st, "S01"); s.Status != localapi.SlotFailed || !strings.Contains(s.Reason, "skipped by Olga") {
		t.Errorf("S01 after the skip = %+v, want still failed, skipped", s)
	}
	if got, want := alertSlots(st), "device_removed:S02"; got != want {
		t.Errorf("alerts after the skip and the override name %q, want %q", got, want)
	}
	before := localapi.Counts{Done: 1, Passed: 1, Overridden: 1, Failed: 2, Yield: 0.25}
	if st.Counts != before || red(st) != 2 {
		t.Errorf("counts = %+v with %d red slots, want %+v", st.Counts, red(st), before)
	}
	runsOfS01 := func() int {
		j, err := journal.Open(ctx, b.cfg.Journal, stationID, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		ds, ok, err := j.Device(ctx, b.sim.WorkOrder, slot(st, "S01").Device)
		if err != nil || !ok {
			t.Fatalf("Device(S01's) = %v, %v", ok, err)
		}
		return ds.Runs
	}
	runs := runsOfS01()

	// A restart: the same slots and counts, from the journal.
	b.shutdown()
	b.start()
	st = waitFor(t, b.d, "the slots restored", func(st localapi.State) bool {
		return st.Run == localapi.RunRunning && states(want)(st) && st.Counts == before
	})
	if s := slot(st, "S03"); !strings.Contains(s.Reason, "scratch on the case only") {
		t.Errorf("S03 after the restart = %+v, want the override's reason", s)
	}
	if got, want := alertSlots(st), "device_removed:S02"; got != want {
		t.Errorf("alerts after the restart name %q, want %q (S01 was skipped)", got, want)
	}
	b.shutdown()
	if got := runsOfS01(); got != runs {
		t.Errorf("S01's device ran %d times after the restart, want %d: a failed device waits for the operator", got, runs)
	}
	b.start()
	waitFor(t, b.d, "the slots restored again", func(st localapi.State) bool { return states(want)(st) && st.Counts == before })

	// The failed device taken out of S01: set aside.
	if err := b.sim.Bench.Unplug(0); err != nil {
		t.Fatal(err)
	}
	st = waitFor(t, b.d, "S01 empty", func(st localapi.State) bool { return slot(st, "S01").Status == localapi.SlotEmpty })
	if want := (localapi.Counts{Done: 1, Passed: 1, Overridden: 1, Failed: 1, SetAside: 1, Yield: 0.25}); st.Counts != want {
		t.Errorf("counts after S01's device was taken out = %+v, want %+v", st.Counts, want)
	}
	b.shutdown()
	b.start()
	st = waitFor(t, b.d, "S02 restored", func(st localapi.State) bool { return slot(st, "S02").Status == localapi.SlotRemoved })
	if want := (localapi.Counts{Done: 1, Passed: 1, Overridden: 1, Failed: 1, SetAside: 1, Yield: 0.25}); st.Counts != want || slot(st, "S01").Status != localapi.SlotEmpty {
		t.Errorf("after a restart: S01 %s, counts %+v; want S01 empty, %+v", slot(st, "S01").Status, st.Counts, want)
	}

	rows, err := b.d.Devices(ctx, localapi.DeviceQuery{WorkOrder: b.sim.WorkOrder})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Operator != "Olga" {
			t.Errorf("device %s: operator %q, want Olga", r.Device, r.Operator)
		}
		switch r.Result {
		case "done":
			if r.Attempts != 1 {
				t.Errorf("device %s passed at its first run: attempts %d, want 1", r.Device, r.Attempts)
			}
		case "failed":
			if r.Attempts < 1 {
				t.Errorf("device %s: attempts %d", r.Device, r.Attempts)
			}
		}
		if (r.Override != "") != (r.Device == slot(st, "S03").Device) {
			t.Errorf("device %s: override %q", r.Device, r.Override)
		}
	}
}

func sameWords(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	if len(x) != len(y) {
		return false
	}
	seen := map[string]int{}
	for _, w := range x {
		seen[w]++
	}
	for _, w := range y {
		seen[w]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestOperatorIsWhoStartedTheDevice: the work order is loaded at start-up
// (nobody signed in); Olga starts the run and her device's steps carry
// her name; after a shift change Sam's device carries his, and Olga's
// keeps hers. The journal's sign-in and sign-out say when the shift
// changed.
func TestOperatorIsWhoStartedTheDevice(t *testing.T) {
	b := newBench(t, 2, 10, true)
	ctx := t.Context()
	b.shutdown()
	b.cfg.WorkOrder = b.sim.WorkOrder
	b.start()
	waitFor(t, b.d, "the work order loaded at start-up", func(st localapi.State) bool {
		return st.WorkOrder != nil && st.Run == localapi.RunReady
	})
	if err := b.d.Start(ctx); !errors.Is(err, localapi.ErrSignIn) {
		t.Fatalf("Start() with nobody signed in = %v, want ErrSignIn", err)
	}
	if st := b.d.State(ctx); st.Can.Start.OK || st.Can.Start.Why != "sign in first" {
		t.Errorf("Can.Start with nobody signed in = %+v", st.Can.Start)
	}
	b.signIn(pinOperator)
	if st := b.d.State(ctx); !st.Can.Start.OK || st.Can.Stop.OK || !strings.Contains(st.Can.Stop.Why, "supervisor") {
		t.Errorf("Can for an operator = %+v, want start, and stop for a supervisor", st.Can)
	}
	if err := b.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.sim.Bench.Plug(0); err != nil {
		t.Fatal(err)
	}
	st := waitFor(t, b.d, "S01 passed", func(st localapi.State) bool { return slot(st, "S01").Status == localapi.SlotPassed })
	olgas := slot(st, "S01").Device
	if _, err := b.d.SignIn(ctx, localapi.SignInRequest{PIN: pinSupervisor}); err != nil {
		t.Fatal(err)
	}
	if st := b.d.State(ctx); !st.Can.Stop.OK {
		t.Errorf("Can.Stop for a supervisor = %+v", st.Can.Stop)
	}
	if err := b.sim.Bench.Plug(1); err != nil {
		t.Fatal(err)
	}
	st = waitFor(t, b.d, "S02 passed", func(st localapi.State) bool { return slot(st, "S02").Status == localapi.SlotPassed })
	sams := slot(st, "S02").Device
	b.shutdown()

	j, err := journal.Open(ctx, b.cfg.Journal, stationID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for dev, want := range map[string]string{olgas: "Olga", sams: "Sam"} {
		events, err := j.Events(ctx, journal.Filter{Device: dev, Kind: journal.KindStep})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			t.Fatalf("no step events of %s", dev)
		}
		for _, e := range events {
			if e.Operator != want {
				t.Errorf("device %s, step %s %s: operator %q, want %q", dev, e.Step, e.Status, e.Operator, want)
			}
		}
	}
	ops, err := j.Events(ctx, journal.Filter{Kind: journal.KindOperator})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range ops {
		steps = append(steps, e.Operator+":"+e.Step)
	}
	if got, want := strings.Join(steps, " "), "Olga:signed_in Olga:signed_out Sam:signed_in"; got != want {
		t.Errorf("operator events = %s, want %s", got, want)
	}
}
