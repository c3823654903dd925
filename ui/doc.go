// Package ui is the station's kiosk: the operator's full-screen Fyne app
// on the station's touch screen. It is a client of the station daemon's
// local API (station/localapi) and of nothing else of the station: it
// shows the work order, the slots and the alerts the daemon streams, and
// sends the operator's commands (load, start, pause, stop, sign in, retry,
// skip, override, reprint, export) back to it.
//
// Threading: a model goroutine applies the event stream to an in-memory
// model and marks what changed; a ticker draws the changes in one fyne.Do
// call per tick, updating tiles in place. Widgets are touched nowhere
// else.
package ui
