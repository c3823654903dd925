// Package dmsapi holds the wire types of the device-management service's
// HTTP API (docs/api.md) that the DMS server and the station's upstream
// client share: paths, the error body and its codes, and the bodies of the
// calls a station makes. It does no I/O.
package dmsapi

import (
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// Paths of the station's calls. {id} and {station} are path values.
const (
	PathHealth    = "/healthz"
	PathWorkOrder = "/v1/work-orders/{id}"
	PathArtifact  = "/v1/artifacts/{sha256}"
	PathPreflight = "/v1/preflight"
	PathActivate  = "/v1/activate"
	PathLock      = "/v1/lock"
	PathComplete  = "/v1/complete"
	PathEvents    = "/v1/stations/{station}/events"
	PathClaim     = "/v1/claim"
)

// Error is the body of every error response.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong: a code for programs, a message for
// people that says what to do, never holding a secret.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the value a 422 refuses, as a JSON path ("name",
	// "artifacts[0].url"); for an event of a batch, the path within the
	// event ("error", "data.banner").
	Field string `json:"field,omitempty"`
	// Seq is the sequence number of the event a 422 to an events batch
	// refuses: the station keeps that event and sends the others.
	Seq int64 `json:"seq,omitempty"`
}

// Error codes, with the HTTP status each comes with.
const (
	CodeUnauthenticated = "unauthenticated"  // 401: no key, unknown or revoked key
	CodeForbidden       = "forbidden"        // 403: the key's role may not do this
	CodeNotFound        = "not_found"        // 404
	CodeInvalid         = "invalid"          // 400 or 422: malformed or invalid input
	CodeExists          = "exists"           // 409: id, code or version taken
	CodeInUse           = "in_use"           // 409: e.g. a product that has devices
	CodeStageChange     = "stage_change"     // 409: production never returns to development
	CodeTokenSpent      = "token_spent"      // 409
	CodeTokenExpired    = "token_expired"    // 409
	CodeTokenRevoked    = "token_revoked"    // 409
	CodeTokenInvalid    = "token_invalid"    // 409: unknown token, or another product's
	CodeLockedElsewhere = "locked_elsewhere" // 409: the device is locked to another product
	CodeArchived        = "archived"         // 409: archived product, new device
	CodePurchaseOrder   = "purchase_order"   // 409: purchase order unknown, other product, or filled
	CodeNotActivated    = "not_activated"    // 409: lock or complete before activation
	CodeUnavailable     = "unavailable"      // 503: storage failing; retry later
	CodeInternal        = "internal"         // 500
)

// WorkOrder is the body of GET /v1/work-orders/{id}: the work order with
// product and bundle filled in, artifact URLs relative to the DMS
// (/v1/artifacts/<sha256>), and no token secret. TokenID names the token
// that authorizes it, when a token does: whoever runs it supplies the
// secret. Stations are the stations it is assigned to. Done is how many
// devices the DMS holds as completed by the work order, on every
// station, when it was read.
type WorkOrder struct {
	jobs.WorkOrder
	TokenID  string   `json:"token_id,omitempty"`
	Stations []string `json:"stations,omitempty"`
	Done     int      `json:"done"`
}

// ActivateRequest is the body of POST /v1/activate. Unlike
// jobs.ActivateRequest, whose Secret never marshals, it carries the token's
// value: it is the one place the secret leaves the station, over the
// station's connection to the DMS.
type ActivateRequest struct {
	WorkOrder       string             `json:"work_order"`
	Product         string             `json:"product"`
	HardwareID      flasher.HardwareID `json:"hardware_id"`
	FirmwareVersion string             `json:"firmware_version"`
	Token           string             `json:"token,omitempty"`
	PurchaseOrder   string             `json:"purchase_order,omitempty"`
	Station         string             `json:"station,omitempty"`
}

// ClaimRequest is the body of POST /v1/claim, the one call a holder of an
// activation token can make with no API key: what a device runs as
// "dms claim <product-code> <token>".
type ClaimRequest struct {
	Product         string             `json:"product"`
	Token           string             `json:"token"`
	HardwareID      flasher.HardwareID `json:"hardware_id"`
	FirmwareVersion string             `json:"firmware_version,omitempty"`
}

// IngestRequest is the body of POST /v1/stations/{station}/events: a batch
// of the station's journal events, in sequence order.
type IngestRequest struct {
	Events []journal.Event `json:"events"`
}

// IngestResponse says what the DMS did with a batch. Every event of an
// accepted batch is stored, once: the station may move its cursor past
// the batch.
type IngestResponse struct {
	Stored     int   `json:"stored"`
	Duplicates int   `json:"duplicates"`
	LastSeq    int64 `json:"last_seq"`
}

// Bodies reused as they are: POST /v1/preflight takes a
// jobs.PreflightRequest and answers a jobs.Verdict; POST /v1/activate
// answers a jobs.Activation; POST /v1/lock takes a jobs.LockRequest and
// POST /v1/complete a jobs.CompleteRequest, both answering 204.
