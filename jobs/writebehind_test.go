package jobs

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

// gatedWriter records the batches it is handed; each write waits for a
// value on release first.
type gatedWriter struct {
	release chan error
	mu      sync.Mutex
	batches [][]int
}

func (g *gatedWriter) write(batch []int) error {
	err := <-g.release
	if err == nil {
		g.mu.Lock()
		g.batches = append(g.batches, slices.Clone(batch))
		g.mu.Unlock()
	}
	return err
}

// waitReleasing calls w.wait, letting every write through until it
// returns.
func (g *gatedWriter) waitReleasing(w *writeBehind[int]) error {
	waited := make(chan error)
	go func() { waited <- w.wait() }()
	for {
		select {
		case err := <-waited:
			return err
		case g.release <- nil:
		}
	}
}

func TestWriteBehindKeepsOrderAndBatches(t *testing.T) {
	g := &gatedWriter{release: make(chan error)}
	w := &writeBehind[int]{write: g.write}
	if err := w.wait(); err != nil {
		t.Fatalf("wait() with nothing added = %v", err)
	}
	// The first item goes alone: the writer starts with it and blocks.
	// The rest pile up behind it and go in one write.
	for i := 1; i <= 4; i++ {
		if err := w.add(i); err != nil {
			t.Fatalf("add(%d) = %v", i, err)
		}
	}
	if err := g.waitReleasing(w); err != nil {
		t.Fatalf("wait() = %v", err)
	}
	g.mu.Lock()
	got := g.batches
	g.mu.Unlock()
	if flat := slices.Concat(got...); !slices.Equal(flat, []int{1, 2, 3, 4}) || len(got) > 2 {
		t.Errorf("batches written = %v, want 1 to 4 in order, in at most two writes", got)
	}
	// Idle again: the next item starts a new writer.
	if err := w.add(5); err != nil {
		t.Fatal(err)
	}
	if err := g.waitReleasing(w); err != nil {
		t.Fatalf("wait() = %v", err)
	}
	if last := g.batches[len(g.batches)-1]; !slices.Equal(last, []int{5}) {
		t.Errorf("last batch = %v, want [5]", last)
	}
}

func TestWriteBehindStopsAtTheFirstFailure(t *testing.T) {
	boom := errors.New("disk full")
	g := &gatedWriter{release: make(chan error)}
	w := &writeBehind[int]{write: g.write}
	w.add(1)
	w.add(2) // queued behind 1, dropped when 1 fails
	g.release <- boom
	if err := w.wait(); !errors.Is(err, boom) {
		t.Fatalf("wait() = %v, want %v", err, boom)
	}
	if err := w.add(3); !errors.Is(err, boom) {
		t.Errorf("add after a failed write = %v, want %v", err, boom)
	}
	if err := w.wait(); !errors.Is(err, boom) {
		t.Errorf("wait() again = %v, want %v", err, boom)
	}
	if len(g.batches) != 0 {
		t.Errorf("written after the failure: %v", g.batches)
	}
}
