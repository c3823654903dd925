package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/station-dev/station/fixtures/doccmd"
)

// The commands docs/install.md shows, as shown. TestInstallDocCommands
// checks that the doc shows exactly these; TestPackages runs each.
const (
	// docPackage runs in buildPackages, with its default folder.
	docPackage = "scripts/package"
	// docInstall installs the packages into the machine bootInstalled
	// boots (aptInstall).
	docInstall = "apt install ./station_*.deb ./station-kiosk_*.deb"
	// docCheck, docRestart and docJournal run in the booted machine
	// (bootCheckScript); docCheck also runs in each Debian root.
	docCheck   = "station config check"
	docRestart = "systemctl restart station"
	// docJournal follows the journal until stopped: the machine stops it
	// after a few seconds with timeout(1).
	docJournal = "journalctl -u station -f"
)

// TestInstallDocCommands checks that docs/install.md shows the commands
// TestPackages runs, and no other: a changed command in the doc fails
// here until the test runs it as shown.
func TestInstallDocCommands(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	run := map[string]bool{docPackage: true, docInstall: true, docCheck: true, docRestart: true, docJournal: true}
	shown := map[string]bool{}
	for _, c := range doccmd.Shell(string(data)) {
		shown[c.Text] = true
		if !run[c.Text] {
			t.Errorf("docs/install.md:%d shows %q, which no test runs: run it in TestPackages as shown", c.Line, c.Text)
		}
	}
	for c := range run {
		if !shown[c] {
			t.Errorf("TestPackages runs %q, which docs/install.md no longer shows: update the test", c)
		}
	}
	for _, c := range []string{docCheck, docRestart, docJournal} {
		if !strings.Contains(bootCheckScript, c+" ") && !strings.Contains(bootCheckScript, c+"\n") {
			t.Errorf("the booted machine's check does not run %q as docs/install.md shows it", c)
		}
	}
}
