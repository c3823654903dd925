package localapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody is the largest JSON body a request may carry.
const maxBody = 64 << 10

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Key, when set, must come with every request as
	// "Authorization: Bearer <Key>": set it for the loopback listener,
	// leave it empty for the unix socket (its file mode and group guard it).
	Key string
	// Logger receives one line per request (method, route, status,
	// duration) and the causes of internal errors; never a key, a PIN, a
	// badge or a body. Nil logs nothing.
	Logger *slog.Logger
	// Heartbeat is the interval of the event stream's ": ping" comments;
	// zero means 15 s.
	Heartbeat time.Duration
	// Metrics, when set, writes the daemon's metrics in the Prometheus
	// text format for GET /metrics (guarded by Key like every call);
	// nil leaves the call out (404).
	Metrics func(ctx context.Context, w io.Writer) error
}

// handler serves the local API for a Controller.
type handler struct {
	c         Controller
	keyHash   [sha256.Size]byte // sha256 of the key, when hasKey
	hasKey    bool
	log       *slog.Logger
	heartbeat time.Duration
}

// NewHandler returns the HTTP handler of the local API, serving c. The
// daemon serves it on the unix socket of Listen (without a key) and,
// optionally, on the loopback listener of ListenLoopback (with a key).
//
// Event streams end when the client goes or c's Watch channel closes:
// to end them when the daemon stops, cancel the http.Server's BaseContext
// or close the Watch channels.
func NewHandler(c Controller, opts HandlerOptions) http.Handler {
	h := &handler{c: c, log: opts.Logger, heartbeat: opts.Heartbeat}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.heartbeat <= 0 {
		h.heartbeat = 15 * time.Second
	}
	if opts.Key != "" {
		h.hasKey = true
		h.keyHash = sha256.Sum256([]byte(opts.Key))
	}

	mux := http.NewServeMux()
	mux.HandleFunc(PathState, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.State(r.Context()))
	})
	mux.HandleFunc(PathEvents, h.serveEvents)
	mux.HandleFunc(PathLoad, h.command(func(ctx context.Context, r *http.Request) error {
		var req LoadRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		return c.Load(ctx, req.Ref)
	}))
	mux.HandleFunc(PathStart, h.command(noBody(c.Start)))
	mux.HandleFunc(PathPause, h.command(noBody(c.Pause)))
	mux.HandleFunc(PathStop, h.command(func(ctx context.Context, r *http.Request) error {
		var req StopRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		return c.Stop(ctx, req.Supervisor)
	}))
	mux.HandleFunc(PathSignOut, h.command(noBody(c.SignOut)))
	mux.HandleFunc(PathRetry, h.command(slotCommand(c.Retry)))
	mux.HandleFunc(PathSkip, h.command(slotCommand(c.Skip)))
	mux.HandleFunc(PathReprint, h.command(slotCommand(c.Reprint)))
	mux.HandleFunc(PathLabel, func(w http.ResponseWriter, r *http.Request) {
		png, err := c.LabelPNG(r.Context(), r.PathValue("slot"))
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	})
	mux.HandleFunc(PathOverride, h.command(func(ctx context.Context, r *http.Request) error {
		var req OverrideRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		return c.Override(ctx, r.PathValue("slot"), req.Reason, req.Supervisor)
	}))
	mux.HandleFunc(PathSignIn, func(w http.ResponseWriter, r *http.Request) {
		var req SignInRequest
		if err := decode(r, &req); err != nil {
			h.writeError(w, r, err)
			return
		}
		op, err := c.SignIn(r.Context(), req)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, op)
	})
	mux.HandleFunc(PathDevices, func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.Query())
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		rows, err := c.Devices(r.Context(), q)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if rows == nil {
			rows = []DeviceRow{}
		}
		writeJSON(w, http.StatusOK, rows)
	})
	mux.HandleFunc(PathDeviceLog, func(w http.ResponseWriter, r *http.Request) {
		lines, err := c.DeviceLog(r.Context(), r.PathValue("device"))
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if lines == nil {
			lines = []LogLine{}
		}
		writeJSON(w, http.StatusOK, lines)
	})
	mux.HandleFunc(PathExport, h.serveExport(c.Export, "application/x-ndjson", "ndjson"))
	mux.HandleFunc(PathExportSigned, h.serveExport(c.ExportSigned, "application/x-tar", "tar"))
	if opts.Metrics != nil {
		mux.HandleFunc(PathMetrics, h.serveMetrics(opts.Metrics))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, fmt.Errorf("the station daemon has no call %s %s: the kiosk and the daemon may be of different versions (see docs/local-api.md): %w",
			r.Method, r.URL.Path, ErrNotFound))
	})

	return h.logRequests(h.authorize(withPeer(mux)))
}

// command serves a command: run does it, and the answer is the new State.
func (h *handler) command(run func(ctx context.Context, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := run(r.Context(), r); err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, h.c.State(r.Context()))
	}
}

// noBody adapts a command that takes no argument; its body must be empty
// or an empty JSON object.
func noBody(do func(ctx context.Context) error) func(ctx context.Context, r *http.Request) error {
	return func(ctx context.Context, r *http.Request) error {
		if err := decodeOptional(r); err != nil {
			return err
		}
		return do(ctx)
	}
}

// slotCommand adapts a command on the slot of the path.
func slotCommand(do func(ctx context.Context, slot string) error) func(ctx context.Context, r *http.Request) error {
	return func(ctx context.Context, r *http.Request) error {
		if err := decodeOptional(r); err != nil {
			return err
		}
		return do(ctx, r.PathValue("slot"))
	}
}

// serveExport streams an export the Controller writes (JSON lines, or
// the signed export's tar) as a download of type ctype whose file name
// ends in ext. An error before the first byte is an ordinary error
// answer; an error after it breaks the connection, so the client sees a
// cut export and not a complete-looking one.
func (h *handler) serveExport(export func(context.Context, DeviceQuery, io.Writer) error, ctype, ext string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.Query())
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		ew := &exportWriter{w: w, ctype: ctype, ext: ext}
		err = export(r.Context(), q, ew)
		if err == nil {
			if !ew.started {
				ew.start() // an empty export is still a file
			}
			return
		}
		if !ew.started {
			h.writeError(w, r, err)
			return
		}
		h.log.ErrorContext(r.Context(), "export cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// serveMetrics answers the metrics written by write. They are written
// whole before the answer starts, so a failure is an ordinary error
// answer and never a cut text that Prometheus would half read.
func (h *handler) serveMetrics(write func(ctx context.Context, w io.Writer) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		if err := write(r.Context(), &b); err != nil {
			h.writeError(w, r, fmt.Errorf("write metrics: %w", err))
			return
		}
		w.Header().Set("Content-Type", MetricsContentType)
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b.Bytes()) //nolint:errcheck // the scraper went away: nothing to do
	}
}

// exportWriter writes the export's headers with its first byte.
type exportWriter struct {
	w          http.ResponseWriter
	ctype, ext string
	started    bool
}

func (e *exportWriter) start() {
	e.started = true
	hd := e.w.Header()
	hd.Set("Content-Type", e.ctype)
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="station-export-%s.%s"`,
		time.Now().UTC().Format("20060102T150405Z"), e.ext))
	e.w.WriteHeader(http.StatusOK)
}

func (e *exportWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !e.started {
		e.start()
	}
	return e.w.Write(p)
}

// authorize checks the key, when the handler has one.
func (h *handler) authorize(next http.Handler) http.Handler {
	if !h.hasKey {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(given))
		if !ok || subtle.ConstantTimeCompare(sum[:], h.keyHash[:]) != 1 {
			h.log.WarnContext(r.Context(), "local API call without the right key", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="station"`)
			h.writeError(w, r, fmt.Errorf("%w: give the kiosk the key of the station's configuration (Authorization: Bearer …)", ErrUnauthorized))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer returns the credentials of an Authorization header of the Bearer
// scheme. The scheme's name is case-insensitive (RFC 9110, section 11.1),
// as the DMS takes it.
func bearer(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(cred), true
}

// logRequests logs one line per request: never a header's value or a body.
func (h *handler) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			h.log.DebugContext(r.Context(), "local API call", "method", r.Method, "path", r.URL.Path,
				"status", status, "duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status of an answer. Unwrap lets
// http.ResponseController reach the connection (Flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// requestError is an error of the request itself, with its status.
type requestError struct {
	status  int
	message string
}

func (e *requestError) Error() string { return e.message }

func (e *requestError) Unwrap() error { return ErrInvalid }

func invalid(status int, format string, args ...any) error {
	return &requestError{status: status, message: fmt.Sprintf(format, args...)}
}

// writeError answers err as an Error body: the code of its sentinel and
// its text, or a general message for an internal error (logged).
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, status, ok := codeOf(err)
	msg := err.Error()
	var re *requestError
	if errors.As(err, &re) {
		status = re.status
	}
	body := ErrorBody{Code: code, Message: msg}
	var we *WaitError
	if errors.As(err, &we) {
		body.RetryAfter = we.RetryAfter()
		w.Header().Set("Retry-After", strconv.Itoa(body.RetryAfter))
	}
	if !ok {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away: nobody reads the answer.
			h.log.DebugContext(r.Context(), "local API call canceled by the client", "method", r.Method, "path", r.URL.Path)
		} else {
			h.log.ErrorContext(r.Context(), "local API call failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		body.Message = "the station daemon failed to do this: try again; if it fails again, look at the station's log (journalctl -u station)"
	}
	writeJSON(w, status, Error{Error: body})
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(Error{Error: ErrorBody{Code: CodeInternal, Message: "the station daemon could not encode its answer: look at the station's log"}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // the client went away: nothing to do
}

// decode reads a JSON body of at most maxBody bytes into v, refusing
// unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return bodyError(err)
		}
		return invalid(http.StatusBadRequest, "the body holds more than one JSON value: send one object")
	}
	return nil
}

// decodeOptional accepts an empty body or an empty JSON object, for calls
// that take no argument.
func decodeOptional(r *http.Request) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return bodyError(err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	return decode(r, &struct{}{})
}

// checkContentType refuses a body that says it is not JSON.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return invalid(http.StatusUnsupportedMediaType, "the body is %q: send JSON (Content-Type: application/json)", ct)
	}
	return nil
}

// bodyError says what is wrong with a JSON body, naming the field. It
// never quotes the body: it may hold a PIN.
func bodyError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return invalid(http.StatusBadRequest, "the body is empty: send a JSON object (see docs/local-api.md)")
	case errors.As(err, &mbe):
		return invalid(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes: send less", mbe.Limit)
	case errors.As(err, &syn):
		return invalid(http.StatusBadRequest, "the body is not valid JSON (at byte %d): send a JSON object", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid(http.StatusBadRequest, "the body ends in the middle of its JSON: send the whole object")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid(http.StatusBadRequest, "the body is a JSON %s, not an object", typ.Value)
		}
		return invalid(http.StatusBadRequest, "field %q is a JSON %s, not a %s", typ.Field, typ.Value, typ.Type.Kind())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid(http.StatusBadRequest, "%s is not a field of this call: check its spelling against docs/local-api.md",
			strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return invalid(http.StatusBadRequest, "the body cannot be read as this call's JSON: send the object of docs/local-api.md")
}

// Query parameters of a DeviceQuery.
const (
	paramWorkOrder = "work_order"
	paramDevice    = "device"
	paramResult    = "result"
	paramSince     = "since"
	paramUntil     = "until"
	paramLimit     = "limit"
)

// parseQuery reads a DeviceQuery from query parameters, refusing unknown
// ones.
func parseQuery(v url.Values) (DeviceQuery, error) {
	var q DeviceQuery
	for name := range v {
		switch name {
		case paramWorkOrder, paramDevice, paramResult, paramSince, paramUntil, paramLimit:
		default:
			return q, invalid(http.StatusBadRequest, "%q is not a parameter of this call: use work_order, device, result, since, until or limit", name)
		}
	}
	q.WorkOrder = v.Get(paramWorkOrder)
	q.Device = v.Get(paramDevice)
	q.Result = v.Get(paramResult)
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{paramSince, &q.Since}, {paramUntil, &q.Until}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, invalid(http.StatusBadRequest, "%s=%q is not a time: write it as RFC 3339, such as 2025-01-31T08:00:00Z", p.name, s)
		}
		*p.t = t
	}
	if s := v.Get(paramLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, invalid(http.StatusBadRequest, "limit=%q is not a count: give a whole number, 0 or more", s)
		}
		q.Limit = n
	}
	return q, nil
}

// encodeQuery writes q as query parameters; parseQuery reads them.
func encodeQuery(q DeviceQuery) url.Values {
	v := url.Values{}
	set := func(name, val string) {
		if val != "" {
			v.Set(name, val)
		}
	}
	set(paramWorkOrder, q.WorkOrder)
	set(paramDevice, q.Device)
	set(paramResult, q.Result)
	if !q.Since.IsZero() {
		v.Set(paramSince, q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set(paramUntil, q.Until.Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set(paramLimit, strconv.Itoa(q.Limit))
	}
	return v
}
