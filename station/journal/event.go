package journal

import (
	"encoding/json"
	"time"
)

// Kind says what an event is about.
type Kind string

// Event kinds.
const (
	// KindStep is a pipeline step of one device: started, then passed,
	// failed or skipped.
	KindStep Kind = "step"
	// KindWorkOrder is a work order being loaded, started, paused,
	// stopped or completed on this station.
	KindWorkOrder Kind = "work_order"
	// KindOperator is an operator signing in or out, or acting on a slot.
	KindOperator Kind = "operator"
	// KindStation is the station starting or stopping.
	KindStation Kind = "station"
)

// Status is the outcome an event records.
type Status string

// Statuses. A step is journaled as started, then as exactly one of passed,
// failed or skipped. A started step with no outcome was interrupted (the
// station crashed or was killed).
const (
	StatusStarted Status = "started"
	StatusPassed  Status = "passed"
	StatusFailed  Status = "failed"
	StatusSkipped Status = "skipped"
	// StatusInfo marks events that are not steps (work order loaded,
	// operator signed in).
	StatusInfo Status = "info"
)

// Event is one append-only record of the journal. Events are never
// updated or deleted; device and work-order state are derived from them.
type Event struct {
	// Seq is the station's sequence number, assigned by Append, starting
	// at 1 and increasing by one per event.
	Seq int64 `json:"seq"`
	// Station is the station's id, assigned by Append.
	Station string `json:"station"`
	// Time is when the event happened (UTC); Append fills it in if zero.
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	// WorkOrder, Slot and Device (hardware id) say what the event is
	// about; any may be empty.
	WorkOrder string `json:"work_order,omitempty"`
	Slot      string `json:"slot,omitempty"`
	Device    string `json:"device,omitempty"`
	// Operator is who was signed in at the station, if anyone.
	Operator string `json:"operator,omitempty"`
	// Step names the pipeline step (for KindStep) or the action
	// ("loaded", "started", "signed_in").
	Step   string `json:"step,omitempty"`
	Status Status `json:"status"`
	// Attempt counts runs of the step for this device in this work
	// order, from 1.
	Attempt int `json:"attempt,omitempty"`
	// Duration is how long the step took (on passed and failed events).
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Error says why a step failed or was skipped, in an operator's
	// words. It never holds a secret.
	Error string `json:"error,omitempty"`
	// Data holds the step's measurements as a JSON object. It never holds
	// a secret.
	Data json.RawMessage `json:"data,omitempty"`
}
