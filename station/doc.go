// Package station is the station program: the daemon and the command-line
// tools that run work orders on a fixture of devices.
//
// [Main.Run] parses a command line and runs one subcommand, so the whole
// program can be driven from a test:
//
//	station run    unattended batch of a work order (contract manufacturers)
//	station demo   the embedded default: DMS, simulated devices, one work order
//	station sim    simulated devices on pseudo-terminals, for trying by hand
//
// Subpackages hold the pieces it wires together: journal (the SQLite record
// of every step), dms (the reference device-management service), artifact
// (downloads), label (device labels).
package station
