package station

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/dfu"
	"github.com/station-dev/station/flasher/image"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/artifact"
	"github.com/station-dev/station/station/journal"
)

// batch is a work order about to run on a fixture: what station run and
// station demo share.
type batch struct {
	wo       jobs.WorkOrder
	woDir    string // folder relative artifact URLs are taken from
	fixture  *fixtures.Fixture
	journal  *journal.Journal
	upstream jobs.Upstream
	http     *http.Client // for artifact downloads from the DMS; nil for files
	dfuBus   dfu.Bus      // a simulated USB bus for dfu slots; nil means libusb
	printer  jobs.Printer
	station  string
	operator string
	cacheDir string
	parallel int
	slots    []string
	logger   *slog.Logger
	// wrapJournal, when set, wraps the journal the pipeline writes
	// through (the kill harness's hook).
	wrapJournal func(jobs.Journal) jobs.Journal
}

// loadImages fetches the bundle's artifacts and builds one image per
// protocol. A missing, corrupt or unreadable artifact stops the work order
// before any device is touched.
func loadImages(ctx context.Context, wo jobs.WorkOrder, base string, cache *artifact.Cache) (map[string]flasher.Image, error) {
	images := map[string]flasher.Image{}
	for _, a := range wo.Bundle.Artifacts {
		data, err := cache.Load(ctx, a, base)
		if err != nil {
			return nil, err
		}
		segs, err := image.Segments(a.Name, a.Format, a.Address.Uint64(), data)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		img := images[a.Target]
		img.Version = wo.Bundle.Version
		img.Segments = append(img.Segments, segs...)
		images[a.Target] = img
	}
	for proto, img := range images {
		slices.SortFunc(img.Segments, func(a, b flasher.Segment) int {
			switch {
			case a.Addr < b.Addr:
				return -1
			case a.Addr > b.Addr:
				return 1
			}
			return 0
		})
		if err := img.Validate(); err != nil {
			return nil, fmt.Errorf("bundle %s for %s: %w", wo.Bundle.Version, proto, err)
		}
		images[proto] = img
	}
	return images, nil
}

// runner builds the pipeline runner for the batch. Artifact downloads
// report their progress to pw.
func (b *batch) runner(ctx context.Context, bus *jobs.Bus, pw io.Writer) (*jobs.Runner, error) {
	cache := &artifact.Cache{Dir: b.cacheDir, HTTP: b.http, Logger: b.logger, Progress: downloadProgress(pw)}
	if err := cache.Clean(); err != nil && b.logger != nil {
		// Stale copies only cost disk space: say so and go on.
		b.logger.Warn("artifact cache not cleaned", "err", err)
	}
	images, err := loadImages(ctx, b.wo, b.woDir, cache)
	if err != nil {
		return nil, err
	}
	var specs []jobs.SlotSpec
	for _, s := range b.fixture.Slots {
		specs = append(specs, jobs.SlotSpec{Name: s.Name, Protocol: s.Protocol, Uses: s.Uses})
	}
	b.journal.Redact(b.wo.Authorization.Token.Reveal())
	conn := b.fixture.Connector(b.logger)
	if b.dfuBus != nil {
		conn.DFUBus = b.dfuBus
	}
	var j jobs.Journal = b.journal
	if b.wrapJournal != nil {
		j = b.wrapJournal(j)
	}
	r := &jobs.Runner{
		WorkOrder: b.wo, Images: images, Slots: specs, Resources: b.fixture.Resources,
		Connector: conn, Upstream: b.upstream, Printer: b.printer,
		Journal: j, Station: b.station, Operator: b.operator, Logger: b.logger,
		Parallel: b.parallel, Bus: bus, TraceDir: traceDir(b.journal.Path()),
	}
	// Everything that can be checked before a device is touched is
	// checked now: a work order that cannot finish is refused whole.
	if err := r.Check(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// downloadProgress prints an artifact download's progress to w, one line
// per second at most and one at the end.
func downloadProgress(w io.Writer) func(name string, done, total int64) {
	var last time.Time
	return func(name string, done, total int64) {
		if done < total && (done == 0 || time.Since(last) < time.Second) {
			return
		}
		last = time.Now()
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		fmt.Fprintf(w, "downloading %s: %s of %s (%.0f %%)\n", name, byteSize(done), byteSize(total), pct)
	}
}

// traceDir is where the devices' protocol transcripts are kept: beside
// the journal.
func traceDir(journalPath string) string { return filepath.Join(filepath.Dir(journalPath), "traces") }

// output says how a command reports.
type output struct {
	json   bool
	stdout io.Writer
	stderr io.Writer
}

// reserveProcs makes room for blocking reads. go.bug.st/serial's Read
// waits in select(2) as a plain system call, keeping its P (the Go
// scheduler's processor) until sysmon takes it back, which can take up to
// 10 ms when the process is otherwise idle. With one P per CPU and a slot
// per serial port, most Ps sit in those calls and the goroutines with
// work to do (the other slots, the journal) wait: on 2 CPUs, 16 slots
// flashed 10 % slower than one. One P per slot on top of the CPUs keeps
// them running; the CPUs themselves are not oversubscribed, since the
// extra Ps spend their time blocked.
func reserveProcs(slots int) {
	if want := runtime.NumCPU() + slots; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}

// execute runs the batch with live progress and returns its summary.
func (b *batch) execute(ctx context.Context, out output) (jobs.Summary, error) {
	reserveProcs(len(b.fixture.Slots))
	bus := &jobs.Bus{}
	// Progress goes to stdout for people and to stderr when stdout
	// carries JSON for a program.
	pw := out.stdout
	if out.json {
		pw = out.stderr
	}
	r, err := b.runner(ctx, bus, pw)
	if err != nil {
		return jobs.Summary{}, err
	}
	// The names come from the work order (the DMS): no control
	// character of theirs reaches the terminal.
	title := printable(fmt.Sprintf("Work order %s · %s (%s) · bundle %s %s · %d slots",
		b.wo.ID, b.wo.Product.Name, b.wo.Product.PartNumber, b.wo.Bundle.Version, b.wo.Bundle.Tag, len(b.fixture.Slots)))
	if !isTerminal(pw) {
		fmt.Fprintln(pw, title)
	}
	pctx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		newProgress(pw, title, b.fixture.SlotNames()).follow(pctx, bus)
	}()
	sum, err := r.Run(ctx, b.slots...)
	stopProgress()
	<-done
	// A label folder draws its previews behind the devices: they are
	// all in the folder when the command ends.
	if f, ok := b.printer.(interface{ Flush() error }); ok {
		if ferr := f.Flush(); ferr != nil && b.logger != nil {
			b.logger.Warn("label previews not drawn", "err", ferr)
		}
	}
	return sum, err
}

// report writes the summary, as JSON or for people, and returns the
// command's error: devices that failed make the command fail.
func report(out output, sum jobs.Summary, extra map[string]any, human [][2]string) error {
	if out.json {
		v := map[string]any{
			"work_order": sum.WorkOrder, "devices": sum.Devices, "passed": sum.Passed, "failed": sum.Failed,
			"skipped": sum.Skipped, "already_done": sum.AlreadyDone, "done": sum.Done, "quantity": sum.Quantity,
			"wall_seconds": sum.Wall.Seconds(), "events": sum.Events, "results": sum.Results,
		}
		for k, x := range extra {
			v[k] = x
		}
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		printSummary(out.stdout, sum, human)
	}
	if sum.Failed > 0 {
		return &ExitError{Code: ExitFailed, Err: fmt.Errorf("%d of %d devices failed", sum.Failed, sum.Devices)}
	}
	return nil
}

// seconds formats a duration for the human summary.
func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// byteSize formats n bytes for people: 512 B, 96.0 KiB, 2.0 MiB.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
