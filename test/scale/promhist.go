package scale

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Histogram is one series of a Prometheus histogram (e.g. the API server's
// apiserver_request_duration_seconds for one verb, resource and scope):
// cumulative counts by upper bound, the last bound being +Inf.
type Histogram struct {
	Labels map[string]string `json:"labels,omitempty"`
	Bounds []float64         `json:"-"`
	Counts []float64         `json:"-"`
	Count  float64           `json:"count"`
	Sum    float64           `json:"sum"`
}

// ParseHistograms reads the series of the histogram name from a metrics
// page in Prometheus' text format (an API server's /metrics). Only that
// family's lines are parsed, so the rest of the page cannot spoil it.
func ParseHistograms(r io.Reader, name string) ([]Histogram, error) {
	mf, err := family(r, name, "_bucket", "_sum", "_count")
	if mf == nil || err != nil {
		return nil, err
	}
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		return nil, fmt.Errorf("%s is a %s, not a histogram", name, mf.GetType())
	}
	var out []Histogram
	for _, m := range mf.GetMetric() {
		h := Histogram{Labels: map[string]string{}, Count: float64(m.GetHistogram().GetSampleCount()), Sum: m.GetHistogram().GetSampleSum()}
		for _, lp := range m.GetLabel() {
			h.Labels[lp.GetName()] = lp.GetValue()
		}
		for _, b := range m.GetHistogram().GetBucket() {
			h.Bounds = append(h.Bounds, b.GetUpperBound())
			h.Counts = append(h.Counts, float64(b.GetCumulativeCount()))
		}
		if n := len(h.Bounds); n == 0 || !math.IsInf(h.Bounds[n-1], 1) {
			h.Bounds = append(h.Bounds, math.Inf(1))
			h.Counts = append(h.Counts, h.Count)
		}
		out = append(out, h)
	}
	return out, nil
}

// family parses the metric family name (its lines with the given
// suffixes, or none) out of a metrics page; nil when the page lacks it.
func family(r io.Reader, name string, suffixes ...string) (*dto.MetricFamily, error) {
	if len(suffixes) == 0 {
		suffixes = []string{""}
	}
	var keep bytes.Buffer
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "# HELP "+name+" ") || strings.HasPrefix(line, "# TYPE "+name+" ") {
			keep.WriteString(line + "\n")
			continue
		}
		for _, suffix := range suffixes {
			if rest, ok := strings.CutPrefix(line, name+suffix); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
				keep.WriteString(line + "\n")
				break
			}
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	if keep.Len() == 0 {
		return nil, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(&keep)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	return families[name], nil
}

// SumSamples adds up the samples of a counter or gauge by the value of
// one of its labels ("" adds up every sample under the key "").
func SumSamples(r io.Reader, name, label string) (map[string]float64, error) {
	mf, err := family(r, name)
	if mf == nil || err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		key := ""
		for _, lp := range m.GetLabel() {
			if label != "" && lp.GetName() == label {
				key = lp.GetValue()
			}
		}
		switch {
		case m.Counter != nil:
			out[key] += m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[key] += m.GetGauge().GetValue()
		case m.Untyped != nil:
			out[key] += m.GetUntyped().GetValue()
		default:
			return nil, fmt.Errorf("%s is a %s, not a counter or gauge", name, mf.GetType())
		}
	}
	return out, nil
}

// signature identifies a series by its labels.
func signature(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q,", k, labels[k])
	}
	return b.String()
}

// DiffHistograms is what each series of after observed since before (a
// counter reset, e.g. an API server restart, counts after as a whole).
func DiffHistograms(before, after []Histogram) []Histogram {
	prev := map[string]Histogram{}
	for _, h := range before {
		prev[signature(h.Labels)] = h
	}
	var out []Histogram
	for _, h := range after {
		d := Histogram{Labels: h.Labels, Bounds: h.Bounds, Counts: slices.Clone(h.Counts), Count: h.Count, Sum: h.Sum}
		if p, ok := prev[signature(h.Labels)]; ok && slices.Equal(p.Bounds, h.Bounds) && p.Count <= h.Count {
			for i := range d.Counts {
				d.Counts[i] -= p.Counts[i]
			}
			d.Count -= p.Count
			d.Sum -= p.Sum
		}
		if d.Count > 0 {
			out = append(out, d)
		}
	}
	return out
}

// GroupHistograms adds up the series that key maps to the same group (""
// leaves a series out). Series with other bucket bounds than the group's
// first are left out.
func GroupHistograms(hs []Histogram, key func(labels map[string]string) string) map[string]Histogram {
	out := map[string]Histogram{}
	for _, h := range hs {
		k := key(h.Labels)
		if k == "" {
			continue
		}
		g, ok := out[k]
		if !ok {
			out[k] = Histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts), Count: h.Count, Sum: h.Sum}
			continue
		}
		if !slices.Equal(g.Bounds, h.Bounds) {
			continue
		}
		for i := range g.Counts {
			g.Counts[i] += h.Counts[i]
		}
		g.Count += h.Count
		g.Sum += h.Sum
		out[k] = g
	}
	return out
}

// Quantile estimates the q-quantile (0 < q < 1) of a histogram as
// Prometheus' histogram_quantile does: linear interpolation inside the
// bucket the rank falls in (the first bucket starts at 0). A rank in the
// +Inf bucket gives the largest finite bound: "at least that". NaN when
// the histogram is empty.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.Count
	lower, below := 0.0, 0.0
	for i, upper := range h.Bounds {
		c := h.Counts[i]
		if c >= rank && c > below {
			if math.IsInf(upper, 1) {
				return lower
			}
			return lower + (upper-lower)*(rank-below)/(c-below)
		}
		lower, below = upper, c
	}
	return lower
}

// Mean is the histogram's average observation (NaN when empty).
func (h Histogram) Mean() float64 {
	if h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}
