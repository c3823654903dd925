// Package metrics is a small registry of Prometheus metrics (counters,
// gauges and histograms with labels) and a writer of the Prometheus text
// exposition format 0.0.4. The station daemon keeps one Registry, feeds it
// from the journal events it appends, and serves it on the local API's
// GET /metrics (docs/local-api.md, "Metrics").
//
// It imports only the standard library: the local API, which the kiosk
// links, serves the text without knowing the registry, and the daemon
// should not pull a metrics client's dependencies into the station.
//
// Reference: Prometheus "Exposition formats", text-based format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
package metrics
