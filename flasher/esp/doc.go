// Package esp flashes ESP32 and ESP32-S3 chips through the serial
// bootloader in their ROM, the protocol esptool speaks with --no-stub.
//
// In the pipeline (identify → preflight → flash → verify → activate →
// lock → label → done) a [Backend] serves identify (reset into the
// bootloader, SYNC, chip detection by its magic register, the MAC from
// eFuse as hardware id, the lock eFuses), flash (FLASH_DEFL_* with zlib,
// or FLASH_* uncompressed), verify (SPI_FLASH_MD5), lock (eFuse burns
// through the eFuse controller's registers, as espefuse does: the fuses
// that close the ROM last, in a burn of their own; what was read back is
// in [Backend.LockReport]) and the final reset into the application,
// whose boot log gives the version.
//
// The backend drives a [Port] that is already open: the fixture adapts
// go.bug.st/serial, tests hand in a simulator. Chips are data tables
// (chip.go) with their sources named. Framing lives in
// [github.com/station-dev/station/flasher/esp/slip], packets in
// [github.com/station-dev/station/flasher/esp/packet].
//
// Reference: esptool documentation, serial-protocol.rst ("Serial
// Protocol"), troubleshooting.rst ("Secure Download Mode Limitations");
// esptool loader.py, cmds.py, reset.py, targets/esp32.py and
// targets/esp32s3.py; espefuse base_fields.py (burn_all), efuse/esp32
// and efuse/esp32s3.
//
// Departures from esptool, on purpose: the ROM loader is used, never the
// stub (so blocks are 0x400 bytes and the ROM erases at *_BEGIN); writes
// are compressed by default although esptool compresses only with its
// stub; and Secure Download Mode, in which the ROM accepts only SYNC,
// SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE, FLASH_BEGIN/DATA/END and
// GET_SECURITY_INFO, is handled by falling back to uncompressed writes
// and refusing verify and lock with flasher.ErrLocked.
package esp
