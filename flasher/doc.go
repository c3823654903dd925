// Package flasher defines what the pipeline asks of a flashing backend and
// the types every backend shares: the image to write, the device it found,
// progress reporting and the errors an operator needs to tell apart.
//
// Each protocol lives in its own subpackage (esp, stm32, gdb, dfu, block)
// and implements [Backend] over a transport that is already open: finding and
// opening ports is the fixture's job, which lets tests hand in a simulator.
//
// In the pipeline (identify → preflight → flash → verify → activate → lock →
// label → done) a backend serves identify, flash, verify, lock and the final
// reset into the application.
package flasher
