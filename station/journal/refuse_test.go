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
