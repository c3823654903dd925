package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
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
udevadm settle || true
api() { curl -s --unix-socket /run/station/api.sock "http://station$1"; }
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
echo "BOOTCHECK exposure=$(systemd-analyze security station.service --no-pager | sed -n 's/.*Overall exposure level for station.service: \([0-9.]*\).*/\1/p')"
echo "BOOTCHECK done"
`

// bootInstalled boots a Debian machine with the packages installed (in
// QEMU, without acceleration: KVM may not be usable where the test runs)
// with an FTDI USB-serial adapter plugged in, and checks what a line
// technician would after the first boot: the daemon came up by itself
// under systemd, sandboxed as its unit says; it serves its socket to group
// station; udev gave the adapter to group station; the daemon sees the
// adapter as slot S1's device.
func bootInstalled(t *testing.T, debs ...string) {
	need(t, runtime.GOARCH == "amd64", "the boot test runs amd64 Debian in qemu-system-x86_64")
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed")
	}
	r := freshRoot(t, "systemd", "systemd-sysv", "udev", "procps", "curl", "linux-image-amd64", "initramfs-tools")
	install(t, r, debs...)
	writeIn(t, r, "etc/fstab", "/dev/vda / ext4 defaults 0 1\n")
	writeIn(t, r, "etc/hostname", "station-test\n")
	writeIn(t, r, "etc/systemd/system/boot-check.service", bootCheck)
	writeIn(t, r, "usr/local/sbin/boot-check", bootCheckScript)
	if err := os.Chmod(filepath.Join(r, "usr/local/sbin/boot-check"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, code := chroot(t, r, "systemctl", "enable", "boot-check.service"); code != 0 {
		t.Fatalf("enable boot-check: %s", out)
	}
	kernel, _ := filepath.Glob(filepath.Join(r, "boot", "vmlinuz-*"))
	initrd, _ := filepath.Glob(filepath.Join(r, "boot", "initrd.img-*"))
	if len(kernel) != 1 || len(initrd) != 1 {
		t.Fatalf("the root has kernels %v and initrds %v; want one each", kernel, initrd)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	run(t, "mkfs.ext4", "-q", "-F", "-d", r, img, "3G")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	usbOut := filepath.Join(t.TempDir(), "usb-serial.out")
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", kernel[0], "-initrd", initrd[0], "-append", "root=/dev/vda rw console=ttyS0 quiet",
		"-drive", "file="+img+",format=raw,if=virtio",
		// An FTDI FT232 (0403:6001): the guest's ftdi_sio makes it /dev/ttyUSB0.
		"-device", "qemu-xhci", "-chardev", "file,id=ftdi,path="+usbOut, "-device", "usb-serial,chardev=ftdi")
	start := time.Now()
	console, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, console)
	}
	t.Logf("booted, checked and powered off in %.1f s", time.Since(start).Seconds())
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`BOOTCHECK (\w+)=?(.*?)\r?\n`).FindAllStringSubmatch(string(console), -1) {
		got[m[1]] = strings.TrimSpace(m[2])
	}
	if _, ok := got["done"]; !ok {
		t.Fatalf("the machine did not finish its check; console:\n%s", console)
	}
	for key, want := range map[string]string{
		"active":  "active",
		"enabled": "enabled",
		"user":    "station",
		"socket":  "station:station 660",
		"ttyUSB0": "station 660",
		"slots":   "4",
	} {
		if got[key] != want {
			t.Errorf("after boot, %s = %q, want %q", key, got[key], want)
		}
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
		t.Logf("console:\n%s", console)
	}
}
