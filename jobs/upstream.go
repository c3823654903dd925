package jobs

import (
	"context"
	"errors"

	"github.com/station-dev/station/flasher"
)

// Upstream is what the pipeline asks of the device-management service (DMS).
// The reference DMS in station/dms implements it, in process or over HTTP.
// Every method is safe for concurrent use.
type Upstream interface {
	// Preflight asks what the DMS knows of a device before anything is
	// written to it.
	Preflight(ctx context.Context, req PreflightRequest) (Verdict, error)
	// Activate claims the device for the work order's product with the
	// work order's authorization, and returns its serial number. Claiming
	// is idempotent per device: the same device claimed again uses no
	// second claim.
	Activate(ctx context.Context, req ActivateRequest) (Activation, error)
	// Lock records that the device is locked to the product.
	Lock(ctx context.Context, req LockRequest) error
	// Complete records that the work order finished the device, so that a
	// later preflight, on any station, answers Done.
	Complete(ctx context.Context, req CompleteRequest) error
}

// CompleteRequest records a device as finished by a work order.
type CompleteRequest struct {
	WorkOrder  string             `json:"work_order"`
	HardwareID flasher.HardwareID `json:"hardware_id"`
	Serial     string             `json:"serial"`
}

// PreflightRequest names a device and the work order about to flash it.
type PreflightRequest struct {
	WorkOrder  string             `json:"work_order"`
	Product    string             `json:"product"`
	HardwareID flasher.HardwareID `json:"hardware_id"`
}

// Verdict is the DMS's answer to a preflight.
type Verdict struct {
	// Known reports that the DMS has seen the device before.
	Known bool `json:"known"`
	// Product is the product the device is activated to, if any.
	Product string `json:"product,omitempty"`
	// Locked reports that the device is locked to Product.
	Locked bool `json:"locked"`
	// Serial is the serial number the DMS assigned, if any.
	Serial string `json:"serial,omitempty"`
	// FirmwareVersion is the last version recorded for the device.
	FirmwareVersion string `json:"firmware_version,omitempty"`
	// Done reports that this work order already completed the device.
	Done bool `json:"done"`
	// Refusal, when not empty, says why the device must not be touched
	// by this work order, in an operator's words.
	Refusal string `json:"refusal,omitempty"`
}

// ActivateRequest claims a device for a product.
type ActivateRequest struct {
	WorkOrder       string             `json:"work_order"`
	Product         string             `json:"product"`
	HardwareID      flasher.HardwareID `json:"hardware_id"`
	FirmwareVersion string             `json:"firmware_version"`
	// Token authorizes the claim; it is never logged or journaled.
	Token Secret `json:"token,omitzero"`
	// PurchaseOrder authorizes the claim instead of a token.
	PurchaseOrder string `json:"purchase_order,omitempty"`
	// Station names the station making the claim.
	Station string `json:"station,omitempty"`
}

// Activation is the result of a claim.
type Activation struct {
	// Serial is the serial number the DMS assigned to the device.
	Serial string `json:"serial"`
	// Locked reports that the DMS locked the device to the product.
	Locked bool `json:"locked"`
	// Repeat reports that the device was already claimed for this
	// product, so no new claim was used.
	Repeat bool `json:"repeat"`
	// ClaimsLeft is how many claims the token has left, -1 if unknown
	// or not a token.
	ClaimsLeft int `json:"claims_left"`
}

// LockRequest records a device as locked to a product.
type LockRequest struct {
	WorkOrder  string             `json:"work_order"`
	Product    string             `json:"product"`
	HardwareID flasher.HardwareID `json:"hardware_id"`
}

// Errors an Upstream returns, wrapped with details. The pipeline and the
// operator's messages tell them apart with errors.Is.
var (
	// ErrPrinterUnavailable means the label printer cannot print now
	// (out of paper, head open, paused, no answer): the label step waits
	// for it, saying why.
	ErrPrinterUnavailable = errors.New("label printer cannot print now")
	// ErrReadBack means the DMS acknowledged a claim or a lock that it
	// does not hold when asked again.
	ErrReadBack = errors.New("the DMS does not hold what it acknowledged")
	// ErrUnavailable means the DMS could not be reached. Steps that need
	// it fail and can be retried once it is back.
	ErrUnavailable = errors.New("device-management service unreachable")
	// ErrTokenSpent means the activation token has no claims left.
	ErrTokenSpent = errors.New("activation token has no claims left")
	// ErrTokenExpired means the activation token is past its expiry.
	ErrTokenExpired = errors.New("activation token has expired")
	// ErrTokenRevoked means the activation token was revoked.
	ErrTokenRevoked = errors.New("activation token was revoked")
	// ErrTokenInvalid means the token is unknown or belongs to another
	// product.
	ErrTokenInvalid = errors.New("activation token is not valid for this product")
	// ErrLockedElsewhere means the device is locked to another product.
	ErrLockedElsewhere = errors.New("device is locked to another product")
	// ErrArchived means the product is archived and takes no new devices.
	ErrArchived = errors.New("product is archived")
	// ErrUnauthorized means the station's credentials were refused.
	ErrUnauthorized = errors.New("not authorized")
	// ErrNotFound means the DMS does not know the work order, product or
	// device named.
	ErrNotFound = errors.New("not found")
)
