package journal

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestRefuse sets events aside as the upstream refuses them, in every
// place of the unsent tail: Unsynced leaves them out, the refusal itself
// goes up, and the cursor moves past refused events that nothing unsent
// precedes.
func TestRefuse(t *testing.T) {
	tests := []struct {
		name         string
		events       int
		ackedBefore  int64
		refuse       []int64
		ack          int64
		wantUnsynced []int64
		wantAcked    int64
	}{
		{"one in the middle", 5, 0, []int64{3}, 0, []int64{1, 2, 4, 5, 6}, 0},
		{"the first", 3, 0, []int64{1}, 0, []int64{2, 3, 4}, 1},
		{"the last, after an ack", 3, 2, []int64{3}, 0, []int64{4}, 3},
		{"two in a row", 4, 1, []int64{2, 3}, 0, []int64{4, 5, 6}, 3},
		{"an ack up to a refused one", 5, 0, []int64{4}, 3, []int64{5, 6}, 4},
		{"refused twice", 2, 0, []int64{2, 2}, 0, []int64{1, 3, 4}, 0},
		{"everything", 2, 0, []int64{1, 2}, 0, []int64{3, 4}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			j := openTest(t)
			for range tt.events {
				mustAppend(t, j, info("WO-1", "loaded"))
			}
			if tt.ackedBefore > 0 {
				if err := j.Ack(ctx, tt.ackedBefore); err != nil {
					t.Fatalf("Ack(%d) = %v", tt.ackedBefore, err)
				}
			}
			for _, seq := range tt.refuse {
				if err := j.Refuse(ctx, seq, "error", "event "+string(rune('0'+seq))+" holds a NUL"); err != nil {
					t.Fatalf("Refuse(%d) = %v", seq, err)
				}
			}
			if tt.ack > 0 {
				if err := j.Ack(ctx, tt.ack); err != nil {
					t.Fatalf("Ack(%d) = %v", tt.ack, err)
				}
			}
			events, err := j.Unsynced(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range events {
				got = append(got, e.Seq)
			}
			if !slices.Equal(got, tt.wantUnsynced) {
				t.Errorf("Unsynced() = seqs %v, want %v", got, tt.wantUnsynced)
			}
			st, err := j.SyncState(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Acked != tt.wantAcked {
				t.Errorf("SyncState().Acked = %d, want %d", st.Acked, tt.wantAcked)
			}
			refusals, err := j.Refusals(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, r := range refusals {
				seqs = append(seqs, r.Seq)
				if r.Field != "error" || !strings.Contains(r.Reason, "holds a NUL") || r.Time.IsZero() {
					t.Errorf("refusal %+v, want field, reason and time", r)
				}
			}
			if !slices.Equal(seqs, tt.refuse) {
				t.Errorf("Refusals() = seqs %v, want %v", seqs, tt.refuse)
			}
		})
	}
}

func TestRefuseChecksSeq(t *testing.T) {
	ctx := context.Background()
	j := openTest(t)
	mustAppend(t, j, info("WO-1", "loaded"))
	for _, seq := range []int64{0, -1, 2} {
		if err := j.Refuse(ctx, seq, "", "no"); err == nil {
			t.Errorf("Refuse(%d) = nil, want an error: the journal holds seq 1 only", seq)
		}
	}
}

// TestResend revives refused events: Unsynced returns them first, before
// the newer events, until Resent records that the upstream stored them or
// Refuse that it refused them again; nothing is rewritten, every step is
// an event of its own.
func TestResend(t *testing.T) {
	ctx := t.Context()
	j := openTest(t)
	unsynced := func(limit int) []int64 {
		t.Helper()
		events, err := j.Unsynced(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range events {
			seqs = append(seqs, e.Seq)
		}
		return seqs
	}
	refused := func() []int64 {
		t.Helper()
		rs, err := j.Refused(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, r := range rs {
			seqs = append(seqs, r.Seq)
		}
		return seqs
	}
	check := func(when string, wantUnsynced, wantRefused []int64) {
		t.Helper()
		if got := unsynced(100); !slices.Equal(got, wantUnsynced) {
			t.Errorf("%s: Unsynced() = %v, want %v", when, got, wantUnsynced)
		}
		if got := refused(); !slices.Equal(got, wantRefused) {
			t.Errorf("%s: Refused() = %v, want %v", when, got, wantRefused)
		}
	}
	ack := func(seq int64) {
		t.Helper()
		if err := j.Ack(ctx, seq); err != nil {
			t.Fatalf("Ack(%d) = %v", seq, err)
		}
	}

	for range 5 {
		mustAppend(t, j, info("WO-1", "loaded"))
	}
	// 1 to 5, then the refusals of 2 and 4 (6, 7), all sent.
	for _, seq := range []int64{2, 4} {
		if err := j.Refuse(ctx, seq, "error", "holds a NUL"); err != nil {
			t.Fatal(err)
		}
	}
	ack(7)
	check("refused and synced", nil, []int64{2, 4})

	if err := j.Resend(ctx, []int64{4, 4}); err != nil {
		t.Fatalf("Resend(4) = %v", err)
	}
	check("4 to be sent again (the resend is 8)", []int64{4, 8}, []int64{2})
	if got := unsynced(1); !slices.Equal(got, []int64{4}) {
		t.Errorf("Unsynced(1) = %v, want the revived event first", got)
	}
	if err := j.Resent(ctx, []int64{4}); err != nil {
		t.Fatal(err)
	}
	check("4 stored (9 records it)", []int64{8, 9}, []int64{2})
	ack(9)
	check("all synced", nil, []int64{2})

	// Revived, then refused again: refused, with the new reason.
	if err := j.Resend(ctx, []int64{2}); err != nil {
		t.Fatal(err)
	}
	if err := j.Refuse(ctx, 2, "error", "still holds a NUL"); err != nil {
		t.Fatal(err)
	}
	check("2 sent again and refused again", []int64{10, 11}, []int64{2})
	if rs, err := j.Refused(ctx); err != nil || len(rs) != 1 || rs[0].Reason != "still holds a NUL" {
		t.Errorf("Refused() = %+v, %v; want 2 with the last reason", rs, err)
	}
	ack(11)

	// Only refused events are sent again; a wrong seq marks nothing.
	before, err := j.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, seqs := range [][]int64{nil, {3}, {2, 4}, {99}} {
		if err := j.Resend(ctx, seqs); err == nil {
			t.Errorf("Resend(%v) = nil, want an error: only 2 is refused", seqs)
		} else if len(seqs) > 0 && !strings.Contains(err.Error(), "the refused events are 2") {
			t.Errorf("Resend(%v) = %v, want it to name the refused events", seqs, err)
		}
	}
	if after, _ := j.Count(ctx); after != before {
		t.Errorf("the refused Resends journaled %d events, want none", after-before)
	}

	// A refused event the cursor has not passed is sent in its place.
	mustAppend(t, j, info("WO-1", "a"), info("WO-1", "b")) // 12, 13
	if err := j.Refuse(ctx, 13, "data", "bad UTF-8"); err != nil {
		t.Fatal(err)
	}
	if err := j.Resend(ctx, []int64{13}); err != nil {
		t.Fatal(err)
	}
	check("13 refused and revived before the cursor reached it", []int64{12, 13, 14, 15}, []int64{2})

	// Once the cursor passed a resend, its events went up with it.
	if err := j.Resend(ctx, []int64{2}); err != nil {
		t.Fatal(err)
	}
	ack(16)
	check("the cursor passed the resend", nil, nil)
}

// TestResentMarksInParts: one event names at most maxMarkSeqs seqs.
func TestResentMarksInParts(t *testing.T) {
	ctx := t.Context()
	j := openTest(t)
	mustAppend(t, j, info("WO-1", "loaded"))
	seqs := make([]int64, 2*maxMarkSeqs+1)
	for i := range seqs {
		seqs[i] = int64(i + 1)
	}
	if err := j.Resent(ctx, seqs); err != nil {
		t.Fatal(err)
	}
	events, err := j.Events(ctx, Filter{Step: StepSyncResent})
	if err != nil || len(events) != 3 {
		t.Fatalf("Resent(%d seqs) journaled %d events, %v; want 3", len(seqs), len(events), err)
	}
	if err := j.Resent(ctx, []int64{0}); err == nil {
		t.Errorf("Resent([0]) = nil, want an error")
	}
}
