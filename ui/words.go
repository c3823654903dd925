package ui

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/station-dev/station/station/localapi"
)

// stepWords are the pipeline steps as a tile says them.
var stepWords = map[string]string{
	"identify":  "IDENTIFYING",
	"preflight": "CHECKING",
	"download":  "DOWNLOADING",
	"erase":     "ERASING",
	"flash":     "FLASHING",
	"verify":    "VERIFYING",
	"activate":  "ACTIVATING",
	"claim":     "ACTIVATING",
	"lock":      "LOCKING",
	"label":     "PRINTING",
	"print":     "PRINTING",
	"test":      "TESTING",
	"sync":      "SYNCING",
}

// statusWords says a slot's state in words, in capitals: "PASSED",
// "FLASHING 45 %", "FAILED", "WAITING FOR DMS", "EMPTY".
func statusWords(s localapi.Slot) string {
	switch s.Status {
	case localapi.SlotEmpty, "":
		return "EMPTY"
	case localapi.SlotReady:
		return "READY"
	case localapi.SlotPassed:
		return "PASSED"
	case localapi.SlotFailed:
		return "FAILED"
	case localapi.SlotSkipped:
		return "SKIPPED"
	case localapi.SlotWaiting:
		r := strings.ToLower(s.Reason + " " + s.Step)
		switch {
		case strings.Contains(r, "dms"):
			return "WAITING FOR DMS"
		case strings.Contains(r, "print") || strings.Contains(r, "label") || strings.Contains(r, "paper"):
			return "WAITING FOR PRINTER"
		}
		return "WAITING"
	case localapi.SlotRunning:
		w := stepWords[strings.ToLower(s.Step)]
		if w == "" {
			w = strings.ToUpper(s.Step)
		}
		if w == "" {
			w = "RUNNING"
		}
		if s.Progress > 0 {
			w += fmt.Sprintf(" %d %%", int(math.Round(math.Min(s.Progress, 1)*100)))
		}
		return w
	}
	return strings.ToUpper(string(s.Status))
}

// elapsedText returns how long a slot's device has been at work, or how
// long its run took; "" when there is nothing to say.
func elapsedText(s localapi.Slot, now time.Time) string {
	var d time.Duration
	switch {
	case s.Elapsed > 0:
		d = s.Elapsed
	case !s.Started.IsZero() && (s.Status == localapi.SlotRunning || s.Status == localapi.SlotWaiting):
		d = now.Sub(s.Started)
	default:
		return ""
	}
	return formatDuration(d)
}

// formatDuration says a duration as m:ss, or h:mm:ss.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// alertWords says an alert in the operator's words: the daemon's message,
// or, when it sent none, what its code means and what to do.
func alertWords(a localapi.Alert) string {
	msg := a.Message
	if short := operatorPart(msg); a.Code == "device_failed" && a.Slot != "" && short != msg {
		// The whole chain is in the device view; the banner says what
		// happened and what to do.
		return "Slot " + a.Slot + " failed: " + short
	}
	if msg == "" {
		switch a.Code {
		case "token_spent":
			msg = "The activation token is used up: no more devices can be activated. Ask the planner for a new token."
		case "dms_offline":
			msg = "The DMS cannot be reached: devices wait for it. Check the network cable."
		case "printer_paper":
			msg = "The label printer is out of paper: load a new roll."
		case "device_failed":
			msg = "A device failed: open its slot to see why."
		default:
			msg = strings.ReplaceAll(a.Code, "_", " ")
		}
	}
	if a.Slot != "" && !strings.Contains(msg, a.Slot) {
		msg = "Slot " + a.Slot + ": " + msg
	}
	return msg
}

// errorWords says a command's error in the operator's words: the daemon's
// message when it answered, what to do when it could not be reached.
func errorWords(err error) string {
	var ae *localapi.APIError
	switch {
	case errors.As(err, &ae):
		return ae.Error()
	case errors.Is(err, localapi.ErrDaemonDown):
		return "The station service is not answering. Wait a moment and try again; if this lasts, call a supervisor."
	case errors.Is(err, errTimeout):
		return "The station service did not answer in time. Try again; if this lasts, call a supervisor."
	}
	return err.Error()
}

// errTimeout marks a command the daemon did not answer in time.
var errTimeout = errors.New("the station service did not answer in time")
