-- Version 2: API keys and the stations' journal events. The same as
-- migrations/sqlite/0002_keys_events.sql, with BIGINT for seq and
-- duration_ns and byte-order text (see 0001_init.sql).

-- api_keys hold a keyed hash of each API key, never the key. role is
-- admin (everything), support (read-only, one product) or station (the
-- station's own calls; station names it). revoked is NULL until revoked.
CREATE TABLE api_keys (
	id      TEXT COLLATE "C" PRIMARY KEY,
	role    TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'support', 'station')),
	product TEXT COLLATE "C" REFERENCES products (code) ON DELETE CASCADE,
	station TEXT COLLATE "C",
	name    TEXT COLLATE "C" NOT NULL DEFAULT '',
	hash    TEXT COLLATE "C" NOT NULL UNIQUE CHECK (length(hash) = 64),
	created TEXT COLLATE "C" NOT NULL,
	revoked TEXT COLLATE "C",
	CHECK ((role = 'support') = (product IS NOT NULL)),
	CHECK ((role = 'station') = (station IS NOT NULL AND station <> ''))
);
INSERT INTO counters (name, value) VALUES ('key', 0);

-- station_events are the stations' journals, pushed upstream. Each
-- (station, seq) is stored once: a batch sent again after a timeout or a
-- crash adds nothing. data is the event's JSON object, or NULL.
CREATE TABLE station_events (
	station     TEXT COLLATE "C" NOT NULL CHECK (station <> ''),
	seq         BIGINT NOT NULL CHECK (seq > 0),
	time        TEXT COLLATE "C" NOT NULL,
	kind        TEXT COLLATE "C" NOT NULL,
	work_order  TEXT COLLATE "C" NOT NULL DEFAULT '',
	slot        TEXT COLLATE "C" NOT NULL DEFAULT '',
	device      TEXT COLLATE "C" NOT NULL DEFAULT '',
	operator    TEXT COLLATE "C" NOT NULL DEFAULT '',
	step        TEXT COLLATE "C" NOT NULL DEFAULT '',
	status      TEXT COLLATE "C" NOT NULL,
	attempt     BIGINT NOT NULL DEFAULT 0,
	duration_ns BIGINT NOT NULL DEFAULT 0,
	error       TEXT COLLATE "C" NOT NULL DEFAULT '',
	data        TEXT COLLATE "C",
	received    TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (station, seq)
);
CREATE INDEX station_events_work_order ON station_events (work_order, device);
CREATE INDEX station_events_device ON station_events (device);
CREATE INDEX station_events_time ON station_events (time);
