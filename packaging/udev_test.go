package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/station-dev/station/fixtures/proctest"
)

// udevadmTest has udev parse the rules file at path, as the only file of
// /etc/udev/rules.d (in a private mount namespace, so the machine's udev
// sees nothing), and returns what udev said about it.
func udevadmTest(ctx context.Context, t *testing.T, path string) []string {
	t.Helper()
	name := filepath.Base(path)
	script := `set -e
mount -t tmpfs station-udev-test /etc/udev/rules.d
cp "$1" /etc/udev/rules.d/
udevadm test --action=add /sys/class/tty/ptmx 2>&1 || true`
	out, err := proctest.Output(exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", path))
	if err != nil {
		t.Fatalf("udevadm test in a mount namespace: %v\n%s", childErr(ctx, err), out)
	}
	if !strings.Contains(string(out), "Reading rules file: /etc/udev/rules.d/"+name) {
		t.Fatalf("udevadm test did not read %s:\n%s", name, out)
	}
	var said []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "/etc/udev/rules.d/"+name+":") {
			said = append(said, line)
		}
	}
	return said
}

// TestUdevRules has udev itself parse the package's rules: no line may be
// refused. The group station does not exist on the test machine, which
// udev reports and which is the one thing allowed.
func TestUdevRules(t *testing.T) {
	need(t, os.Geteuid() == 0, "the udev rules test needs root (a private mount namespace)")
	for _, tool := range []string{"udevadm", "unshare"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed")
	}
	_, err := os.Stat("/etc/udev/rules.d")
	need(t, err == nil, "/etc/udev/rules.d is missing (package udev)")
	ctx := testContext(t)

	// The check can fail: a rule with a wrong operator and a misspelt key.
	bad := filepath.Join(t.TempDir(), "61-bad.rules")
	os.WriteFile(bad, []byte("SUBSYSTEM==\"tty\", ATTRS{idVendor}=\"10c4\", GROUP=\"dialout\"\nSUBSYSTEM==\"tty\", GROPU=\"dialout\"\n"), 0o644)
	if said := udevadmTest(ctx, t, bad); len(said) < 2 {
		t.Fatalf("udevadm test found %d problems in a file with two: %q", len(said), said)
	}

	rules, err := filepath.Abs("deb/60-station.rules")
	if err != nil {
		t.Fatal(err)
	}
	allowed := regexp.MustCompile(`:\d+ Unknown group 'station', ignoring$`)
	n := 0
	for _, line := range udevadmTest(ctx, t, rules) {
		if allowed.MatchString(line) {
			n++
			continue
		}
		t.Errorf("udev: %s", line)
	}
	data, _ := os.ReadFile(rules)
	if want := strings.Count(string(data), `GROUP="station"`); n != 0 && n != want {
		t.Errorf("udev saw %d of the %d rules that set the group", n, want)
	}
}

// TestUdevModemManagerIgnore checks that every rule for a serial port
// tells ModemManager to leave the port alone: its AT probe would read
// the bootloader's answers, and the station refuses a port another
// program holds.
func TestUdevModemManagerIgnore(t *testing.T) {
	data, err := os.ReadFile("deb/60-station.rules")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, `SUBSYSTEM=="tty"`) {
			continue
		}
		n++
		if !strings.Contains(line, `ENV{ID_MM_DEVICE_IGNORE}="1"`) {
			t.Errorf("deb/60-station.rules:%d: a tty rule without ENV{ID_MM_DEVICE_IGNORE}=\"1\": %s", i+1, line)
		}
	}
	if n == 0 {
		t.Fatal("deb/60-station.rules has no tty rule")
	}
}
