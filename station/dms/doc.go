// Package dms is the reference device-management service's core: the
// catalogue (customers, products, bundles and their artifact bytes),
// activation tokens, purchase orders, work orders, devices and their
// history, kept in SQL, and the rules the system enforces on them.
//
// It sits upstream of the pipeline. A station asks it, through
// jobs.Upstream, whether a device may be provisioned (preflight), claims
// the device for the work order's product (activate), and records the
// lock; Local is that interface in process, for station demo and tests;
// an HTTP API and roles come on top of Service later.
//
// The rules, each enforced in one write transaction:
//
//   - a device activated to a production product is locked to it for
//     good: it may receive newer bundles of that product, never another
//     product; a device on a development product may be re-activated to
//     another product;
//   - an archived product takes no new device; devices already activated
//     to it keep being served;
//   - an activation token is bound to a product, claims at most its
//     count of devices, expires and can be revoked; the same device
//     claimed twice uses one claim;
//   - a product that has devices cannot be deleted; a production product
//     never goes back to development;
//   - a work order lists the stations whose keys act under it; one that
//     has never listed a station is taken by the first station that uses
//     it (StationWorkOrder).
//
// Token secrets are shown once, when the token is issued; the database
// keeps only a keyed hash, and errors, logs and device history name
// tokens by id.
//
// Storage: Store owns the *sql.DB, one writer connection plus a read
// pool, with migrations embedded per dialect (migrations/sqlite). The
// queries use $N placeholders and the SQL SQLite and PostgreSQL share;
// what differs lives in the dialect struct.
package dms
