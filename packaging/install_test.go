package packaging

import (
	"bufio"
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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
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

// run runs a command in a process group of its own, bound to ctx, and
// returns its combined output; it fails the test when the command fails.
func run(ctx context.Context, t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := proctest.Output(exec.CommandContext(ctx, name, args...))
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), childErr(ctx, err), out)
	}
	return string(out)
}

// chrootEnv is the environment of the commands run in a root.
var chrootEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}

// chroot runs a command in root, bound to ctx, and returns its output and
// exit code. It fails the test when the command cannot run or ctx ends
// first.
func chroot(ctx context.Context, t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...)
	cmd.Env = chrootEnv
	out, err := proctest.Output(cmd)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case ctx.Err() == nil && errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("chroot %s %s: %v\n%s", root, strings.Join(args, " "), childErr(ctx, err), out)
	return "", 0
}

// TestPackages builds the packages and installs them into fresh Debian
// roots, as a line technician would on a new PC.
func TestPackages(t *testing.T) {
	need(t, os.Geteuid() == 0, "the install test needs root (debootstrap and chroot)")
	for _, tool := range []string{"debootstrap", "lintian", "dpkg-deb", "chroot"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed")
	}
	ctx := testContext(t)
	root := repoRoot(t)
	station, kiosk := buildPackages(ctx, t, root)
	version := strings.TrimSpace(run(ctx, t, "dpkg-deb", "-f", station, "Version"))
	commit := strings.TrimSpace(run(ctx, t, "git", "-C", root, "rev-parse", "--short=12", "HEAD"))

	t.Run("lintian", func(t *testing.T) {
		ctx := testContext(t)
		out, err := proctest.Output(exec.CommandContext(ctx, "lintian", "--tag-display-limit", "0", station, kiosk))
		if ctx.Err() != nil {
			t.Fatalf("lintian: %v\n%s", childErr(ctx, err), out)
		}
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
		ctx := testContext(t)
		conffiles := controlFile(ctx, t, station, "conffiles")
		for _, f := range []string{"/etc/station/station.yaml", "/etc/station/fixture.yaml"} {
			if !strings.Contains(conffiles, f+"\n") {
				t.Errorf("%s is not a conffile; conffiles:\n%s", f, conffiles)
			}
		}
		list := run(ctx, t, "dpkg-deb", "-c", station) + run(ctx, t, "dpkg-deb", "-c", kiosk)
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
			ctx := testContext(t)
			var extra []string
			if tc.systemd {
				extra = []string{"systemd"}
			}
			r := freshRoot(ctx, t, extra...)
			install(ctx, t, r, station, kiosk)
			checkInstalled(ctx, t, r, version, commit, tc.systemd)
		})
	}
	t.Run("boots", func(t *testing.T) { bootInstalled(testContext(t), t, station, kiosk) })
}

// buildPackages runs scripts/package as docs/install.md shows it, with
// its default folder (~/.cache/station/packages) in a temporary
// XDG_CACHE_HOME, and returns the paths it prints on its last lines: the
// packages station and station-kiosk.
func buildPackages(ctx context.Context, t *testing.T, root string) (station, kiosk string) {
	t.Helper()
	gocache := strings.TrimSpace(run(ctx, t, "go", "env", "GOCACHE"))
	cacheHome := t.TempDir()
	cmd := exec.CommandContext(ctx, filepath.Join(root, docPackage))
	cmd.Dir = root
	// Go's build cache stays where it is: it too would follow
	// XDG_CACHE_HOME, and every run would rebuild Fyne.
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cacheHome, "GOCACHE="+gocache)
	var stdout, stderr proctest.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := proctest.Start(t, cmd).Wait(ctx); err != nil {
		t.Fatalf("%s: %v\n%s%s", docPackage, childErr(ctx, err), stderr.String(), stdout.String())
	}
	out := filepath.Join(cacheHome, "station", "packages")
	station, kiosk = findDeb(t, out, "station"), findDeb(t, out, "station-kiosk")
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if n := len(lines); n < 2 || !slices.Contains(lines[n-2:], station) || !slices.Contains(lines[n-2:], kiosk) {
		t.Errorf("%s printed %q last; want the paths of the two packages, %s and %s", docPackage, lines, station, kiosk)
	}
	return station, kiosk
}

// aptInstall installs the packages into the root r as docs/install.md
// shows (docInstall), in the folder that holds them. The root has their
// dependencies, so apt needs no package list and no network.
func aptInstall(ctx context.Context, t *testing.T, r string, debs ...string) {
	t.Helper()
	for _, deb := range debs {
		copyIn(t, r, deb)
	}
	if out, code := chroot(ctx, t, r, "sh", "-c", "cd /tmp && "+docInstall+" </dev/null"); code != 0 {
		t.Fatalf("%s: exit %d\n%s", docInstall, code, out)
	}
}

// copyIn copies the file at path into the root r's /tmp.
func copyIn(t *testing.T, r, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r, "tmp", filepath.Base(path)), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// install installs the packages into the root r with dpkg -i.
func install(ctx context.Context, t *testing.T, r string, debs ...string) {
	t.Helper()
	args := []string{"dpkg", "-i"}
	for _, deb := range debs {
		copyIn(t, r, deb)
		args = append(args, "/tmp/"+filepath.Base(deb))
	}
	if out, code := chroot(ctx, t, r, args...); code != 0 {
		t.Fatalf("dpkg -i: exit %d\n%s", code, out)
	}
}

func checkInstalled(ctx context.Context, t *testing.T, r, version, commit string, systemd bool) {
	out, code := chroot(ctx, t, r, "station", "--version")
	if code != 0 || !strings.Contains(out, version) || !strings.Contains(out, commit) {
		t.Errorf("station --version: exit %d, %q; want the version %s and the commit %s", code, out, version, commit)
	}
	out, code = chroot(ctx, t, r, "station-kiosk", "--version")
	if code != 0 || !strings.Contains(out, version) {
		t.Errorf("station-kiosk --version: exit %d, %q; want %s", code, out, version)
	}
	out, code = chroot(ctx, t, r, strings.Fields(docCheck)...)
	if code != 0 || !strings.Contains(out, "/etc/station/station.yaml") || !strings.Contains(out, "the station can start") {
		t.Errorf("station config check of the installed configuration: exit %d\n%s", code, out)
	}

	// The user, its groups and the folders, as postinst made them.
	if out, _ := chroot(ctx, t, r, "id", "station"); !strings.Contains(out, "(station)") || !strings.Contains(out, "(dialout)") {
		t.Errorf("id station: %q; want user station in groups station and dialout", out)
	}
	wantOwner(ctx, t, r, "/var/lib/station", "station:station 750")
	wantOwner(ctx, t, r, "/etc/station", "root:station 750")
	if systemd {
		link := filepath.Join(r, "etc/systemd/system/multi-user.target.wants/station.service")
		if dest, err := os.Readlink(link); err != nil || !strings.HasSuffix(dest, "/station.service") {
			t.Errorf("station.service is not enabled: %s -> %q (%v)", link, dest, err)
		}
		if out, err := proctest.Output(exec.CommandContext(ctx, "systemd-analyze", "verify", "--root="+r, "station.service")); err != nil {
			t.Errorf("systemd-analyze verify station.service: %v\n%s", childErr(ctx, err), out)
		}
		out, err := proctest.Output(exec.CommandContext(ctx, "systemd-analyze", "security", "--offline=true", "--root="+r, "station.service"))
		if err != nil {
			t.Errorf("systemd-analyze security station.service: %v\n%s", childErr(ctx, err), out)
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
	out, code = chroot(ctx, t, r, "station", "config", "check", "--config", "/etc/station/bad.yaml")
	if code != 1 || !strings.Contains(out, `line 6: unknown key "printr"`) {
		t.Errorf("config check of a file with an unknown key: exit %d, want 1 and the key with its line\n%s", code, out)
	}
	writeIn(t, r, "etc/station/bad.yaml", strings.Replace(bad, "printr", "printer", 1))
	out, code = chroot(ctx, t, r, "station", "config", "check", "--config", "/etc/station/bad.yaml", "--timeout", "2s")
	for _, want := range []string{"S1", "port", `group "nosuchgroup" does not exist`, "127.0.0.1:9 does not answer"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("config check of a bad file: exit %d, want 1 and %q\n%s", code, want, out)
		}
	}

	serveInstalled(ctx, t, r)

	// Purging removes the configuration and keeps the journal.
	if out, code := chroot(ctx, t, r, "dpkg", "--purge", "station-kiosk", "station"); code != 0 {
		t.Fatalf("dpkg --purge: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(r, "var/lib/station/journal.db")); err != nil {
		t.Errorf("purging lost the journal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/station/station.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("purging left /etc/station/station.yaml (%v)", err)
	}
	if out, _ := chroot(ctx, t, r, "dpkg-statoverride", "--list"); strings.Contains(out, "/etc/station") {
		t.Errorf("purging left the statoverride of /etc/station: %s", out)
	}
}

// serveInstalled starts the daemon the way station.service does (user
// station, the installed configuration, /run/station made for it) and
// reads its local API from outside the root.
func serveInstalled(ctx context.Context, t *testing.T, r string) {
	t.Helper()
	if out, code := chroot(ctx, t, r, "install", "-d", "-o", "station", "-g", "station", "-m", "0750", "/run/station"); code != 0 {
		t.Fatalf("make /run/station: %s", out)
	}
	unit, err := os.ReadFile(filepath.Join(r, "lib/systemd/system/station.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatalf("station.service has no ExecStart:\n%s", unit)
	}
	// chroot execs the daemon: it is the test's child, and its group's leader.
	var logs proctest.Buffer
	cmd := exec.CommandContext(ctx, "chroot", append([]string{"--userspec=station:station", "--groups=dialout", r},
		strings.Fields(string(m[1]))...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/var/lib/station"}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	daemon := proctest.Start(t, cmd)
	defer func() {
		// SIGTERM, as systemctl stop sends it: the daemon closes its
		// journal and exits 0, well inside the unit's TimeoutStopSec.
		if err := daemon.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
			t.Errorf("station serve ended with %v on SIGTERM, want exit 0\n%s", childErr(ctx, err), logs.String())
		}
		checkJSONLogs(t, logs.String())
	}()

	// The daemon prints its banner once it listens on its socket.
	started, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	select {
	case <-logs.Seen("local API on unix:"):
	case <-daemon.Done():
		t.Fatalf("station serve ended before it served its socket: %v\n%s", daemon.Err(), logs.String())
	case <-started.Done():
		t.Fatalf("the installed daemon did not serve its socket: %v\n%s", context.Cause(started), logs.String())
	}
	sock := filepath.Join(r, "run/station/api.sock")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(started, http.MethodGet, "http://station/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics of the installed daemon on %s: %v\n%s", sock, err, logs.String())
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nstation_slots 4\n") {
		t.Fatalf("GET /metrics of the installed daemon: %s (%v)\n%s", resp.Status, err, body)
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

func wantOwner(ctx context.Context, t *testing.T, r, path, want string) {
	t.Helper()
	out, code := chroot(ctx, t, r, "stat", "-c", "%U:%G %a", path)
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

func controlFile(ctx context.Context, t *testing.T, deb, name string) string {
	t.Helper()
	dir := t.TempDir()
	run(ctx, t, "dpkg-deb", "--control", deb, dir)
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The libraries the packages depend on, installed into the fresh roots
// with debootstrap (it does not resolve a local package's dependencies).
var rootPackages = []string{"libusb-1.0-0", "libudev1", "libgl1", "libx11-6", "libxrandr2", "libxcursor1", "libxi6", "libxinerama1", "libxxf86vm1"}

// freshRoot makes a fresh Debian root (minbase, the packages' libraries
// and extra) in a temporary folder. The first time, debootstrap downloads
// the packages into a tarball and installs them; the root it made, still
// untouched, is kept as a tar next to that tarball. Both are in the
// user's cache folder (~/.cache/station/debootstrap; remove it to start
// from Debian's mirror again), so later runs unpack the root in seconds
// instead of configuring Debian's packages for minutes. At the end of the
// test, whatever still runs in the root is killed and whatever is mounted
// in it unmounted, before the folder is removed.
func freshRoot(ctx context.Context, t *testing.T, extra ...string) string {
	t.Helper()
	include := append(append([]string(nil), rootPackages...), extra...)
	suite := osRelease(t, "VERSION_CODENAME")
	mirror := debianMirror()
	sum := sha256.Sum256([]byte(suite + " " + strings.Join(include, ",")))
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(cache, "station", "debootstrap", fmt.Sprintf("%s-%s", suite, hex.EncodeToString(sum[:6])))
	tarball, rootTar := base+".tgz", base+"-root.tar"
	r := filepath.Join(t.TempDir(), "root")
	t.Cleanup(func() { releaseRoot(t, r) })
	if _, err := os.Stat(rootTar); err == nil {
		if err := os.Mkdir(r, 0o755); err != nil {
			t.Fatal(err)
		}
		run(ctx, t, "tar", "--extract", "--file", rootTar, "--directory", r,
			"--numeric-owner", "--preserve-permissions", "--xattrs", "--xattrs-include=*")
		return r
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ",")}
	if _, err := os.Stat(tarball); err != nil {
		if err := os.MkdirAll(filepath.Dir(tarball), 0o755); err != nil {
			t.Fatal(err)
		}
		work := filepath.Join(t.TempDir(), "download")
		t.Cleanup(func() { releaseRoot(t, work) })
		// Another test binary (another checkout's) may be making the
		// same files: each writes its own, and renames it into place.
		cacheFile(t, tarball, func(tmp string) {
			run(ctx, t, "debootstrap", append(args, "--make-tarball="+tmp, suite, work, mirror)...)
		})
	}
	run(ctx, t, "debootstrap", append(args, "--unpack-tarball="+tarball, suite, r, mirror)...)
	if err := unmountBelow(r); err != nil {
		t.Fatalf("unmount what debootstrap left mounted in %s: %v", r, err)
	}
	cacheFile(t, rootTar, func(tmp string) {
		run(ctx, t, "tar", "--create", "--file", tmp, "--directory", r,
			"--one-file-system", "--numeric-owner", "--xattrs", "--xattrs-include=*", ".")
	})
	return r
}

// cacheFile makes the cached file path by calling write with a temporary
// name beside it, and renames that into place.
func cacheFile(t *testing.T, path string, write func(tmp string)) {
	t.Helper()
	tmp := fmt.Sprintf("%s.%d.part", path, os.Getpid())
	defer os.Remove(tmp)
	write(tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
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
