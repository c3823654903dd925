package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
)

// bootCheck is a unit the test adds to the machine: once the station's
// socket is there it prints what the test checks on the console, one
// "BOOTCHECK key=value" line each, and powers the machine off.
const bootCheck = `[Unit]
Description=Report the station's state on the console and power off
After=station.service
Wants=station.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/usr/local/sbin/boot-check
ExecStopPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
`

const bootCheckScript = `#!/bin/sh
for i in $(seq 120); do [ -S /run/station/api.sock ] && break; sleep 1; done
for i in $(seq 30); do [ -e /dev/ttyUSB0 ] && break; sleep 1; done
udevadm trigger
udevadm settle || true
api() { curl -s --max-time 10 --unix-socket /run/station/api.sock "http://station$1"; }
echo "BOOTCHECK active=$(systemctl is-active station)"
echo "BOOTCHECK enabled=$(systemctl is-enabled station)"
echo "BOOTCHECK user=$(ps -o user= -C station | head -1)"
echo "BOOTCHECK socket=$(stat -c '%U:%G %a' /run/station/api.sock)"
echo "BOOTCHECK ttyUSB0=$(stat -c '%G %a' /dev/ttyUSB0)"
echo "BOOTCHECK slots=$(api /metrics | sed -n 's/^station_slots //p')"
for i in $(seq 30); do
	s1=$(api /v1/state | grep -o '"name":"S1","status":"[a-z_]*"' | sed 's/.*"status":"//; s/"//')
	[ "$s1" != empty ] && break
	sleep 1
done
echo "BOOTCHECK s1=$s1"
# Open devices the way the daemon would: in its cgroup (where systemd's
# device policy applies) and mount namespace, as its user.
pid=$(systemctl show -p MainPID --value station)
cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)
inside() { sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" nsenter -t "$pid" -m "$@"; }
echo "BOOTCHECK open_tty=$(inside setpriv --reuid station --regid station --init-groups sh -c 'exec 3<>/dev/ttyUSB0 && echo ok' 2>&1 | tail -1)"
echo "BOOTCHECK open_disk=$(inside sh -c 'exec 3</dev/vda && echo ok' 2>&1 | tail -1)"
echo "BOOTCHECK exposure=$(systemd-analyze security station --no-pager | sed -n 's/.*Overall exposure level for station.service: \([0-9.]*\).*/\1/p')"
# docs/install.md, after an edit of the configuration:
station config check >/tmp/config-check 2>&1
echo "BOOTCHECK config_check=$?"
sed 's/^/config check: /' /tmp/config-check
systemctl restart station
echo "BOOTCHECK restart=$?"
for i in $(seq 60); do [ "$(systemctl show -p MainPID --value station)" != "$pid" ] && api /metrics >/dev/null && break; sleep 1; done
echo "BOOTCHECK restarted=$([ "$(systemctl show -p MainPID --value station)" != "$pid" ] && systemctl is-active station)"
timeout 5 journalctl -u station -f >/tmp/journal 2>&1
echo "BOOTCHECK journal_json=$(grep -c 'station\[[0-9]*\]: {.*}$' /tmp/journal)"
sed 's/^/journal: /' /tmp/journal
echo "BOOTCHECK done"
`

// bootBudget bounds the boot itself: from QEMU's start to its exit when
// the machine, its check done, has powered off. Without KVM (TCG) on two
// cores busy with other tests, that takes about 22 s; the rest of
// TestPackages (packages, lintian, three Debian roots, the disk image)
// about 4 to 6 minutes. Three minutes are eight times the boot, and keep
// the package's worst case near 9 minutes, inside go test -timeout 12m
// with the kiosk and udev tests still to run.
const bootBudget = 3 * time.Minute

// consoleTail is how many of the console's last lines a failure shows.
const consoleTail = 100

// bootInstalled boots a Debian machine with the packages installed (in
// QEMU, with KVM where it can be used) with an FTDI USB-serial adapter
// plugged in, and checks what a line technician would after the first
// boot: the daemon came up by itself under systemd, sandboxed as its unit
// says; it serves its socket to group station; udev gave the adapter to
// group station; the daemon sees the adapter as slot S1's device.
//
// The boot has bootBudget (less if the test binary's deadline is nearer)
// to print "BOOTCHECK done" on the console and power off; after that, or
// when QEMU stops before, the test fails with the console's tail.
func bootInstalled(ctx context.Context, t *testing.T, debs ...string) {
	need(t, runtime.GOARCH == "amd64", "the boot test runs amd64 Debian in qemu-system-x86_64")
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed")
	}
	prepared := time.Now()
	// The machine has what the packages recommend (x11-xserver-utils for
	// the kiosk), so that apt installs them with nothing to download.
	r := freshRoot(ctx, t, "systemd", "systemd-sysv", "udev", "procps", "curl", "linux-image-amd64", "initramfs-tools", "x11-xserver-utils")
	rooted := time.Now()
	aptInstall(ctx, t, r, debs...)
	installed := time.Now()
	writeIn(t, r, "etc/fstab", "/dev/vda / ext4 defaults 0 1\n")
	writeIn(t, r, "etc/hostname", "station-test\n")
	writeIn(t, r, "etc/systemd/system/boot-check.service", bootCheck)
	writeIn(t, r, "usr/local/sbin/boot-check", bootCheckScript)
	if err := os.Chmod(filepath.Join(r, "usr/local/sbin/boot-check"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, code := chroot(ctx, t, r, "systemctl", "enable", "boot-check.service"); code != 0 {
		t.Fatalf("enable boot-check: %s", out)
	}
	kernel, _ := filepath.Glob(filepath.Join(r, "boot", "vmlinuz-*"))
	initrd, _ := filepath.Glob(filepath.Join(r, "boot", "initrd.img-*"))
	if len(kernel) != 1 || len(initrd) != 1 {
		t.Fatalf("the root has kernels %v and initrds %v; want one each", kernel, initrd)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	run(ctx, t, "mkfs.ext4", "-q", "-F", "-d", r, img, "3G")
	t.Logf("root made in %.1f s, packages installed in %.1f s, disk image made in %.1f s",
		rooted.Sub(prepared).Seconds(), installed.Sub(rooted).Seconds(), time.Since(installed).Seconds())

	accel, why := accelerator(ctx)
	budget := bootBudget
	if d, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(d))
	}
	t.Logf("booting with -accel %s (%s), for at most %v", accel, why, budget.Round(time.Second))
	bctx, cancel := context.WithTimeoutCause(ctx, budget, fmt.Errorf("the boot took more than %v", budget.Round(time.Second)))
	defer cancel()
	args := []string{"-accel", accel, "-m", "1024", "-smp", "2",
		"-nographic", "-no-reboot", "-nic", "none",
		// panic=-1: a kernel panic, or the initramfs failing to mount the
		// root, reboots at once, and -no-reboot makes QEMU exit.
		"-kernel", kernel[0], "-initrd", initrd[0], "-append", "root=/dev/vda rw console=ttyS0 quiet panic=-1",
		"-drive", "file=" + img + ",format=raw,if=virtio",
		// An FTDI FT232 (0403:6001): the guest's ftdi_sio makes it /dev/ttyUSB0.
		"-device", "qemu-xhci", "-chardev", "file,id=ftdi,path=" + filepath.Join(t.TempDir(), "usb-serial.out"), "-device", "usb-serial,chardev=ftdi"}
	if accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	var console proctest.Buffer
	cmd := exec.CommandContext(bctx, "qemu-system-x86_64", args...)
	cmd.Stdout, cmd.Stderr = &console, &console
	start := time.Now()
	qemu := proctest.Start(t, cmd)

	// The console is read as QEMU writes it, and the waits end on what it
	// says, on QEMU's exit or on the budget: none depends on a pipe
	// closing.
	var checked time.Duration
	select {
	case <-console.Seen("BOOTCHECK done"):
		checked = time.Since(start)
	case <-qemu.Done():
	case <-bctx.Done():
	}
	select {
	case <-qemu.Done():
	case <-bctx.Done():
		qemu.Kill()
	}
	err := qemu.Err()
	switch {
	case err == nil && checked > 0:
	case bctx.Err() != nil && checked > 0:
		t.Fatalf("the machine finished its check in %.1f s but did not power off: %v (-accel %s); console, last lines:\n%s",
			checked.Seconds(), context.Cause(bctx), accel, console.Tail(consoleTail))
	case bctx.Err() != nil:
		t.Fatalf("the machine did not finish its check: %v (-accel %s); console, last lines:\n%s",
			context.Cause(bctx), accel, console.Tail(consoleTail))
	case err != nil:
		t.Fatalf("qemu ended after %.1f s with %v; console, last lines:\n%s", time.Since(start).Seconds(), err, console.Tail(consoleTail))
	default:
		t.Fatalf("the machine stopped after %.1f s (powered off, or rebooted: a panic reboots it) before it finished its check; console, last lines:\n%s",
			time.Since(start).Seconds(), console.Tail(consoleTail))
	}
	t.Logf("booted and checked in %.1f s, powered off in %.1f s (-accel %s)", checked.Seconds(), time.Since(start).Seconds(), accel)
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`BOOTCHECK (\w+)=?(.*?)\r?\n`).FindAllStringSubmatch(console.String(), -1) {
		got[m[1]] = strings.TrimSpace(m[2])
	}
	for key, want := range map[string]string{
		"active":  "active",
		"enabled": "enabled",
		"user":    "station",
		"socket":  "station:station 660",
		"ttyUSB0": "station 660",
		"slots":   "4",
		// docs/install.md's commands
		"config_check": "0",
		"restart":      "0",
		"restarted":    "active",
	} {
		if got[key] != want {
			t.Errorf("after boot, %s = %q, want %q", key, got[key], want)
		}
	}
	if n, err := strconv.Atoi(got["journal_json"]); err != nil || n == 0 {
		t.Errorf("%s showed %q lines of JSON logs of the daemon, want some", docJournal, got["journal_json"])
	}
	if got["open_tty"] != "ok" {
		t.Errorf("the daemon's user in its cgroup and mount namespace cannot open /dev/ttyUSB0: %q", got["open_tty"])
	}
	// The device policy is in force: even root, in the daemon's cgroup,
	// cannot open the machine's own disk.
	if !strings.Contains(got["open_disk"], "Operation not permitted") {
		t.Errorf("in the daemon's cgroup, opening /dev/vda gave %q; want the device policy to refuse it", got["open_disk"])
	}
	if got["s1"] == "" || got["s1"] == "empty" {
		t.Errorf("slot S1 is %q with the adapter on /dev/ttyUSB0; want the daemon to see a device", got["s1"])
	}
	t.Logf("systemd-analyze security in the booted machine: exposure %s; slot S1 with the FTDI adapter: %s", got["exposure"], got["s1"])
	if t.Failed() {
		t.Logf("console, last lines:\n%s", console.Tail(consoleTail))
	}
}

// kvmProbe is what the accelerator probe says to QEMU's monitor (QMP):
// whether KVM is enabled, then quit.
const kvmProbe = `{"execute":"qmp_capabilities"}
{"execute":"query-kvm"}
{"execute":"quit"}
`

// accelerator returns the accelerator the boot uses, and why: kvm when
// /dev/kvm opens read-write and QEMU, started with -accel kvm (paused, no
// guest), reports KVM enabled; tcg otherwise. QEMU exits at once when it
// cannot use KVM (no module, no permission, no nested virtualisation).
func accelerator(ctx context.Context) (accel, why string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", fmt.Sprintf("no KVM: %v", err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "kvm", "-S", "-nodefaults", "-display", "none", "-m", "64", "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(kvmProbe)
	out, err := proctest.Output(cmd)
	switch {
	case err != nil:
		return "tcg", fmt.Sprintf("/dev/kvm opens, but QEMU cannot use KVM: %v: %s", childErr(ctx, err), strings.TrimSpace(string(out)))
	case !regexp.MustCompile(`"return":\s*\{"enabled":\s*true`).Match(out):
		return "tcg", fmt.Sprintf("/dev/kvm opens, but QEMU does not report KVM enabled: %s", strings.TrimSpace(string(out)))
	}
	return "kvm", "/dev/kvm opens read-write and QEMU runs a machine with KVM"
}
