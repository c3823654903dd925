package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/pgtest"
	"github.com/station-dev/station/station/journal"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestSyncerSetsAsideRefusedEvent journals events the DMS refuses for
// good (a NUL in an error, bad UTF-8 in data) between good ones, on both
// stores: each batch holding one is refused with 422 naming its seq; the
// syncer journals why, without the secret the event holds, never sends
// it again, and every event before and after it syncs, now and in later
// runs.
func TestSyncerSetsAsideRefusedEvent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d := newTestDMSOn(t, b.dsn(t))
			logs := &logBuffer{}
			c := d.client(t, logs)
			j := openJournal(t, t.TempDir(), logs)
			defer j.Close()
			secret := jobs.NewSecret("stk_the-device-printed-this")
			step := func(dev, errText string, data json.RawMessage) journal.Event {
				return journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "S01", Device: dev, Step: "flash",
					Status: journal.StatusFailed, Error: errText, Data: data}
			}
			if _, err := j.Append(ctx,
				step("D1", "", nil),
				step("D2", "flash failed: the bootloader said "+secret.Reveal()+"\x00\x00", nil),
				step("D3", "", nil),
				step("D4", "", json.RawMessage("{\"banner\":\"boot \xfe\"}")),
				step("D5", "", nil),
			); err != nil {
				t.Fatalf("Append = %v", err)
			}

			s := NewSyncer(c, j, fastSync)
			if err := s.Flush(ctx); err != nil {
				t.Fatalf("Flush = %v, want the refused events set aside and the rest synced", err)
			}
			refusals, err := j.Refusals(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var refused []int64
			for _, r := range refusals {
				refused = append(refused, r.Seq)
				if r.Reason == "" || strings.ContainsRune(r.Reason, 0) {
					t.Errorf("refusal of %d: reason %q, want the DMS's message", r.Seq, r.Reason)
				}
				assertNoSecret(t, "the refusal's reason", r.Reason, secret)
			}
			if !slices.Equal(refused, []int64{2, 4}) || refusals[0].Field != "error" || refusals[1].Field != "data.banner" {
				t.Fatalf("Refusals = %+v, want seq 2 (error) and 4 (data.banner)", refusals)
			}
			st := s.State()
			if st.Refused != 2 || st.Lag != 0 || !strings.Contains(st.LastRefused, "event 4") {
				t.Errorf("State() = %+v, want 2 refused, none waiting", st)
			}
			// The DMS holds every event but the refused, and the two
			// refusals themselves.
			want := []int64{1, 3, 5, 6, 7}
			if got := dmsSeqs(t, d.svc); !slices.Equal(got, want) {
				t.Fatalf("DMS holds seqs %v, want %v", got, want)
			}

			// Later events sync; the refused ones are never sent again,
			// by this syncer or the next run's.
			d.gate.sent()
			if _, err := j.Append(ctx, step("D6", "", nil)); err != nil {
				t.Fatal(err)
			}
			next := NewSyncer(c, j, fastSync)
			if err := next.Flush(ctx); err != nil {
				t.Fatalf("Flush of the next run = %v", err)
			}
			for _, batch := range d.gate.sent() {
				if slices.Contains(batch, 2) || slices.Contains(batch, 4) {
					t.Errorf("a refused event was sent again: batch %v", batch)
				}
			}
			if got, want := dmsSeqs(t, d.svc), []int64{1, 3, 5, 6, 7, 8}; !slices.Equal(got, want) {
				t.Errorf("DMS holds seqs %v, want %v", got, want)
			}
			if st := next.State(); st.Refused != 2 || st.Lag != 0 || st.Acked != 8 {
				t.Errorf("next run's State() = %+v, want 2 refused, acked 8, none waiting", st)
			}
			// The refused events stay in the journal, for QA.
			kept, err := j.Events(ctx, journal.Filter{Device: "D2"})
			if err != nil || len(kept) != 1 || !strings.Contains(kept[0].Error, "\x00") {
				t.Errorf("journal events of D2 = %+v, %v; want the refused event kept as it was", kept, err)
			}
			assertNoSecret(t, "the logs", logs.String(), secret)
		})
	}
}

// TestSyncerSetsAsideEventOfAnotherWorkOrder journals events of the
// station's work order, of another station's, of one the DMS does not
// know, and of none, on both stores: the DMS refuses the two it may not
// take from this station with 422 naming their seq and field work_order,
// in the same words, and the syncer sets each aside and syncs the rest.
func TestSyncerSetsAsideEventOfAnotherWorkOrder(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d := newTestDMSOn(t, b.dsn(t))
			_, err := d.svc.CreateWorkOrder(ctx, dms.WorkOrderSpec{ID: "WO-2", Product: "THERMO", Bundle: "2.0", Quantity: 1,
				TokenID: d.seed.TokenID, Stations: []string{"st-9"}})
			if err != nil {
				t.Fatal(err)
			}
			logs := &logBuffer{}
			c := d.client(t, logs)
			j := openJournal(t, t.TempDir(), logs)
			defer j.Close()
			step := func(wo, dev string) journal.Event {
				return journal.Event{Kind: journal.KindStep, WorkOrder: wo, Slot: "S01", Device: dev, Step: "identify", Status: journal.StatusPassed}
			}
			if _, err := j.Append(ctx,
				step("WO-1", "D1"),
				step("WO-2", "D2"),
				journal.Event{Kind: journal.KindOperator, Operator: "ana", Status: journal.StatusInfo},
				step("WO-NONE", "D3"),
				step("WO-1", "D4"),
			); err != nil {
				t.Fatalf("Append = %v", err)
			}
			s := NewSyncer(c, j, fastSync)
			if err := s.Flush(ctx); err != nil {
				t.Fatalf("Flush = %v, want the refused events set aside and the rest synced", err)
			}
			refusals, err := j.Refusals(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var refused []int64
			for _, r := range refusals {
				refused = append(refused, r.Seq)
				if r.Field != "work_order" {
					t.Errorf("refusal of %d: field %q, want work_order", r.Seq, r.Field)
				}
			}
			if !slices.Equal(refused, []int64{2, 4}) {
				t.Fatalf("Refusals = %+v, want seq 2 (another station's work order) and 4 (none the DMS knows)", refusals)
			}
			if a, b := strings.ReplaceAll(refusals[0].Reason, "seq 2", "seq N"), strings.ReplaceAll(refusals[1].Reason, "seq 4", "seq N"); a != b {
				t.Errorf("refusals read %q and %q: the station must not tell another station's work order from none", a, b)
			}
			if want, got := []int64{1, 3, 5, 6, 7}, dmsSeqs(t, d.svc); !slices.Equal(got, want) {
				t.Errorf("DMS holds seqs %v, want %v", got, want)
			}
		})
	}
}

// dmsSeqs returns the seqs the DMS holds of the test station.
func dmsSeqs(t *testing.T, svc *dms.Service) []int64 {
	t.Helper()
	events, err := svc.Events(context.Background(), dms.EventFilter{Station: testStation})
	if err != nil {
		t.Fatalf("DMS Events = %v", err)
	}
	var out []int64
	for _, e := range events {
		out = append(out, e.Seq)
	}
	return out
}

// deviceBug is a DMS's wrong rule: it refuses the events of the devices
// named, whose names are fine.
func deviceBug(devices ...string) func(journal.Event) *dms.FieldError {
	return func(e journal.Event) *dms.FieldError {
		if slices.Contains(devices, e.Device) {
			return &dms.FieldError{Field: "device", Seq: e.Seq, Problem: "is not a device name the DMS knows"}
		}
		return nil
	}
}

// TestSyncerResendsRefusedEvents: a DMS with a bug refuses an event; the
// syncer sets it aside. Once the DMS is fixed and the event is marked to
// be sent again (journal.Resend, what "station sync resend" does), the
// next sync sends it, once, with the newer events; no event that was
// never refused is sent twice, and the refusal count goes back to zero.
func TestSyncerResendsRefusedEvents(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d := newTestDMSOn(t, b.dsn(t))
			logs := &logBuffer{}
			c := d.client(t, logs)
			j := openJournal(t, t.TempDir(), logs)
			defer j.Close()
			step := func(dev string) journal.Event {
				return journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "S01", Device: dev, Step: "flash", Status: journal.StatusPassed}
			}
			if _, err := j.Append(ctx, step("D1"), step("D2"), step("D3"), step("D4")); err != nil {
				t.Fatal(err)
			}
			d.gate.setBug(deviceBug("D2"))
			if err := NewSyncer(c, j, fastSync).Flush(ctx); err != nil {
				t.Fatalf("Flush = %v", err)
			}
			// 2 refused; the refusal is 5.
			if got, want := dmsSeqs(t, d.svc), []int64{1, 3, 4, 5}; !slices.Equal(got, want) {
				t.Fatalf("DMS holds seqs %v, want %v", got, want)
			}

			d.gate.setBug(nil)
			d.gate.sent()
			s := NewSyncer(c, j, fastSync)
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if st := s.State(); st.Refused != 1 || !strings.Contains(st.LastRefused, "event 2") {
				t.Errorf("State() before the resend = %+v, want event 2 refused", st)
			}
			if err := j.Resend(ctx, []int64{2}); err != nil { // 6
				t.Fatalf("Resend(2) = %v", err)
			}
			if _, err := j.Append(ctx, step("D5")); err != nil { // 7
				t.Fatal(err)
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatalf("Flush after the resend = %v", err)
			}
			// 8 records that the DMS stored 2.
			if got, want := dmsSeqs(t, d.svc), []int64{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(got, want) {
				t.Fatalf("DMS holds seqs %v after the resend, want %v", got, want)
			}
			sent := map[int64]int{}
			for _, batch := range d.gate.sent() {
				for _, seq := range batch {
					sent[seq]++
				}
			}
			for seq, n := range sent {
				if n > 1 || (seq < 6 && seq != 2) {
					t.Errorf("event %d was sent %d times after the resend, want only 2, 6, 7 and 8 once each (sent: %v)", seq, n, sent)
				}
			}
			if st := s.State(); st.Refused != 0 || st.LastRefused != "" || st.Lag != 0 || st.Acked != 8 {
				t.Errorf("State() after the resend = %+v, want none refused, acked 8", st)
			}

			// Later syncs never send it again.
			if _, err := j.Append(ctx, step("D6")); err != nil {
				t.Fatal(err)
			}
			if err := NewSyncer(c, j, fastSync).Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := d.gate.sent(); !slices.EqualFunc(got, [][]int64{{9}}, slices.Equal) {
				t.Errorf("batches of the next sync = %v, want [[9]]", got)
			}
			resent, err := j.Events(ctx, journal.Filter{Kind: journal.KindStation, Step: journal.StepSyncResent})
			if err != nil || len(resent) != 1 || string(resent[0].Data) != `{"seqs":[2]}` {
				t.Errorf("journal's sync_resent events = %+v, %v; want one naming seq 2", resent, err)
			}
		})
	}
}

// TestSyncerResendsMoreThanABatch: events sent again that fill more than
// a batch go up a batch at a time, each once, and then the newer ones.
func TestSyncerResendsMoreThanABatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := newTestDMS(t)
	logs := &logBuffer{}
	c := d.client(t, logs)
	j := openJournal(t, t.TempDir(), logs)
	defer j.Close()
	var devices []string
	var events []journal.Event
	for i := range 5 {
		dev := fmt.Sprintf("D%d", i+1)
		devices = append(devices, dev)
		events = append(events, journal.Event{Kind: journal.KindStep, WorkOrder: "WO-1", Slot: "S01", Device: dev, Step: "flash", Status: journal.StatusPassed})
	}
	if _, err := j.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	d.gate.setBug(deviceBug(devices...))
	cfg := fastSync
	cfg.Batch = 2
	if err := NewSyncer(c, j, cfg).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// 1 to 5 refused (6 to 10).
	if got, want := dmsSeqs(t, d.svc), []int64{6, 7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Fatalf("DMS holds seqs %v, want %v", got, want)
	}
	d.gate.setBug(nil)
	d.gate.sent()
	if err := j.Resend(ctx, []int64{1, 2, 3, 4, 5}); err != nil { // 11
		t.Fatal(err)
	}
	if err := NewSyncer(c, j, cfg).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := [][]int64{{1, 2}, {3, 4}, {5, 11}, {12, 13}, {14}}
	if got := d.gate.sent(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("batches = %v, want %v: the revived events first, each once", got, want)
	}
	if got := dmsSeqs(t, d.svc); len(got) != 14 {
		t.Errorf("DMS holds seqs %v, want 1 to 14", got)
	}
}
