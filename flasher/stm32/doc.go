// Package stm32 flashes STM32 microcontrollers through the USART
// bootloader in their system memory, the protocol of ST's AN3155 that
// stm32flash speaks.
//
// In the pipeline (identify → preflight → flash → verify → activate →
// lock → label → done) a [Backend] serves identify (BOOT0 and NRST driven
// through DTR and RTS, the 0x7F auto-baud handshake, GET for the command
// set, GET ID for the product id, the 96-bit unique id read with READ
// MEMORY as hardware id), flash (EXTENDED ERASE or ERASE of the pages the
// image covers, then WRITE MEMORY in 256-byte blocks of whole program
// units), verify (the bootloader's CRC command 0xA1 where GET lists it,
// READ MEMORY readback otherwise), lock (READOUT PROTECT, "rdp", read back
// in a fresh bootloader session and reported through
// [Backend.LockReport]) and the final reset into the application.
//
// The backend drives a [Port] that is already open: the fixture opens the
// serial port 8E1 as hardware wants ([DefaultMode]); simulators on a
// pseudo-terminal and stm32flash's -m 8n1 use 8N1. Families are a data
// table (family.go) with their sources named.
//
// Reference: ST AN3155 "USART protocol used in the STM32 bootloader";
// AN2606 "STM32 microcontroller system memory boot mode" (product ids,
// bootloader versions); the reference manuals named in family.go (unique
// id and flash size register addresses, page layouts); stm32flash's
// stm32.c (timeouts, the re-sync on a NACKed init, the CRC command's wire
// format and the software CRC).
//
// A read-protected device (RDP level 1) NACKs READ MEMORY, so its unique
// id cannot be read: Identify then returns the Device with Locked set and
// an error wrapping flasher.ErrLocked, as the pipeline expects of any
// backend whose device hides its identity.
package stm32
