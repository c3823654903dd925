package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// errCrashed is what a crashed journal answers.
var errCrashed = errors.New("the station died")

// crashJournal is the real journal until the event at is about to be
// appended: that append and every later one fail and write nothing, as
// if the station had been killed right after its last durable write.
type crashJournal struct {
	*journal.Journal
	at   func(journal.Event) bool
	dead atomic.Bool
}

func (c *crashJournal) Append(ctx context.Context, events ...journal.Event) ([]journal.Event, error) {
	if c.dead.Load() {
		return nil, errCrashed
	}
	for _, e := range events {
		if c.at(e) {
			c.dead.Store(true)
			return nil, errCrashed
		}
	}
	return c.Journal.Append(ctx, events...)
}

// stepPassed matches the passed event of step on slot.
func stepPassed(slot string, step jobs.Step) func(journal.Event) bool {
	return func(e journal.Event) bool {
		return e.Slot == slot && e.Step == string(step) && e.Status == journal.StatusPassed
	}
}

// restart returns a new runner, as a restarted station builds it, over
// the rig's journal and DMS.
func (r *rig) restart(j jobs.Journal) *jobs.Runner {
	o := r.runner
	return &jobs.Runner{WorkOrder: o.WorkOrder, Images: o.Images, Slots: o.Slots, Connector: o.Connector,
		Upstream: o.Upstream, Printer: o.Printer, Journal: j, Station: o.Station, RetryDelay: o.RetryDelay}
}

// claimsUsed counts the claims the DMS recorded over every slot's device.
func (r *rig) claimsUsed() int {
	n := 0
	for _, s := range r.runner.Slots {
		n += r.dms.claims(r.fixture.device(s.Name).hw)
	}
	return n
}

// TestKilledAfterDMSDoneResumes is issue 15's first finding: the station
// killed after the DMS recorded a device done and before its journal did.
// The next run records the device done from the DMS, counts it against
// the quantity and starts no device beyond it.
func TestKilledAfterDMSDoneResumes(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 3, 2, nil)
	crash := &crashJournal{Journal: r.journal, at: stepPassed("S1", jobs.StepDone)}
	if res := r.restart(crash).RunSlot(ctx, "S1"); !errors.Is(res.Err, errCrashed) {
		t.Fatalf("RunSlot(S1) with the journal dying at done = %+v, want it to end with the crash", res)
	}
	hw := r.fixture.device("S1").hw
	if st := r.state(hw); st.Result == journal.ResultDone {
		t.Fatalf("journal holds %s done before the restart: the crash came too late", hw)
	}

	sum, err := r.restart(r.journal).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.AlreadyDone != 1 || sum.Passed != 1 || sum.Skipped != 1 || sum.Failed != 0 || sum.Done != 2 {
		t.Fatalf("Run() after the crash = %d already done, %d passed, %d skipped, %d failed, %d done; want 1, 1, 1, 0, 2",
			sum.AlreadyDone, sum.Passed, sum.Skipped, sum.Failed, sum.Done)
	}
	st := r.state(hw)
	if st.Result != journal.ResultDone || st.DoneCount != 1 {
		t.Errorf("journal: %s %s, done %d times; want done once", hw, st.Result, st.DoneCount)
	}
	evs, err := r.journal.Events(ctx, journal.Filter{WorkOrder: "WO-1", Device: string(hw), Kind: journal.KindStep})
	if err != nil {
		t.Fatal(err)
	}
	var done []journal.Event
	for _, e := range evs {
		if e.Step == string(jobs.StepDone) && e.Status == journal.StatusPassed {
			done = append(done, e)
		}
	}
	var data struct{ Source, Serial string }
	if len(done) != 1 || json.Unmarshal(done[0].Data, &data) != nil || data.Source != "dms" || data.Serial == "" || done[0].Slot != "S1" {
		t.Errorf("done events of %s = %+v, want one, on S1, with the DMS as its source and the serial", hw, done)
	}
	if n := r.claimsUsed(); n != 2 {
		t.Errorf("the DMS recorded %d claims, want 2 (the quantity)", n)
	}
	wst, err := r.journal.WorkOrder(ctx, "WO-1")
	if err != nil || wst.Done != 2 || wst.Interrupted != 0 {
		t.Errorf("journal's work order = %+v, %v; want 2 done and none interrupted", wst, err)
	}
}

// TestClaimedDeviceKeepsItsPlace: a device claimed at the DMS by a run
// that died before journaling the claim keeps its place in the quantity:
// a new device started first is not given it, and the claimed device,
// when it comes back, finishes with its one claim.
func TestClaimedDeviceKeepsItsPlace(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 3, 2, nil)
	crash := &crashJournal{Journal: r.journal, at: stepPassed("S1", jobs.StepActivate)}
	if res := r.restart(crash).RunSlot(ctx, "S1"); !errors.Is(res.Err, errCrashed) {
		t.Fatalf("RunSlot(S1) with the journal dying at activate = %+v, want it to end with the crash", res)
	}
	if n := r.claimsUsed(); n != 1 {
		t.Fatalf("the DMS recorded %d claims before the restart, want 1", n)
	}

	runner := r.restart(r.journal)
	for _, c := range []struct {
		slot string
		want jobs.Outcome
	}{
		{"S2", jobs.OutcomePassed},
		{"S3", jobs.OutcomeSkipped}, // S1's place is kept
		{"S1", jobs.OutcomePassed},
	} {
		if res := runner.RunSlot(ctx, c.slot); res.Outcome != c.want {
			t.Errorf("RunSlot(%s) = %s (%s), want %s", c.slot, res.Outcome, res.Message, c.want)
		}
	}
	if n := r.claimsUsed(); n != 2 {
		t.Errorf("the DMS recorded %d claims, want 2", n)
	}
	if st := r.state(r.fixture.device("S1").hw); st.Result != journal.ResultDone || st.DoneCount != 1 || st.ActivateCount != 1 {
		t.Errorf("journal: S1's device %s, done %d, activated %d times; want done, once each", st.Result, st.DoneCount, st.ActivateCount)
	}
}
