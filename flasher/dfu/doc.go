// Package dfu flashes devices through USB DFU 1.1 and ST's DfuSe
// extension (DFU 1.1a, bcdDFUVersion 0x011a).
//
// The backend talks to a device through the narrow Bus and Device
// interfaces defined here; NewGousbBus (build tag gousb) implements them
// over github.com/google/gousb and package dfusim implements them with a
// simulated device for tests.
//
// gousb.go and its umockdev tests build only with -tags gousb until
// github.com/google/gousb v1.1.3 is required in go.mod; to run them now:
//
//	go test -tags gousb -modfile=<copy of go.mod with the require> ./flasher/dfu/
//
// testdata/stm32-pair.umockdev describes two STM32 bootloaders (0483:df11,
// same serial) on ports 1-1.2 and 1-1.3 for umockdev-run.
//
// Reference: USB Device Firmware Upgrade Specification, Revision 1.1
// (USB-IF, 2004); ST UM0424 / UM0391 (DfuSe file format) and AN3156 (USB
// DFU protocol used in the STM32 bootloader).
package dfu
