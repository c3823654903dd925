package block_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/station-dev/station/flasher/block"
)

// Write one compressed image with its bmap to two card readers at once,
// reading it back afterwards.
func ExampleMultiWrite() {
	src, err := block.OpenSource("rootfs.img.zst", "rootfs.bmap")
	if err != nil {
		fmt.Println(err)
		return
	}
	var targets []block.Target
	for _, path := range []string{"/dev/sdb", "/dev/sdc"} {
		d, err := block.OpenTarget(path, block.Options{Direct: true})
		if err != nil {
			fmt.Println(err) // for example "sdb1 is mounted at /media/x: unmount it first"
			continue
		}
		defer d.Close()
		targets = append(targets, d)
	}
	results := block.MultiWrite(context.Background(), src, targets, block.Options{
		ZeroUnmapped: true,
		Verify:       true,
		Progress:     func(i int, done, total int64) { slog.Debug("write", "target", i, "done", done, "total", total) },
	})
	for _, r := range results {
		fmt.Println(r.Target, r.Verified, r.Err)
	}
}
