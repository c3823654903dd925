package station

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheck runs station config check on configurations with one
// thing wrong each, against a real DMS and a ZPL printer on loopback.
func TestConfigCheck(t *testing.T) {
	dms := startDMSCommand(t, "--db", "sqlite:"+filepath.Join(t.TempDir(), "dms.db"), "--listen", "127.0.0.1:0")
	ready := startZebra(t, 0)
	paperOut := startZebra(t, 1000)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := closed.Addr().String()
	closed.Close()
	g, err := user.LookupGroupId(fmt.Sprint(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}

	const fixture = "slots:\n  - {name: A1, protocol: esp, port: /dev/ttyNOTHERE0}\n  - {name: A2, protocol: esp, port: /dev/null}\n" +
		"  - {name: C1, protocol: gdb, gdb: {server: openocd, interface: interface/stlink.cfg, server_target: target/stm32f4x.cfg, target: stm32f4}}\n"
	base := func(dir string) string {
		return "station: st-1\nfixture: fixture.yaml\n" +
			"dms: {url: " + dms.url + ", key_file: station.key}\n" +
			"journal: " + filepath.Join(dir, "journal.db") + "\n" +
			"printer: tcp://" + ready.ln.Addr().String() + "\n" +
			"api: {socket: api.sock, group: " + g.Name + "}\n" +
			"operators:\n  - {name: Olga, pin_sha256: 03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4}\n"
	}
	for _, tc := range []struct {
		name    string
		edit    func(cfg string) string
		fixture string
		keyMode os.FileMode
		code    int      // exit code
		want    []string // "level|check|part of the message"
	}{
		{"good", nil, fixture, 0o600, ExitOK, []string{
			"ok|config|station st-1", "ok|slot A1|no device plugged in now", "ok|dms.key_file", "ok|printer|answers and is ready", "ok|dms|answers",
			`ok|slot C1|target stm32f4 on openocd: resets with "reset run"; locks with "stm32f2x lock 0", read back from FLASH_OPTCR.RDP at 0x40023c14`,
		}},
		// A misspelt gdb target, which the flasher once took for a target
		// with no map, no lock and no reset.
		{"gdb target unknown", nil, strings.Replace(fixture, "target: stm32f4}", "target: stm32f5}", 1), 0o600, ExitFailed, []string{
			`error|fixture|slots[2] (C1).gdb.target: "stm32f5" is not a target the station knows (it knows stm32f4, netduinoplus2)`,
		}},
		{"gdb lock on QEMU", nil, "slots:\n  - {name: Q1, protocol: gdb, gdb: {attach: \"127.0.0.1:1234\", target: netduinoplus2, hardware_id: q1, lock: {command: \"stm32f2x lock 0\"}}}\n",
			0o600, ExitFailed, []string{"error|fixture|slots[0] (Q1).gdb.lock: target netduinoplus2 cannot be locked"}},
		{"unknown key", func(c string) string { return c + "colour: blue\n" }, fixture, 0o600, ExitFailed, []string{
			`error|config|line 9: unknown key "colour"`,
		}},
		{"slot without a port", nil, "slots:\n  - {name: A1, protocol: esp}\n", 0o600, ExitFailed, []string{
			"error|fixture|slots[0] (A1).port: is missing",
		}},
		{"two slots on one port", nil, fixture + "  - {name: A3, protocol: stm32, port: /dev/null}\n", 0o600, ExitFailed, []string{
			"error|fixture|slots[3] (A3).port: names the same port /dev/null as slots[1] (A2)",
		}},
		{"printer out of paper", func(c string) string {
			return strings.Replace(c, ready.ln.Addr().String(), paperOut.ln.Addr().String(), 1)
		}, fixture, 0o600, ExitFailed, []string{"error|printer|is out of paper"}},
		{"printer not answering", func(c string) string {
			return strings.Replace(c, ready.ln.Addr().String(), nothing, 1)
		}, fixture, 0o600, ExitFailed, []string{"error|printer|does not answer"}},
		{"printer misspelt", func(c string) string {
			return strings.Replace(c, "printer: tcp://", "printer: tpc://", 1)
		}, fixture, 0o600, ExitFailed, []string{"error|printer|use tcp://HOST:9100"}},
		{"DMS down", func(c string) string {
			return strings.Replace(c, dms.url, "http://"+nothing, 1)
		}, fixture, 0o600, ExitOK, []string{"warning|dms|does not answer"}},
		{"key readable by all", nil, fixture, 0o644, ExitOK, []string{"warning|dms.key_file|can be read by every user"}},
		{"no such group", func(c string) string {
			return strings.Replace(c, "group: "+g.Name, "group: nosuchgroup-station", 1)
		}, fixture, 0o600, ExitFailed, []string{`error|api.group|group "nosuchgroup-station" does not exist`}},
		{"no operators", func(c string) string { return c[:strings.Index(c, "operators:")] }, fixture, 0o600, ExitOK, []string{
			"warning|operators|none",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := base(dir)
			if tc.edit != nil {
				cfg = tc.edit(cfg)
			}
			write := func(name, data string, mode os.FileMode) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(filepath.Join(dir, name), mode)
			}
			write("station.yaml", cfg, 0o644)
			write("fixture.yaml", tc.fixture, 0o644)
			const secret = "dmk_secret-never-printed"
			write("station.key", secret+"\n", tc.keyMode)

			stdout, _, err := runMain(t, "config", "check", "--config", filepath.Join(dir, "station.yaml"), "--timeout", "2s", "--json")
			if code := Code(err); code != tc.code {
				t.Errorf("exit %d (%v), want %d\n%s", code, err, tc.code, stdout)
			}
			var rep configReport
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("--json: %v\n%s", err, stdout)
			}
			var lines []string
			for _, f := range rep.Findings {
				lines = append(lines, f.Level+" "+f.Check+" "+f.Message)
			}
			all := strings.Join(lines, "\n")
			for _, w := range tc.want {
				level, rest, _ := strings.Cut(w, "|")
				check, part, _ := strings.Cut(rest, "|")
				found := false
				for _, f := range rep.Findings {
					found = found || (f.Level == level && f.Check == check && strings.Contains(f.Message, part))
				}
				if !found {
					t.Errorf("no finding %q in:\n%s", w, all)
				}
			}
			if rep.OK != (tc.code == ExitOK) {
				t.Errorf("ok = %v with exit %d", rep.OK, tc.code)
			}
			if strings.Contains(stdout, secret) {
				t.Errorf("the output shows the key file's secret")
			}
			text, _, _ := runMain(t, "config", "check", "--config", filepath.Join(dir, "station.yaml"), "--timeout", "2s")
			if !strings.Contains(text, "station config check ") || strings.Contains(text, secret) {
				t.Errorf("text output:\n%s", text)
			}
		})
	}
}

func TestConfigCheckUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"config"}, ExitUsage},
		{[]string{"config", "frob"}, ExitUsage},
		{[]string{"config", "check", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, ExitFailed},
		{[]string{"config", "--help"}, ExitOK},
	} {
		stdout, stderr, err := runMain(t, tc.args...)
		if code := Code(err); code != tc.code {
			t.Errorf("station %v: exit %d (%v), want %d\n%s%s", tc.args, code, err, tc.code, stdout, stderr)
		}
	}
}
