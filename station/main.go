package station

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Exit codes of the station command.
const (
	ExitOK      = 0 // everything passed
	ExitFailed  = 1 // the command ran but devices failed
	ExitUsage   = 2 // the command line was wrong
	ExitProblem = 3 // the command could not run (bad input, missing file, DMS down)
)

// ExitError carries the exit code a command ends with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Code returns the exit code for err: ExitOK for nil, the ExitError's code,
// or ExitProblem.
func Code(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	}
	return ExitProblem
}

// Main is the station program. Set its writers, then call Run.
type Main struct {
	// Stdout receives results; Stderr receives logs and progress.
	Stdout, Stderr io.Writer
	// Stdin gives what a command reads from standard input (a token
	// given as "-"); nil means os.Stdin.
	Stdin io.Reader
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Version and Commit are printed by --version.
	Version, Commit string
}

const usage = `station: a factory provisioning station.

Usage:
  station <command> [flags]

Commands:
  config    check the station's configuration ("station config check")
  demo      run the whole flow on simulated devices with an embedded DMS
            (try this first: no hardware needed)
  dms       serve the device-management service (DMS) over HTTP, or claim
            a device with an activation token ("station dms claim")
  export    write a signed export of the journal for QA, or verify one
  run       run a work order on the devices of a fixture, unattended
  serve     the station daemon: the API the kiosk uses, hot-plug, sync
  sim       start simulated devices on pseudo-terminals for trying by hand
  sync      send events the DMS refused to it again ("station sync resend")
  version   print the version

Run "station <command> --help" for a command's flags and examples.
`

// Run runs the command line args (without the program name).
func (m *Main) Run(ctx context.Context, args []string) error {
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if m.Stderr == nil {
		m.Stderr = io.Discard
	}
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return &ExitError{Code: ExitUsage, Err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "config":
		return m.configCmd(ctx, rest)
	case "demo":
		return m.demo(ctx, rest)
	case "dms":
		return m.dmsCmd(ctx, rest)
	case "export":
		return m.exportCmd(ctx, rest)
	case "run":
		return m.runCmd(ctx, rest)
	case "serve":
		return m.serve(ctx, rest)
	case "sim":
		return m.sim(ctx, rest)
	case "sync":
		return m.syncCmd(ctx, rest)
	case "version", "--version", "-version":
		fmt.Fprintf(m.Stdout, "station %s (commit %s)\n", orDash(m.Version), orDash(m.Commit))
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	}
	fmt.Fprint(m.Stderr, usage)
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf("unknown command %q", cmd)}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// logFlags are the logging flags every command takes.
type logFlags struct {
	level string
	json  bool
}

// parseWithLogger registers the logging flags every command takes
// (--log-level, by default level, and --log-json), parses args and
// returns the logger they ask for, writing to Stderr.
func (m *Main) parseWithLogger(fs *flag.FlagSet, args []string, level string) (*slog.Logger, error) {
	var lf logFlags
	lf.register(fs, level)
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return lf.logger(m.Stderr)
}

func (l *logFlags) register(fs *flag.FlagSet, level string) {
	fs.StringVar(&l.level, "log-level", level, "least severe log `level` written to stderr: debug, info, warn or error")
	fs.BoolVar(&l.json, "log-json", false, "write logs as JSON lines")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usageErr("--log-level %q: use debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.json {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// newFlagSet returns a flag set whose --help prints the command's text.
func (m *Main) newFlagSet(name, help string) *flag.FlagSet {
	fs := flag.NewFlagSet("station "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), strings.TrimLeft(help, "\n"))
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (flags go before it? see --help)", fs.Arg(0))
	}
	return nil
}

func usageErr(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}
