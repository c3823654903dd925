package upstream

import (
	"context"
	"testing"
	"time"
)

// BenchmarkIngest pushes a journal of 20,000 events through Syncer.Flush
// to the real DMS server on SQLite over loopback, and reports the rate.
func BenchmarkIngest(b *testing.B) {
	const events = 20_000
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		d := newTestDMS(b)
		c := d.client(b, &logBuffer{})
		j := openJournal(b, b.TempDir(), &logBuffer{})
		appendEvents(b, j, events)
		s := NewSyncer(c, j, SyncConfig{})
		b.StartTimer()
		start := time.Now()
		if err := s.Flush(ctx); err != nil {
			b.Fatalf("Flush = %v", err)
		}
		total += time.Since(start)
		b.StopTimer()
		if st := s.State(); st.Acked != events || st.Lag != 0 {
			b.Fatalf("State() after Flush = %+v, want %d acked", st, events)
		}
		j.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(events)*float64(b.N)/total.Seconds(), "events/s")
}
