package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkAppend measures appends with synchronous=FULL, one transaction
// per call: single events, batches of 16, and single events from 32
// goroutines at once (a station with 32 slots).
func BenchmarkAppend(b *testing.B) {
	event := Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S01", Device: "24:0a:c4:12:34:56",
		Step: "flash", Status: StatusPassed, Attempt: 1, Duration: 12345678,
		Data: json.RawMessage(`{"bytes":1048576,"rate":92160,"compressed":true}`)}
	for _, size := range []int{1, 16} {
		b.Run(map[int]string{1: "single", 16: "batch16"}[size], func(b *testing.B) {
			j := openTest(b)
			batch := make([]Event, size)
			for i := range batch {
				batch[i] = event
			}
			for b.Loop() {
				if _, err := j.Append(context.Background(), batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
	b.Run("parallel32", func(b *testing.B) {
		j := openTest(b)
		// RunParallel starts parallelism × GOMAXPROCS goroutines: about 32.
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := j.Append(context.Background(), event); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkWorkOrder measures deriving a work order's counts from its
// events: 1000 devices of 15 events each.
func BenchmarkWorkOrder(b *testing.B) {
	j := openTest(b)
	for d := range 1000 {
		var events []Event
		dev := fmt.Sprintf("dev-%04d", d)
		events = append(events, Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Step: "identify", Status: StatusStarted})
		events = append(events, Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Device: dev, Step: "identify", Status: StatusPassed})
		for _, step := range []string{"preflight", "flash", "verify", "activate", "lock", "label", "done"} {
			for _, status := range []Status{StatusStarted, StatusPassed} {
				events = append(events, Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Device: dev, Step: step, Status: status,
					Data: json.RawMessage(`{"serial":"SN-` + dev + `"}`)})
			}
		}
		if _, err := j.Append(context.Background(), events...); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		st, err := j.WorkOrder(context.Background(), "WO-1")
		if err != nil || st.Done != 1000 {
			b.Fatalf("WorkOrder() = %+v, %v, want 1000 done", st, err)
		}
	}
}
