package dfu_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
)

// pairDevices is testdata/stm32-pair.umockdev: two STM32 bootloaders with
// the same serial behind a hub, on ports 1-1.2 and 1-1.3.
const pairDevices = "testdata/stm32-pair.umockdev"

// needUmockdev skips when umockdev-run (or another tool) is missing,
// unless CI is set, where a missing tool is a failure.
func needUmockdev(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"umockdev-run"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI: %v", tool, err)
			}
			t.Skipf("%s is not installed: scripts/test installs it (apt-get install umockdev dfu-util): %v", tool, err)
		}
	}
}

// TestDfuUtilAgreesWithDescription checks that dfu-util, through libusb
// under umockdev, lists the devices our description declares.
func TestDfuUtilAgreesWithDescription(t *testing.T) {
	needUmockdev(t, "dfu-util")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := proctest.Output(exec.CommandContext(ctx, "umockdev-run", "-d", pairDevices, "--", "dfu-util", "-l"))
	if err != nil {
		t.Fatalf("dfu-util -l under umockdev: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`Found DFU: \[([0-9a-f]{4}):([0-9a-f]{4})\].*path="([^"]+)", alt=(\d+)`)
	seen := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		if m[1] != "0483" || m[2] != "df11" {
			t.Errorf("dfu-util found %s:%s, want 0483:df11", m[1], m[2])
		}
		seen[m[3]+" alt "+m[4]] = true
	}
	var got []string
	for k := range seen {
		got = append(got, k)
	}
	sort.Strings(got)
	want := []string{"1-1.2 alt 0", "1-1.2 alt 1", "1-1.3 alt 0", "1-1.3 alt 1"}
	if len(got) != len(want) {
		t.Fatalf("dfu-util lists %v, want %v\n%s", got, want, out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("dfu-util lists %v, want %v\n%s", got, want, out)
		}
	}
}
