-- Version 1 of the reference DMS on PostgreSQL: the same tables, columns
-- and rules as migrations/sqlite/0001_init.sql, which the queries share.
-- Differences: no STRICT; BYTEA for BLOB; BIGINT for every count, size and
-- address (SQLite's INTEGER is 64-bit); an identity column for
-- device_events; the trigger in PL/pgSQL. Text compares byte by byte
-- (COLLATE "C"), as in SQLite, whatever the database's locale: serials,
-- codes and times sort the same on both.
-- Booleans are INTEGER 0/1, times are UTC RFC 3339 text with nine
-- fraction digits (fixed width, so it sorts), JSON is TEXT.

CREATE TABLE customers (
	id      TEXT COLLATE "C" PRIMARY KEY CHECK (id <> ''),
	name    TEXT COLLATE "C" NOT NULL CHECK (name <> ''),
	created TEXT COLLATE "C" NOT NULL
);

-- serials is the last serial number counter used for the product.
CREATE TABLE products (
	code        TEXT COLLATE "C" PRIMARY KEY CHECK (code <> ''),
	name        TEXT COLLATE "C" NOT NULL CHECK (name <> ''),
	part_number TEXT COLLATE "C" NOT NULL CHECK (part_number <> ''),
	stage       TEXT COLLATE "C" NOT NULL CHECK (stage IN ('development', 'production')),
	archived    INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
	customer    TEXT COLLATE "C" REFERENCES customers (id),
	serials     BIGINT NOT NULL DEFAULT 0 CHECK (serials >= 0),
	created     TEXT COLLATE "C" NOT NULL
);

-- A production product never goes back to development: the devices
-- locked to it stay locked. The service refuses it first, with words.
CREATE FUNCTION products_stage_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'dms: a production product never returns to development'
		USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER products_stage_final BEFORE UPDATE OF stage ON products
FOR EACH ROW WHEN (OLD.stage = 'production' AND NEW.stage <> 'production')
EXECUTE FUNCTION products_stage_final();

-- blobs are artifact bytes, keyed by their SHA-256.
CREATE TABLE blobs (
	sha256 TEXT COLLATE "C" PRIMARY KEY CHECK (length(sha256) = 64),
	size   BIGINT NOT NULL CHECK (size >= 0),
	data   BYTEA NOT NULL
);

CREATE TABLE bundles (
	product TEXT COLLATE "C" NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	version TEXT COLLATE "C" NOT NULL CHECK (version <> ''),
	tag     TEXT COLLATE "C" NOT NULL CHECK (tag IN ('release', 'beta', 'alpha')),
	created TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (product, version)
);

-- position keeps the bundle's artifacts in the order they were given.
CREATE TABLE artifacts (
	product  TEXT COLLATE "C" NOT NULL,
	version  TEXT COLLATE "C" NOT NULL,
	position BIGINT NOT NULL CHECK (position >= 0),
	name     TEXT COLLATE "C" NOT NULL CHECK (name <> ''),
	target   TEXT COLLATE "C" NOT NULL,
	address  BIGINT NOT NULL CHECK (address >= 0),
	size     BIGINT NOT NULL CHECK (size > 0),
	sha256   TEXT COLLATE "C" NOT NULL CHECK (length(sha256) = 64),
	format   TEXT COLLATE "C" NOT NULL,
	url      TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (product, version, position),
	UNIQUE (product, version, name),
	FOREIGN KEY (product, version) REFERENCES bundles (product, version) ON DELETE CASCADE
);

-- counters hand out sequential ids (token T-1, T-2 ...).
CREATE TABLE counters (
	name  TEXT COLLATE "C" PRIMARY KEY,
	value BIGINT NOT NULL CHECK (value >= 0)
);
INSERT INTO counters (name, value) VALUES ('token', 0);

-- tokens hold a keyed hash of each activation token, never the secret.
-- expires and revoked are NULL for "never" and "not revoked".
CREATE TABLE tokens (
	id          TEXT COLLATE "C" PRIMARY KEY,
	product     TEXT COLLATE "C" NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	hash        TEXT COLLATE "C" NOT NULL UNIQUE CHECK (length(hash) = 64),
	max_claims  BIGINT NOT NULL CHECK (max_claims > 0),
	claims_used BIGINT NOT NULL DEFAULT 0 CHECK (claims_used >= 0 AND claims_used <= max_claims),
	expires     TEXT COLLATE "C",
	revoked     TEXT COLLATE "C",
	created     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX tokens_product ON tokens (product);

-- registered counts the devices made under the order.
CREATE TABLE purchase_orders (
	id         TEXT COLLATE "C" PRIMARY KEY,
	product    TEXT COLLATE "C" NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	quantity   BIGINT NOT NULL CHECK (quantity > 0),
	moq        BIGINT NOT NULL DEFAULT 0 CHECK (moq >= 0 AND moq <= quantity),
	registered BIGINT NOT NULL DEFAULT 0 CHECK (registered >= 0 AND registered <= quantity),
	created    TEXT COLLATE "C" NOT NULL
);

-- A work order names its token by id: the secret stays with whoever runs
-- it. Exactly one of token and purchase_order is set. lock_policy, label
-- and flasher are the jobs package's JSON.
CREATE TABLE work_orders (
	id             TEXT COLLATE "C" PRIMARY KEY,
	product        TEXT COLLATE "C" NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	bundle         TEXT COLLATE "C" NOT NULL,
	quantity       BIGINT NOT NULL CHECK (quantity > 0),
	token          TEXT COLLATE "C" REFERENCES tokens (id) ON DELETE CASCADE,
	purchase_order TEXT COLLATE "C" REFERENCES purchase_orders (id) ON DELETE CASCADE,
	lock_policy    TEXT COLLATE "C" NOT NULL,
	label          TEXT COLLATE "C" NOT NULL,
	flasher        TEXT COLLATE "C" NOT NULL,
	created        TEXT COLLATE "C" NOT NULL,
	CHECK ((token IS NULL) <> (purchase_order IS NULL)),
	FOREIGN KEY (product, bundle) REFERENCES bundles (product, version) ON DELETE CASCADE
);

-- devices: one row per hardware id, on the product it is activated to.
-- The product reference has no cascade: a product with devices cannot be
-- deleted.
CREATE TABLE devices (
	hardware_id TEXT COLLATE "C" PRIMARY KEY CHECK (hardware_id <> ''),
	product     TEXT COLLATE "C" NOT NULL REFERENCES products (code),
	serial      TEXT COLLATE "C" NOT NULL,
	locked      INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
	firmware    TEXT COLLATE "C" NOT NULL DEFAULT '',
	activated   TEXT COLLATE "C" NOT NULL,
	updated     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX devices_product ON devices (product);

-- serials: the serial number a device got in a product, kept for good so
-- that it is the same every time the device comes back to the product.
CREATE TABLE serials (
	product     TEXT COLLATE "C" NOT NULL REFERENCES products (code) ON DELETE CASCADE,
	hardware_id TEXT COLLATE "C" NOT NULL REFERENCES devices (hardware_id),
	serial      TEXT COLLATE "C" NOT NULL UNIQUE,
	PRIMARY KEY (product, hardware_id)
);

-- device_events is each device's history. token holds a token's id,
-- never its secret.
CREATE TABLE device_events (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hardware_id    TEXT COLLATE "C" NOT NULL REFERENCES devices (hardware_id),
	time           TEXT COLLATE "C" NOT NULL,
	kind           TEXT COLLATE "C" NOT NULL CHECK (kind IN ('activated', 'reactivated', 'claimed', 'flashed', 'locked', 'done')),
	product        TEXT COLLATE "C" NOT NULL,
	serial         TEXT COLLATE "C" NOT NULL DEFAULT '',
	work_order     TEXT COLLATE "C" NOT NULL DEFAULT '',
	token          TEXT COLLATE "C" NOT NULL DEFAULT '',
	purchase_order TEXT COLLATE "C" NOT NULL DEFAULT '',
	firmware       TEXT COLLATE "C" NOT NULL DEFAULT '',
	station        TEXT COLLATE "C" NOT NULL DEFAULT '',
	detail         TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX device_events_device ON device_events (hardware_id, id);
CREATE INDEX device_events_work_order ON device_events (work_order, hardware_id, kind);
