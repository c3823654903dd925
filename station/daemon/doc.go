// Package daemon is the station daemon behind "station serve": it loads a
// work order from the DMS when an operator scans it, watches the
// fixture's slots for devices plugged in and out, runs the pipeline
// (package jobs) on every new device while the run is on, pushes the
// journal to the DMS, and serves the local API (package localapi) that
// the kiosk drives. Its configuration is one YAML file, documented in
// docs/station-yaml.md.
//
// The daemon keeps the loaded work order and the run state in a small
// file next to the journal, so that a station restarted after a crash
// carries on where it was; devices resume from the journal.
package daemon
