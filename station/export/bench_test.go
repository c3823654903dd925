package export

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// BenchmarkExportMemory exports 1,000 and 5,000 devices (16 events each)
// and reports, per device, the bytes allocated and the peak live heap
// (what the garbage collector found in use, sampled every millisecond,
// above what was in use before the export), and the peak itself. An export
// that holds its whole selection in memory shows the same peak per device
// at both sizes; a streaming one a peak that stays put, so its share per
// device falls as the export grows.
func BenchmarkExportMemory(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			j := buildJournal(b, n)
			key := testKey(b)
			root := b.TempDir()
			b.ReportAllocs()
			var peak, allocated uint64
			i := 0
			for b.Loop() {
				i++
				runtime.GC()
				before := liveHeap()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				total := ms.TotalAlloc
				stop := sampleLiveHeap()
				_, err := Write(context.Background(), j, Filter{WorkOrder: "WO-1"}, filepath.Join(root, fmt.Sprint(i)), key)
				p := stop()
				if err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&ms)
				allocated += ms.TotalAlloc - total
				if p > before {
					peak = max(peak, p-before)
				}
			}
			b.ReportMetric(float64(allocated)/float64(b.N)/float64(n), "alloc-B/device")
			b.ReportMetric(float64(peak)/float64(n), "peak-live-B/device")
			b.ReportMetric(float64(peak)/(1<<20), "peak-live-MiB")
		})
	}
}

// liveHeapMetric is the heap in use at the end of the last garbage
// collection.
const liveHeapMetric = "/gc/heap/live:bytes"

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleLiveHeap reads the live heap every millisecond until the function
// it returns is called, which returns the highest value read.
func sampleLiveHeap() func() uint64 {
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		peak := liveHeap()
		for {
			select {
			case <-tick.C:
				peak = max(peak, liveHeap())
			case <-done:
				result <- max(peak, liveHeap())
				return
			}
		}
	}()
	return func() uint64 {
		close(done)
		return <-result
	}
}
