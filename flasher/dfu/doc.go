// Package dfu flashes devices through USB DFU 1.1 and ST's DfuSe
// extension (DFU 1.1a, bcdDFUVersion 0x011a).
//
// The backend talks to a device through the narrow Bus and Device
// interfaces defined here; NewGousbBus implements them over
// github.com/google/gousb (libusb) and package dfusim implements them with
// a simulated device for tests.
//
// testdata/stm32-pair.umockdev describes two STM32 bootloaders (0483:df11,
// same serial) on ports 1-1.2 and 1-1.3 for umockdev-run.
//
// Reference: USB Device Firmware Upgrade Specification, Revision 1.1
// (USB-IF, 2004); ST UM0424 / UM0391 (DfuSe file format) and AN3156 (USB
// DFU protocol used in the STM32 bootloader).
package dfu
