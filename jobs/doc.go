// Package jobs holds work orders and the device pipeline: the steps every
// device goes through, the loop that runs them and journals each one, the
// scheduling of many slots in parallel, retries and resume after a crash.
//
// The pipeline is data: a slice of named steps with timeouts,
//
//	identify → preflight → flash → verify → activate → lock → label → done
//
// run by one loop that journals each step as started and then as passed,
// failed or skipped, with its measurements. Steps are idempotent, so resume
// is "run from the last passed step": a device that comes back after a crash
// is identified again and carries on where its journal says it stopped, and
// is never claimed twice.
//
// The package talks to the outside through small interfaces defined here:
// a [Connector] opens the device in a slot (the fixture), [Upstream] is the
// device-management service, [Printer] prints labels and [Journal] records
// every step.
package jobs
