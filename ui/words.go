package ui

import (
	"errors"
	"fmt"
	"math"
	"slices"
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
	"done":      "FINISHING",
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
		return "PASSED — REMOVE BOARD"
	case localapi.SlotFailed:
		return "FAILED"
	case localapi.SlotSkipped:
		return "SKIPPED"
	case localapi.SlotOverridden:
		return "OVERRIDDEN"
	case localapi.SlotRemoved:
		if s.Step == "" {
			return "REMOVED MID-RUN"
		}
		return "REMOVED MID-" + strings.ToUpper(s.Step)
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

// errorWords says a command's error in the operator's words, by the
// local API's error code: what happened and what to do. The daemon's own
// message is kept where it is written for the operator about the slot or
// work order at hand (a state the command does not fit, a wrong PIN); the
// technical chain of a failure never reaches the screen: the kiosk logs
// it.
func errorWords(err error) string {
	var ae *localapi.APIError
	switch {
	case errors.As(err, &ae):
		return codeWords(ae)
	case errors.Is(err, localapi.ErrDaemonDown):
		return "The station service is not answering. Wait a moment and try again; if this lasts, call a supervisor."
	case errors.Is(err, errTimeout):
		return "The station service did not answer in time. Try again; if this lasts, call a supervisor."
	}
	return "Something went wrong on this screen. Try again; if this lasts, call a supervisor."
}

// codeWords says an error answer of the daemon by its code.
func codeWords(ae *localapi.APIError) string {
	own := sentence(ae.Message)
	switch ae.Code {
	case localapi.CodeInvalid:
		if own != "" && !technical(ae.Message) {
			return own
		}
		return "The station did not understand this. Check what you typed or scanned, and try again."
	case localapi.CodeUnauthorized:
		return "This screen is not allowed to talk to the station service. Call a supervisor to check its key."
	case localapi.CodeSignIn:
		return "Sign in first: tap Sign in and type your PIN, or scan your badge."
	case localapi.CodeSupervisor:
		return "Only a supervisor can do this: ask a supervisor to type their PIN or scan their badge."
	case localapi.CodeWrongPIN:
		return "This PIN or badge is not known. Try again, or ask your supervisor."
	case localapi.CodeWait:
		secs := int((ae.RetryAfter + time.Second - 1) / time.Second)
		if secs <= 0 {
			return "Too many wrong PINs: wait a moment before the next try, or ask your supervisor."
		}
		return fmt.Sprintf("Too many wrong PINs: wait %d s before the next try, or ask your supervisor.", secs)
	case localapi.CodeLockedOut:
		return "Too many wrong PINs: this station is locked until a supervisor signs in here."
	case localapi.CodeNotFound:
		return "The station does not know this: check the number on the work order sheet, the slot or the device, and try again."
	case localapi.CodeState, localapi.CodeNothingToDo, localapi.CodeAlreadyLoaded, localapi.CodeNoWorkOrder:
		if own != "" && !technical(ae.Message) {
			return "Not now: " + lowerFirst(own)
		}
		switch ae.Code {
		case localapi.CodeNothingToDo:
			return "There is nothing to do for this slot now."
		case localapi.CodeAlreadyLoaded:
			return "Another work order is loaded: a supervisor stops it before another is loaded."
		case localapi.CodeNoWorkOrder:
			return "No work order is loaded: scan one first."
		}
		return "This is not possible now. Look at the slot and the header, then try again."
	case localapi.CodeWorkOrder:
		return "This work order cannot run on this station (its authorization, product or firmware is not in order). Call a supervisor; the details are in the station's log."
	case localapi.CodeUnavailable:
		return "The DMS cannot be reached, and the station has no copy of this work order. Check the network cable, then scan it again; if this lasts, call a supervisor."
	case localapi.CodeInternal:
		return "The station service had a fault. Try again; if it happens again, call a supervisor (the details are in the station's log)."
	}
	return "The station service refused this. Try again; if this lasts, call a supervisor."
}

// loadErrorWords says why a scanned work order did not load.
func loadErrorWords(id string, err error) string {
	var ae *localapi.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case localapi.CodeNotFound:
			return fmt.Sprintf("Work order %s is not known to the DMS. Check the number on the work order sheet and scan it again.", id)
		case localapi.CodeWorkOrder:
			return fmt.Sprintf("Work order %s cannot run on this station (its authorization, product or firmware is not in order). Call a supervisor; the details are in the station's log.", id)
		case localapi.CodeUnavailable:
			return fmt.Sprintf("The DMS cannot be reached, and the station has no copy of work order %s. Check the network cable, then scan it again.", id)
		}
	}
	return errorWords(err)
}

// technical reports whether a message carries a failure's technical
// chain (URLs, addresses, wrapped causes) rather than words for the
// operator.
func technical(msg string) bool {
	if strings.Count(msg, ": ") > 1 {
		return true
	}
	for _, w := range []string{"http://", "https://", "127.0.0.1", "dial ", "0x", "EOF", "connection refused", "sql", "panic", ".go:"} {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// sentence makes a message start with a capital and end with a full stop.
func sentence(msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return ""
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") && !strings.HasSuffix(msg, "!") && !strings.HasSuffix(msg, "?") {
		msg += "."
	}
	return msg
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// errTimeout marks a command the daemon did not answer in time.
var errTimeout = errors.New("the station service did not answer in time")

// alertSummary says the alerts in one line: the most urgent one that
// concerns the station, then the slots that need the operator ("3 slots
// need you: S02, S05, S11"). level is the most urgent level; "" when
// there is no alert.
func alertSummary(alerts []localapi.Alert) (level localapi.AlertLevel, line string) {
	var slots, others []string
	rank := map[localapi.AlertLevel]int{localapi.AlertError: 3, localapi.AlertWarning: 2, localapi.AlertInfo: 1}
	for _, a := range alerts {
		if rank[a.Level] > rank[level] || level == "" {
			level = a.Level
		}
		if a.Slot != "" {
			if !slices.Contains(slots, a.Slot) {
				slots = append(slots, a.Slot)
			}
			continue
		}
		others = append(others, alertWords(a))
	}
	var parts []string
	if len(others) > 0 {
		first := strings.TrimSuffix(others[0], ".")
		if n := len(others) - 1; n > 0 {
			first += fmt.Sprintf(" (and %d more)", n)
		}
		parts = append(parts, first)
	}
	switch len(slots) {
	case 0:
	case 1:
		parts = append(parts, "1 slot needs you: "+slots[0])
	default:
		parts = append(parts, fmt.Sprintf("%d slots need you: %s", len(slots), strings.Join(slots, ", ")))
	}
	return level, strings.Join(parts, "  ·  ")
}
