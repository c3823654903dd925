package metrics_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/station-dev/station/station/metrics"
)

func TestWriteText(t *testing.T) {
	tests := []struct {
		name string
		fill func(r *metrics.Registry)
		want string
	}{
		{
			name: "empty registry",
			fill: func(r *metrics.Registry) {},
			want: "",
		},
		{
			name: "unlabelled counter shows at zero",
			fill: func(r *metrics.Registry) { r.NewCounter("events_total", "Events written.") },
			want: "# HELP events_total Events written.\n# TYPE events_total counter\nevents_total 0\n",
		},
		{
			name: "labelled family without series is left out",
			fill: func(r *metrics.Registry) {
				r.NewCounter("devices_total", "Devices.", "result")
				r.NewGauge("up", "Up.").Set(1)
			},
			want: "# HELP up Up.\n# TYPE up gauge\nup 1\n",
		},
		{
			name: "families sorted by name, series by label values",
			fill: func(r *metrics.Registry) {
				c := r.NewCounter("zeta_total", "Last.", "result", "slot")
				c.Inc("passed", "S02")
				c.Add(2, "failed", "S01")
				c.Inc("passed", "S01")
				c.Inc("passed", "S02")
				g := r.NewGauge("alpha", "First.")
				g.Set(3)
				g.Add(-1.5)
			},
			want: `# HELP alpha First.
# TYPE alpha gauge
alpha 1.5
# HELP zeta_total Last.
# TYPE zeta_total counter
zeta_total{result="failed",slot="S01"} 2
zeta_total{result="passed",slot="S01"} 1
zeta_total{result="passed",slot="S02"} 2
`,
		},
		{
			name: "label values and help escaped",
			fill: func(r *metrics.Registry) {
				g := r.NewGauge("info", "Back\\slash and\nnew line, \"quotes\" kept.", "v")
				g.Set(1, "a\\b \"c\"\nd")
				g.Set(2, "bad \xff byte")
			},
			want: `# HELP info Back\\slash and\nnew line, "quotes" kept.
# TYPE info gauge
info{v="a\\b \"c\"\nd"} 1
info{v="bad ` + "\uFFFD" + ` byte"} 2
`,
		},
		{
			name: "histogram buckets are cumulative with +Inf, sum and count",
			fill: func(r *metrics.Registry) {
				h := r.NewHistogram("step_seconds", "Step time.", []float64{0.1, 1, 10}, "step")
				for _, v := range []float64{0.05, 0.1, 0.5, 3, 3, 60} {
					h.Observe(v, "flash")
				}
				h.Observe(0.2, "verify")
			},
			want: `# HELP step_seconds Step time.
# TYPE step_seconds histogram
step_seconds_bucket{step="flash",le="0.1"} 2
step_seconds_bucket{step="flash",le="1"} 3
step_seconds_bucket{step="flash",le="10"} 5
step_seconds_bucket{step="flash",le="+Inf"} 6
step_seconds_sum{step="flash"} 66.65
step_seconds_count{step="flash"} 6
step_seconds_bucket{step="verify",le="0.1"} 0
step_seconds_bucket{step="verify",le="1"} 1
step_seconds_bucket{step="verify",le="10"} 1
step_seconds_bucket{step="verify",le="+Inf"} 1
step_seconds_sum{step="verify"} 0.2
step_seconds_count{step="verify"} 1
`,
		},
		{
			name: "unlabelled histogram, +Inf given explicitly",
			fill: func(r *metrics.Registry) {
				h := r.NewHistogram("lat", "Latency.", []float64{1, math.Inf(+1)})
				h.Observe(2)
			},
			want: `# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="1"} 0
lat_bucket{le="+Inf"} 1
lat_sum 2
lat_count 1
`,
		},
		{
			name: "values: large whole numbers, fractions, infinities",
			fill: func(r *metrics.Registry) {
				g := r.NewGauge("g", "G.", "k")
				g.Set(123456789012, "big")
				g.Set(1e20, "huge")
				g.Set(0.000125, "small")
				g.Set(math.Inf(-1), "neg")
				g.Set(math.NaN(), "nan")
			},
			want: `# HELP g G.
# TYPE g gauge
g{k="big"} 123456789012
g{k="huge"} 1e+20
g{k="nan"} NaN
g{k="neg"} -Inf
g{k="small"} 0.000125
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := metrics.NewRegistry()
			tt.fill(r)
			var b bytes.Buffer
			if err := r.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("WriteText() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRegistrationMistakesPanic(t *testing.T) {
	tests := []struct {
		name string
		do   func(r *metrics.Registry)
	}{
		{"bad metric name", func(r *metrics.Registry) { r.NewCounter("1abc", "x") }},
		{"bad label name", func(r *metrics.Registry) { r.NewGauge("g", "x", "a-b") }},
		{"reserved label name", func(r *metrics.Registry) { r.NewGauge("g", "x", "__name") }},
		{"le on a histogram", func(r *metrics.Registry) { r.NewHistogram("h", "x", []float64{1}, "le") }},
		{"label twice", func(r *metrics.Registry) { r.NewGauge("g", "x", "a", "a") }},
		{"registered twice", func(r *metrics.Registry) { r.NewGauge("g", "x"); r.NewCounter("g", "y") }},
		{"buckets not increasing", func(r *metrics.Registry) { r.NewHistogram("h", "x", []float64{1, 1}) }},
		{"wrong number of label values", func(r *metrics.Registry) { r.NewCounter("c", "x", "a").Inc() }},
		{"negative counter add", func(r *metrics.Registry) { r.NewCounter("c", "x").Add(-1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.do(metrics.NewRegistry())
		})
	}
}

func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	var r metrics.Registry // the zero value works
	c := r.NewCounter("c_total", "C.", "w")
	h := r.NewHistogram("h", "H.", []float64{1, 2})
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				c.Inc([]string{"even", "odd"}[w%2])
				h.Observe(float64(i % 3))
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if err := r.WriteText(&bytes.Buffer{}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`c_total{w="even"} 2000`, `c_total{w="odd"} 2000`,
		"h_count 4000", `h_bucket{le="+Inf"} 4000`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("after concurrent updates, output lacks %q:\n%s", want, b.String())
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestWriteTextReportsWriteErrors(t *testing.T) {
	r := metrics.NewRegistry()
	r.NewCounter("c_total", "C.")
	if err := r.WriteText(failWriter{}); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("WriteText(failing writer) = %v, want the write error", err)
	}
}
