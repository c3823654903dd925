package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/label"
)

// pickyPrinter renders the load-time sample label but not a device's
// own (its hardware id makes the label "too long").
type pickyPrinter struct{ label.DirSink }

func (p *pickyPrinter) Check(l jobs.Label) error {
	if l.HardwareID != "" {
		return errors.New("the label's text is too long for the label")
	}
	return nil
}

// lyingDMS acknowledges locks without recording them.
type lyingDMS struct{ *testDMS }

func (lyingDMS) Lock(context.Context, jobs.LockRequest) error { return nil }

// TestIrreversibleActs lists every act the pipeline cannot undo, the
// check that runs before it (made to fail: the act does not happen) and
// the read-back that runs after it (journaled as evidence). The
// device-side locks are one act here, flasher.Backend.Lock; each
// backend's own read-back has its table beside it:
//
//	eFuse set (ESP)   two burn cycles, each read back with RD_REPEAT_ERR, Secure Download
//	                  Mode confirmed: flasher/esp TestSimLockBurnOrder, TestLockSecureDownload,
//	                  TestLockDisableDownload; fixtures/sim TestEFuseBurnS3, TestEFuseErrorsFault
//	RDP (STM32 UART)  a fresh bootloader session, READ MEMORY refused: flasher/stm32
//	                  TestLockReadBack, TestLockAgainReadsBack
//	GDB lock          the protection register read over RSP after a reset:
//	                  flasher/gdb TestLockPerServer, TestLockGeneric
func TestIrreversibleActs(t *testing.T) {
	const dev = flasher.HardwareID("aa:bb:cc:00:00:01")
	verdict := func(t *testing.T, r *rig) jobs.Verdict {
		t.Helper()
		v, err := r.dms.Preflight(context.Background(), jobs.PreflightRequest{WorkOrder: "WO-1", Product: "THERMO", HardwareID: dev})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		act, before, after string
		// development: the product is a development one with lock.dms
		// set, so that the DMS lock is the lock step's (a production
		// product is locked upstream with its claim).
		development bool
		// breakCheck makes the check before the act fail.
		breakCheck func(r *rig)
		// notDone asserts that the act did not happen.
		notDone func(t *testing.T, r *rig)
		// step and evidence: the journal's record of the read-back
		// after a normal pass.
		step     jobs.Step
		evidence []string
	}{
		{
			act: "DMS claim (activate)", before: "the image verified on the device", after: "the DMS reads the device back as the product's, under the serial it gave",
			breakCheck: func(r *rig) {
				r.fixture.device("S1").configure = func(b *fakeBackend) {
					b.verify = func(context.Context, flasher.Image) error {
						return fmt.Errorf("block 3 differs: %w", flasher.ErrVerify)
					}
				}
			},
			notDone: func(t *testing.T, r *rig) {
				if v := verdict(t, r); v.Product != "" || v.Serial != "" {
					t.Errorf("DMS holds the device as %q serial %q after a failed verify, want no claim", v.Product, v.Serial)
				}
			},
			step: jobs.StepActivate, evidence: []string{`"dms_read_back":{"locked":true,"product":"THERMO","serial":"THERMO-000001"}`},
		},
		{
			act: "device lock (eFuse, RDP, GDB lock)", development: true, before: "the lock offered by the identified device (preflight) and the device's own label rendered",
			after: "the backend's read-back of the protection (lock_state, read_back)",
			breakCheck: func(r *rig) {
				r.runner.Printer = &pickyPrinter{DirSink: label.DirSink{Dir: r.labels}}
			},
			notDone: func(t *testing.T, r *rig) {
				if r.fixture.device("S1").locked.Load() {
					t.Error("device locked although its label cannot be printed")
				}
				if v := verdict(t, r); v.Locked {
					t.Error("DMS lock recorded although the label cannot be printed")
				}
			},
			step: jobs.StepLock, evidence: []string{`"lock_state":{"JTAG_DISABLE":true}`, `"read_back":[{"stage":"after burn 1","register":"FAKE_LOCK_REG"`},
		},
		{
			act: "DMS lock", development: true, before: "the device's own lock read back as set",
			after: "the DMS reads the device back as locked to the product",
			breakCheck: func(r *rig) {
				r.fixture.device("S1").configure = func(b *fakeBackend) {
					b.lock = func(context.Context, []string) error {
						return fmt.Errorf("FAKE_LOCK_REG reads 0x00000000: %w", flasher.ErrLockNotSet)
					}
				}
			},
			notDone: func(t *testing.T, r *rig) {
				if v := verdict(t, r); v.Locked {
					t.Error("DMS lock recorded although the device's lock did not read back")
				}
			},
			step: jobs.StepLock, evidence: []string{`"dms_read_back":{"locked":true,"product":"THERMO","serial":"THERMO-000001"}`, `"dms":true`},
		},
	}
	development := func(wo *jobs.WorkOrder) { wo.Product.Stage = jobs.StageDevelopment; wo.Lock.DMS = true }
	for _, tc := range tests {
		var change func(wo *jobs.WorkOrder)
		if tc.development {
			change = development
		}
		t.Run(tc.act+"/check before: "+tc.before, func(t *testing.T) {
			r := newRig(t, 1, 10, change)
			tc.breakCheck(r)
			sum, err := r.runner.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if sum.Failed != 1 {
				t.Fatalf("run = %+v, want the device failed", sum)
			}
			tc.notDone(t, r)
		})
		t.Run(tc.act+"/read-back after: "+tc.after, func(t *testing.T) {
			r := newRig(t, 1, 10, change)
			sum, err := r.runner.Run(context.Background())
			if err != nil || sum.Passed != 1 {
				t.Fatalf("run = %+v, %v, want the device passed", sum, err)
			}
			evs, err := r.journal.Events(context.Background(), journal.Filter{WorkOrder: "WO-1", Device: string(dev), Kind: journal.KindStep})
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(evs, func(e journal.Event) bool { return e.Step == string(tc.step) && e.Status == journal.StatusPassed })
			if i < 0 {
				t.Fatalf("journal has no %s:passed event", tc.step)
			}
			for _, w := range tc.evidence {
				if got := string(evs[i].Data); !strings.Contains(got, w) {
					t.Errorf("%s:passed data = %s, want it to hold %s", tc.step, got, w)
				}
			}
		})
	}

	// A DMS that acknowledges a lock it does not record fails the
	// device: the read-back, not the acknowledgement, is the evidence.
	t.Run("DMS lock acknowledged but not held", func(t *testing.T) {
		r := newRig(t, 1, 10, development)
		r.runner.Upstream = lyingDMS{r.dms}
		sum, err := r.runner.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		res := sum.Results[0]
		if res.Outcome != jobs.OutcomeFailed || res.Step != jobs.StepLock || !strings.Contains(res.Message, "reads the device back as product \"THERMO\", locked false") {
			t.Errorf("result = %s at %s: %q, want a failed lock step saying what the DMS read back", res.Outcome, res.Step, res.Message)
		}
	})
}
