package ui

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/station-dev/station/station/localapi"
)

// BenchmarkDraw32Slots measures one tick's drawing when all 32 slots
// changed: the work done in the UI goroutine per tick at worst.
func BenchmarkDraw32Slots(b *testing.B) {
	a := test.NewTempApp(b)
	k := New(a, nil, Options{Logger: slog.New(slog.DiscardHandler)})
	st := localapi.State{Run: localapi.RunRunning}
	for i := range 32 {
		st.Slots = append(st.Slots, localapi.Slot{Name: fmt.Sprintf("S%02d", i+1), Status: localapi.SlotRunning, Step: "flash", Device: "0123456789ABCDEF01234567", Started: time.Now()})
	}
	k.m.apply(localapi.Event{Type: localapi.EventState, State: &st})
	k.apply(k.m.take(), time.Now(), true)
	var seq int64
	b.ResetTimer()
	for i := range b.N {
		for j := range st.Slots {
			seq++
			s := st.Slots[j]
			s.Progress, s.Seq = float64(i%100)/100, seq
			k.m.apply(localapi.Event{Type: localapi.EventSlot, Slot: &s})
		}
		k.apply(k.m.take(), time.Now(), false)
	}
	b.ReportMetric(float64(k.Stats().SlotUpdates)/float64(b.N), "tiles/op")
}

// BenchmarkSlotChangeLatency measures, end to end, the time from a slot's
// change in the daemon to its drawing on the kiosk: through the real
// local API handler, a unix socket, the client's event stream, the model
// and the drawer. Changes come one tick apart, so the drawer draws each
// at once (a burst would be coalesced, one draw per tick).
func BenchmarkSlotChangeLatency(b *testing.B) {
	const tick = 20 * time.Millisecond
	c := newTestController(32)
	h := newHarness(b, c, Options{Tick: tick})
	applied := make(chan int64, 64)
	h.k.OnApplied(func(seq map[string]int64) {
		if s, ok := seq["S07"]; ok {
			applied <- s
		}
	})
	b.ResetTimer()
	for i := range b.N {
		seq := c.setSlot(localapi.Slot{Name: "S07", Status: localapi.SlotRunning, Step: "flash", Progress: float64(i%100) / 100})
		for s := range applied {
			if s >= seq {
				break
			}
		}
		b.StopTimer()
		time.Sleep(tick)
		b.StartTimer()
	}
}
