package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
	"github.com/station-dev/station/station/metrics"
)

// Device results of station_devices_total, besides the pipeline's
// outcomes (passed, failed, skipped, already_done).
const (
	// resultStopped is a device stopped by the operator (Stop) or by the
	// daemon stopping: it resumes when run again.
	resultStopped = "stopped"
	// resultOverridden is a failed device a supervisor accepted.
	resultOverridden = "overridden"
)

// daemonMetrics are the daemon's Prometheus metrics (GET /metrics,
// docs/local-api.md). Counts are counted as things happen and start from
// 0 when the daemon starts; state is read when scraped.
type daemonMetrics struct {
	reg       *metrics.Registry
	devices   *metrics.Counter
	steps     *metrics.Histogram
	written   *metrics.Counter
	events    *metrics.Counter
	lagEvents *metrics.Gauge
	lagAge    *metrics.Gauge
	busy      *metrics.Gauge
	slots     *metrics.Gauge
	protocols map[string]string // slot name → protocol
}

func newDaemonMetrics(version string, fx *fixtures.Fixture) *daemonMetrics {
	reg := metrics.NewRegistry()
	m := &daemonMetrics{
		reg: reg,
		devices: reg.NewCounter("station_devices_total",
			"Devices that ended a run of the pipeline, by result: passed, failed, stopped (resumes when run again), "+
				"skipped (quantity reached), already_done (done before, nothing written), overridden (a failed device "+
				"a supervisor accepted; it was counted failed first). A device retried counts once per run.",
			"result"),
		steps: reg.NewHistogram("station_step_duration_seconds",
			"Time a pipeline step took, from the journal's step events, by step and result (passed or failed).",
			[]float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600},
			"step", "result"),
		written: reg.NewCounter("station_bytes_written_total",
			"Image bytes written by passed flash steps (the flashed image's size, from the flash step's journal record), "+
				"by the slot's protocol.",
			"protocol"),
		events: reg.NewCounter("station_journal_events_total",
			"Events this daemon appended to the journal since it started."),
		lagEvents: reg.NewGauge("station_sync_lag_events",
			"Journal events the DMS has not acknowledged yet (0 when the station pushes its journal nowhere)."),
		lagAge: reg.NewGauge("station_sync_lag_seconds",
			"Age of the oldest journal event the DMS has not acknowledged yet; 0 when none."),
		busy: reg.NewGauge("station_slots_busy",
			"Slots with a device at work (running or waiting for the DMS or the printer)."),
		slots: reg.NewGauge("station_slots",
			"Slots in the fixture."),
		protocols: map[string]string{},
	}
	if version == "" {
		version = "unknown"
	}
	reg.NewGauge("station_build_info", "The station daemon's version; always 1.", "version").Set(1, version)
	for _, r := range []string{string(jobs.OutcomePassed), string(jobs.OutcomeFailed), resultStopped,
		string(jobs.OutcomeSkipped), string(jobs.OutcomeAlreadyDone), resultOverridden} {
		m.devices.Add(0, r)
	}
	for _, s := range fx.Slots {
		m.protocols[s.Name] = s.Protocol
		m.written.Add(0, s.Protocol)
	}
	m.slots.Set(float64(len(fx.Slots)))
	return m
}

// journaled counts events appended to the journal: steps' durations and
// the bytes flash steps wrote.
func (m *daemonMetrics) journaled(events []journal.Event) {
	m.events.Add(float64(len(events)))
	for _, e := range events {
		if e.Kind != journal.KindStep || (e.Status != journal.StatusPassed && e.Status != journal.StatusFailed) {
			continue
		}
		m.steps.Observe(e.Duration.Seconds(), e.Step, string(e.Status))
		if e.Step != string(jobs.StepFlash) || e.Status != journal.StatusPassed {
			continue
		}
		var data struct {
			Bytes int64 `json:"bytes"`
		}
		if err := json.Unmarshal(e.Data, &data); err != nil || data.Bytes <= 0 {
			continue
		}
		proto, ok := m.protocols[e.Slot]
		if !ok {
			proto = "unknown"
		}
		m.written.Add(float64(data.Bytes), proto)
	}
}

// deviceEnded counts a device whose run of the pipeline ended.
func (m *daemonMetrics) deviceEnded(res jobs.Result) {
	result := string(res.Outcome)
	if res.Outcome == jobs.OutcomeFailed && errors.Is(res.Err, jobs.ErrStopped) {
		result = resultStopped
	}
	if result == "" {
		result = string(jobs.OutcomeFailed)
	}
	m.devices.Inc(result)
}

// overridden counts a failed device a supervisor accepted.
func (m *daemonMetrics) overridden() { m.devices.Inc(resultOverridden) }

// appended is told of every event appended to the journal: it counts
// them and nudges the sync.
func (d *Daemon) appended(events []journal.Event) {
	d.metrics.journaled(events)
	d.nudgeSync()
}

// WriteMetrics writes the daemon's metrics in the Prometheus text format
// 0.0.4 (GET /metrics on the local API). The gauges are read now: slots at
// work, and how far the journal's sync to the DMS lags.
func (d *Daemon) WriteMetrics(ctx context.Context, w io.Writer) error {
	m := d.metrics
	d.mu.Lock()
	busy := 0
	for _, s := range d.slots {
		if s.busy && s.started {
			busy++
		}
	}
	d.mu.Unlock()
	m.busy.Set(float64(busy))

	var lag int64
	var age time.Duration
	if d.syncer != nil {
		st, err := d.journal.SyncState(ctx)
		if err != nil {
			return fmt.Errorf("read the journal's sync lag: %w", err)
		}
		lag = st.Lag
		if lag > 0 {
			oldest, err := d.journal.Unsynced(ctx, 1)
			if err != nil {
				return fmt.Errorf("read the oldest event not synced: %w", err)
			}
			if len(oldest) > 0 {
				age = max(time.Since(oldest[0].Time), 0)
			}
		}
	}
	m.lagEvents.Set(float64(lag))
	m.lagAge.Set(age.Seconds())
	return m.reg.WriteText(w)
}
