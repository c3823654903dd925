// Command station is the factory provisioning station: see "station help".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/station-dev/station/station"
)

// Set by the build: -ldflags "-X main.version=... -X main.commit=...".
var version, commit string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := &station.Main{Stdout: os.Stdout, Stderr: os.Stderr, Version: version, Commit: commit}
	err := m.Run(ctx, os.Args[1:])
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "station:", err)
	}
	os.Exit(station.Code(err))
}
