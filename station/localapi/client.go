package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is the kiosk's side of the local API. Its methods mirror the
// Controller's; commands answer the station's new State. It is safe for
// concurrent use.
type Client struct {
	base string // "http://station" for a unix socket
	key  string
	hc   *http.Client
	// idle is how long Watch waits for a line (an event or a heartbeat)
	// before it takes the stream for dead.
	idle time.Duration
}

// maxAnswer is the largest JSON answer the client reads.
const maxAnswer = 64 << 20

// Backoff of Watch's reconnections.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 2 * time.Second
	watchBuffer     = 16
)

// NewClient returns a client of the daemon at addr: "unix:/run/station/api.sock",
// "/run/station/api.sock", or "http://127.0.0.1:PORT" (then key is the
// loopback listener's key; it may be empty for the unix socket).
func NewClient(addr, key string) (*Client, error) {
	c := &Client{key: key, idle: 3 * 15 * time.Second}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	switch {
	case strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "/"):
		path := strings.TrimPrefix(addr, "unix:")
		if path == "" {
			return nil, fmt.Errorf("the station daemon's address %q has no socket path: write it as unix:/run/station/api.sock", addr)
		}
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://station"
	case strings.HasPrefix(addr, "http://"):
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("the station daemon's address %q is not of the form http://127.0.0.1:PORT", addr)
		}
		tr.Proxy = nil // never send the key through a proxy
		c.base = "http://" + u.Host
	default:
		return nil, fmt.Errorf("the station daemon's address %q is neither a unix socket (unix:/run/station/api.sock) nor http://127.0.0.1:PORT", addr)
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// State returns the whole state of the station.
func (c *Client) State(ctx context.Context) (State, error) {
	var s State
	err := c.call(ctx, http.MethodGet, "/v1/state", nil, nil, &s)
	return s, err
}

// Load loads a work order by id or scanned barcode.
func (c *Client) Load(ctx context.Context, ref string) (State, error) {
	return c.command(ctx, "/v1/work-order", LoadRequest{Ref: ref})
}

// Start starts the loaded work order.
func (c *Client) Start(ctx context.Context) (State, error) {
	return c.command(ctx, "/v1/start", nil)
}

// Pause lets the devices at work finish and starts no new one.
func (c *Client) Pause(ctx context.Context) (State, error) {
	return c.command(ctx, "/v1/pause", nil)
}

// Stop stops the devices at work and unloads the work order; sup is the
// supervisor's own PIN or badge.
func (c *Client) Stop(ctx context.Context, sup Credential) (State, error) {
	return c.command(ctx, "/v1/stop", StopRequest{Supervisor: sup})
}

// Retry runs a failed slot's device again.
func (c *Client) Retry(ctx context.Context, slot string) (State, error) {
	return c.command(ctx, slotPath(slot, "retry"), nil)
}

// Skip leaves a slot alone until its device is unplugged.
func (c *Client) Skip(ctx context.Context, slot string) (State, error) {
	return c.command(ctx, slotPath(slot, "skip"), nil)
}

// Override accepts a failed device, with the supervisor's reason and own
// PIN or badge.
func (c *Client) Override(ctx context.Context, slot, reason string, sup Credential) (State, error) {
	return c.command(ctx, slotPath(slot, "override"), OverrideRequest{Reason: reason, Supervisor: sup})
}

// Reprint prints the label of the slot's last device again.
func (c *Client) Reprint(ctx context.Context, slot string) (State, error) {
	return c.command(ctx, slotPath(slot, "reprint"), nil)
}

// SignIn signs an operator in by PIN or badge.
func (c *Client) SignIn(ctx context.Context, req SignInRequest) (Operator, error) {
	var op Operator
	err := c.call(ctx, http.MethodPost, "/v1/sign-in", nil, req, &op)
	return op, err
}

// SignOut signs the operator out.
func (c *Client) SignOut(ctx context.Context) (State, error) {
	return c.command(ctx, "/v1/sign-out", nil)
}

// Devices returns the devices q selects, for the QA view.
func (c *Client) Devices(ctx context.Context, q DeviceQuery) ([]DeviceRow, error) {
	var rows []DeviceRow
	err := c.call(ctx, http.MethodGet, "/v1/devices", encodeQuery(q), nil, &rows)
	return rows, err
}

// DeviceLog returns the step events of a device.
func (c *Client) DeviceLog(ctx context.Context, device string) ([]LogLine, error) {
	var lines []LogLine
	err := c.call(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(device)+"/log", nil, nil, &lines)
	return lines, err
}

// LabelPNG returns the label of the slot's last device as a PNG.
func (c *Client) LabelPNG(ctx context.Context, slot string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/slots/"+url.PathEscape(slot)+"/label.png", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("read the label of slot %s: %w", slot, err)
	}
	return b, nil
}

// Export writes the selected devices' events to w as JSON lines. An
// export the daemon could not finish is an error, though w may have
// received part of it.
func (c *Client) Export(ctx context.Context, q DeviceQuery, w io.Writer) error {
	return c.download(ctx, "/v1/export", q, w)
}

// ExportSigned writes the selected devices' signed QA export to w as a
// tar archive (see Controller.ExportSigned). An export the daemon could
// not finish is an error, though w may have received part of it.
func (c *Client) ExportSigned(ctx context.Context, q DeviceQuery, w io.Writer) error {
	return c.download(ctx, "/v1/export/signed", q, w)
}

// download copies the answer of an export to w.
func (c *Client) download(ctx context.Context, path string, q DeviceQuery, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path, encodeQuery(q), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("export: %w", context.Cause(ctx))
		}
		return fmt.Errorf("the export was cut short (%w): run it again", err)
	}
	return nil
}

func slotPath(slot, action string) string {
	return "/v1/slots/" + url.PathEscape(slot) + "/" + action
}

// command posts a command and reads the new State.
func (c *Client) command(ctx context.Context, path string, body any) (State, error) {
	var s State
	err := c.call(ctx, http.MethodPost, path, nil, body, &s)
	return s, err
}

// call makes a request and decodes its JSON answer into out.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.do(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, context.Cause(ctx))
		}
		return fmt.Errorf("read the station daemon's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// do makes a request and returns a 200 answer; any other answer is an
// *APIError, a connection failure wraps ErrDaemonDown.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the request %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("make the request %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, context.Cause(ctx))
		}
		return nil, daemonDown(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// daemonDown wraps a connection failure.
func daemonDown(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL says nothing useful: http://station/...
	}
	return fmt.Errorf("%w: the station service may be restarting; if this lasts, check it (systemctl status station): %w", ErrDaemonDown, err)
}

// readAPIError reads an error answer.
func readAPIError(resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	var e Error
	if err := json.Unmarshal(b, &e); err == nil && e.Error.Code != "" {
		return &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message,
			RetryAfter: time.Duration(e.Error.RetryAfter) * time.Second}
	}
	return &APIError{
		Status: resp.StatusCode,
		Code:   codeForStatus(resp.StatusCode),
		Message: fmt.Sprintf("the station daemon answered %d %s: the kiosk and the daemon may be of different versions; check the station service",
			resp.StatusCode, http.StatusText(resp.StatusCode)),
	}
}

// Watch subscribes to the daemon's events. The first event is a "state"
// event. When the stream breaks (the daemon restarts), Watch sends one
// EventDisconnected event and reconnects, with backoff, until ctx ends;
// once back, a "state" event comes first, so the kiosk redraws from
// scratch. The channel is closed when ctx ends.
//
// A slow reader does not hold up the stream: while it lags, the events of
// a slot are coalesced into the slot's newest, and alert events into the
// newest; "state" and "disconnected" events are never dropped.
func (c *Client) Watch(ctx context.Context) <-chan Event {
	out := make(chan Event, watchBuffer)
	in := make(chan Event)
	go c.watchLoop(ctx, in)
	go pump(in, out)
	return out
}

// watchLoop connects, reads and reconnects until ctx ends; then it closes
// in.
func (c *Client) watchLoop(ctx context.Context, in chan<- Event) {
	defer close(in)
	send := func(ev Event) bool {
		select {
		case in <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := watchBackoffMin
	reported := false // EventDisconnected was sent for this outage
	for {
		// Why the stream ended does not matter here: the kiosk learns of
		// it by EventDisconnected, and its next command says why.
		_ = c.stream(ctx, func(ev Event) bool {
			reported = false
			backoff = watchBackoffMin
			return send(ev)
		})
		if ctx.Err() != nil {
			return
		}
		if !reported {
			if !send(Event{Type: EventDisconnected, Time: time.Now()}) {
				return
			}
			reported = true
		}
		// Full jitter over the upper half: between backoff/2 and backoff.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, watchBackoffMax)
	}
}

// stream reads one connection's events into send, until the stream ends,
// breaks, goes quiet for longer than c.idle, or send refuses.
func (c *Client) stream(ctx context.Context, send func(Event) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, "/v1/events", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	watchdog := time.AfterFunc(c.idle, cancel)
	defer watchdog.Stop()
	er := newEventReader(resp.Body, func() { watchdog.Reset(c.idle) })
	for {
		ev, err := er.next()
		if err != nil {
			return err
		}
		if !send(ev) {
			return ctx.Err()
		}
	}
}

// pump passes events from in to out, queueing them while out is full and
// coalescing the queue; it closes out when in is closed.
func pump(in <-chan Event, out chan<- Event) {
	defer close(out)
	var queue []Event
	for {
		if len(queue) == 0 {
			ev, ok := <-in
			if !ok {
				return
			}
			select {
			case out <- ev:
			default:
				queue = enqueue(queue, ev)
			}
			continue
		}
		select {
		case ev, ok := <-in:
			if !ok {
				return
			}
			queue = enqueue(queue, ev)
		case out <- queue[0]:
			queue[0] = Event{}
			queue = queue[1:]
		}
	}
}

// enqueue appends ev to the queue, dropping the older event it supersedes:
// the same slot's, or an older alert event.
func enqueue(queue []Event, ev Event) []Event {
	for i, old := range queue {
		if supersedes(ev, old) {
			queue = append(queue[:i], queue[i+1:]...)
			break // the queue holds at most one event that ev supersedes
		}
	}
	return append(queue, ev)
}

// supersedes reports whether the newer event makes the older useless.
func supersedes(newer, older Event) bool {
	switch {
	case newer.Type != older.Type:
		return false
	case newer.Type == EventSlot:
		return newer.Slot != nil && older.Slot != nil && newer.Slot.Name == older.Slot.Name
	case newer.Type == EventAlert:
		return true
	}
	return false
}
