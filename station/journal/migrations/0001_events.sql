-- Version 1: the append-only events table, the station's identity and the
-- upstream sync cursor. Applied once, inside one transaction, then
-- PRAGMA user_version = 1.

-- meta holds the journal's identity: which station it belongs to.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

-- The station id never changes once written.
CREATE TRIGGER meta_station_fixed BEFORE UPDATE ON meta
WHEN OLD.key = 'station_id'
BEGIN
	SELECT RAISE(ABORT, 'journal: the station id of a journal never changes');
END;
CREATE TRIGGER meta_station_kept BEFORE DELETE ON meta
WHEN OLD.key = 'station_id'
BEGIN
	SELECT RAISE(ABORT, 'journal: the station id of a journal never changes');
END;

-- events is the truth: one row per step outcome, work-order action,
-- operator action or station start. seq is the rowid, so every secondary
-- index below ends in seq and yields rows in journal order. time is UTC
-- RFC 3339 with nine fraction digits: fixed width, so it sorts as text.
CREATE TABLE events (
	seq         INTEGER PRIMARY KEY CHECK (seq > 0),
	station     TEXT    NOT NULL CHECK (station <> ''),
	time        TEXT    NOT NULL CHECK (length(time) = 30),
	kind        TEXT    NOT NULL CHECK (kind <> ''),
	work_order  TEXT    NOT NULL DEFAULT '',
	slot        TEXT    NOT NULL DEFAULT '',
	device      TEXT    NOT NULL DEFAULT '',
	operator    TEXT    NOT NULL DEFAULT '',
	step        TEXT    NOT NULL DEFAULT '',
	status      TEXT    NOT NULL CHECK (status <> ''),
	attempt     INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
	duration_ns INTEGER NOT NULL DEFAULT 0 CHECK (duration_ns >= 0),
	error       TEXT    NOT NULL DEFAULT '',
	data        TEXT    CHECK (data IS NULL OR json_type(data) = 'object'),
	UNIQUE (station, seq)
) STRICT;

-- Append-only: no row is ever changed or removed.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
	SELECT RAISE(ABORT, 'journal: events are append-only, update refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
	SELECT RAISE(ABORT, 'journal: events are append-only, delete refused');
END;

-- Every event belongs to the journal's station and takes the next
-- sequence number of that station: 1, 2, 3 ... with no gap.
CREATE TRIGGER events_station BEFORE INSERT ON events
WHEN NEW.station IS NOT (SELECT value FROM meta WHERE key = 'station_id')
BEGIN
	SELECT RAISE(ABORT, 'journal: event of another station refused');
END;
CREATE TRIGGER events_seq_next BEFORE INSERT ON events
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE station = NEW.station)
BEGIN
	SELECT RAISE(ABORT, 'journal: event seq must follow the last seq of its station');
END;

-- Device state (Device, Devices, WorkOrder): work order, device, seq.
CREATE INDEX events_work_order_device ON events (work_order, device);
-- LastOnSlot and the slot filter: work order, slot, seq.
CREATE INDEX events_work_order_slot ON events (work_order, slot);
-- A device's history across work orders.
CREATE INDEX events_device ON events (device);
-- Exports by time range.
CREATE INDEX events_time ON events (time);

-- sync_cursor holds the highest seq the upstream acknowledged. It only
-- moves forward.
CREATE TABLE sync_cursor (
	id        INTEGER PRIMARY KEY CHECK (id = 1),
	acked_seq INTEGER NOT NULL DEFAULT 0 CHECK (acked_seq >= 0)
) STRICT;
INSERT INTO sync_cursor (id, acked_seq) VALUES (1, 0);
CREATE TRIGGER sync_cursor_forward BEFORE UPDATE ON sync_cursor
WHEN NEW.acked_seq < OLD.acked_seq
BEGIN
	SELECT RAISE(ABORT, 'journal: the sync cursor only moves forward');
END;
CREATE TRIGGER sync_cursor_kept BEFORE DELETE ON sync_cursor
BEGIN
	SELECT RAISE(ABORT, 'journal: the sync cursor is never deleted');
END;
