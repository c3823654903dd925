-- Version 1 of the reference DMS: customers, products, bundles and their
-- artifacts, activation tokens, purchase orders, work orders, devices and
-- their history. Applied once, in one transaction.
--
-- Portable on purpose: a PostgreSQL copy of this file differs only in
-- STRICT (dropped), BLOB (BYTEA), the identity column of device_events and
-- the one trigger. Booleans are INTEGER 0/1, times are UTC RFC 3339 text
-- with nine fraction digits (fixed width, so it sorts), JSON is TEXT.

CREATE TABLE customers (
	id      TEXT PRIMARY KEY CHECK (id <> ''),
	name    TEXT NOT NULL CHECK (name <> ''),
	created TEXT NOT NULL
) STRICT;

-- serials is the last serial number counter used for the product.
CREATE TABLE products (
	code        TEXT PRIMARY KEY CHECK (code <> ''),
	name        TEXT NOT NULL CHECK (name <> ''),
	part_number TEXT NOT NULL CHECK (part_number <> ''),
	stage       TEXT NOT NULL CHECK (stage IN ('development', 'production')),
	archived    INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
	customer    TEXT REFERENCES customers (id),
	serials     INTEGER NOT NULL DEFAULT 0 CHECK (serials >= 0),
	created     TEXT NOT NULL
) STRICT;

-- A production product never goes back to development: the devices
-- locked to it stay locked. The service refuses it first, with words.
CREATE TRIGGER products_stage_final BEFORE UPDATE OF stage ON products
WHEN OLD.stage = 'production' AND NEW.stage <> 'production'
BEGIN
	SELECT RAISE(ABORT, 'dms: a production product never returns to development');
END;

-- blobs are artifact bytes, keyed by their SHA-256.
CREATE TABLE blobs (
	sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
	size   INTEGER NOT NULL CHECK (size >= 0),
	data   BLOB NOT NULL
) STRICT;

CREATE TABLE bundles (
	product TEXT NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	version TEXT NOT NULL CHECK (version <> ''),
	tag     TEXT NOT NULL CHECK (tag IN ('release', 'beta', 'alpha')),
	created TEXT NOT NULL,
	PRIMARY KEY (product, version)
) STRICT;

-- position keeps the bundle's artifacts in the order they were given.
CREATE TABLE artifacts (
	product  TEXT NOT NULL,
	version  TEXT NOT NULL,
	position INTEGER NOT NULL CHECK (position >= 0),
	name     TEXT NOT NULL CHECK (name <> ''),
	target   TEXT NOT NULL,
	address  INTEGER NOT NULL CHECK (address >= 0),
	size     INTEGER NOT NULL CHECK (size > 0),
	sha256   TEXT NOT NULL CHECK (length(sha256) = 64),
	format   TEXT NOT NULL,
	url      TEXT NOT NULL,
	PRIMARY KEY (product, version, position),
	UNIQUE (product, version, name),
	FOREIGN KEY (product, version) REFERENCES bundles (product, version) ON DELETE CASCADE
) STRICT;

-- counters hand out sequential ids (token T-1, T-2 ...).
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL CHECK (value >= 0)
) STRICT;
INSERT INTO counters (name, value) VALUES ('token', 0);

-- tokens hold a keyed hash of each activation token, never the secret.
-- expires and revoked are NULL for "never" and "not revoked".
CREATE TABLE tokens (
	id          TEXT PRIMARY KEY,
	product     TEXT NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	hash        TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
	max_claims  INTEGER NOT NULL CHECK (max_claims > 0),
	claims_used INTEGER NOT NULL DEFAULT 0 CHECK (claims_used >= 0 AND claims_used <= max_claims),
	expires     TEXT,
	revoked     TEXT,
	created     TEXT NOT NULL
) STRICT;
CREATE INDEX tokens_product ON tokens (product);

-- registered counts the devices made under the order.
CREATE TABLE purchase_orders (
	id         TEXT PRIMARY KEY,
	product    TEXT NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	quantity   INTEGER NOT NULL CHECK (quantity > 0),
	moq        INTEGER NOT NULL DEFAULT 0 CHECK (moq >= 0 AND moq <= quantity),
	registered INTEGER NOT NULL DEFAULT 0 CHECK (registered >= 0 AND registered <= quantity),
	created    TEXT NOT NULL
) STRICT;

-- A work order names its token by id: the secret stays with whoever runs
-- it. Exactly one of token and purchase_order is set. lock_policy, label
-- and flasher are the jobs package's JSON.
CREATE TABLE work_orders (
	id             TEXT PRIMARY KEY,
	product        TEXT NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	bundle         TEXT NOT NULL,
	quantity       INTEGER NOT NULL CHECK (quantity > 0),
	token          TEXT REFERENCES tokens (id) ON DELETE CASCADE,
	purchase_order TEXT REFERENCES purchase_orders (id) ON DELETE CASCADE,
	lock_policy    TEXT NOT NULL,
	label          TEXT NOT NULL,
	flasher        TEXT NOT NULL,
	created        TEXT NOT NULL,
	CHECK ((token IS NULL) <> (purchase_order IS NULL)),
	FOREIGN KEY (product, bundle) REFERENCES bundles (product, version) ON DELETE CASCADE
) STRICT;

-- devices: one row per hardware id, on the product it is activated to.
-- The product reference has no cascade: a product with devices cannot be
-- deleted.
CREATE TABLE devices (
	hardware_id TEXT PRIMARY KEY CHECK (hardware_id <> ''),
	product     TEXT NOT NULL REFERENCES products (code),
	serial      TEXT NOT NULL,
	locked      INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
	firmware    TEXT NOT NULL DEFAULT '',
	activated   TEXT NOT NULL,
	updated     TEXT NOT NULL
) STRICT;
CREATE INDEX devices_product ON devices (product);

-- serials: the serial number a device got in a product, kept for good so
-- that it is the same every time the device comes back to the product.
CREATE TABLE serials (
	product     TEXT NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	hardware_id TEXT NOT NULL REFERENCES devices (hardware_id),
	serial      TEXT NOT NULL UNIQUE,
	PRIMARY KEY (product, hardware_id)
) STRICT;

-- device_events is each device's history. token holds a token's id,
-- never its secret.
CREATE TABLE device_events (
	id             INTEGER PRIMARY KEY,
	hardware_id    TEXT NOT NULL REFERENCES devices (hardware_id),
	time           TEXT NOT NULL,
	kind           TEXT NOT NULL CHECK (kind IN ('activated', 'reactivated', 'claimed', 'flashed', 'locked', 'done')),
	product        TEXT NOT NULL,
	serial         TEXT NOT NULL DEFAULT '',
	work_order     TEXT NOT NULL DEFAULT '',
	token          TEXT NOT NULL DEFAULT '',
	purchase_order TEXT NOT NULL DEFAULT '',
	firmware       TEXT NOT NULL DEFAULT '',
	station        TEXT NOT NULL DEFAULT '',
	detail         TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX device_events_device ON device_events (hardware_id, id);
CREATE INDEX device_events_work_order ON device_events (work_order, hardware_id, kind);
