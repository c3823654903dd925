// Package localapi is the station daemon's local API: the wire types, the
// HTTP handler the daemon serves (on a unix socket, and optionally on
// loopback with a key) and the client the kiosk uses. The API is
// documented in docs/local-api.md.
//
// The kiosk imports this package, so it must stay free of SQLite, serial,
// USB and flasher code: it imports nothing of the station but itself.
package localapi

import (
	"context"
	"errors"
	"io"
	"time"
)

// Paths of the local API.
const (
	PathState     = "GET /v1/state"
	PathEvents    = "GET /v1/events" // server-sent events
	PathLoad      = "POST /v1/work-order"
	PathStart     = "POST /v1/start"
	PathPause     = "POST /v1/pause"
	PathStop      = "POST /v1/stop"
	PathRetry     = "POST /v1/slots/{slot}/retry"
	PathSkip      = "POST /v1/slots/{slot}/skip"
	PathOverride  = "POST /v1/slots/{slot}/override"
	PathReprint   = "POST /v1/slots/{slot}/reprint"
	PathLabel     = "GET /v1/slots/{slot}/label.png"
	PathSignIn    = "POST /v1/sign-in"
	PathSignOut   = "POST /v1/sign-out"
	PathDevices   = "GET /v1/devices"
	PathDeviceLog = "GET /v1/devices/{device}/log"
	PathExport    = "GET /v1/export"
	// PathExportSigned answers the signed QA export that "station export"
	// writes (devices.csv, events, transcripts, the signed manifest) as
	// one tar archive.
	PathExportSigned = "GET /v1/export/signed"
	// PathMetrics serves Prometheus metrics in the text format 0.0.4,
	// when HandlerOptions.Metrics is set.
	PathMetrics = "GET /metrics"
)

// MetricsContentType is the Content-Type of GET /metrics: the Prometheus
// text exposition format 0.0.4.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// RunState is what the station is doing with its work order.
type RunState string

// Run states.
const (
	// RunIdle: no work order loaded.
	RunIdle RunState = "idle"
	// RunReady: a work order is loaded and not started.
	RunReady RunState = "ready"
	// RunRunning: plugged devices are worked on as they come.
	RunRunning RunState = "running"
	// RunPaused: devices at work finish; no new device starts.
	RunPaused RunState = "paused"
	// RunStopping: devices at work are being stopped.
	RunStopping RunState = "stopping"
	// RunComplete: the work order's quantity is done.
	RunComplete RunState = "complete"
)

// SlotStatus is a slot's state as the operator sees it.
type SlotStatus string

// Slot statuses.
const (
	SlotEmpty   SlotStatus = "empty"   // no device plugged in
	SlotReady   SlotStatus = "ready"   // a device is plugged in, waiting for start
	SlotRunning SlotStatus = "running" // the pipeline is working on the device
	SlotWaiting SlotStatus = "waiting" // running, but waiting (the DMS, the printer)
	SlotPassed  SlotStatus = "passed"  // done: remove the board and plug the next one
	SlotFailed  SlotStatus = "failed"  // Reason says why
	SlotSkipped SlotStatus = "skipped" // the operator skipped it before it ran
	// SlotOverridden: the device failed and a supervisor accepted it;
	// Reason says who and why. It is not a pass: the device did not
	// finish the pipeline.
	SlotOverridden SlotStatus = "overridden"
	// SlotRemoved: the device was unplugged while it was worked on;
	// Reason says what to do. Plugged back in, it carries on from its last
	// passed step.
	SlotRemoved SlotStatus = "removed"
)

// State is everything the kiosk shows: GET /v1/state, and the "state"
// event of the stream.
type State struct {
	Station   string     `json:"station"`
	Version   string     `json:"version"`
	Run       RunState   `json:"run"`
	WorkOrder *WorkOrder `json:"work_order,omitempty"`
	Counts    Counts     `json:"counts"`
	Slots     []Slot     `json:"slots"`
	DMS       Link       `json:"dms"`
	Printer   Link       `json:"printer"`
	Operator  *Operator  `json:"operator,omitempty"`
	// Alerts are what the operator must know now, most urgent first.
	Alerts []Alert `json:"alerts,omitempty"`
	// Can says which of the station's commands the daemon takes now from
	// the one signed in, and why not.
	Can  Commands  `json:"can"`
	Time time.Time `json:"time"`
}

// Allowed says whether the daemon takes a command now from the one signed
// in; Why says why not, in an operator's words.
type Allowed struct {
	OK  bool   `json:"ok"`
	Why string `json:"why,omitempty"`
}

// Commands are the station's commands, as State.Can reports them. Stop
// needs a supervisor signed in (and, in the request, their own PIN or
// badge).
type Commands struct {
	Load  Allowed `json:"load"`
	Start Allowed `json:"start"`
	Pause Allowed `json:"pause"`
	Stop  Allowed `json:"stop"`
}

// SlotCommands are a slot's commands, as Slot.Can reports them. Override
// needs a supervisor signed in (and, in the request, their own PIN or
// badge).
type SlotCommands struct {
	Retry    Allowed `json:"retry"`
	Skip     Allowed `json:"skip"`
	Override Allowed `json:"override"`
	Reprint  Allowed `json:"reprint"`
}

// WorkOrder is the loaded work order, as the header shows it.
type WorkOrder struct {
	ID            string `json:"id"`
	Product       string `json:"product"`
	ProductName   string `json:"product_name"`
	PartNumber    string `json:"part_number"`
	BundleVersion string `json:"bundle_version"`
	BundleTag     string `json:"bundle_tag"`
	Quantity      int    `json:"quantity"`
}

// Counts are the work order's totals, across runs and restarts, derived
// from the journal and from the same slot states the tiles show.
type Counts struct {
	// Done counts the devices that finished the pipeline, toward the
	// quantity.
	Done int `json:"done"`
	// Passed counts the devices that finished the pipeline without a
	// supervisor's override: Done.
	Passed int `json:"passed"`
	// Overridden counts the failed devices a supervisor accepted. They
	// are not done.
	Overridden int `json:"overridden"`
	// Failed counts the slots whose device failed or was removed while
	// it was worked on: one for each slot of status failed or removed.
	Failed int `json:"failed"`
	// SetAside counts the failed devices no longer in a slot (taken out,
	// or their slot holds another device since).
	SetAside int `json:"set_aside"`
	// Yield is passed over passed, overridden, failed and set aside, 0
	// to 1; 0 before any.
	Yield float64 `json:"yield"`
}

// Slot is one slot of the fixture.
type Slot struct {
	Name   string     `json:"name"`
	Status SlotStatus `json:"status"`
	// Step is the pipeline step at work (identify, preflight, flash ...).
	Step string `json:"step,omitempty"`
	// Progress is the step's progress, 0 to 1, when it has any.
	Progress float64 `json:"progress,omitempty"`
	Device   string  `json:"device,omitempty"`
	Serial   string  `json:"serial,omitempty"`
	// Started is when the device's run began; the kiosk shows the time
	// elapsed since.
	Started time.Time `json:"started,omitzero"`
	// Elapsed is the run's length once it ended.
	Elapsed time.Duration `json:"elapsed,omitempty"`
	// Reason says why the slot failed or was skipped, or what it waits
	// for, in an operator's words.
	Reason string `json:"reason,omitempty"`
	// Seq increases with every change of the slot.
	Seq int64 `json:"seq"`
	// Changed is when the slot last changed, on the daemon's clock: the
	// kiosk measures how long a change takes to reach the screen.
	Changed time.Time `json:"changed,omitzero"`
	// Can says which of the slot's commands the daemon takes now from
	// the one signed in, and why not.
	Can SlotCommands `json:"can"`
}

// Link is the state of a connection the station needs.
type Link struct {
	OK bool `json:"ok"`
	// Detail says what is wrong, or how far things are ("3 events to
	// sync").
	Detail string `json:"detail,omitempty"`
}

// Operator is who is signed in.
type Operator struct {
	Name       string    `json:"name"`
	Supervisor bool      `json:"supervisor"`
	Since      time.Time `json:"since"`
}

// AlertLevel orders alerts.
type AlertLevel string

// Alert levels.
const (
	AlertError   AlertLevel = "error"
	AlertWarning AlertLevel = "warning"
	AlertInfo    AlertLevel = "info"
)

// Alert is a message for the operator: what happened and what to do.
type Alert struct {
	Level   AlertLevel `json:"level"`
	Code    string     `json:"code"` // token_spent, dms_offline, printer_paper, device_failed ...
	Message string     `json:"message"`
	Slot    string     `json:"slot,omitempty"`
}

// Event is one message of the event stream (GET /v1/events): "state"
// carries a whole State (sent first, and after a reconnect), "slot" one
// Slot that changed, "alert" the current alerts and counts.
type Event struct {
	Type  string `json:"type"`
	State *State `json:"state,omitempty"`
	Slot  *Slot  `json:"slot,omitempty"`
	// Counts and Run come with "slot" and "alert" events, so that the
	// header follows the slots; Alerts and Can with "alert" events,
	// sent whenever they change. A "slot" event may carry them too; one
	// that does not leaves them as they were.
	Counts *Counts   `json:"counts,omitempty"`
	Run    RunState  `json:"run,omitempty"`
	Alerts []Alert   `json:"alerts,omitempty"`
	Can    *Commands `json:"can,omitempty"`
	Time   time.Time `json:"time"`
}

// LoadRequest is the body of POST /v1/work-order: a work order id, or
// what a barcode scanner typed (the id, possibly with a prefix such as
// "WO:").
type LoadRequest struct {
	Ref string `json:"ref"`
}

// SignInRequest is the body of POST /v1/sign-in: the operator's PIN typed
// on the screen, or a badge scanned. Operator, when given, names who
// signs in: the PIN or badge is then checked against that operator only,
// and wrong ones count against that operator as well as against the
// client (see docs/local-api.md, "Wrong PINs").
type SignInRequest struct {
	Operator string `json:"operator,omitempty"`
	PIN      string `json:"pin,omitempty"`
	Badge    string `json:"badge,omitempty"`
}

// Credential is a supervisor's own PIN or badge, carried by the request of
// every supervisor action: who is signed in at the station does not
// authorize one. Operator optionally names the supervisor, as in
// SignInRequest.
type Credential = SignInRequest

// StopRequest is the body of POST /v1/stop.
type StopRequest struct {
	Supervisor Credential `json:"supervisor"`
}

// OverrideRequest is the body of POST /v1/slots/{slot}/override.
type OverrideRequest struct {
	Reason     string     `json:"reason"`
	Supervisor Credential `json:"supervisor"`
}

// DeviceQuery selects devices for the QA view and exports (query
// parameters of GET /v1/devices and GET /v1/export).
type DeviceQuery struct {
	WorkOrder string    `json:"work_order,omitempty"`
	Device    string    `json:"device,omitempty"` // hardware id or serial, or a part of one
	Result    string    `json:"result,omitempty"` // done, failed, interrupted, in_progress
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	Limit     int       `json:"limit,omitempty"`
}

// DeviceRow is one device in one work order, for the QA view.
type DeviceRow struct {
	WorkOrder string `json:"work_order"`
	Device    string `json:"device"`
	Serial    string `json:"serial,omitempty"`
	Slot      string `json:"slot,omitempty"`
	Result    string `json:"result"`
	LastStep  string `json:"last_step,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Attempts counts the runs of the pipeline on the device.
	Attempts int `json:"attempts"`
	// Operator is who was signed in when the device's last run started.
	Operator string `json:"operator,omitempty"`
	// Override says who accepted the failed device and why, if anyone
	// did.
	Override string    `json:"override,omitempty"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// LogLine is one step event of a device's log.
type LogLine struct {
	Seq       int64         `json:"seq"`
	Time      time.Time     `json:"time"`
	WorkOrder string        `json:"work_order,omitempty"`
	Slot      string        `json:"slot,omitempty"`
	Step      string        `json:"step"`
	Status    string        `json:"status"`
	Attempt   int           `json:"attempt,omitempty"`
	Duration  time.Duration `json:"duration,omitempty"`
	Operator  string        `json:"operator,omitempty"`
	Message   string        `json:"message,omitempty"`
}

// Error is the body of every error response, as the DMS's: a code for
// programs and a message for the operator.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong and what to do.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, with code "wait", is how many seconds to wait before
	// the next try (also in the Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
}

// Error codes, with their HTTP statuses.
const (
	CodeInvalid       = "invalid"        // 400: malformed request
	CodeUnauthorized  = "unauthorized"   // 401: loopback without the key
	CodeSignIn        = "sign_in"        // 403: no operator signed in
	CodeSupervisor    = "supervisor"     // 403: a supervisor must sign in
	CodeNotFound      = "not_found"      // 404: no such slot, device or work order
	CodeState         = "state"          // 409: not now (start while running, load while running ...)
	CodeUnavailable   = "unavailable"    // 503: the DMS cannot be reached (loading a work order)
	CodeInternal      = "internal"       // 500
	CodeWrongPIN      = "wrong_pin"      // 403: unknown PIN or badge
	CodeWait          = "wait"           // 429: too many wrong PINs from this client or for this operator: wait retry_after seconds
	CodeLockedOut     = "locked_out"     // 403: too many wrong PINs: locked until a supervisor signs in here
	CodeWorkOrder     = "work_order"     // 422: the work order cannot run (invalid, token missing, archived)
	CodeNoWorkOrder   = "no_work_order"  // 409: start without a loaded work order
	CodeNothingToDo   = "nothing_to_do"  // 409: retry a slot that has not failed
	CodeAlreadyLoaded = "already_loaded" // 409: another work order is running: stop it first
)

// Errors a Controller returns, wrapped with the operator's message. The
// handler maps them to codes.
var (
	ErrInvalid      = errors.New("invalid request")
	ErrSignIn       = errors.New("no operator is signed in")
	ErrSupervisor   = errors.New("a supervisor must sign in for this")
	ErrWrongPIN     = errors.New("unknown PIN or badge")
	ErrWait         = errors.New("too many wrong PINs: wait before the next try")
	ErrLockedOut    = errors.New("too many wrong PINs: locked until a supervisor clears it")
	ErrNotFound     = errors.New("not found")
	ErrState        = errors.New("not possible now")
	ErrNoWorkOrder  = errors.New("no work order is loaded")
	ErrWorkOrder    = errors.New("the work order cannot run")
	ErrUnavailable  = errors.New("the DMS cannot be reached")
	ErrNothingToDo  = errors.New("nothing to do")
	ErrAlreadyRuns  = errors.New("another work order is loaded")
	ErrUnauthorized = errors.New("the local API key is missing or wrong")
)

// WaitError is ErrWait with the time to wait: the answer to a PIN or
// badge tried too soon after too many wrong ones.
type WaitError struct {
	// Delay is how long to wait before the next try.
	Delay time.Duration
	// Message says so in the operator's words.
	Message string
}

func (e *WaitError) Error() string { return e.Message }

// Unwrap makes a WaitError match ErrWait.
func (e *WaitError) Unwrap() error { return ErrWait }

// RetryAfter returns Delay in whole seconds, rounded up: the Retry-After
// of the answer.
func (e *WaitError) RetryAfter() int {
	return int((e.Delay + time.Second - 1) / time.Second)
}

// Controller is what the daemon does for the API. Every method is safe for
// concurrent use. Commands that change the run need an operator signed in
// (ErrSignIn); Stop and Override need a supervisor's own credential in the
// request (ErrSupervisor), whoever is signed in. Wrong PINs and badges are
// limited per client (PeerOf) and per named operator: ErrWait, then
// ErrLockedOut.
type Controller interface {
	// State returns the whole state now.
	State(ctx context.Context) State
	// Watch returns a channel of events that starts with a "state" event
	// and is closed when ctx ends. A slow reader loses intermediate slot
	// changes, never the latest one.
	Watch(ctx context.Context) <-chan Event
	// Load loads a work order by id or scanned barcode.
	Load(ctx context.Context, ref string) error
	Start(ctx context.Context) error
	Pause(ctx context.Context) error
	// Stop stops the devices at work and unloads the work order; sup is
	// the supervisor's own PIN or badge.
	Stop(ctx context.Context, sup Credential) error
	// Retry runs a failed slot's device again; it resumes from its last
	// passed step.
	Retry(ctx context.Context, slot string) error
	// Skip leaves a slot alone until its device is unplugged.
	Skip(ctx context.Context, slot string) error
	// Override marks a failed device as accepted by a supervisor, with a
	// reason recorded in the journal; sup is the supervisor's own PIN or
	// badge.
	Override(ctx context.Context, slot, reason string, sup Credential) error
	// Reprint prints the label of the slot's last device again, from the
	// journal.
	Reprint(ctx context.Context, slot string) error
	// LabelPNG renders the label of the slot's last device as the
	// printer prints it, for the kiosk's preview.
	LabelPNG(ctx context.Context, slot string) ([]byte, error)
	SignIn(ctx context.Context, req SignInRequest) (Operator, error)
	SignOut(ctx context.Context) error
	Devices(ctx context.Context, q DeviceQuery) ([]DeviceRow, error)
	DeviceLog(ctx context.Context, device string) ([]LogLine, error)
	// Export writes the selected devices' events as JSON lines (tokens
	// and secrets redacted).
	Export(ctx context.Context, q DeviceQuery, w io.Writer) error
	// ExportSigned writes the selected devices' signed QA export, as
	// "station export" writes it into a folder, as a tar archive.
	ExportSigned(ctx context.Context, q DeviceQuery, w io.Writer) error
}
