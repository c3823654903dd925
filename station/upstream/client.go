package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// DefaultTimeout bounds one call to the DMS (not an artifact download),
// on top of the caller's context, when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// errCallTimeout is the cause of a call's context when its timeout
// passes.
var errCallTimeout = errors.New("the DMS did not answer in time")

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Config configures a Client.
type Config struct {
	// URL is the DMS's base URL, as in https://dms.example.com; a path
	// prefix is kept (https://host/dms/ serves /dms/v1/...).
	URL string
	// Key is the station's API key (dmk_…). It is sent to the DMS's own
	// host only, and never logged or put in an error.
	Key jobs.Secret
	// Station is the station's id, the {station} of the events path.
	Station string
	// HTTP is the client whose transport, redirect policy and cookies
	// are used; nil means http.DefaultClient's, and a nil Transport
	// means http.DefaultTransport's settings keeping an idle connection
	// per slot (see dmsTransport). Its Timeout is ignored:
	// calls are bounded by RequestTimeout, downloads by their context.
	HTTP *http.Client
	// Timeout bounds each call (not artifact downloads) on top of the
	// caller's context; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives debug lines per call; nil discards.
	Logger *slog.Logger
}

// Client is the station's client of the DMS HTTP API. It implements
// jobs.Upstream and is safe for concurrent use.
type Client struct {
	base    *url.URL // without query, fragment or user info; path without trailing slash
	shown   string   // base as it may appear in messages
	station string
	timeout time.Duration
	http    *http.Client // adds the key for the DMS's host
	log     *slog.Logger
}

var (
	_ jobs.Upstream    = (*Client)(nil)
	_ jobs.DoneCounter = (*Client)(nil)
)

// New returns a client of the DMS at cfg.URL.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("upstream: no DMS URL: give the DMS's base URL, as in https://dms.example.com")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: DMS URL %q is not an http or https URL: give the DMS's base URL, as in https://dms.example.com", redactURL(cfg.URL))
	}
	if u.User != nil {
		return nil, fmt.Errorf("upstream: DMS URL %s holds a user name or password: remove it and give the station's API key instead", redactURL(cfg.URL))
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("upstream: no API key: the DMS administrator creates a station key (POST /v1/keys with role station) and the station reads it from its key file")
	}
	if cfg.Station == "" {
		return nil, errors.New("upstream: no station id: give the id the station's API key was made for")
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
	hc := cfg.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	rt := hc.Transport
	if rt == nil {
		rt = dmsTransport()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{
		base:    base,
		shown:   base.String(),
		station: cfg.Station,
		timeout: timeout,
		http: &http.Client{
			Transport:     &authTransport{next: rt, scheme: base.Scheme, host: canonicalHost(base), key: cfg.Key},
			CheckRedirect: hc.CheckRedirect,
			Jar:           hc.Jar,
		},
		log: logger,
	}, nil
}

// Station returns the station id the client was made for.
func (c *Client) Station() string { return c.station }

// URL returns the DMS's base URL, as it may appear in messages.
func (c *Client) URL() string { return c.shown }

// HTTPClient returns a client that adds the station's key to requests
// for the DMS's own scheme and host, and to no other: an artifact
// download from the DMS carries the key, a redirect to another host does
// not. It has no timeout; bound downloads with their context.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Preflight asks the DMS what it knows of a device (POST /v1/preflight).
func (c *Client) Preflight(ctx context.Context, req jobs.PreflightRequest) (jobs.Verdict, error) {
	var v jobs.Verdict
	if err := c.call(ctx, "preflight", http.MethodPost, dmsapi.PathPreflight, req, &v); err != nil {
		return jobs.Verdict{}, err
	}
	return v, nil
}

// Activate claims a device (POST /v1/activate). The token's value is
// sent in the body: the one place it leaves the station.
func (c *Client) Activate(ctx context.Context, req jobs.ActivateRequest) (jobs.Activation, error) {
	body := dmsapi.ActivateRequest{
		WorkOrder:       req.WorkOrder,
		Product:         req.Product,
		HardwareID:      req.HardwareID,
		FirmwareVersion: req.FirmwareVersion,
		Token:           req.Token.Reveal(),
		PurchaseOrder:   req.PurchaseOrder,
		Station:         req.Station,
	}
	if body.Station == "" {
		body.Station = c.station
	}
	var a jobs.Activation
	if err := c.call(ctx, "activate", http.MethodPost, dmsapi.PathActivate, body, &a); err != nil {
		return jobs.Activation{}, err
	}
	return a, nil
}

// Lock records the device as locked to the product (POST /v1/lock).
func (c *Client) Lock(ctx context.Context, req jobs.LockRequest) error {
	return c.call(ctx, "lock", http.MethodPost, dmsapi.PathLock, req, nil)
}

// Complete records that the work order finished the device
// (POST /v1/complete).
func (c *Client) Complete(ctx context.Context, req jobs.CompleteRequest) error {
	return c.call(ctx, "complete", http.MethodPost, dmsapi.PathComplete, req, nil)
}

// WorkOrder reads a work order (GET /v1/work-orders/{id}) with its
// product and bundle. Its artifacts' URLs are made absolute against the
// DMS's URL, ready for an artifact.Cache using HTTPClient. It holds no
// token secret: whoever runs it supplies the secret for TokenID.
func (c *Client) WorkOrder(ctx context.Context, id string) (dmsapi.WorkOrder, error) {
	var wo dmsapi.WorkOrder
	path := strings.Replace(dmsapi.PathWorkOrder, "{id}", url.PathEscape(id), 1)
	if err := c.call(ctx, "read work order "+id, http.MethodGet, path, nil, &wo); err != nil {
		return dmsapi.WorkOrder{}, err
	}
	for i, a := range wo.Bundle.Artifacts {
		abs, err := c.resolve(a.URL)
		if err != nil {
			return dmsapi.WorkOrder{}, fmt.Errorf("read work order %s: artifact %s has url %q: %w", id, a.Name, redactURL(a.URL), err)
		}
		wo.Bundle.Artifacts[i].URL = abs
	}
	return wo, nil
}

// WorkOrderDone returns how many devices the DMS holds as completed by
// the work order, on every station (the "done" of GET
// /v1/work-orders/{id}).
func (c *Client) WorkOrderDone(ctx context.Context, workOrder string) (int, error) {
	wo, err := c.WorkOrder(ctx, workOrder)
	if err != nil {
		return 0, err
	}
	return wo.Done, nil
}

// ingest sends a batch of the station's events (POST
// /v1/stations/{station}/events).
func (c *Client) ingest(ctx context.Context, req dmsapi.IngestRequest) (dmsapi.IngestResponse, error) {
	var resp dmsapi.IngestResponse
	path := strings.Replace(dmsapi.PathEvents, "{station}", url.PathEscape(c.station), 1)
	if err := c.call(ctx, "send journal events", http.MethodPost, path, req, &resp); err != nil {
		return dmsapi.IngestResponse{}, err
	}
	return resp, nil
}

// resolve makes an artifact URL absolute: a path starting with "/" is
// taken below the base URL's path (the DMS answers /v1/artifacts/...).
func (c *Client) resolve(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.IsAbs() {
		return s, nil
	}
	if strings.HasPrefix(u.Path, "/") && u.Host == "" {
		abs := *c.base
		abs.Path = c.base.Path + u.Path
		abs.RawQuery = u.RawQuery
		return abs.String(), nil
	}
	dir := *c.base
	dir.Path += "/"
	return dir.ResolveReference(u).String(), nil
}

// call sends one request with a JSON body (if in is not nil) and decodes
// a JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, op, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errCallTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	u := *c.base
	u.Path = c.base.Path + path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "station")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	c.log.Debug("dms call", "op", op, "method", method, "path", path, "status", resp.StatusCode, "took", time.Since(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.statusError(op, resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return c.transportError(ctx, op, err)
		}
		return fmt.Errorf("%s: the DMS at %s answered %s with a body that is not the expected JSON (%v): check that the URL names the DMS", op, c.shown, resp.Status, err)
	}
	return nil
}

// transportError words a failure to reach the DMS. A context the caller
// cancelled is returned as such; a timeout or a connection failure is
// jobs.ErrUnavailable.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	reason := err
	var ue *url.Error
	if errors.As(err, &ue) {
		reason = ue.Err // drop the URL, said once below
	}
	cause := context.Cause(ctx)
	if cause != nil && !errors.Is(cause, errCallTimeout) {
		// The caller stopped or ran out of time: not the DMS's fault.
		return fmt.Errorf("%s: %w", op, cause)
	}
	if cause != nil || isTimeout(err) {
		return fmt.Errorf("%s: the DMS at %s did not answer within %s; the station keeps flashing and retries: %w",
			op, c.shown, c.timeout, jobs.ErrUnavailable)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		reason = errors.New("the connection closed before the DMS answered")
	}
	return fmt.Errorf("%s: the DMS at %s cannot be reached: %v; the station keeps flashing and retries: %w",
		op, c.shown, reason, jobs.ErrUnavailable)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusError reads an error answer and maps its code to a sentinel.
func (c *Client) statusError(op string, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body dmsapi.Error
	_ = json.Unmarshal(raw, &body)
	e := &Error{Op: op, Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message,
		Field: body.Error.Field, Seq: body.Error.Seq}
	if e.Code == "" {
		e.Code = codeOfStatus(resp.StatusCode)
	}
	e.kind = sentinel(e.Code, resp.StatusCode)
	e.dms = c.shown
	return e
}

// codeOfStatus guesses a code for an answer with no error body (a proxy's
// page, for one).
func codeOfStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return dmsapi.CodeUnauthenticated
	case http.StatusForbidden:
		return dmsapi.CodeForbidden
	case http.StatusNotFound:
		return dmsapi.CodeNotFound
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return dmsapi.CodeUnavailable
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return dmsapi.CodeInvalid
	}
	return dmsapi.CodeInternal
}

// sentinel maps an error code to the jobs package's sentinel, or nil.
func sentinel(code string, status int) error {
	switch code {
	case dmsapi.CodeTokenSpent:
		return jobs.ErrTokenSpent
	case dmsapi.CodeTokenExpired:
		return jobs.ErrTokenExpired
	case dmsapi.CodeTokenRevoked:
		return jobs.ErrTokenRevoked
	case dmsapi.CodeTokenInvalid:
		return jobs.ErrTokenInvalid
	case dmsapi.CodeLockedElsewhere:
		return jobs.ErrLockedElsewhere
	case dmsapi.CodeArchived:
		return jobs.ErrArchived
	case dmsapi.CodeUnauthenticated, dmsapi.CodeForbidden:
		return jobs.ErrUnauthorized
	case dmsapi.CodeNotFound:
		return jobs.ErrNotFound
	case dmsapi.CodeUnavailable:
		return jobs.ErrUnavailable
	}
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return jobs.ErrUnavailable
	}
	return nil
}

// Error is an error answer of the DMS. errors.Is matches it against the
// jobs package's sentinel for its code (jobs.ErrTokenSpent for
// token_spent, jobs.ErrUnauthorized for unauthenticated and forbidden,
// ...); codes with no sentinel (invalid, purchase_order, not_activated,
// ...) are told apart by Code.
type Error struct {
	// Op is what the station was doing: "activate", "lock", ...
	Op string
	// Status is the HTTP status.
	Status int
	// Code is the error code (dmsapi.Code*).
	Code string
	// Message is the DMS's message, in an operator's words.
	Message string
	// Field names the value a 422 refused; Seq the event of a batch that
	// holds it (0 when none).
	Field string
	Seq   int64

	kind error  // the jobs sentinel, if any
	dms  string // the DMS's URL, for messages
}

// Error returns the DMS's message, prefixed with the operation.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	if errors.Is(e.kind, jobs.ErrUnavailable) {
		return fmt.Sprintf("%s: the DMS at %s cannot serve now (%s); the station keeps flashing and retries", e.Op, e.dms, msg)
	}
	switch e.Code {
	case dmsapi.CodeUnauthenticated:
		return fmt.Sprintf("%s: the DMS refused the station's API key (%s): check the station's key file, or ask the DMS administrator for a station key", e.Op, msg)
	case dmsapi.CodeForbidden:
		return fmt.Sprintf("%s: the DMS does not allow this station's key to do that (%s): ask the DMS administrator for a station key made for this station", e.Op, msg)
	}
	return e.Op + ": " + msg
}

// Unwrap returns the jobs sentinel for the code, if any.
func (e *Error) Unwrap() error { return e.kind }

// idleConns is how many idle connections to the DMS a client keeps: one
// per slot of a large fixture.
const idleConns = 64

// dmsTransport is http.DefaultTransport keeping idleConns idle
// connections to the DMS instead of two: every slot calls the DMS at the
// same steps, and with two kept the other calls would each open a new
// connection (over https, with a new TLS handshake).
func dmsTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = idleConns
	return t
}

// authTransport adds the API key to requests for one scheme and host.
type authTransport struct {
	next   http.RoundTripper
	scheme string
	host   string
	key    jobs.Secret
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != t.scheme || canonicalHost(req.URL) != t.host {
		if req.Header.Get("Authorization") != "" {
			// Never let the key leave for another host, whoever set it.
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
		}
		return t.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+t.key.Reveal())
	return t.next.RoundTrip(req)
}

// canonicalHost is u's host in lower case with its port, the scheme's
// default when none is given.
func canonicalHost(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(host, port)
}

// redactURL drops user info and the query, which may carry secrets.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unreadable url)"
	}
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}
