-- Version 2: API keys and the stations' journal events.

-- api_keys hold a keyed hash of each API key, never the key. role is
-- admin (everything), support (read-only, one product) or station (the
-- station's own calls; station names it). revoked is NULL until revoked.
CREATE TABLE api_keys (
	id      TEXT PRIMARY KEY,
	role    TEXT NOT NULL CHECK (role IN ('admin', 'support', 'station')),
	product TEXT REFERENCES products (code) ON DELETE CASCADE,
	station TEXT,
	name    TEXT NOT NULL DEFAULT '',
	hash    TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
	created TEXT NOT NULL,
	revoked TEXT,
	CHECK ((role = 'support') = (product IS NOT NULL)),
	CHECK ((role = 'station') = (station IS NOT NULL AND station <> ''))
) STRICT;
INSERT INTO counters (name, value) VALUES ('key', 0);

-- station_events are the stations' journals, pushed upstream. Each
-- (station, seq) is stored once: a batch sent again after a timeout or a
-- crash adds nothing. data is the event's JSON object, or NULL.
CREATE TABLE station_events (
	station     TEXT NOT NULL CHECK (station <> ''),
	seq         INTEGER NOT NULL CHECK (seq > 0),
	time        TEXT NOT NULL,
	kind        TEXT NOT NULL,
	work_order  TEXT NOT NULL DEFAULT '',
	slot        TEXT NOT NULL DEFAULT '',
	device      TEXT NOT NULL DEFAULT '',
	operator    TEXT NOT NULL DEFAULT '',
	step        TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL,
	attempt     INTEGER NOT NULL DEFAULT 0,
	duration_ns INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT '',
	data        TEXT,
	received    TEXT NOT NULL,
	PRIMARY KEY (station, seq)
) STRICT;
CREATE INDEX station_events_work_order ON station_events (work_order, device);
CREATE INDEX station_events_device ON station_events (device);
CREATE INDEX station_events_time ON station_events (time);
