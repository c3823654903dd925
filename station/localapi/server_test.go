package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/station/internal/testkit"
)

// fakeController is an in-memory Controller: it records the calls it gets,
// answers the errors the test sets, and publishes the events the test
// sends to every Watch.
type fakeController struct {
	mu       sync.Mutex
	state    State
	calls    []string
	errs     map[string]error // by method name
	watchers map[chan Event]struct{}
	rows     []DeviceRow
	lines    []LogLine
	// export is what Export writes before it returns errs["Export"].
	export string
}

var _ Controller = (*fakeController)(nil)

func newFake(station string) *fakeController {
	return &fakeController{
		state: State{
			Station: station,
			Version: "test",
			Run:     RunIdle,
			Slots:   []Slot{{Name: "A1", Status: SlotEmpty}, {Name: "A2", Status: SlotEmpty}},
			Time:    time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC),
		},
		errs:     map[string]error{},
		watchers: map[chan Event]struct{}{},
	}
}

// do records a call and returns the error set for the method.
func (f *fakeController) do(method string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := method
	for _, a := range args {
		call += fmt.Sprintf(" %v", a)
	}
	f.calls = append(f.calls, call)
	if err := f.errs[method]; err != nil {
		return err
	}
	f.state.Run = RunState(strings.ToLower(method)) // shows the command reached it
	return nil
}

func (f *fakeController) setErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

func (f *fakeController) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeController) State(context.Context) State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeController) Watch(ctx context.Context) <-chan Event {
	ch := make(chan Event, 64)
	f.mu.Lock()
	st := f.state
	ch <- Event{Type: EventState, State: &st, Time: st.Time}
	f.watchers[ch] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.watchers[ch]; ok {
			delete(f.watchers, ch)
			close(ch)
		}
	})
	return ch
}

// publish sends ev to every watcher.
func (f *fakeController) publish(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.watchers {
		ch <- ev
	}
}

// closeWatchers closes every Watch channel, as a daemon that stops.
func (f *fakeController) closeWatchers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.watchers {
		delete(f.watchers, ch)
		close(ch)
	}
}

func (f *fakeController) watching() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

func (f *fakeController) Load(_ context.Context, ref string) error { return f.do("Load", ref) }
func (f *fakeController) Start(context.Context) error              { return f.do("Start") }
func (f *fakeController) Pause(context.Context) error              { return f.do("Pause") }
func (f *fakeController) Stop(context.Context, Credential) error   { return f.do("Stop") }
func (f *fakeController) Retry(_ context.Context, slot string) error {
	return f.do("Retry", slot)
}
func (f *fakeController) Skip(_ context.Context, slot string) error { return f.do("Skip", slot) }
func (f *fakeController) Override(_ context.Context, slot, reason string, _ Credential) error {
	return f.do("Override", slot, reason)
}
func (f *fakeController) Reprint(_ context.Context, slot string) error {
	return f.do("Reprint", slot)
}

// fakePNG is what the fake's LabelPNG answers: a PNG's signature.
var fakePNG = []byte("\x89PNG\r\n\x1a\nlabel")

func (f *fakeController) LabelPNG(_ context.Context, slot string) ([]byte, error) {
	if err := f.do("LabelPNG", slot); err != nil {
		return nil, err
	}
	return fakePNG, nil
}

func (f *fakeController) SignIn(_ context.Context, req SignInRequest) (Operator, error) {
	// The PIN is not recorded: the log test looks for it everywhere.
	if err := f.do("SignIn"); err != nil {
		return Operator{}, err
	}
	return Operator{Name: "Ada", Supervisor: req.Badge != "", Since: f.state.Time}, nil
}

func (f *fakeController) SignOut(context.Context) error { return f.do("SignOut") }

func (f *fakeController) Devices(_ context.Context, q DeviceQuery) ([]DeviceRow, error) {
	b, _ := json.Marshal(q)
	if err := f.do("Devices", string(b)); err != nil {
		return nil, err
	}
	return f.rows, nil
}

func (f *fakeController) DeviceLog(_ context.Context, device string) ([]LogLine, error) {
	if err := f.do("DeviceLog", device); err != nil {
		return nil, err
	}
	return f.lines, nil
}

func (f *fakeController) Export(_ context.Context, q DeviceQuery, w io.Writer) error {
	b, _ := json.Marshal(q)
	f.mu.Lock()
	f.calls = append(f.calls, "Export "+string(b))
	export, err := f.export, f.errs["Export"]
	f.mu.Unlock()
	if _, werr := io.WriteString(w, export); werr != nil {
		return werr
	}
	return err
}

func (f *fakeController) ExportSigned(_ context.Context, q DeviceQuery, w io.Writer) error {
	b, _ := json.Marshal(q)
	f.mu.Lock()
	f.calls = append(f.calls, "ExportSigned "+string(b))
	export, err := f.export, f.errs["ExportSigned"]
	f.mu.Unlock()
	if _, werr := io.WriteString(w, "tar:"+export); werr != nil {
		return werr
	}
	return err
}

// server is a local API served for a test.
type server struct {
	addr string // the client's address
	srv  *http.Server
	done chan struct{}
}

// serve serves h on ln until the test ends or stop is called.
func serve(t *testing.T, ln net.Listener, h http.Handler, addr string) *server {
	t.Helper()
	s := &server{addr: addr, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener and every connection, and waits for Serve.
func (s *server) stop() {
	s.srv.Close()
	<-s.done
}

// serveUnix serves c without a key on a unix socket in dir.
func serveUnix(t *testing.T, dir string, c Controller, opts HandlerOptions) *server {
	t.Helper()
	path := filepath.Join(dir, "api.sock")
	ln, err := Listen(path, "")
	if err != nil {
		t.Fatalf("Listen(%q) = %v", path, err)
	}
	return serve(t, ln, NewHandler(c, opts), "unix:"+path)
}

// serveLoopback serves c on loopback with opts.Key.
func serveLoopback(t *testing.T, c Controller, opts HandlerOptions) *server {
	t.Helper()
	ln, err := ListenLoopback("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenLoopback = %v", err)
	}
	return serve(t, ln, NewHandler(c, opts), "http://"+ln.Addr().String())
}

func newClient(t *testing.T, addr, key string) *Client {
	t.Helper()
	c, err := NewClient(addr, key)
	if err != nil {
		t.Fatalf("NewClient(%q) = %v", addr, err)
	}
	t.Cleanup(c.hc.CloseIdleConnections)
	return c
}

// raw makes a request without the Client, to see the wire.
func raw(t *testing.T, s *server, method, target, contentType, body string, header ...string) (*http.Response, string) {
	t.Helper()
	c := newClient(t, s.addr, "")
	req, err := http.NewRequestWithContext(t.Context(), method, c.base+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, target, err)
	}
	return resp, string(b)
}

func TestRoutes(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		call     func(ctx context.Context, c *Client) (any, error)
		wantCall string
		want     any
	}{
		{"state", func(ctx context.Context, c *Client) (any, error) { s, err := c.State(ctx); return s.Run, err }, "", RunIdle},
		{"load", func(ctx context.Context, c *Client) (any, error) { s, err := c.Load(ctx, "WO:1234"); return s.Run, err }, "Load WO:1234", RunState("load")},
		{"start", func(ctx context.Context, c *Client) (any, error) { s, err := c.Start(ctx); return s.Run, err }, "Start", RunState("start")},
		{"pause", func(ctx context.Context, c *Client) (any, error) { s, err := c.Pause(ctx); return s.Run, err }, "Pause", RunState("pause")},
		{"stop", func(ctx context.Context, c *Client) (any, error) {
			s, err := c.Stop(ctx, Credential{PIN: "1234"})
			return s.Run, err
		}, "Stop", RunState("stop")},
		{"retry", func(ctx context.Context, c *Client) (any, error) { s, err := c.Retry(ctx, "A1"); return s.Run, err }, "Retry A1", RunState("retry")},
		{"skip", func(ctx context.Context, c *Client) (any, error) { s, err := c.Skip(ctx, "A 2/b"); return s.Run, err }, "Skip A 2/b", RunState("skip")},
		{"override", func(ctx context.Context, c *Client) (any, error) {
			s, err := c.Override(ctx, "A1", "checked by hand", Credential{Badge: "B-9"})
			return s.Run, err
		}, "Override A1 checked by hand", RunState("override")},
		{"reprint", func(ctx context.Context, c *Client) (any, error) { s, err := c.Reprint(ctx, "A2"); return s.Run, err }, "Reprint A2", RunState("reprint")},
		{"sign in", func(ctx context.Context, c *Client) (any, error) {
			op, err := c.SignIn(ctx, SignInRequest{Badge: "B-1"})
			return op.Name + " " + strconv.FormatBool(op.Supervisor), err
		}, "SignIn", "Ada true"},
		{"sign out", func(ctx context.Context, c *Client) (any, error) { s, err := c.SignOut(ctx); return s.Run, err }, "SignOut", RunState("signout")},
		{"devices", func(ctx context.Context, c *Client) (any, error) {
			rows, err := c.Devices(ctx, DeviceQuery{WorkOrder: "WO-1", Device: "24:6f", Result: "failed", Since: since, Until: since.Add(time.Hour), Limit: 5})
			return len(rows), err
		}, `Devices {"work_order":"WO-1","device":"24:6f","result":"failed","since":"2025-01-02T03:04:05Z","until":"2025-01-02T04:04:05Z","limit":5}`, 2},
		{"devices, no filter", func(ctx context.Context, c *Client) (any, error) {
			rows, err := c.Devices(ctx, DeviceQuery{})
			return len(rows), err
		}, `Devices {}`, 2},
		{"device log", func(ctx context.Context, c *Client) (any, error) {
			lines, err := c.DeviceLog(ctx, "24:6f:28/aa bb")
			if len(lines) == 0 {
				return nil, err
			}
			return lines[0].Step, err
		}, "DeviceLog 24:6f:28/aa bb", "flash"},
		{"export", func(ctx context.Context, c *Client) (any, error) {
			var b bytes.Buffer
			err := c.Export(ctx, DeviceQuery{WorkOrder: "WO-1"}, &b)
			return b.String(), err
		}, `Export {"work_order":"WO-1"}`, "{\"a\":1}\n{\"a\":2}\n"},
		{"signed export", func(ctx context.Context, c *Client) (any, error) {
			var b bytes.Buffer
			err := c.ExportSigned(ctx, DeviceQuery{WorkOrder: "WO-1", Result: "failed"}, &b)
			return b.String(), err
		}, `ExportSigned {"work_order":"WO-1","result":"failed"}`, "tar:{\"a\":1}\n{\"a\":2}\n"},
	}
	for _, transport := range []string{"unix", "loopback"} {
		t.Run(transport, func(t *testing.T) {
			f := newFake("S1")
			f.rows = []DeviceRow{{WorkOrder: "WO-1", Device: "d1"}, {WorkOrder: "WO-1", Device: "d2"}}
			f.lines = []LogLine{{Seq: 1, Step: "flash", Status: "passed"}}
			f.export = "{\"a\":1}\n{\"a\":2}\n"
			var s *server
			key := ""
			if transport == "unix" {
				s = serveUnix(t, t.TempDir(), f, HandlerOptions{})
			} else {
				key = "dmk_loopbackkey"
				s = serveLoopback(t, f, HandlerOptions{Key: key})
			}
			c := newClient(t, s.addr, key)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := tt.call(t.Context(), c)
					if err != nil {
						t.Fatalf("%s = %v", tt.name, err)
					}
					if got != tt.want {
						t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
					}
					if tt.wantCall != "" {
						if call := f.lastCall(); call != tt.wantCall {
							t.Errorf("controller got %q, want %q", call, tt.wantCall)
						}
					}
				})
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantCode   string
	}{
		{ErrInvalid, 400, CodeInvalid},
		{ErrUnauthorized, 401, CodeUnauthorized},
		{ErrSignIn, 403, CodeSignIn},
		{ErrSupervisor, 403, CodeSupervisor},
		{ErrWrongPIN, 403, CodeWrongPIN},
		{ErrNotFound, 404, CodeNotFound},
		{ErrState, 409, CodeState},
		{ErrNoWorkOrder, 409, CodeNoWorkOrder},
		{ErrAlreadyRuns, 409, CodeAlreadyLoaded},
		{ErrNothingToDo, 409, CodeNothingToDo},
		{ErrWorkOrder, 422, CodeWorkOrder},
		{ErrUnavailable, 503, CodeUnavailable},
	}
	f := newFake("S1")
	s := serveUnix(t, t.TempDir(), f, HandlerOptions{})
	c := newClient(t, s.addr, "")
	for _, tt := range tests {
		t.Run(tt.wantCode, func(t *testing.T) {
			msg := "start the work order: " + tt.err.Error() + ": do this next"
			f.setErr("Start", fmt.Errorf("start the work order: %w: do this next", tt.err))
			_, err := c.Start(t.Context())
			if !errors.Is(err, tt.err) {
				t.Fatalf("Start() = %v, want errors.Is %v", err, tt.err)
			}
			for _, other := range tests {
				if other.err != tt.err && errors.Is(err, other.err) {
					t.Errorf("Start() = %v is also %v", err, other.err)
				}
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("Start() = %T, want *APIError", err)
			}
			if ae.Status != tt.wantStatus || ae.Code != tt.wantCode || ae.Error() != msg {
				t.Errorf("Start() = %+v, want status %d code %q message %q", *ae, tt.wantStatus, tt.wantCode, msg)
			}
		})
	}

	t.Run("internal", func(t *testing.T) {
		var logs bytes.Buffer
		f := newFake("S1")
		f.setErr("Pause", errors.New("journal: disk I/O error"))
		s := serveUnix(t, t.TempDir(), f, HandlerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		_, err := newClient(t, s.addr, "").Pause(t.Context())
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 500 || ae.Code != CodeInternal {
			t.Fatalf("Pause() = %#v, want a 500 internal APIError", err)
		}
		if strings.Contains(ae.Message, "disk I/O") {
			t.Errorf("Pause() = %q, shows the internal cause", ae.Message)
		}
		for _, sentinel := range tests {
			if errors.Is(err, sentinel.err) {
				t.Errorf("Pause() = %v is %v", err, sentinel.err)
			}
		}
		if !strings.Contains(logs.String(), "disk I/O error") {
			t.Errorf("log = %q, want the cause", logs.String())
		}
	})
}

func TestBadRequests(t *testing.T) {
	f := newFake("S1")
	s := serveUnix(t, t.TempDir(), f, HandlerOptions{})
	tests := []struct {
		name        string
		method      string
		target      string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
		wantMessage string
	}{
		{"unknown field", "POST", "/v1/work-order", "application/json", `{"ref":"1","reff":"2"}`, 400, CodeInvalid, `"reff" is not a field`},
		{"empty body", "POST", "/v1/work-order", "", ``, 400, CodeInvalid, "the body is empty"},
		{"not json", "POST", "/v1/sign-in", "application/json", `pin=1234`, 400, CodeInvalid, "not valid JSON"},
		{"two values", "POST", "/v1/work-order", "", `{"ref":"1"}{"ref":"2"}`, 400, CodeInvalid, "more than one JSON value"},
		{"wrong type", "POST", "/v1/work-order", "", `{"ref":12}`, 400, CodeInvalid, `field "ref" is a JSON number`},
		{"too large", "POST", "/v1/work-order", "", `{"ref":"` + strings.Repeat("x", maxBody) + `"}`, 413, CodeInvalid, "larger than 65536 bytes"},
		{"form body", "POST", "/v1/work-order", "application/x-www-form-urlencoded", `ref=1`, 415, CodeInvalid, "send JSON"},
		{"body on start", "POST", "/v1/start", "", `{"now":true}`, 400, CodeInvalid, `"now" is not a field`},
		{"bad since", "GET", "/v1/devices?since=yesterday", "", ``, 400, CodeInvalid, "since=\"yesterday\" is not a time"},
		{"bad limit", "GET", "/v1/export?limit=-1", "", ``, 400, CodeInvalid, "limit=\"-1\" is not a count"},
		{"unknown parameter", "GET", "/v1/devices?serial=1", "", ``, 400, CodeInvalid, `"serial" is not a parameter`},
		{"unknown route", "GET", "/v2/state", "", ``, 404, CodeNotFound, "has no call GET /v2/state"},
		{"wrong method", "GET", "/v1/start", "", ``, 404, CodeNotFound, "has no call GET /v1/start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, s, tt.method, tt.target, tt.contentType, tt.body)
			var e Error
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%s %s: body %q is not an Error: %v", tt.method, tt.target, body, err)
			}
			if resp.StatusCode != tt.wantStatus || e.Error.Code != tt.wantCode || !strings.Contains(e.Error.Message, tt.wantMessage) {
				t.Errorf("%s %s = %d %+v, want %d %q with %q", tt.method, tt.target, resp.StatusCode, e.Error, tt.wantStatus, tt.wantCode, tt.wantMessage)
			}
		})
	}
	if call := f.lastCall(); call != "" {
		t.Errorf("the controller got %q from a bad request", call)
	}
}

func TestKey(t *testing.T) {
	const key = "loopback-key-0123456789"
	f := newFake("S1")
	loop := serveLoopback(t, f, HandlerOptions{Key: key})
	unix := serveUnix(t, t.TempDir(), f, HandlerOptions{})
	tests := []struct {
		name       string
		s          *server
		auth       string
		wantStatus int
	}{
		{"loopback without key", loop, "", 401},
		{"loopback with a wrong key", loop, "Bearer not-the-key", 401},
		{"loopback with a longer key", loop, "Bearer " + key + "x", 401},
		{"loopback with the key, not bearer", loop, "Basic " + key, 401},
		{"loopback with the key", loop, "Bearer " + key, 200},
		{"loopback with the key, lower-case scheme", loop, "bearer " + key, 200},
		{"loopback with the key, upper-case scheme", loop, "BEARER " + key, 200},
		{"loopback with the key, no space", loop, "Bearer" + key, 401},
		{"unix without key", unix, "", 200},
		{"unix with any key", unix, "Bearer whatever", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.auth != "" {
				header = []string{"Authorization", tt.auth}
			}
			resp, body := raw(t, tt.s, "GET", "/v1/state", "", "", header...)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET /v1/state with %q = %d %s, want %d", tt.auth, resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantStatus == 401 {
				var e Error
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != CodeUnauthorized {
					t.Errorf("GET /v1/state with %q = %s, want code %q", tt.auth, body, CodeUnauthorized)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			}
		})
	}

	t.Run("client with a wrong key", func(t *testing.T) {
		_, err := newClient(t, loop.addr, "wrong").State(t.Context())
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("State() with a wrong key = %v, want ErrUnauthorized", err)
		}
		ev := <-newClient(t, loop.addr, "wrong").Watch(t.Context())
		if ev.Type != EventDisconnected {
			t.Errorf("Watch() with a wrong key: first event %q, want %q", ev.Type, EventDisconnected)
		}
	})
}

func TestLogsHoldNoSecrets(t *testing.T) {
	const (
		key      = "secret-key-5f3a9c"
		wrongKey = "wrong-key-77c1e0"
		pin      = "918273"
		badge    = "BADGE-0042-SECRET"
	)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFake("S1")
	loop := serveLoopback(t, f, HandlerOptions{Key: key, Logger: logger})
	unix := serveUnix(t, t.TempDir(), f, HandlerOptions{Logger: logger})

	good := newClient(t, loop.addr, key)
	if _, err := good.SignIn(t.Context(), SignInRequest{PIN: pin}); err != nil {
		t.Fatalf("SignIn = %v", err)
	}
	if _, err := newClient(t, loop.addr, wrongKey).SignIn(t.Context(), SignInRequest{Badge: badge}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("SignIn with a wrong key = %v, want ErrUnauthorized", err)
	}
	f.setErr("SignIn", fmt.Errorf("this PIN or badge is unknown: type it again: %w", ErrWrongPIN))
	if _, err := newClient(t, unix.addr, "").SignIn(t.Context(), SignInRequest{PIN: pin, Badge: badge}); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("SignIn with a wrong PIN = %v, want ErrWrongPIN", err)
	}
	f.setErr("SignIn", errors.New("operators table is locked"))
	if _, err := newClient(t, unix.addr, "").SignIn(t.Context(), SignInRequest{PIN: pin}); err == nil {
		t.Fatalf("SignIn with a failing controller = nil, want an error")
	}
	// A body that cannot be read is not quoted either.
	resp, _ := raw(t, unix, "POST", "/v1/sign-in", "", `{"pin":`+pin+`}`)
	if resp.StatusCode != 400 {
		t.Fatalf("sign-in with a numeric PIN = %d, want 400", resp.StatusCode)
	}
	resp, body := raw(t, unix, "POST", "/v1/sign-in", "", `{"pin":"`+pin+`", "pni":"`+pin+`"}`)
	if resp.StatusCode != 400 || strings.Contains(body, pin) {
		t.Fatalf("sign-in with an unknown field = %d %s, want 400 without the PIN", resp.StatusCode, body)
	}

	out := logs.String()
	if !strings.Contains(out, "local API call") || !strings.Contains(out, "operators table is locked") {
		t.Fatalf("log = %q, want the calls and the internal error", out)
	}
	for _, secret := range []string{key, wrongKey, pin, badge} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
}

func TestExport(t *testing.T) {
	f := newFake("S1")
	s := serveUnix(t, t.TempDir(), f, HandlerOptions{})
	c := newClient(t, s.addr, "")

	t.Run("headers", func(t *testing.T) {
		f.export = "{\"seq\":1}\n"
		resp, body := raw(t, s, "GET", "/v1/export?work_order=WO-1", "", "")
		if resp.StatusCode != 200 || body != f.export {
			t.Fatalf("GET /v1/export = %d %q, want 200 %q", resp.StatusCode, body, f.export)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=") {
			t.Errorf("Content-Disposition = %q, want an attachment", cd)
		}
	})
	t.Run("signed", func(t *testing.T) {
		f.export = "x"
		resp, body := raw(t, s, "GET", "/v1/export/signed?work_order=WO-1", "", "")
		if resp.StatusCode != 200 || body != "tar:x" {
			t.Fatalf("GET /v1/export/signed = %d %q, want 200 %q", resp.StatusCode, body, "tar:x")
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-tar" {
			t.Errorf("Content-Type = %q, want application/x-tar", ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasSuffix(cd, `.tar"`) {
			t.Errorf("Content-Disposition = %q, want a .tar attachment", cd)
		}
	})
	t.Run("empty", func(t *testing.T) {
		f.export = ""
		resp, body := raw(t, s, "GET", "/v1/export", "", "")
		if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("GET /v1/export of nothing = %d %q %q, want an empty 200 ndjson", resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("error before the first line", func(t *testing.T) {
		f.export = ""
		f.setErr("Export", fmt.Errorf("no work order WO-9: check its number: %w", ErrNotFound))
		var b bytes.Buffer
		err := c.Export(t.Context(), DeviceQuery{WorkOrder: "WO-9"}, &b)
		if !errors.Is(err, ErrNotFound) || b.Len() != 0 {
			t.Fatalf("Export() = %v with %q, want ErrNotFound and nothing written", err, b.String())
		}
	})
	t.Run("error after the first line", func(t *testing.T) {
		f.export = strings.Repeat("{\"seq\":1}\n", 1000)
		f.setErr("Export", errors.New("journal read failed"))
		var b bytes.Buffer
		err := c.Export(t.Context(), DeviceQuery{}, &b)
		if err == nil || !strings.Contains(err.Error(), "cut short") {
			t.Fatalf("Export() = %v, want a cut-short error", err)
		}
	})
}

func TestDaemonDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	for _, addr := range []string{"unix:" + path, path} {
		c := newClient(t, addr, "")
		_, err := c.State(t.Context())
		if !errors.Is(err, ErrDaemonDown) || !strings.Contains(err.Error(), "station service") {
			t.Errorf("State() of %s with no daemon = %v, want ErrDaemonDown telling to check the service", addr, err)
		}
		if errors.Is(err, ErrNotFound) {
			t.Errorf("State() with no daemon = %v is ErrNotFound", err)
		}
	}
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		addr     string
		wantBase string
		wantErr  bool
	}{
		{"unix:/run/station/api.sock", "http://station", false},
		{"/run/station/api.sock", "http://station", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", false},
		{"unix:", "", true},
		{"127.0.0.1:8080", "", true},
		{"https://127.0.0.1:8080", "", true},
		{"http://127.0.0.1:8080/v1", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		c, err := NewClient(tt.addr, "")
		if (err != nil) != tt.wantErr {
			t.Errorf("NewClient(%q) = %v, want error %v", tt.addr, err, tt.wantErr)
			continue
		}
		if err == nil && c.base != tt.wantBase {
			t.Errorf("NewClient(%q).base = %q, want %q", tt.addr, c.base, tt.wantBase)
		}
	}
}

// TestImports enforces the package rule: the kiosk imports localapi, so
// localapi imports nothing of the station, only the standard library.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") && !strings.HasPrefix(path, "golang.org/x/sync/") {
				t.Errorf("%s imports %s: localapi may import only the standard library", name, path)
			}
		}
	}
}

func TestLabelPreview(t *testing.T) {
	f := newFake("st-1")
	s := serveUnix(t, t.TempDir(), f, HandlerOptions{})
	c, err := NewClient(s.addr, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.LabelPNG(context.Background(), "S01")
	if err != nil || !bytes.Equal(got, fakePNG) {
		t.Fatalf("LabelPNG(S01) = %q, %v; want the controller's PNG", got, err)
	}
}

func TestMetrics(t *testing.T) {
	const key = "metrics-key-4e5f6a"
	const text = "# HELP station_slots Slots in the fixture.\n# TYPE station_slots gauge\nstation_slots 2\n"
	var logs testkit.Buffer // the handlers write it while the test reads
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var (
		mu      sync.Mutex
		failing error
	)
	write := func(ctx context.Context, w io.Writer) error {
		mu.Lock()
		defer mu.Unlock()
		if failing != nil {
			io.WriteString(w, "station_slots") // half written: must not reach the scraper
			return failing
		}
		_, err := io.WriteString(w, text)
		return err
	}
	f := newFake("S1")
	opts := HandlerOptions{Metrics: write, Logger: logger}
	unix := serveUnix(t, t.TempDir(), f, opts)
	opts.Key = key
	loop := serveLoopback(t, f, opts)
	none := serveUnix(t, t.TempDir(), f, HandlerOptions{})

	tests := []struct {
		name       string
		s          *server
		auth       string
		fail       error
		wantStatus int
		wantBody   string
	}{
		{"unix without key", unix, "", nil, 200, text},
		{"loopback with the key", loop, "Bearer " + key, nil, 200, text},
		{"loopback without key", loop, "", nil, 401, `"code":"unauthorized"`},
		{"loopback with a wrong key", loop, "Bearer nope", nil, 401, `"code":"unauthorized"`},
		{"metrics fail", unix, "", errors.New("journal is locked"), 500, `"code":"internal"`},
		{"no metrics configured", none, "", nil, 404, `"code":"not_found"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			failing = tt.fail
			mu.Unlock()
			var header []string
			if tt.auth != "" {
				header = []string{"Authorization", tt.auth}
			}
			resp, body := raw(t, tt.s, "GET", "/metrics", "", "", header...)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("GET /metrics = %d %q, want %d with %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus != 200 {
				if strings.Contains(body, "station_slots") {
					t.Errorf("GET /metrics failed with part of the metrics: %q", body)
				}
				return
			}
			if body != text {
				t.Errorf("GET /metrics = %q, want exactly %q", body, text)
			}
			if ct := resp.Header.Get("Content-Type"); ct != MetricsContentType {
				t.Errorf("Content-Type = %q, want %q", ct, MetricsContentType)
			}
		})
	}
	if resp, _ := raw(t, unix, "POST", "/metrics", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /metrics = %d, want 404 as any call the daemon does not have", resp.StatusCode)
	}

	// Scrapes come every 15 s: a good one logs nothing at info level.
	before := len(logs.String())
	for range 3 {
		if resp, _ := raw(t, unix, "GET", "/metrics", "", ""); resp.StatusCode != 200 {
			t.Fatalf("GET /metrics = %d", resp.StatusCode)
		}
	}
	if got := logs.String()[before:]; got != "" {
		t.Errorf("scrapes logged at info level:\n%s", got)
	}
}

// TestWaitAnswer: a PIN tried too soon is a 429 with the wait in
// Retry-After and in the body; the client's error says how long.
func TestWaitAnswer(t *testing.T) {
	f := newFake("S1")
	unix := serveUnix(t, t.TempDir(), f, HandlerOptions{})
	f.setErr("SignIn", &WaitError{Delay: 1500 * time.Millisecond, Message: "too many wrong PINs: wait 2 s"})
	_, err := newClient(t, unix.addr, "").SignIn(t.Context(), SignInRequest{PIN: "0000"})
	var ae *APIError
	if !errors.Is(err, ErrWait) || !errors.As(err, &ae) || ae.RetryAfter != 2*time.Second || ae.Status != 429 {
		t.Fatalf("SignIn() too soon = %#v, want ErrWait with RetryAfter 2s", err)
	}
	resp, body := raw(t, unix, "POST", "/v1/sign-in", "application/json", `{"pin":"0000"}`)
	var e Error
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || json.Unmarshal([]byte(body), &e) != nil ||
		e.Error.Code != CodeWait || e.Error.RetryAfter != 2 {
		t.Fatalf("POST /v1/sign-in too soon = %d, Retry-After %q, %s; want 429, 2, code wait", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}
