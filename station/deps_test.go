package station

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyBoundaries enforces the layout's rules on imports: the
// daemon, the pipeline and the flashers never link GUI code, and the kiosk
// never links hardware, storage or flasher code (checked over every
// transitive dependency); the pipeline imports of the station only its
// journal's event types, and flashers import nothing of jobs, fixtures or
// the station (checked on direct imports).
func TestDependencyBoundaries(t *testing.T) {
	const mod = "github.com/station-dev/station/"
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "../...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type pkg struct {
		ImportPath    string
		Imports, Deps []string
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.ImportPath, mod) {
			pkgs = append(pkgs, p)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	heavy := []string{"fyne.io/", "github.com/google/gousb", "go.bug.st/serial", "github.com/mattn/go-sqlite3"}
	rules := []struct {
		under     string   // packages under this path...
		forbidden []string // ...must not depend on these prefixes
		allowed   []string // except these
		direct    bool     // only direct imports count
	}{
		{"station", heavy[:1], nil, false},
		{"jobs", heavy[:1], nil, false},
		{"flasher", heavy[:1], nil, false},
		{"fixtures", heavy[:1], nil, false},
		{"ui", heavy[1:], nil, false},
		{"ui", []string{mod + "flasher", mod + "jobs", mod + "fixtures", mod + "station"}, []string{mod + "station/localapi"}, true},
		{"jobs", []string{mod + "station", mod + "fixtures"}, []string{mod + "station/journal"}, true},
		{"flasher", []string{mod + "jobs", mod + "station", mod + "fixtures"}, nil, true},
		{"fixtures", []string{mod + "station"}, nil, true},
	}
	checked := 0
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, r := range rules {
			if rel != r.under && !strings.HasPrefix(rel, r.under+"/") {
				continue
			}
			checked++
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, d := range deps {
				for _, f := range r.forbidden {
					if strings.HasPrefix(d, f) && !allowedDep(d, r.allowed) {
						t.Errorf("%s imports %s, which %s/ must not", p.ImportPath, d, r.under)
					}
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; the package list is wrong", checked)
	}
}

func allowedDep(dep string, allowed []string) bool {
	for _, a := range allowed {
		if dep == a || strings.HasPrefix(dep, a+"/") {
			return true
		}
	}
	return false
}
