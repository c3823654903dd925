package localapi

// The event stream is server-sent events (the WHATWG HTML standard,
// "Server-sent events"): each event is written as
//
//	event: <type>
//	data: <the Event as one line of JSON>
//	<blank line>
//
// and a comment line ": ping" followed by a blank line is sent every
// heartbeat, so that a client can tell a quiet stream from a dead one.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// serveEvents streams the Controller's events until the client goes or
// the Controller closes the channel.
func (h *handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	// A stream lives for hours: lift the server's write timeout, if any.
	_ = rc.SetWriteDeadline(time.Time{})

	events := h.c.Watch(ctx)

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		h.log.ErrorContext(ctx, "event stream cannot be flushed", "err", err)
		return
	}

	ping := time.NewTicker(h.heartbeat)
	defer ping.Stop()
	var buf bytes.Buffer
	for {
		buf.Reset()
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if err := writeEvent(&buf, ev); err != nil {
				h.log.ErrorContext(ctx, "event cannot be encoded", "type", ev.Type, "err", err)
				continue
			}
		case <-ping.C:
			buf.WriteString(": ping\n\n")
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return // the client went away
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// writeEvent writes ev in the stream's format.
func writeEvent(buf *bytes.Buffer, ev Event) error {
	if strings.ContainsAny(ev.Type, "\r\n") || ev.Type == "" {
		return fmt.Errorf("event type %q cannot be sent", ev.Type)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", ev.Type, err)
	}
	fmt.Fprintf(buf, "event: %s\ndata: %s\n\n", ev.Type, data)
	return nil
}

// maxEventLine is the longest line of the stream the client reads.
const maxEventLine = 8 << 20

// eventReader reads events from a server-sent event stream.
type eventReader struct {
	sc *bufio.Scanner
	// seen is called for every line, comments included: the stream is
	// alive.
	seen func()
}

func newEventReader(r io.Reader, seen func()) *eventReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	if seen == nil {
		seen = func() {}
	}
	return &eventReader{sc: sc, seen: seen}
}

// next returns the next event. Comments (the heartbeat), fields it does
// not know and events without data are skipped. It returns io.EOF at a
// clean end of the stream.
func (er *eventReader) next() (Event, error) {
	var (
		name string
		data []byte
		has  bool
	)
	for er.sc.Scan() {
		er.seen()
		line := strings.TrimSuffix(er.sc.Text(), "\r")
		if line == "" {
			if !has {
				name = ""
				continue
			}
			var ev Event
			if err := json.Unmarshal(data, &ev); err != nil {
				return Event{}, fmt.Errorf("read %q event of the station daemon: %w", name, err)
			}
			if ev.Type == "" {
				ev.Type = name
			}
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: the heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name = value
		case "data":
			if has {
				data = append(data, '\n')
			}
			data = append(data, value...)
			has = true
		}
	}
	if err := er.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Event{}, fmt.Errorf("read the station daemon's events: a line is longer than %d bytes", maxEventLine)
		}
		return Event{}, err
	}
	return Event{}, io.EOF
}
