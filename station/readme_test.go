package station

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/station-dev/station/fixtures/doccmd"
	"github.com/station-dev/station/fixtures/proctest"
	"github.com/station-dev/station/station/dms/pgtest"
)

// readmeCommands returns the commands of README.md's ```sh blocks, in
// order.
func readmeCommands(t *testing.T) []doccmd.Command {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return doccmd.Shell(string(b))
}

// readmeElsewhere are the README's commands that another test runs, as
// shown: the test named (package and function) must exist.
var readmeElsewhere = map[string]string{
	"scripts/test": "", // the suite itself: .ci/run runs it
	"station serve --simulate 16 --socket /tmp/station.sock --cycle 5s":     "ui/e2e_test.go TestREADMEQuickStart",
	"go run ./ui/cmd/station-kiosk --api unix:/tmp/station.sock --windowed": "ui/e2e_test.go TestREADMEQuickStart",
	"scripts/package": "packaging/install_test.go TestPackages",
	"apt install ./station_*.deb ./station-kiosk_*.deb": "packaging/install_test.go TestPackages",
	"station config check":                              "packaging/install_test.go TestPackages",
}

// TestREADMECommands runs every command README.md shows, with the
// arguments shown, so that a renamed flag breaks this test rather than a
// reader's first try. Paths under /tmp and /var/lib and the example
// hosts (db.line, dms.line, port 8080) become the test's own folder, a
// throwaway PostgreSQL database and a free loopback port; nothing else is
// changed. A command that neither this test nor one named in
// readmeElsewhere runs fails the test.
func TestREADMECommands(t *testing.T) {
	r := &readmeRun{t: t, bin: buildStation(t), scriptBin: t.TempDir()}
	scenarios := []struct {
		name string
		cmds []string
		run  func(t *testing.T, cmds []string)
	}{
		{"demo", []string{
			"scripts/demo",
			"scripts/demo --devices 16 --image-size 2MiB --baud 460800",
			"scripts/demo --json",
			"scripts/demo --fault S03=unplug@40",
			"scripts/demo --protocol stm32",
			"scripts/demo --protocol gdb",
			"scripts/demo --protocol dfu",
			"scripts/demo --help",
		}, r.demo},
		{"sim run export", []string{
			"station sim --protocol esp --count 4 --dir /tmp/sim",
			"station run --work-order wo.json --fixture fixture.yaml --dms sqlite:dms.db",
			"station export --journal station-journal.db --work-order WO-1042 --out wo-1042-export",
			"station export verify wo-1042-export",
		}, r.simRunExport},
		{"dms on the line, postgresql", []string{
			"station dms --db postgres://dms@db.line/dms --listen :8080 --admin-key-file admin.key",
			`curl -H "Content-Type: application/json" -H "Authorization: Bearer $(cat admin.key)" -d '{"role":"station","station":"line-1"}' http://dms.line:8080/v1/keys`,
			"station run --dms http://dms.line:8080 --key-file station.key --station line-1 --work-order WO-1042 --token-file token --fixture fixture.yaml",
		}, r.dmsOnTheLine},
		{"dms on the line, sqlite", []string{
			"station dms --db sqlite:/var/lib/station/dms.db --listen :8080 --admin-key-file admin.key",
			`curl -H "Content-Type: application/json" -H "Authorization: Bearer $(cat admin.key)" -d '{"role":"station","station":"line-1"}' http://dms.line:8080/v1/keys`,
			"station run --dms http://dms.line:8080 --key-file station.key --station line-1 --work-order WO-1042 --token-file token --fixture fixture.yaml",
		}, r.dmsOnTheLine},
	}

	shown := map[string]bool{}
	for _, c := range readmeCommands(t) {
		shown[c.Text] = true
	}
	known := map[string]bool{}
	for _, s := range scenarios {
		for _, c := range s.cmds {
			known[c] = true
		}
	}
	for c, where := range readmeElsewhere {
		known[c] = true
		if where == "" {
			continue
		}
		file, fn, _ := strings.Cut(where, " ")
		src, err := os.ReadFile(filepath.Join("..", file))
		if err != nil || !strings.Contains(string(src), "func "+fn+"(") {
			t.Errorf("readmeElsewhere: %q is said to run in %s, which has no such test", c, where)
		}
	}
	for _, c := range readmeCommands(t) {
		if !known[c.Text] {
			t.Errorf("README.md:%d shows %q, which no test runs: add it to TestREADMECommands", c.Line, c.Text)
		}
	}
	for c := range known {
		if !shown[c] {
			t.Errorf("TestREADMECommands runs %q, which README.md no longer shows: update the test", c)
		}
	}
	if t.Failed() {
		return
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) { s.run(t, s.cmds) })
	}
}

// readmeRun runs the README's commands.
type readmeRun struct {
	t         *testing.T
	bin       string // the station binary under test
	scriptBin string // STATION_BIN for scripts/demo: its build, shared by the runs
}

// exampleHosts are the README's example addresses, replaced by real ones.
var exampleHosts = regexp.MustCompile(`http://dms\.line:8080`)

// shellWords splits a command shown in the README into words (it quotes
// nothing but what the README's station commands need: none).
func shellWords(c string) []string { return strings.Fields(c) }

// run runs a command's words in dir with extra environment and returns
// its output (standard output, then standard error) and exit code.
func (r *readmeRun) run(t *testing.T, dir string, env []string, name string, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := r.run2(t, dir, env, name, args...)
	return stdout + stderr, code
}

// run2 is run with standard output and standard error apart.
func (r *readmeRun) run2(t *testing.T, dir string, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	proctest.Isolate(cmd)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String(), code
}

var summaryRe = regexp.MustCompile(`(\d+) devices, (\d+) passed, (\d+) failed`)

// summary reads "N devices, P passed, F failed" from a run's output.
func summary(t *testing.T, out string) (devices, passed, failed int) {
	t.Helper()
	m := summaryRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	devices, _ = strconv.Atoi(m[1])
	passed, _ = strconv.Atoi(m[2])
	failed, _ = strconv.Atoi(m[3])
	return devices, passed, failed
}

// demo runs each scripts/demo line of the README with the real script
// (which builds the station) and checks what it promises.
func (r *readmeRun) demo(t *testing.T, cmds []string) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			words := shellWords(c)
			stdout, stderr, code := r.run2(t, root, []string{"STATION_BIN=" + r.scriptBin}, filepath.Join(root, words[0]), words[1:]...)
			out := stdout + stderr
			args := strings.Join(words[1:], " ")
			switch {
			case args == "--help":
				if code != 0 || !strings.Contains(out, "-protocol") || !strings.Contains(out, "-fault") {
					t.Fatalf("%s: exit %d, want 0 and the flags explained:\n%s", c, code, out)
				}
			case args == "--json":
				if code != 0 {
					t.Fatalf("%s: exit %d\n%s", c, code, out)
				}
				var s demoSummary
				if err := json.Unmarshal([]byte(stdout), &s); err != nil {
					t.Fatalf("%s printed no JSON summary: %v\n%s", c, err, out)
				}
				if s.Devices != 8 || s.Passed != 8 || s.Failed != 0 {
					t.Errorf("%s: %d devices, %d passed, %d failed; want 8 passed", c, s.Devices, s.Passed, s.Failed)
				}
			case strings.HasPrefix(args, "--fault S03=unplug@40"):
				// The README: "unplug slot S03 at 40 % of its flash".
				devices, passed, failed := summary(t, out)
				if code != 1 || devices != 8 || passed != 7 || failed != 1 {
					t.Fatalf("%s: exit %d, %d devices, %d passed, %d failed; want exit 1 with S03 alone failed\n%s", c, code, devices, passed, failed, out)
				}
				if !regexp.MustCompile(`(?m)^.*S03.*(FAILED|failed).*$`).MatchString(out) {
					t.Errorf("%s: the output does not show S03 failed:\n%s", c, out)
				}
			default:
				want := 8
				if strings.Contains(args, "--devices 16") {
					want = 16
				}
				devices, passed, failed := summary(t, out)
				if code != 0 || devices != want || passed != want || failed != 0 {
					t.Fatalf("%s: exit %d, %d devices, %d passed, %d failed; want %d passed\n%s", c, code, devices, passed, failed, want, out)
				}
			}
		})
	}
}

// startStationSim runs "station sim" as the README shows it, with dir
// for /tmp/sim, and returns once its fixture file is written.
func (r *readmeRun) startStationSim(t *testing.T, c, dir string) {
	t.Helper()
	words := shellWords(strings.ReplaceAll(c, "/tmp/sim", dir))
	sc, logs := r.startStation(t, "", words[1:])
	var printed strings.Builder
	ports := 0
	for sc.Scan() {
		line := sc.Text()
		printed.WriteString(line + "\n")
		// "  S01  DIR/esp-0  MAC …": the port, a link to the device's
		// pseudo-terminal.
		if f := strings.Fields(line); len(f) > 2 && strings.HasPrefix(f[0], "S0") {
			if _, err := os.Stat(f[1]); err != nil {
				t.Fatalf("%s printed port %s, which does not open: %v", c, f[1], err)
			}
			ports++
		}
		if strings.HasPrefix(line, "fixture file: ") {
			if _, err := os.Stat(filepath.Join(dir, "fixture.yaml")); err != nil || ports != 4 {
				break
			}
			go drain(sc)
			return
		}
	}
	t.Fatalf("%s did not print 4 ports and write %s/fixture.yaml:\n%s\n%s", c, dir, printed.String(), logs.String())
}

// simRunExport is the CM's path: simulated devices, a work order run
// from a file against an embedded DMS, and the QA export of its journal.
func (r *readmeRun) simRunExport(t *testing.T, cmds []string) {
	dir := t.TempDir()
	seed, err := seedDemo(t.Context(), demoSpec{dir: dir, devices: 4, imageSize: 64 << 10, baud: 921600,
		locks: []string{"JTAG_DISABLE"}, workOrder: "WO-1042"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seed.store.Close()
	if err := os.Rename(filepath.Join(dir, "work-order.json"), filepath.Join(dir, "wo.json")); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	r.startStationSim(t, cmds[0], filepath.Join(dir, "sim"))
	fx, err := os.ReadFile(filepath.Join(dir, "sim", "fixture.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fixture.yaml"), fx, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"STATION_TOKEN=" + strings.TrimSpace(string(token))}
	out, code := r.run(t, dir, env, r.bin, shellWords(cmds[1])[1:]...)
	if devices, passed, failed := summary(t, out); code != 0 || devices != 4 || passed != 4 || failed != 0 {
		t.Fatalf("%s: exit %d, %d devices, %d passed, %d failed; want 4 passed\n%s", cmds[1], code, devices, passed, failed, out)
	}
	if strings.Contains(out, strings.TrimSpace(string(token))) {
		t.Errorf("%s printed the activation token", cmds[1])
	}
	out, code = r.run(t, dir, nil, r.bin, shellWords(cmds[2])[1:]...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", cmds[2], code, out)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "wo-1042-export", "devices.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(strings.TrimSpace(string(csv)), "\n"); rows != 4 {
		t.Errorf("devices.csv has %d device rows, want 4:\n%s", rows, csv)
	}
	if out, code = r.run(t, dir, nil, r.bin, shellWords(cmds[3])[1:]...); code != 0 {
		t.Fatalf("%s: exit %d\n%s", cmds[3], code, out)
	}
	// A changed byte is found.
	if err := os.WriteFile(filepath.Join(dir, "wo-1042-export", "devices.csv"), append(csv, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code = r.run(t, dir, nil, r.bin, shellWords(cmds[3])[1:]...); code != 1 || !strings.Contains(out, "devices.csv") {
		t.Errorf("%s on a changed export: exit %d, want 1 naming devices.csv\n%s", cmds[3], code, out)
	}
}

// dmsOnTheLine is the README's "Against a DMS on the line": a DMS on
// PostgreSQL (or SQLite), a station key made with curl, and a run of a
// work order by its id with that key and a token file.
func (r *readmeRun) dmsOnTheLine(t *testing.T, cmds []string) {
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "dms.db")
	serveArgs := shellWords(cmds[0])[1:]
	for i, a := range serveArgs {
		switch {
		case strings.HasPrefix(a, "postgres://"):
			dsn = pgtest.NewDatabase(t)
			serveArgs[i] = dsn
		case strings.HasPrefix(a, "sqlite:/var/lib/station/"):
			serveArgs[i] = dsn
		case a == ":8080":
			serveArgs[i] = "127.0.0.1:0"
		}
	}
	seed, err := seedDemo(t.Context(), demoSpec{dir: dir, devices: 2, imageSize: 64 << 10, baud: 921600,
		locks: []string{"JTAG_DISABLE"}, workOrder: "WO-1042", dms: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seed.store.Close()

	url, logs := r.startDMS(t, dir, cmds[0], serveArgs)

	// curl … /v1/keys: the station's key, shown once; the operator keeps
	// it in station.key.
	curl := exampleHosts.ReplaceAllString(cmds[1], url)
	out, code := r.run(t, dir, nil, "sh", "-c", "curl -sS --fail-with-body "+strings.TrimPrefix(curl, "curl "))
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", cmds[1], code, out)
	}
	var key struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(out), &key); err != nil || key.Secret == "" {
		t.Fatalf("%s answered no JSON with the new key's secret (%d bytes, %v)", cmds[1], len(out), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "station.key"), []byte(key.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The fixture: simulated devices, as station sim writes it.
	fleet, fx, err := startSimFleet(t.Context(), filepath.Join(dir, "dev"), 2, "esp32", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	if err := writeFixture(filepath.Join(dir, "fixture.yaml"), fx); err != nil {
		t.Fatal(err)
	}

	run := shellWords(exampleHosts.ReplaceAllString(cmds[2], url))
	out, code = r.run(t, dir, nil, r.bin, run[1:]...)
	if devices, passed, failed := summary(t, out); code != 0 || devices != 2 || passed != 2 || failed != 0 {
		t.Fatalf("%s: exit %d, %d devices, %d passed, %d failed; want 2 passed\n%s\nthe DMS's log:\n%s", cmds[2], code, devices, passed, failed, out, logs.String())
	}
}

// startDMS starts "station dms" with args in dir and returns the URL it
// says it listens on, and its log.
func (r *readmeRun) startDMS(t *testing.T, dir, shown string, args []string) (string, *proctest.Buffer) {
	t.Helper()
	sc, logs := r.startStation(t, dir, args)
	url := ""
	for url == "" && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "dms listening on "); ok {
			url = strings.TrimSpace(rest)
		}
	}
	if url == "" {
		t.Fatalf("%s never said where it listens:\n%s", shown, logs.String())
	}
	go drain(sc)
	return url, logs
}

// startStation starts the station binary with args in dir (the test's
// own when ""), for the test's lifetime, and returns a scanner of its
// standard output and its standard error.
func (r *readmeRun) startStation(t *testing.T, dir string, args []string) (*bufio.Scanner, *proctest.Buffer) {
	t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &proctest.Buffer{}
	cmd.Stderr = logs
	proctest.Start(t, cmd)
	return bufio.NewScanner(stdout), logs
}

// drain reads what is left, so that the program never blocks on a full
// pipe.
func drain(sc *bufio.Scanner) {
	for sc.Scan() {
	}
}

// docLines returns the lines of an indented code block of a file under
// docs/ that start with prefix (after the indent), in order.
func docLines(t *testing.T, file, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", file))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "    "); ok && strings.HasPrefix(rest, prefix) {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

// TestAPIDocStationCommands runs the station commands docs/api.md shows
// (its curl examples run in station/dms/server TestAPIDocExamples): the
// DMS as the doc starts it, and a device's own claim with only a token on
// standard input. The port becomes a free one; $DMS and $TOKEN are the
// DMS's address and a real token.
func TestAPIDocStationCommands(t *testing.T) {
	serve := docLines(t, "api.md", "station dms --db")
	claim := docLines(t, "api.md", `echo "$TOKEN" | station dms claim`)
	if len(serve) != 1 || len(claim) != 1 {
		t.Fatalf("docs/api.md shows %d station dms and %d station dms claim commands, want one each: update this test", len(serve), len(claim))
	}
	r := &readmeRun{t: t, bin: buildStation(t)}
	dir := t.TempDir()
	seed, err := seedDemo(t.Context(), demoSpec{dir: dir, devices: 2, imageSize: 64 << 10, baud: 921600,
		locks: []string{"JTAG_DISABLE"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seed.store.Close()
	args := shellWords(serve[0])[1:]
	for i, a := range args {
		if a == "127.0.0.1:8700" {
			args[i] = "127.0.0.1:0"
		}
	}
	url, logs := r.startDMS(t, dir, serve[0], args)
	if fi, err := os.Stat(filepath.Join(dir, "admin.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: admin.key = %v, %v; want a file of mode 0600", serve[0], fi, err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	c := strings.ReplaceAll(claim[0], "$DMS", url)
	c = strings.Replace(c, "station dms claim", r.bin+" dms claim", 1)
	env := []string{"TOKEN=" + strings.TrimSpace(string(token))}
	out, code := r.run(t, dir, env, "sh", "-c", c)
	if code != 0 || !strings.Contains(out, "24:6f:28:aa:bb:02") || !strings.Contains(out, "serial") {
		t.Fatalf("%s: exit %d, want 0 and the device's serial:\n%s\nthe DMS's log:\n%s", claim[0], code, out, logs.String())
	}
	if strings.Contains(out, strings.TrimSpace(string(token))) {
		t.Errorf("%s printed the token", claim[0])
	}
	// The same device again uses no second claim (DESIGN.md: claiming is
	// idempotent per device).
	again, code := r.run(t, dir, env, "sh", "-c", c)
	if code != 0 {
		t.Fatalf("%s again: exit %d\n%s", claim[0], code, again)
	}
	left := regexp.MustCompile(`claims left on the token: (\d+)`)
	if a, b := left.FindStringSubmatch(out), left.FindStringSubmatch(again); a == nil || b == nil || a[1] != b[1] {
		t.Errorf("claims left after the first claim and after the same device again: %v, %v; want equal", a, b)
	}
}
