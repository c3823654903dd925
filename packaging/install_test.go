package packaging

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// need fails under CI (scripts/test installs what the test needs) and
// skips elsewhere when the test cannot run here.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (scripts/lib.sh TEST_PACKAGES lists the tools; CI runs as root)", what)
	}
	t.Skipf("%s: scripts/test installs the tools; run it as root, as CI does", what)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// run runs a command and returns its combined output; it fails the test
// when the command fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// chroot runs a command in root and returns its output and exit code.
func chroot(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{root}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("chroot %s %s: %v", root, strings.Join(args, " "), err)
	}
	return string(out), 0
}

// TestPackages builds the packages and installs them into fresh Debian
// roots, as a line technician would on a new PC.
func TestPackages(t *testing.T) {
	need(t, os.Geteuid() == 0, "the install test needs root (debootstrap and chroot)")
	for _, tool := range []string{"debootstrap", "lintian", "dpkg-deb", "chroot"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed")
	}
	root := repoRoot(t)
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "package"), "--out", out)
	cmd.Dir = root
	built, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/package: %v\n%s", err, built)
	}
	station, kiosk := findDeb(t, out, "station"), findDeb(t, out, "station-kiosk")
	version := strings.TrimSpace(run(t, "dpkg-deb", "-f", station, "Version"))
	commit := strings.TrimSpace(gitCommit(t, root))

	t.Run("lintian", func(t *testing.T) {
		out, err := exec.Command("lintian", "--tag-display-limit", "0", station, kiosk).CombinedOutput()
		var errs []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "E: ") {
				errs = append(errs, line)
			}
		}
		if len(errs) > 0 || (err != nil && len(out) == 0) {
			t.Fatalf("lintian reports errors (%v):\n%s", err, strings.Join(errs, "\n"))
		}
		t.Logf("lintian:\n%s", out)
	})

	t.Run("contents", func(t *testing.T) {
		conffiles := controlFile(t, station, "conffiles")
		for _, f := range []string{"/etc/station/station.yaml", "/etc/station/fixture.yaml"} {
			if !strings.Contains(conffiles, f+"\n") {
				t.Errorf("%s is not a conffile; conffiles:\n%s", f, conffiles)
			}
		}
		list := run(t, "dpkg-deb", "-c", station) + run(t, "dpkg-deb", "-c", kiosk)
		for _, f := range []string{
			"./usr/bin/station", "./lib/systemd/system/station.service", "./lib/udev/rules.d/60-station.rules",
			"./usr/lib/sysusers.d/station.conf", "./usr/lib/tmpfiles.d/station.conf", "./usr/lib/modules-load.d/station.conf",
			"./usr/share/doc/station/copyright", "./usr/share/doc/station/changelog.Debian.gz",
			"./usr/bin/station-kiosk", "./usr/bin/station-kiosk-session", "./usr/share/xsessions/station-kiosk.desktop",
		} {
			if !strings.Contains(list, " "+f+"\n") {
				t.Errorf("the packages do not hold %s", f)
			}
		}
	})

	for _, tc := range []struct {
		name    string
		systemd bool
	}{
		{"with systemd", true},
		{"without an init system", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.systemd {
				extra = []string{"systemd"}
			}
			r := freshRoot(t, extra...)
			install(t, r, station, kiosk)
			checkInstalled(t, r, version, commit, tc.systemd)
		})
	}
	t.Run("boots", func(t *testing.T) { bootInstalled(t, station, kiosk) })
}

// install installs the packages into the root r with dpkg -i.
func install(t *testing.T, r string, debs ...string) {
	t.Helper()
	args := []string{"dpkg", "-i"}
	for _, deb := range debs {
		data, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r, "tmp", filepath.Base(deb)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "/tmp/"+filepath.Base(deb))
	}
	if out, code := chroot(t, r, args...); code != 0 {
		t.Fatalf("dpkg -i: exit %d\n%s", code, out)
	}
}

func checkInstalled(t *testing.T, r, version, commit string, systemd bool) {
	out, code := chroot(t, r, "station", "--version")
	if code != 0 || !strings.Contains(out, version) || !strings.Contains(out, commit) {
		t.Errorf("station --version: exit %d, %q; want the version %s and the commit %s", code, out, version, commit)
	}
	out, code = chroot(t, r, "station-kiosk", "--version")
	if code != 0 || !strings.Contains(out, version) {
		t.Errorf("station-kiosk --version: exit %d, %q; want %s", code, out, version)
	}
	out, code = chroot(t, r, "station", "config", "check")
	if code != 0 || !strings.Contains(out, "/etc/station/station.yaml") || !strings.Contains(out, "the station can start") {
		t.Errorf("station config check of the installed configuration: exit %d\n%s", code, out)
	}

	// The user, its groups and the folders, as postinst made them.
	if out, _ := chroot(t, r, "id", "station"); !strings.Contains(out, "(station)") || !strings.Contains(out, "(dialout)") {
		t.Errorf("id station: %q; want user station in groups station and dialout", out)
	}
	wantOwner(t, r, "/var/lib/station", "station:station 750")
	wantOwner(t, r, "/etc/station", "root:station 750")
	if systemd {
		link := filepath.Join(r, "etc/systemd/system/multi-user.target.wants/station.service")
		if dest, err := os.Readlink(link); err != nil || !strings.HasSuffix(dest, "/station.service") {
			t.Errorf("station.service is not enabled: %s -> %q (%v)", link, dest, err)
		}
		if out, err := exec.Command("systemd-analyze", "verify", "--root="+r, "station.service").CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify station.service: %v\n%s", err, out)
		}
		out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--root="+r, "station.service").CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security station.service: %v\n%s", err, out)
		}
		if m := regexp.MustCompile(`Overall exposure level for station.service: ([0-9.]+)`).FindSubmatch(out); m != nil {
			t.Logf("systemd-analyze security: exposure %s (0 = fully sandboxed, 10 = not at all)", m[1])
		}
	}

	// A configuration with mistakes is refused line by line.
	bad := "station: st1\nfixture: bad-fixture.yaml\ndms: {url: sqlite:/var/lib/station/dms.db}\njournal: /var/lib/station/journal.db\n" +
		"api: {socket: /run/station/api.sock, group: nosuchgroup}\nprintr: tcp://127.0.0.1:9\n"
	writeIn(t, r, "etc/station/bad.yaml", bad)
	writeIn(t, r, "etc/station/bad-fixture.yaml", "slots:\n  - {name: S1, protocol: esp}\n")
	out, code = chroot(t, r, "station", "config", "check", "--config", "/etc/station/bad.yaml")
	if code != 1 || !strings.Contains(out, `line 6: unknown key "printr"`) {
		t.Errorf("config check of a file with an unknown key: exit %d, want 1 and the key with its line\n%s", code, out)
	}
	writeIn(t, r, "etc/station/bad.yaml", strings.Replace(bad, "printr", "printer", 1))
	out, code = chroot(t, r, "station", "config", "check", "--config", "/etc/station/bad.yaml", "--timeout", "2s")
	for _, want := range []string{"S1", "port", `group "nosuchgroup" does not exist`, "127.0.0.1:9 does not answer"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("config check of a bad file: exit %d, want 1 and %q\n%s", code, want, out)
		}
	}

	serveInstalled(t, r)

	// Purging removes the configuration and keeps the journal.
	if out, code := chroot(t, r, "dpkg", "--purge", "station-kiosk", "station"); code != 0 {
		t.Fatalf("dpkg --purge: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(r, "var/lib/station/journal.db")); err != nil {
		t.Errorf("purging lost the journal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/station/station.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("purging left /etc/station/station.yaml (%v)", err)
	}
	if out, _ := chroot(t, r, "dpkg-statoverride", "--list"); strings.Contains(out, "/etc/station") {
		t.Errorf("purging left the statoverride of /etc/station: %s", out)
	}
}

// serveInstalled starts the daemon the way station.service does (user
// station, the installed configuration, /run/station made for it) and
// reads its local API from outside the root.
func serveInstalled(t *testing.T, r string) {
	t.Helper()
	if out, code := chroot(t, r, "install", "-d", "-o", "station", "-g", "station", "-m", "0750", "/run/station"); code != 0 {
		t.Fatalf("make /run/station: %s", out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	unit, err := os.ReadFile(filepath.Join(r, "lib/systemd/system/station.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatalf("station.service has no ExecStart:\n%s", unit)
	}
	cmd := exec.CommandContext(ctx, "chroot", append([]string{"--userspec=station:station", "--groups=dialout", r},
		strings.Fields(string(m[1]))...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/var/lib/station"}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("station serve ended with exit %d on SIGTERM, want 0\n%s", code, logs.String())
		}
		checkJSONLogs(t, logs.String())
	}()
	sock := filepath.Join(r, "run/station/api.sock")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://station/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nstation_slots 4\n") {
				t.Fatalf("GET /metrics of the installed daemon: %s\n%s", resp.Status, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the installed daemon did not serve %s: %v\n%s", sock, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("the socket %s: %v, mode %v; want 0660 for group station", sock, err, st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(r, "var/lib/station/journal.db")); err != nil {
		t.Errorf("the daemon made no journal in /var/lib/station: %v", err)
	}
}

// checkJSONLogs checks that every log line of --log-json is a JSON object.
func checkJSONLogs(t *testing.T, logs string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "station ") { // the startup line on stdout
			continue
		}
		if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
			t.Errorf("a log line of --log-json is not a JSON object: %q", line)
		}
		n++
	}
	if n == 0 {
		t.Errorf("station serve --log-json logged nothing:\n%s", logs)
	}
}

func wantOwner(t *testing.T, r, path, want string) {
	t.Helper()
	out, code := chroot(t, r, "stat", "-c", "%U:%G %a", path)
	if code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("%s: %q, want %q", path, strings.TrimSpace(out), want)
	}
}

func writeIn(t *testing.T, r, path, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r, path), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func findDeb(t *testing.T, dir, name string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if err != nil || len(m) != 1 {
		t.Fatalf("want one %s_*.deb in %s, found %v (%v)", name, dir, m, err)
	}
	return m[0]
}

func controlFile(t *testing.T, deb, name string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, dir)
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func gitCommit(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return string(out)
}

// The libraries the packages depend on, installed into the fresh roots
// with debootstrap (it does not resolve a local package's dependencies).
var rootPackages = []string{"libusb-1.0-0", "libudev1", "libgl1", "libx11-6", "libxrandr2", "libxcursor1", "libxi6", "libxinerama1", "libxxf86vm1"}

// freshRoot makes a fresh Debian root (minbase, the packages' libraries
// and extra) in a temporary folder, from a tarball of its packages cached
// in the user's cache folder.
func freshRoot(t *testing.T, extra ...string) string {
	t.Helper()
	include := append(append([]string(nil), rootPackages...), extra...)
	suite := osRelease(t, "VERSION_CODENAME")
	mirror := debianMirror()
	sum := sha256.Sum256([]byte(suite + " " + strings.Join(include, ",")))
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(cache, "station", "debootstrap", fmt.Sprintf("%s-%s.tgz", suite, hex.EncodeToString(sum[:6])))
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ",")}
	if _, err := os.Stat(tarball); err != nil {
		if err := os.MkdirAll(filepath.Dir(tarball), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := tarball + ".part"
		work := filepath.Join(t.TempDir(), "download")
		run(t, "debootstrap", append(args, "--make-tarball="+tmp, suite, work, mirror)...)
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
	}
	r := filepath.Join(t.TempDir(), "root")
	run(t, "debootstrap", append(args, "--unpack-tarball="+tarball, suite, r, mirror)...)
	return r
}

// debianMirror is STATION_DEBIAN_MIRROR, else the first Debian mirror apt
// uses here, else deb.debian.org.
func debianMirror() string {
	if m := os.Getenv("STATION_DEBIAN_MIRROR"); m != "" {
		return m
	}
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := regexp.MustCompile(`(?m)(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian/?)\s`).FindSubmatch(data); m != nil {
			return string(m[1])
		}
	}
	return "http://deb.debian.org/debian"
}

func osRelease(t *testing.T, key string) string {
	t.Helper()
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok && v != "" {
			return strings.Trim(v, `"`)
		}
	}
	need(t, false, "the install test needs a Debian host (/etc/os-release has no "+key+")")
	return ""
}
