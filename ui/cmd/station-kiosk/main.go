// Command station-kiosk is the station's operator screen: a full-screen
// Fyne app for the touch screen, a client of the station daemon's local
// API.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"fyne.io/fyne/v2/app"

	"github.com/station-dev/station/station/localapi"
	"github.com/station-dev/station/ui"
)

const usage = `station-kiosk shows the station on its touch screen: the work order, the
slots, alerts, and the operator's commands. It talks to the station daemon's
local API.

Usage: station-kiosk [flags]

Flags:
`

// Set by the build: -ldflags "-X main.version=... -X main.commit=...".
var version, commit string

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "station-kiosk:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("station-kiosk", flag.ContinueOnError)
	defAPI := os.Getenv("STATION_API")
	if defAPI == "" {
		defAPI = "unix:/run/station/api.sock"
	}
	addr := fs.String("api", defAPI, "the daemon's local API: unix:/path/api.sock or http://127.0.0.1:PORT (env STATION_API)")
	keyFile := fs.String("key-file", "", "file holding the loopback API key (for an http:// address)")
	windowed := fs.Bool("windowed", false, "show a window instead of the full screen")
	showVersion := fs.Bool("version", false, "print the version and the commit, and exit")
	logJSON := fs.Bool("log-json", false, "write logs to stderr as JSON lines")
	statsFile := fs.String("stats", "", "at exit, write the kiosk's counters and its median change-to-screen latency to this `file` (JSON), for scripts/bench")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the kiosk to this `file` until it exits (go tool pprof reads it)")
	screenFile := fs.String("screen", "", "write what the screen shows (header, alert line, tiles, commands) to this `file` (JSON) as it changes, for end-to-end tests")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err == flag.ErrHelp {
		return nil
	} else if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *logJSON {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if *showVersion {
		fmt.Printf("station-kiosk %s (commit %s)\n", orDash(version), orDash(commit))
		return nil
	}
	key := ""
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("read the API key file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("create the CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	client, err := localapi.NewClient(*addr, key)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	a := app.NewWithID("dev.station.kiosk")
	k := ui.New(a, client, ui.Options{FullScreen: !*windowed, Title: "Station", Logger: log, ScreenFile: *screenFile})
	var once sync.Once
	finish := func() (err error) {
		once.Do(func() {
			log.Info("kiosk closed")
			pprof.StopCPUProfile()
			if *statsFile != "" {
				err = writeStats(*statsFile, k)
			}
		})
		return err
	}
	go func() {
		<-ctx.Done()
		// Signalled (log-out, systemctl, the session): the kiosk stops
		// drawing, writes its stats and exits, without asking Fyne to
		// close its window first. Fyne 2.7.1 dereferences a nil window
		// when a pointer event reaches a window it is closing
		// (processMouseMoved → SetInputMode; fyne-io/fyne#5981, open), which
		// crashed the kiosk on SIGTERM in our tests once the pointer lay
		// over a button. The kiosk holds nothing that needs the window torn
		// down: the X server drops it with the connection.
		k.Wait()
		if err := finish(); err != nil {
			fmt.Fprintln(os.Stderr, "station-kiosk:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}()
	log.Info("kiosk started", "api", *addr)
	k.Run(ctx)
	a.Run() // returns when the operator closes the window
	return finish()
}

// writeStats writes the kiosk's counters and latency as JSON.
func writeStats(path string, k *ui.Kiosk) error {
	st := k.Stats()
	median, n := k.Latency()
	b, err := json.MarshalIndent(map[string]any{
		"events": st.Events, "draws": st.Draws, "slot_updates": st.SlotUpdates, "full_redraws": st.FullRedraws,
		"latency_median_ms": float64(median.Microseconds()) / 1000, "latency_samples": n,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the stats: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
