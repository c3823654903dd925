package jobs_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
)

// watchfulDMS calls before at each act the DMS keeps, before passing it on.
type watchfulDMS struct {
	jobs.Upstream
	before func(act string, hw flasher.HardwareID)
}

func (d watchfulDMS) Activate(ctx context.Context, req jobs.ActivateRequest) (jobs.Activation, error) {
	d.before("activate", req.HardwareID)
	return d.Upstream.Activate(ctx, req)
}

func (d watchfulDMS) Lock(ctx context.Context, req jobs.LockRequest) error {
	d.before("lock", req.HardwareID)
	return d.Upstream.Lock(ctx, req)
}

func (d watchfulDMS) Complete(ctx context.Context, req jobs.CompleteRequest) error {
	d.before("done", req.HardwareID)
	return d.Upstream.Complete(ctx, req)
}

// TestIntentIsDurableBeforeEachAct: the runner writes a device's events
// behind it, but every act that cannot be taken back or that the DMS
// keeps (the claim, the device's lock, the DMS's lock record, the
// completion) finds the journal already holding the device's every event
// up to that step's started, and the device's result comes once its
// journal is complete.
func TestIntentIsDurableBeforeEachAct(t *testing.T) {
	r := newRig(t, 4, 10, nil)
	// holds checks that the journal holds the device's events up to and
	// including step:started, and nothing after.
	holds := func(act string, hw flasher.HardwareID) {
		want := fullPass[:slices.Index(fullPass, act+":started")+1]
		if got := r.steps(hw); !slices.Equal(got, want) {
			t.Errorf("at the %s of %s the journal holds %s, want %s", act, hw, strings.Join(got, " "), strings.Join(want, " "))
		}
	}
	r.runner.Upstream = watchfulDMS{Upstream: r.dms, before: holds}
	for _, s := range r.runner.Slots {
		dev := r.fixture.device(s.Name)
		dev.configure = func(b *fakeBackend) {
			b.lock = func(context.Context, []string) error {
				holds("lock", dev.hw)
				dev.locked.Store(true)
				return nil
			}
		}
	}
	sum, err := r.runner.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed != 4 {
		t.Fatalf("Run() = %d passed, want 4: %+v", sum.Passed, sum.Results)
	}
	for _, res := range sum.Results {
		if got := r.steps(res.Device); !slices.Equal(got, fullPass) {
			t.Errorf("journal of %s when Run returned = %s, want %s", res.Device, strings.Join(got, " "), strings.Join(fullPass, " "))
		}
	}
}

// TestFailedWriteStopsTheDeviceBeforeItsClaim: a journal write that
// fails while the device goes on (the verify step's outcome) fails the
// device before its next act: nothing is claimed or locked, and the
// result carries the journal's error.
func TestFailedWriteStopsTheDeviceBeforeItsClaim(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 1, 1, nil)
	crash := &crashJournal{Journal: r.journal, at: stepPassed("S1", jobs.StepVerify)}
	res := r.restart(crash).RunSlot(ctx, "S1")
	if res.Outcome != jobs.OutcomeFailed || !errors.Is(res.Err, errCrashed) {
		t.Fatalf("RunSlot(S1) with the journal dying at verify = %s (%v), want failed with the crash", res.Outcome, res.Err)
	}
	dev := r.fixture.device("S1")
	if n := r.claimsUsed(); n != 0 {
		t.Errorf("the DMS recorded %d claims, want none", n)
	}
	if dev.locked.Load() {
		t.Error("the device was locked")
	}
	// The journal holds a prefix of the run: nothing after the failed
	// write.
	got := r.steps(dev.hw)
	if i := slices.Index(got, "verify:passed"); i >= 0 || !slices.Equal(got, fullPass[:len(got)]) {
		t.Errorf("journal = %s, want a prefix of a pass ending before verify passed", strings.Join(got, " "))
	}
}
