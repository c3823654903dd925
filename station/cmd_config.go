package station

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/station/daemon"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/label"
)

// DefaultConfig is the configuration file the packaged station uses.
const DefaultConfig = "/etc/station/station.yaml"

const configHelp = `
station config check: check the station's configuration before starting it.

It reads the file the daemon reads (docs/station-yaml.md) and reports, one
line each: unknown keys and bad values with their line, the fixture and
every slot (a slot without a port, whether its device is plugged in now),
the key and token files (present, not readable by others), the journal's
folder, the socket's group, whether the label printer answers and is
ready, and whether the DMS answers. Secrets are never printed.

It exits 0 when nothing is wrong (warnings allowed), 1 when something
must be fixed, 2 on a wrong command line.

Examples:
  station config check                         # /etc/station/station.yaml
  station config check --config station.yaml --offline
  station config check --json | jq '.findings[] | select(.level=="error")'
`

// Finding levels of station config check.
const (
	levelOK      = "ok"
	levelWarning = "warning"
	levelError   = "error"
)

// finding is one result of station config check.
type finding struct {
	Level   string `json:"level"`
	Check   string `json:"check"`
	Message string `json:"message"`
}

// configReport is what station config check --json prints.
type configReport struct {
	Config   string    `json:"config"`
	OK       bool      `json:"ok"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	Findings []finding `json:"findings"`
}

func (m *Main) configCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(m.Stdout, strings.TrimLeft(configHelp, "\n"))
			return nil
		}
		fmt.Fprint(m.Stderr, strings.TrimLeft(configHelp, "\n"))
		return usageErr("say what to do: station config check")
	}
	fs := m.newFlagSet("config check", configHelp)
	path := m.Getenv("STATION_CONFIG")
	if path == "" {
		path = DefaultConfig
	}
	var offline, asJSON bool
	timeout := 5 * time.Second
	fs.StringVar(&path, "config", path, "the configuration `file` to check (env STATION_CONFIG)")
	fs.BoolVar(&offline, "offline", false, "do not contact the printer or the DMS")
	fs.DurationVar(&timeout, "timeout", timeout, "how `long` to wait for the printer and the DMS")
	fs.BoolVar(&asJSON, "json", false, "print the findings as JSON")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	c := configChecker{offline: offline, timeout: timeout}
	c.check(ctx, path)
	rep := configReport{Config: path, Findings: c.findings}
	for _, f := range c.findings {
		switch f.Level {
		case levelError:
			rep.Errors++
		case levelWarning:
			rep.Warnings++
		}
	}
	rep.OK = rep.Errors == 0
	if asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(m.Stdout, "station config check %s\n", path)
		tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
		for _, f := range rep.Findings {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Level, f.Check, f.Message)
		}
		tw.Flush()
		switch {
		case rep.Errors > 0:
			fmt.Fprintf(m.Stdout, "%d error(s), %d warning(s): fix the errors, then run station config check again\n", rep.Errors, rep.Warnings)
		case rep.Warnings > 0:
			fmt.Fprintf(m.Stdout, "no errors, %d warning(s): the station can start\n", rep.Warnings)
		default:
			fmt.Fprintln(m.Stdout, "no problems found: the station can start")
		}
	}
	if rep.Errors > 0 {
		return &ExitError{Code: ExitFailed, Err: fmt.Errorf("%s has %d problem(s) to fix", path, rep.Errors)}
	}
	return nil
}

// configChecker collects the findings of one station config check.
type configChecker struct {
	offline  bool
	timeout  time.Duration
	findings []finding
}

func (c *configChecker) add(level, check, format string, args ...any) {
	c.findings = append(c.findings, finding{Level: level, Check: check, Message: fmt.Sprintf(format, args...)})
}

func (c *configChecker) check(ctx context.Context, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.add(levelError, "config", "cannot read %s: %v; give the file with --config (see docs/station-yaml.md)", path, errors.Unwrap(err))
		return
	}
	cfg, err := daemon.ParseConfig(data)
	if err != nil {
		c.add(levelError, "config", "%v", err)
		return
	}
	if cfg.Dir, err = filepath.Abs(filepath.Dir(path)); err != nil {
		c.add(levelError, "config", "%v", err)
		return
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range unjoin(err) {
			check, msg, ok := strings.Cut(e.Error(), ": ")
			if !ok {
				check, msg = "config", e.Error()
			}
			c.add(levelError, check, "%s", msg)
		}
	} else {
		c.add(levelOK, "config", "station %s: every key known and every value valid", cfg.Station)
	}
	c.fixture(&cfg)
	c.files(&cfg)
	c.api(&cfg)
	c.printer(ctx, &cfg)
	c.dms(ctx, &cfg)
	if len(cfg.Operators) == 0 {
		c.add(levelWarning, "operators", "none: nobody can sign in at the kiosk; add operators with a pin_sha256")
	}
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (c *configChecker) fixture(cfg *daemon.Config) {
	if cfg.Fixture == "" {
		return
	}
	f, err := fixtures.Load(cfg.Path(cfg.Fixture))
	if err != nil {
		return // Validate reported it
	}
	c.add(levelOK, "fixture", "%s: %d slot(s)", cfg.Path(cfg.Fixture), len(f.Slots))
	for _, s := range f.Slots {
		check := "slot " + s.Name
		if s.GDB != nil {
			where := "a GDB server the station starts"
			if s.GDB.Attach != "" {
				where = "the GDB server at " + s.GDB.Attach
			}
			c.add(levelOK, check, "gdb through %s; %s", where, s.GDB.BackendConfig().Summary())
			continue
		}
		if s.Port == "" {
			if s.USB != nil {
				c.add(levelOK, check, "%s, found by USB match %s", s.Protocol, usbMatch(s.USB))
			}
			continue
		}
		st, err := os.Stat(s.Port)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.add(levelOK, check, "%s on %s: no device plugged in now (it is picked up when plugged)", s.Protocol, s.Port)
		case err != nil:
			c.add(levelWarning, check, "%s on %s: %v", s.Protocol, s.Port, err)
		case st.Mode()&fs.ModeDevice == 0:
			c.add(levelWarning, check, "%s on %s: not a device file; check the port", s.Protocol, s.Port)
		case syscall.Access(s.Port, 6) != nil: // R_OK|W_OK
			c.add(levelWarning, check, "%s on %s: plugged in but this user cannot open it; the package's udev rules give the station group access (udevadm trigger after installing)", s.Protocol, s.Port)
		default:
			c.add(levelOK, check, "%s on %s: device present", s.Protocol, s.Port)
		}
	}
}

func usbMatch(u *fixtures.USBMatch) string {
	var parts []string
	for _, kv := range [][2]string{{"location", u.Location}, {"serial", u.Serial}, {"vid", u.VID}, {"pid", u.PID}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(parts, ", ")
}

// files checks the secret files: present, readable, and not readable by
// others. Their contents are never printed.
func (c *configChecker) files(cfg *daemon.Config) {
	for _, f := range []struct{ key, path string }{
		{"dms.key_file", cfg.DMS.KeyFile},
		{"dms.token_file", cfg.DMS.TokenFile},
		{"api.key_file", cfg.API.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		p := cfg.Path(f.path)
		st, err := os.Stat(p)
		if err != nil {
			c.add(levelError, f.key, "%s: %v; create it with the secret on one line, mode 0600", p, errors.Unwrap(err))
			continue
		}
		if fh, err := os.Open(p); err != nil {
			c.add(levelError, f.key, "%s cannot be read by this user (%v): the station service reads it as user station; run the check as root or as a member of group station, or fix its owner and mode (root:station 0640)", p, errors.Unwrap(err))
			continue
		} else {
			fh.Close()
		}
		if st.Mode().Perm()&0o007 != 0 {
			c.add(levelWarning, f.key, "%s can be read by every user of this PC; chmod 0640 (group station) or 0600", p)
			continue
		}
		c.add(levelOK, f.key, "%s present", p)
	}
	if cfg.Journal == "" {
		return
	}
	dir := filepath.Dir(cfg.Path(cfg.Journal))
	switch st, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		c.add(levelWarning, "journal", "folder %s does not exist yet; the station makes it at start if it may", dir)
	case err != nil:
		c.add(levelError, "journal", "%s: %v", dir, errors.Unwrap(err))
	case !st.IsDir():
		c.add(levelError, "journal", "%s is not a folder", dir)
	case syscall.Access(dir, 2) != nil: // W_OK
		c.add(levelWarning, "journal", "folder %s is not writable by this user (the station service runs as user station)", dir)
	default:
		c.add(levelOK, "journal", "%s", cfg.Path(cfg.Journal))
	}
}

func (c *configChecker) api(cfg *daemon.Config) {
	if g := cfg.API.Group; g != "" {
		_, err := user.LookupGroup(g)
		if err != nil {
			_, err = user.LookupGroupId(g)
		}
		if err != nil {
			c.add(levelError, "api.group", "group %q does not exist on this PC; create it (the station package makes group station) or change api.group", g)
			return
		}
	}
	if cfg.API.Socket != "" {
		c.add(levelOK, "api.socket", "%s", cfg.Path(cfg.API.Socket))
	}
}

// statuser is a printer that can tell whether it could print now.
type statuser interface {
	Status(ctx context.Context) error
}

func (c *configChecker) printer(ctx context.Context, cfg *daemon.Config) {
	if cfg.Simulate != nil {
		return
	}
	spec := cfg.Printer
	if spec == "" {
		spec = "dir:" + cfg.LabelsDir()
	}
	p, err := label.OpenPrinter(spec)
	if err != nil {
		return // Validate reported it
	}
	s, ok := p.(statuser)
	if !ok {
		return
	}
	if _, isDir := p.(*label.DirSink); c.offline && !isDir {
		c.add(levelOK, "printer", "%s not contacted (--offline)", cfg.Printer)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := s.Status(ctx); err != nil {
		c.add(levelError, "printer", "%v", err)
		return
	}
	switch p := p.(type) {
	case *label.DirSink:
		c.add(levelOK, "printer", "labels are written to the folder %s", p.Dir)
	default:
		c.add(levelOK, "printer", "%s answers and is ready", cfg.Printer)
	}
}

func (c *configChecker) dms(ctx context.Context, cfg *daemon.Config) {
	scheme, _, _ := strings.Cut(cfg.DMS.URL, ":")
	if scheme != "http" && scheme != "https" {
		if scheme == "sqlite" {
			c.add(levelOK, "dms", "embedded, on %s", cfg.DMS.URL)
		}
		return
	}
	if c.offline {
		c.add(levelOK, "dms", "%s not contacted (--offline)", cfg.DMS.URL)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	url := strings.TrimRight(cfg.DMS.URL, "/") + dmsapi.PathHealth
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		c.add(levelError, "dms.url", "%q is not a usable address: %v", cfg.DMS.URL, err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.add(levelWarning, "dms", "%s does not answer (%v): the station works from its journal and syncs later, but cannot load a new work order; check the address and the network", cfg.DMS.URL, errors.Unwrap(err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.add(levelError, "dms", "%s answered %s to %s: is this the DMS's address?", cfg.DMS.URL, resp.Status, dmsapi.PathHealth)
		return
	}
	c.add(levelOK, "dms", "%s answers", cfg.DMS.URL)
}
