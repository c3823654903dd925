package daemon

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/station/localapi"
)

// Config is the daemon's configuration: the station.yaml file documented
// in docs/station-yaml.md. Relative paths are taken from the folder of the
// file (Dir).
type Config struct {
	// Station is this station's id, recorded with every journal event.
	Station string `yaml:"station"`
	// Fixture is the fixture file (YAML) naming the slots and their
	// ports. Exactly one of Fixture and Simulate is set.
	Fixture string `yaml:"fixture,omitempty"`
	// Simulate runs simulated devices and an embedded DMS in the daemon,
	// for demos and tests.
	Simulate *Simulate `yaml:"simulate,omitempty"`
	// DMS says how to reach the device-management service.
	DMS DMS `yaml:"dms"`
	// Journal is the journal file (SQLite).
	Journal string `yaml:"journal"`
	// Labels is the folder labels are printed to (ZPL and PNG files)
	// when no printer is named.
	Labels string `yaml:"labels,omitempty"`
	// Printer is the label printer: "tcp://HOST[:9100]" (raw ZPL; out of
	// paper, head open or paused holds the label and the slot and the
	// kiosk say why) or "cups:QUEUE". Empty writes to Labels.
	Printer string `yaml:"printer,omitempty"`
	// Cache is the artifact cache folder; empty means next to the journal.
	Cache string `yaml:"cache,omitempty"`
	// API is where the local API is served.
	API API `yaml:"api"`
	// Limits bound the work.
	Limits Limits `yaml:"limits,omitempty"`
	// Operators may sign in at the station.
	Operators []Operator `yaml:"operators"`
	// WorkOrder, when set, is loaded at start if no other work order was
	// loaded before a restart.
	WorkOrder string `yaml:"work_order,omitempty"`

	// Dir is the folder relative paths are taken from: the config
	// file's, set by LoadConfig.
	Dir string `yaml:"-"`
}

// Simulate describes the simulated fixture of a demo station.
type Simulate struct {
	// Devices is the number of slots, each with a simulated chip.
	Devices int `yaml:"devices"`
	// Chip is esp32 (the default) or esp32s3.
	Chip string `yaml:"chip,omitempty"`
	// ImageSize is the size of the demo firmware; default 256KiB.
	ImageSize fixtures.Size `yaml:"image_size,omitempty"`
	// Quantity is the demo work order's quantity; default 100 × Devices.
	Quantity int `yaml:"quantity,omitempty"`
	// Cycle, when set, swaps a device for a new one this long after it
	// booted its new firmware, as an operator would.
	Cycle fixtures.Duration `yaml:"cycle,omitempty"`
	// PlugDelay, when set, starts with empty slots and plugs a device
	// into one slot after the other, this far apart.
	PlugDelay fixtures.Duration `yaml:"plug_delay,omitempty"`
	// Faults injects faults into slots, as station sim --fault does:
	// "S06=write-error@50", "S03=unplug@40".
	Faults []string `yaml:"faults,omitempty"`
	// Dir is the folder of the simulation (DMS, ports, fixture);
	// default "simulation" next to the journal.
	Dir string `yaml:"dir,omitempty"`
}

// DMS says how to reach the device-management service.
type DMS struct {
	// URL is http(s)://HOST:PORT of a station dms, or sqlite:FILE for an
	// embedded one.
	URL string `yaml:"url"`
	// KeyFile holds the station's API key for a remote DMS.
	KeyFile string `yaml:"key_file,omitempty"`
	// TokenFile holds the activation token of the work orders that need
	// one.
	TokenFile string `yaml:"token_file,omitempty"`
}

// API says where the local API listens.
type API struct {
	// Socket is the unix socket's path.
	Socket string `yaml:"socket"`
	// Group, when set, owns the socket (name or number): its members may
	// use the API.
	Group string `yaml:"group,omitempty"`
	// Listen is an optional loopback address (127.0.0.1:PORT) served
	// with the key of KeyFile.
	Listen string `yaml:"listen,omitempty"`
	// KeyFile holds the key the loopback listener requires.
	KeyFile string `yaml:"key_file,omitempty"`
}

// Limits bound the work.
type Limits struct {
	// Parallel is the most devices worked on at once; 0 means every slot.
	Parallel int `yaml:"parallel,omitempty"`
}

// Operator is a person who may sign in at the station. Only hashes are
// kept: the PIN and badge themselves never are.
type Operator struct {
	Name string `yaml:"name"`
	// PINSHA256 is the hex SHA-256 of the operator's PIN.
	PINSHA256 string `yaml:"pin_sha256,omitempty"`
	// BadgeSHA256 is the hex SHA-256 of what the badge reader types.
	BadgeSHA256 string `yaml:"badge_sha256,omitempty"`
	// Supervisor may stop a work order and accept a failed device.
	Supervisor bool `yaml:"supervisor,omitempty"`
}

// LoadConfig reads and checks the configuration file at path. Unknown
// keys are refused with their line; every error names the field.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read station config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("station config %s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("station config %s: %w", path, err)
	}
	cfg.Dir = abs
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("station config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a configuration without checking it (see Validate).
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if err := fixtures.DecodeYAML(data, &cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the file is empty; see docs/station-yaml.md for an example")
		}
		return Config{}, fmt.Errorf("%w (see docs/station-yaml.md for the keys)", err)
	}
	return cfg, nil
}

var (
	stationID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hexSHA256 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Validate checks the configuration and names every bad field. It also
// loads the fixture file, which must exist and be valid.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Station == "":
		bad("station", "is missing; give this station's id, e.g. \"line1-st3\"")
	case !stationID.MatchString(c.Station):
		bad("station", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", c.Station)
	}
	switch {
	case c.Fixture == "" && c.Simulate == nil:
		bad("fixture", "is missing; give the fixture file naming the slots (or simulate: for a demo)")
	case c.Fixture != "" && c.Simulate != nil:
		bad("fixture", "and simulate are both set; give one")
	case c.Fixture != "":
		if _, err := fixtures.Load(c.Path(c.Fixture)); err != nil {
			bad("fixture", "%v", err)
		}
	}
	if s := c.Simulate; s != nil {
		if s.Devices < 1 || s.Devices > 128 {
			bad("simulate.devices", "must be between 1 and 128")
		}
		switch strings.ToLower(strings.ReplaceAll(s.Chip, "-", "")) {
		case "", "esp32", "esp32s3":
		default:
			bad("simulate.chip", "is %q; use esp32 or esp32s3", s.Chip)
		}
		if s.ImageSize != 0 && (s.ImageSize < 4096 || s.ImageSize > 3<<20) {
			bad("simulate.image_size", "must be between 4KiB and 3MiB")
		}
		if s.Quantity < 0 {
			bad("simulate.quantity", "must not be negative")
		}
		if s.Cycle < 0 || s.PlugDelay < 0 {
			bad("simulate.cycle", "and plug_delay must not be negative")
		}
	}
	if c.Simulate == nil {
		scheme, rest, _ := strings.Cut(c.DMS.URL, ":")
		switch {
		case c.DMS.URL == "":
			bad("dms.url", "is missing; give http://HOST:PORT of the DMS, or sqlite:FILE for an embedded one")
		case scheme == "sqlite" && rest == "":
			bad("dms.url", "sqlite: needs a file, as in sqlite:dms.db")
		case scheme == "http" || scheme == "https":
			if c.DMS.KeyFile == "" {
				bad("dms.key_file", "is missing; a remote DMS needs the station's API key (an administrator creates it with POST /v1/keys, role station)")
			}
		case scheme != "sqlite":
			bad("dms.url", "%q: use http://HOST:PORT or sqlite:FILE", c.DMS.URL)
		}
	}
	if p := c.Printer; p != "" {
		scheme, rest, _ := strings.Cut(p, ":")
		rest = strings.TrimPrefix(rest, "//")
		switch {
		case scheme != "tcp" && scheme != "cups":
			bad("printer", "%q: use tcp://HOST:9100 for a network ZPL printer or cups:QUEUE (or leave it out and set labels: for a folder)", p)
		case rest == "":
			bad("printer", "%q names no printer: give tcp://HOST:9100 or cups:QUEUE", p)
		}
	}
	if c.Journal == "" {
		bad("journal", "is missing; give the journal file, e.g. /var/lib/station/journal.db")
	}
	if c.API.Socket == "" {
		bad("api.socket", "is missing; give the unix socket's path, e.g. /run/station/api.sock")
	}
	if c.API.Listen != "" && c.API.KeyFile == "" {
		bad("api.key_file", "is missing; the loopback listener (api.listen) needs a key")
	}
	if c.Limits.Parallel < 0 {
		bad("limits.parallel", "must not be negative")
	}
	names := map[string]int{}
	for i, o := range c.Operators {
		field := fmt.Sprintf("operators[%d]", i)
		if o.Name == "" {
			bad(field+".name", "is missing")
		} else if j, dup := names[o.Name]; dup {
			bad(field+".name", "%q is also the name of operators[%d]", o.Name, j)
		} else {
			names[o.Name] = i
		}
		if o.PINSHA256 == "" && o.BadgeSHA256 == "" {
			bad(field, "needs pin_sha256 or badge_sha256 (hex SHA-256, e.g. printf %%s 1234 | sha256sum)")
		}
		if o.PINSHA256 != "" && !hexSHA256.MatchString(o.PINSHA256) {
			bad(field+".pin_sha256", "must be 64 hex digits (the SHA-256 of the PIN, never the PIN)")
		}
		if o.BadgeSHA256 != "" && !hexSHA256.MatchString(o.BadgeSHA256) {
			bad(field+".badge_sha256", "must be 64 hex digits (the SHA-256 of the badge)")
		}
	}
	if c.WorkOrder != "" {
		if _, err := ParseRef(c.WorkOrder); err != nil {
			bad("work_order", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// Path returns p taken from the config's folder when it is relative.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// StatePath is the file that keeps the loaded work order and the run
// state across restarts: next to the journal.
func (c *Config) StatePath() string {
	return filepath.Join(filepath.Dir(c.Path(c.Journal)), "station-state.json")
}

// CacheDir is the artifact cache folder.
func (c *Config) CacheDir() string {
	if c.Cache != "" {
		return c.Path(c.Cache)
	}
	return filepath.Join(filepath.Dir(c.Path(c.Journal)), "artifact-cache")
}

// LabelsDir is the folder labels are printed to.
func (c *Config) LabelsDir() string {
	if c.Labels != "" {
		return c.Path(c.Labels)
	}
	return filepath.Join(filepath.Dir(c.Path(c.Journal)), "labels")
}

// SimDir is the folder of a simulation.
func (c *Config) SimDir() string {
	if c.Simulate != nil && c.Simulate.Dir != "" {
		return c.Path(c.Simulate.Dir)
	}
	return filepath.Join(filepath.Dir(c.Path(c.Journal)), "simulation")
}

// HashSecret returns the hex SHA-256 of a PIN or badge, as the
// configuration holds it.
func HashSecret(s string) string {
	sum := sha256Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// refID is what a work order id may hold.
// ParseRef returns the work order id in what an operator typed or a
// scanner sent (localapi.ParseRef).
func ParseRef(ref string) (string, error) { return localapi.ParseRef(ref) }

// pollInterval is how often the hot-plug watch looks at the ports.
const pollInterval = 200 * time.Millisecond
