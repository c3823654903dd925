// Package block writes disk images (raw, .gz, .xz, .zst) to block devices:
// SD cards and eMMC behind card readers, loop devices in tests, or plain
// files.
//
// A [Source] is decompressed once and fanned out by [MultiWrite] to any
// number of [Target]s, each with its own bounded queue of 4 MiB aligned
// buffers, so a slow or dead card never holds up the others for longer
// than Options.StallTimeout. With a [Bmap] only mapped ranges are written,
// checked against the bmap's checksums on the way, and optionally read
// back and checked again after the page cache is dropped.
//
// [OpenTarget] refuses mounted disks, the disk holding /, /boot or swap,
// and fixed disks unless Options.AllowFixed. [Backend] adapts one device to
// flasher.Backend for images that are small enough to be held as segments.
//
// Reference: bmap-tools (bmaptool) "Bmap file format"; Linux
// Documentation/block and include/uapi/linux/fs.h (BLKGETSIZE64,
// BLKDISCARD, BLKZEROOUT, BLKFLSBUF).
package block
