// Package upstream is the station's client of the device-management
// service (DMS) over its HTTP API (docs/api.md, wire types in
// station/dms/dmsapi).
//
// Client implements jobs.Upstream: the pipeline's preflight, activate,
// lock and complete steps call the DMS through it, and it turns the DMS's
// error codes into the jobs package's sentinels (jobs.ErrTokenSpent,
// jobs.ErrUnavailable, ...). It also reads work orders and hands out an
// *http.Client that downloads the work order's artifacts with the
// station's key, sent to the DMS's own host only.
//
// Syncer pushes the station's journal upstream, store and forward: it
// sends the events after the journal's acknowledged cursor in batches
// keyed by (station, seq), moves the cursor when the DMS has stored them,
// and retries with backoff for as long as the DMS is away. The cursor
// lives in the journal, so a restarted station resumes where it stopped
// and a dead link loses nothing.
package upstream
