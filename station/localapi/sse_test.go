package localapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// next returns the next event of ch, failing the test if ch closes first.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	ev, ok := <-ch
	if !ok {
		t.Fatalf("the event channel closed, want an event")
	}
	return ev
}

func TestWatchFirstStateThenSlotsInOrder(t *testing.T) {
	for _, transport := range []string{"unix", "loopback"} {
		t.Run(transport, func(t *testing.T) {
			f := newFake("S1")
			// A heartbeat far more often than events: the decoder must
			// skip it between and within the events' arrival.
			opts := HandlerOptions{Heartbeat: time.Millisecond}
			var s *server
			key := ""
			if transport == "unix" {
				s = serveUnix(t, t.TempDir(), f, opts)
			} else {
				key = "k"
				opts.Key = key
				s = serveLoopback(t, f, opts)
			}
			ctx, cancel := context.WithCancel(t.Context())
			ch := newClient(t, s.addr, key).Watch(ctx)

			ev := next(t, ch)
			if ev.Type != EventState || ev.State == nil || ev.State.Station != "S1" || len(ev.State.Slots) != 2 {
				t.Fatalf("first event = %+v, want the state of S1", ev)
			}
			const n = 10
			for i := range n {
				f.publish(Event{Type: EventSlot, Slot: &Slot{Name: fmt.Sprintf("A%d", i), Status: SlotRunning, Seq: int64(i)},
					Counts: &Counts{Done: i}, Run: RunRunning})
			}
			f.publish(Event{Type: EventAlert, Alerts: []Alert{{Level: AlertError, Code: "dms_offline", Message: "the DMS is offline"}}})
			for i := range n {
				ev := next(t, ch)
				if ev.Type != EventSlot || ev.Slot == nil || ev.Slot.Seq != int64(i) || ev.Slot.Name != fmt.Sprintf("A%d", i) ||
					ev.Counts == nil || ev.Counts.Done != i || ev.Run != RunRunning {
					t.Fatalf("event %d = %+v, want slot A%d", i, ev, i)
				}
			}
			if ev := next(t, ch); ev.Type != EventAlert || len(ev.Alerts) != 1 || ev.Alerts[0].Code != "dms_offline" {
				t.Fatalf("last event = %+v, want the alert", ev)
			}

			cancel()
			for ev := range ch {
				if ev.Type == EventDisconnected {
					t.Errorf("Watch sent %q after its context ended", ev.Type)
				}
			}
		})
	}
}

func TestEventStreamWire(t *testing.T) {
	f := newFake("S1")
	s := serveUnix(t, t.TempDir(), f, HandlerOptions{Heartbeat: time.Millisecond})
	c := newClient(t, s.addr, "")
	req, err := http.NewRequestWithContext(t.Context(), "GET", c.base+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	br := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) < 3 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read the stream: %v", err)
		}
		lines = append(lines, line)
	}
	if lines[0] != "event: state\n" || !strings.HasPrefix(lines[1], `data: {"type":"state","state":{"station":"S1"`) || lines[2] != "\n" {
		t.Fatalf("the stream begins %q, want a state event", lines)
	}
	// Wait for a heartbeat, then send an event: the reader skips the one
	// and reads the other.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read the stream: %v", err)
		}
		if line == ": ping\n" {
			break
		}
	}
	f.publish(Event{Type: EventSlot, Slot: &Slot{Name: "A1", Status: SlotPassed, Seq: 7}})
	er := newEventReader(br, nil)
	ev, err := er.next()
	if err != nil || ev.Type != EventSlot || ev.Slot == nil || ev.Slot.Seq != 7 {
		t.Fatalf("next() = %+v, %v, want slot A1 seq 7", ev, err)
	}

	// The stream ends when the Controller closes its channel.
	f.closeWatchers()
	for {
		ev, err := er.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("next() after the watch closed = %v, want io.EOF", err)
		}
		t.Fatalf("next() after the watch closed = %+v, want io.EOF", ev)
	}
}

func TestEventReader(t *testing.T) {
	stream := ": ping\n\n" +
		"event: state\r\ndata: {\"type\":\"state\",\"state\":{\"station\":\"S1\"}}\r\n\r\n" +
		": ping\n\n" +
		"id: 4\nretry: 1000\nevent: slot\ndata: {\"type\":\"slot\",\n" +
		"data: \"slot\":{\"name\":\"A1\",\"status\":\"failed\",\"reason\":\"no answer\",\"seq\":3}}\n\n" +
		"event: alert\ndata:{\"alerts\":[]}\n\n" +
		"\n\n" +
		"event: slot\ndata: {\"type\":\"slot\"" // cut: not an event
	er := newEventReader(strings.NewReader(stream), nil)
	want := []func(Event) bool{
		func(ev Event) bool { return ev.Type == EventState && ev.State != nil && ev.State.Station == "S1" },
		func(ev Event) bool {
			return ev.Type == EventSlot && ev.Slot != nil && ev.Slot.Reason == "no answer" && ev.Slot.Seq == 3
		},
		func(ev Event) bool { return ev.Type == EventAlert }, // type from the event field
	}
	for i, ok := range want {
		ev, err := er.next()
		if err != nil || !ok(ev) {
			t.Fatalf("event %d = %+v, %v", i, ev, err)
		}
	}
	if ev, err := er.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("next() at the end = %+v, %v, want io.EOF", ev, err)
	}

	bad := newEventReader(strings.NewReader("event: slot\ndata: {not json\n\n"), nil)
	if _, err := bad.next(); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("next() of bad JSON = %v, want an error", err)
	}
}

func TestPumpCoalesces(t *testing.T) {
	slot := func(name string, seq int64) Event {
		return Event{Type: EventSlot, Slot: &Slot{Name: name, Seq: seq}}
	}
	state := func(station string) Event { return Event{Type: EventState, State: &State{Station: station}} }
	alert := func(code string) Event { return Event{Type: EventAlert, Alerts: []Alert{{Code: code}}} }
	name := func(ev Event) string {
		switch ev.Type {
		case EventSlot:
			return fmt.Sprintf("slot %s %d", ev.Slot.Name, ev.Slot.Seq)
		case EventState:
			return "state " + ev.State.Station
		case EventAlert:
			return "alert " + ev.Alerts[0].Code
		}
		return ev.Type
	}
	tests := []struct {
		name string
		in   []Event
		want []string
	}{
		{"slots by name", []Event{state("1"), slot("A", 1), slot("B", 1), slot("A", 2), slot("A", 3)},
			[]string{"state 1", "slot B 1", "slot A 3"}},
		{"states never dropped", []Event{state("1"), state("2"), slot("A", 1), state("3")},
			[]string{"state 1", "state 2", "slot A 1", "state 3"}},
		{"alerts keep the newest", []Event{alert("x"), slot("A", 1), alert("y")},
			[]string{"slot A 1", "alert y"}},
		{"disconnects kept", []Event{slot("A", 1), {Type: EventDisconnected}, state("2"), slot("A", 2)},
			[]string{EventDisconnected, "state 2", "slot A 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make(chan Event)
			out := make(chan Event) // nobody reads yet: the consumer lags
			go pump(in, out)
			for _, ev := range tt.in {
				in <- ev // pump has taken it once the send returns
			}
			var got []string
			for range tt.want {
				got = append(got, name(<-out))
			}
			close(in)
			if _, ok := <-out; ok {
				t.Errorf("out has more events than %q", tt.want)
			}
			if strings.Join(got, ", ") != strings.Join(tt.want, ", ") {
				t.Errorf("pump(%d events) = %q, want %q", len(tt.in), got, tt.want)
			}
		})
	}
}

func TestWatchReconnects(t *testing.T) {
	dir := t.TempDir()
	first := newFake("before")
	s := serveUnix(t, dir, first, HandlerOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := newClient(t, s.addr, "").Watch(ctx)
	if ev := next(t, ch); ev.Type != EventState || ev.State.Station != "before" {
		t.Fatalf("first event = %+v, want the state of before", ev)
	}
	first.publish(Event{Type: EventSlot, Slot: &Slot{Name: "A1", Seq: 1}})
	if ev := next(t, ch); ev.Type != EventSlot {
		t.Fatalf("second event = %+v, want a slot", ev)
	}

	s.stop() // the daemon restarts
	if ev := next(t, ch); ev.Type != EventDisconnected {
		t.Fatalf("event after the daemon stopped = %+v, want %q", ev, EventDisconnected)
	}

	second := newFake("after")
	serveUnix(t, dir, second, HandlerOptions{})
	ev := next(t, ch)
	if ev.Type != EventState || ev.State == nil || ev.State.Station != "after" {
		t.Fatalf("event after the daemon came back = %+v, want the state of after", ev)
	}
	second.publish(Event{Type: EventSlot, Slot: &Slot{Name: "A2", Seq: 1}})
	if ev := next(t, ch); ev.Type != EventSlot || ev.Slot.Name != "A2" {
		t.Fatalf("event = %+v, want slot A2", ev)
	}

	cancel()
	for range ch {
	}
}

func TestWatchWithoutDaemon(t *testing.T) {
	c := newClient(t, "unix:"+t.TempDir()+"/api.sock", "")
	ctx, cancel := context.WithCancel(t.Context())
	ch := c.Watch(ctx)
	if ev := next(t, ch); ev.Type != EventDisconnected {
		t.Fatalf("first event with no daemon = %+v, want %q", ev, EventDisconnected)
	}
	cancel()
	for ev := range ch {
		t.Errorf("event %+v after the context ended, want the channel closed", ev)
	}
}
