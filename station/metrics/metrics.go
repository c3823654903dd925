package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ContentType is the Content-Type of the text WriteText writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Metric types, as the "# TYPE" line names them.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
)

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Registry holds metric families and writes them in the text format. Its
// zero value is ready to use; it is safe for concurrent use. Each
// Registry is independent: there is no default one.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{} }

// family is one metric: its name, help, type, label names and series.
type family struct {
	name, help, typ string
	labels          []string
	buckets         []float64 // upper bounds of a histogram's buckets, without +Inf

	mu     sync.Mutex
	series map[string]*series
}

// series is one combination of label values.
type series struct {
	values []string
	value  float64  // counter, gauge
	counts []uint64 // histogram: observations per bucket (not cumulative), the last for +Inf
	sum    float64
	count  uint64
}

// register adds a family. A bad name or a second family of the same name
// is a programming error: it panics, as at startup.
func (r *Registry) register(name, help, typ string, buckets []float64, labels []string) *family {
	if !metricName.MatchString(name) {
		panic(fmt.Sprintf("metrics: %q is not a valid metric name", name))
	}
	seen := map[string]bool{}
	for _, l := range labels {
		if !labelName.MatchString(l) || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("metrics: metric %s: %q is not a valid label name", name, l))
		}
		if typ == typeHistogram && l == "le" {
			panic(fmt.Sprintf("metrics: histogram %s: the label le is reserved for its buckets", name))
		}
		if seen[l] {
			panic(fmt.Sprintf("metrics: metric %s: label %q given twice", name, l))
		}
		seen[l] = true
	}
	f := &family{name: name, help: help, typ: typ, labels: slices.Clone(labels), buckets: buckets,
		series: map[string]*series{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.families == nil {
		r.families = map[string]*family{}
	}
	if _, ok := r.families[name]; ok {
		panic(fmt.Sprintf("metrics: metric %s registered twice", name))
	}
	r.families[name] = f
	if len(labels) == 0 {
		f.get(nil) // an unlabelled metric shows from the start, at 0
	}
	return f
}

// get returns the series of the label values, creating it. Call with
// f.mu held, or before f is shared.
func (f *family) get(values []string) *series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: metric %s takes %d label values (%s), got %d",
			f.name, len(f.labels), strings.Join(f.labels, ", "), len(values)))
	}
	key := strings.Join(values, "\xff")
	s, ok := f.series[key]
	if !ok {
		s = &series{values: slices.Clone(values)}
		if f.typ == typeHistogram {
			s.counts = make([]uint64, len(f.buckets)+1)
		}
		f.series[key] = s
	}
	return s
}

// Counter is a value that only goes up, per combination of label values.
type Counter struct{ f *family }

// NewCounter registers a counter with the given label names. It panics
// on an invalid or duplicate name.
func (r *Registry) NewCounter(name, help string, labels ...string) *Counter {
	return &Counter{f: r.register(name, help, typeCounter, nil, labels)}
}

// Inc adds 1 to the series of the label values (one per label name, in
// order).
func (c *Counter) Inc(values ...string) { c.Add(1, values...) }

// Add adds v to the series of the label values; Add(0, ...) makes the
// series show at 0. It panics when v is negative or the number of values
// is wrong: a counter never goes down.
func (c *Counter) Add(v float64, values ...string) {
	if v < 0 || math.IsNaN(v) {
		panic(fmt.Sprintf("metrics: counter %s: cannot add %v", c.f.name, v))
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.get(values).value += v
}

// Gauge is a value that goes up and down, per combination of label
// values.
type Gauge struct{ f *family }

// NewGauge registers a gauge with the given label names. It panics on an
// invalid or duplicate name.
func (r *Registry) NewGauge(name, help string, labels ...string) *Gauge {
	return &Gauge{f: r.register(name, help, typeGauge, nil, labels)}
}

// Set sets the series of the label values to v.
func (g *Gauge) Set(v float64, values ...string) {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	g.f.get(values).value = v
}

// Add adds v (which may be negative) to the series of the label values.
func (g *Gauge) Add(v float64, values ...string) {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	g.f.get(values).value += v
}

// Histogram counts observations in buckets, per combination of label
// values.
type Histogram struct{ f *family }

// NewHistogram registers a histogram with the given bucket upper bounds
// (strictly increasing; a +Inf bucket is always added) and label names.
// It panics on an invalid or duplicate name or bad buckets.
func (r *Registry) NewHistogram(name, help string, buckets []float64, labels ...string) *Histogram {
	b := slices.Clone(buckets)
	if n := len(b); n > 0 && math.IsInf(b[n-1], +1) {
		b = b[:n-1]
	}
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || (i > 0 && v <= b[i-1]) {
			panic(fmt.Sprintf("metrics: histogram %s: buckets %v must be finite and strictly increasing", name, buckets))
		}
	}
	return &Histogram{f: r.register(name, help, typeHistogram, b, labels)}
}

// Observe records v in the series of the label values.
func (h *Histogram) Observe(v float64, values ...string) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	s := h.f.get(values)
	// The first bucket whose upper bound is at least v; past the last,
	// the +Inf bucket.
	i, _ := slices.BinarySearch(h.f.buckets, v)
	if math.IsNaN(v) {
		i = len(h.f.buckets)
	}
	s.counts[i]++
	s.sum += v
	s.count++
}

// WriteText writes every metric in the Prometheus text format 0.0.4:
// families sorted by name, each with its # HELP and # TYPE lines, series
// sorted by label values. A family without any series yet is left out.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })

	bw := bufio.NewWriter(w)
	for _, f := range fams {
		f.write(bw)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// write writes one family. bufio.Writer keeps the first error for Flush.
func (f *family) write(w *bufio.Writer) {
	f.mu.Lock()
	all := make([]series, 0, len(f.series))
	for _, s := range f.series {
		c := *s
		c.counts = slices.Clone(s.counts)
		all = append(all, c)
	}
	f.mu.Unlock()
	if len(all) == 0 {
		return
	}
	slices.SortFunc(all, func(a, b series) int { return slices.Compare(a.values, b.values) })

	fmt.Fprintf(w, "# HELP %s %s\n", f.name, escapeHelp(f.help))
	fmt.Fprintf(w, "# TYPE %s %s\n", f.name, f.typ)
	for _, s := range all {
		if f.typ != typeHistogram {
			sample(w, f.name, f.labels, s.values, "", "", s.value)
			continue
		}
		var cum uint64
		for i, c := range s.counts {
			cum += c
			le := "+Inf"
			if i < len(f.buckets) {
				le = formatFloat(f.buckets[i])
			}
			sample(w, f.name+"_bucket", f.labels, s.values, "le", le, float64(cum))
		}
		sample(w, f.name+"_sum", f.labels, s.values, "", "", s.sum)
		sample(w, f.name+"_count", f.labels, s.values, "", "", float64(s.count))
	}
}

// sample writes one line: name{labels} value. extra, when set, is one
// more label after the others (a histogram's le).
func sample(w *bufio.Writer, name string, labels, values []string, extra, extraValue string, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || extra != "" {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			writeLabel(w, l, values[i])
		}
		if extra != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			writeLabel(w, extra, extraValue)
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

func writeLabel(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	w.WriteString(`="`)
	w.WriteString(escapeLabel(value))
	w.WriteByte('"')
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// escapeLabel escapes a label value: backslash, double quote and line
// feed; bytes that are not UTF-8 become U+FFFD.
func escapeLabel(v string) string {
	return labelEscaper.Replace(strings.ToValidUTF8(v, "\uFFFD"))
}

// escapeHelp escapes a help text: backslash and line feed.
func escapeHelp(v string) string {
	return helpEscaper.Replace(strings.ToValidUTF8(v, "\uFFFD"))
}

// formatFloat writes a sample value as Prometheus reads it: whole
// numbers without an exponent, +Inf, -Inf and NaN by name.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
