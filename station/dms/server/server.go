package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/jobs/dupkey"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// Limits on request bodies.
const (
	// MaxJSONBody bounds a JSON request body.
	MaxJSONBody = 1 << 20
	// MaxIngestBody bounds the body of an events batch
	// (dms.MaxIngestBatch events).
	MaxIngestBody = 32 << 20
	// DefaultMaxArtifact bounds an artifact upload when Config does not.
	DefaultMaxArtifact = 1 << 30
)

// Config is what the server needs.
type Config struct {
	// Service answers every call.
	Service *dms.Service
	// Logger receives one line per request and the causes of 5xx
	// answers; nil discards.
	Logger *slog.Logger
	// UploadDir is the folder where uploaded artifacts wait for the
	// bundle that names them (PUT /v1/artifacts/{sha256}, then POST
	// .../bundles). Empty means "station-dms-uploads" in os.TempDir().
	// Files are named by their sha256, so folders may be shared.
	UploadDir string
	// MaxArtifact bounds an artifact upload, in bytes; 0 means
	// DefaultMaxArtifact.
	MaxArtifact int64
}

// server holds the routes' dependencies.
type server struct {
	svc         *dms.Service
	log         *slog.Logger
	uploads     string
	maxArtifact int64
}

// handler is a route's work. It writes the answer, or returns an error
// that the route turns into an error answer.
type handler func(w http.ResponseWriter, r *http.Request, p dms.Principal) error

// New returns the DMS's HTTP API over cfg.Service, exactly as
// docs/api.md describes it.
func New(cfg Config) http.Handler {
	s := &server{svc: cfg.Service, log: cfg.Logger, uploads: cfg.UploadDir, maxArtifact: cfg.MaxArtifact}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.uploads == "" {
		s.uploads = filepath.Join(os.TempDir(), "station-dms-uploads")
	}
	if s.maxArtifact <= 0 {
		s.maxArtifact = DefaultMaxArtifact
	}
	mux := http.NewServeMux()
	s.routes(mux)
	return s.logRequests(mux)
}

// Who may make a call. A call's handler narrows it further: a support
// key to its product's records, a station key to the work orders
// assigned to its station (see scope.go).
var (
	adminOnly = []dms.Role{dms.RoleAdmin}
	readers   = []dms.Role{dms.RoleAdmin, dms.RoleSupport}
	anyKey    = []dms.Role{dms.RoleAdmin, dms.RoleSupport, dms.RoleStation}
	stations  = []dms.Role{dms.RoleAdmin, dms.RoleStation}
)

// route is one call of the API.
type route struct {
	// call is the method and pattern, as docs/api.md writes it.
	call string
	// roles may make the call; nil means it takes no API key.
	roles []dms.Role
	h     handler
}

// table lists every call of the API.
func (s *server) table() []route {
	return []route{
		{"GET " + dmsapi.PathHealth, nil, s.health},
		{"POST " + dmsapi.PathClaim, nil, s.claim},

		{"POST /v1/keys", adminOnly, s.createKey},
		{"GET /v1/keys", adminOnly, s.listKeys},
		{"DELETE /v1/keys/{id}", adminOnly, s.revokeKey},

		{"POST /v1/customers", adminOnly, s.createCustomer},
		{"GET /v1/customers/{id}", adminOnly, s.getCustomer},
		{"POST /v1/products", adminOnly, s.createProduct},
		{"GET /v1/products", readers, s.listProducts},
		{"GET /v1/products/{code}", readers, s.getProduct},
		{"PATCH /v1/products/{code}", adminOnly, s.patchProduct},
		{"DELETE /v1/products/{code}", adminOnly, s.deleteProduct},

		{"PUT " + dmsapi.PathArtifact, adminOnly, s.putArtifact},
		{"GET " + dmsapi.PathArtifact, anyKey, s.getArtifact},
		{"POST /v1/products/{code}/bundles", adminOnly, s.createBundle},
		{"GET /v1/products/{code}/bundles", anyKey, s.listBundles},
		{"GET /v1/products/{code}/bundles/{version}", anyKey, s.getBundle},

		{"POST /v1/work-orders", adminOnly, s.createWorkOrder},
		{"GET " + dmsapi.PathWorkOrder, anyKey, s.getWorkOrder},
		{"POST /v1/work-orders/{id}/stations", adminOnly, s.assignStations},
		{"DELETE /v1/work-orders/{id}/stations/{station}", adminOnly, s.unassignStation},
		{"POST /v1/products/{code}/tokens", adminOnly, s.createToken},
		{"GET /v1/products/{code}/tokens", readers, s.listTokens},
		{"GET /v1/tokens/{id}", readers, s.getToken},
		{"POST /v1/tokens/{id}/revoke", adminOnly, s.revokeToken},
		{"POST /v1/purchase-orders", adminOnly, s.createPurchaseOrder},
		{"GET /v1/purchase-orders/{id}", readers, s.getPurchaseOrder},

		{"GET /v1/devices/{hardware_id}", readers, s.getDevice},
		{"GET /v1/products/{code}/devices", readers, s.listDevices},

		{"POST " + dmsapi.PathPreflight, stations, s.preflight},
		{"POST " + dmsapi.PathActivate, stations, s.activate},
		{"POST " + dmsapi.PathLock, stations, s.lock},
		{"POST " + dmsapi.PathComplete, stations, s.complete},
		{"POST " + dmsapi.PathEvents, stations, s.ingest},

		{"GET /v1/flash-logs", readers, s.flashLogs},
		{"GET /v1/events", readers, s.events},
	}
}

// Calls lists every call of the API, as "METHOD /path/{value}" in the
// words of docs/api.md, in the order the doc shows them. Tests check the
// doc's tables against it.
func Calls() []string {
	var out []string
	for _, r := range (&server{}).table() {
		out = append(out, r.call)
	}
	return out
}

func (s *server) routes(mux *http.ServeMux) {
	for _, r := range s.table() {
		if r.roles == nil {
			mux.Handle(r.call, s.open(r.h))
		} else {
			mux.Handle(r.call, s.auth(r.roles, r.h))
		}
	}
	mux.Handle("/", s.open(func(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
		return apiError(http.StatusNotFound, dmsapi.CodeNotFound,
			"the DMS has no call %s %s: see docs/api.md for its calls", r.Method, r.URL.Path)
	}))
}

// open serves a call that needs no API key.
func (s *server) open(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, h, dms.Principal{})
	})
}

// auth serves a call that needs an API key of one of roles.
func (s *server) auth(roles []dms.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err == nil {
			info(r).principal = p
			err = allow(p, roles)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.serve(w, r, h, p)
	})
}

func (s *server) serve(w http.ResponseWriter, r *http.Request, h handler, p dms.Principal) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.writeError(w, r, fmt.Errorf("%w: panic: %v", errInternal, v))
		}
	}()
	if err := checkURL(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := h(w, r, p); err != nil {
		s.writeError(w, r, err)
	}
}

// authenticate reads the request's API key.
func (s *server) authenticate(r *http.Request) (dms.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return dms.Principal{}, apiError(http.StatusUnauthorized, dmsapi.CodeUnauthenticated,
			"this call needs an API key: send Authorization: Bearer %s…", dms.KeyPrefix)
	}
	scheme, secret, _ := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	if !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return dms.Principal{}, apiError(http.StatusUnauthorized, dmsapi.CodeUnauthenticated,
			"the Authorization header must read Bearer %s…: this call needs an API key", dms.KeyPrefix)
	}
	p, err := s.svc.Authenticate(r.Context(), secret)
	if errors.Is(err, dms.ErrUnauthenticated) {
		return dms.Principal{}, apiError(http.StatusUnauthorized, dmsapi.CodeUnauthenticated,
			"the API key is unknown or revoked: ask your administrator for a key")
	}
	return p, err
}

// allow checks that p's role is one of roles.
func allow(p dms.Principal, roles []dms.Role) error {
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return forbidden("this call needs a key of role %s; key %s is a %s key", strings.Join(names, " or "), p.KeyID, p.Role)
}

// actAs checks that p may act for station: a station key acts for its
// own station only.
func actAs(p dms.Principal, station string) error {
	if p.Role == dms.RoleStation && p.Station != station {
		return forbidden("key %s belongs to station %s and may not act for station %s", p.KeyID, p.Station, station)
	}
	return nil
}

func forbidden(format string, args ...any) error {
	return apiError(http.StatusForbidden, dmsapi.CodeForbidden, format, args...)
}

func (s *server) health(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	if _, err := s.svc.HasAdminKey(r.Context()); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// writeJSON writes v as the answer.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: encode answer: %w", errInternal, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	if err != nil {
		return errWritten
	}
	return nil
}

// errWritten means the answer was already (partly) sent: nothing more to
// write.
var errWritten = errors.New("answer already sent")

// noContent answers 204.
func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decode reads a JSON body of at most limit bytes into v, refusing
// unknown fields and trailing data, and text the DMS does not store
// (dms.CheckJSONText): every string of every body is UTF-8 without NUL.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := readBody(w, r, limit, v)
	if err != nil {
		return err
	}
	return dms.CheckJSONText(body)
}

// readBody reads a JSON body of at most limit bytes into v and returns it
// as sent. It refuses a body that is not of type application/json (415:
// a browser's form or text/plain post is no API call), unknown fields, a
// key given twice in one object (encoding/json would keep the last one
// silently) and trailing data.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, v any) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, bodyError(err)
		}
		return nil, apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body was cut short: send it again")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, bodyError(io.EOF)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, apiError(http.StatusUnsupportedMediaType, dmsapi.CodeInvalid,
			"the body is of type %q: send JSON with Content-Type: application/json", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body holds more than one JSON value: send one object")
	}
	var de *dupkey.Error
	if err := dupkey.Check(body); errors.As(err, &de) {
		return nil, apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "field %q is given twice in the body: send each field once", de.Path)
	}
	return body, nil
}

// checkURL refuses a path or query parameter that is not one line of
// UTF-8 text: the DMS stores no such name, and PostgreSQL cannot even
// look one up.
func checkURL(r *http.Request) error {
	if err := jobs.CheckName(r.URL.Path, maxURLText); err != nil {
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the path %v", err)
	}
	for name, values := range r.URL.Query() {
		if err := jobs.CheckName(name, jobs.MaxNameLen); err != nil {
			return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "a query parameter's name %v", err)
		}
		for _, v := range values {
			if err := jobs.CheckName(v, maxURLText); err != nil {
				return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "query parameter %q %v", name, err)
			}
		}
	}
	return nil
}

// maxURLText bounds the path and each query parameter's value.
const maxURLText = 2048

// bodyError says what is wrong with a JSON body, naming the field.
func bodyError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body is empty: send a JSON object (see docs/api.md)")
	case errors.As(err, &mbe):
		return apiError(http.StatusRequestEntityTooLarge, dmsapi.CodeInvalid, "the body is larger than %d bytes: send less at once", mbe.Limit)
	case errors.As(err, &syn):
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body is not valid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body ends in the middle of its JSON: send the whole object")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body is JSON %s, not an object", typ.Value)
		}
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "field %q is a JSON %s; it must be a %s", field, typ.Value, jsonKind(typ.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "%s is not a field of this call: check its spelling against docs/api.md",
			strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the body cannot be read as this call's JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "number"
	case goKind == "struct", goKind == "map":
		return "object"
	case goKind == "slice", goKind == "array":
		return "list"
	case goKind == "bool":
		return "boolean (true or false)"
	}
	return goKind
}

// requestInfo is what the log line of a request learns as it is served.
type requestInfo struct {
	principal dms.Principal
	status    int
	bytes     int64
}

type infoKey struct{}

// info returns the request's log record; requests that did not come
// through logRequests get a throwaway one.
func info(r *http.Request) *requestInfo {
	if ri, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// recorder notes the status and size of an answer.
type recorder struct {
	http.ResponseWriter
	ri *requestInfo
}

func (rw *recorder) WriteHeader(code int) {
	if rw.ri.status == 0 {
		rw.ri.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.ri.status == 0 {
		rw.ri.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.ri.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// logRequests writes one line per request: method, path, status,
// duration, size, and the key that made it. Never a header's value,
// never a body.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, ri))
		next.ServeHTTP(&recorder{ResponseWriter: w, ri: ri}, r)
		if ri.status == 0 {
			ri.status = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", ri.status),
			slog.Duration("duration", time.Since(start)),
			slog.Int64("bytes", ri.bytes),
			slog.String("remote", r.RemoteAddr),
		}
		if p := ri.principal; p.KeyID != "" {
			attrs = append(attrs, slog.String("key", p.KeyID), slog.String("role", string(p.Role)))
		}
		level := slog.LevelInfo
		if ri.status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}
