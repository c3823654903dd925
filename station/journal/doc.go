// Package journal is the station's local journal: the SQLite record of
// every step the station takes. The pipeline (package jobs) appends an
// event before and after each step of each device; the upstream sync
// pushes the events to the device-management service; the kiosk, `station
// run` and QA exports read them.
//
// # Storage
//
// One SQLite file, through mattn/go-sqlite3, in WAL mode with
// synchronous=FULL: each commit syncs the write-ahead log, so an event
// Append returned survives a crash or a power cut. Writes go through
// exactly one connection and start with BEGIN IMMEDIATE; reads use a
// separate read-only pool and, in WAL mode, never wait for a writer nor
// make one wait. The pragmas are in the DSN, so every connection has
// them. The schema is embedded in the binary (migrations/NNNN_*.sql) and
// versioned with PRAGMA user_version.
//
// The file must be on a local disk: WAL keeps its index in shared memory
// and relies on file locks, and neither works over a network file system.
// Open refuses the network file systems it recognises (NFS, SMB/CIFS, 9p,
// AFS, Ceph, Coda, NCP).
//
// # Events are the truth
//
// The events table is append-only: triggers refuse UPDATE and DELETE.
// Every event carries the station id (a journal belongs to one station
// for life) and the station's sequence number, 1, 2, 3 … with no gap,
// enforced by a trigger as well as by Append. Times are UTC, stored as
// fixed-width RFC 3339 text, so they sort as text.
//
// Device and work-order state are derived from the events alone, by
// queries and by [Fold]; there is no state table to drift from them. A
// device's [Result] in a work order is done if it passed the done step,
// interrupted if its last event is a started step with no outcome, failed
// if its last outcome failed, skipped if it was only ever skipped, and in
// progress otherwise.
//
// # Secrets
//
// Activation tokens and keys must never reach the journal. Callers keep
// them out of events; as defence in depth, [Journal.Redact] registers a
// secret and Append replaces it with "[redacted]" wherever it appears.
//
// # Upstream sync
//
// The sync cursor records the highest sequence number the upstream
// acknowledged: [Journal.Unsynced] returns the next batch to send and
// [Journal.Ack] moves the cursor forward. The upstream keys events by
// (station, seq), so sending a batch twice duplicates nothing. An event
// the upstream refuses for good is set aside ([Journal.Refuse]); marked to
// be sent again ([Journal.Resend]), it is in the next batch until the
// upstream stores it ([Journal.Resent]). Each of these is a station event
// of its own: an event's sync state is the last of them naming it.
package journal
