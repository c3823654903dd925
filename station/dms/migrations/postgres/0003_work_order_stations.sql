-- Version 3: the stations each work order is assigned to. The same as
-- migrations/sqlite/0003_work_order_stations.sql, with byte-order text
-- (see 0001_init.sql).

-- work_order_stations is each work order's station list. how says how the
-- station came onto it: 'admin' (assigned by an administrator),
-- 'first use' (the first station key to use a work order that had never
-- listed a station) or 'history' (this migration: the station had
-- already worked under the work order). removed is set when an
-- administrator takes the station off the list; the row stays, so that
-- a work order whose stations were all removed is not taken again by
-- the next station that asks.
CREATE TABLE work_order_stations (
	work_order TEXT COLLATE "C" NOT NULL REFERENCES work_orders (id) ON DELETE CASCADE,
	station    TEXT COLLATE "C" NOT NULL CHECK (station <> ''),
	assigned   TEXT COLLATE "C" NOT NULL,
	how        TEXT COLLATE "C" NOT NULL CHECK (how IN ('admin', 'first use', 'history')),
	removed    TEXT COLLATE "C",
	PRIMARY KEY (work_order, station)
);
CREATE INDEX work_order_stations_station ON work_order_stations (station, work_order);

-- The stations that already worked under a work order keep it: those its
-- devices' history names, and those whose journal events name it.
INSERT INTO work_order_stations (work_order, station, assigned, how)
SELECT work_order, station, min(used_at), 'history' FROM (
	SELECT work_order, station, time AS used_at FROM device_events WHERE station <> ''
	UNION ALL
	SELECT work_order, station, received AS used_at FROM station_events
) used
WHERE work_order IN (SELECT id FROM work_orders)
GROUP BY work_order, station;
