package scale

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/test/bench"
)

// Latency is a set of latencies summarized (seconds).
type Latency struct {
	Count  int     `json:"count"`
	Errors int     `json:"errors,omitempty"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	// Source says where the figures come from: "client" (measured by the
	// load's client, nearest-rank percentiles of every request) or
	// "apiserver" (apiserver_request_duration_seconds, interpolated in its
	// buckets; Max is then the upper bound of the highest bucket used).
	Source string `json:"source"`
}

// Summarize turns latencies (seconds) into nearest-rank percentiles.
func Summarize(values []float64, errors int) Latency {
	l := Latency{Count: len(values), Errors: errors, Source: "client"}
	if len(values) == 0 {
		l.P50, l.P90, l.P99, l.Max, l.Mean = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
		return l
	}
	l.P50 = bench.Percentile(values, 50)
	l.P90 = bench.Percentile(values, 90)
	l.P99 = bench.Percentile(values, 99)
	l.Max = slices.Max(values)
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	l.Mean = sum / float64(len(values))
	return l
}

// FromHistogram summarizes a server-side histogram.
func FromHistogram(h Histogram) Latency {
	l := Latency{Count: int(h.Count), P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99), Mean: h.Mean(), Max: math.NaN(), Source: "apiserver"}
	for i := len(h.Counts) - 1; i >= 0; i-- {
		below := 0.0
		if i > 0 {
			below = h.Counts[i-1]
		}
		if h.Counts[i] > below {
			l.Max = h.Bounds[i]
			if math.IsInf(l.Max, 1) && i > 0 {
				l.Max = h.Bounds[i-1] // "more than the largest bound"
			}
			break
		}
	}
	return l
}

// Recorder collects the latency of each request of a load, by operation
// ("GET resource configmaps"). Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	values map[string][]float64
	errors map[string]int
	// LastErrors keeps a few error messages per operation.
	lastErrors map[string][]string
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{values: map[string][]float64{}, errors: map[string]int{}, lastErrors: map[string][]string{}}
}

// Observe records one request that took d; a failed request counts as an
// error and not as a latency.
func (r *Recorder) Observe(op string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors[op]++
		if len(r.lastErrors[op]) < 3 {
			r.lastErrors[op] = append(r.lastErrors[op], err.Error())
		}
		return
	}
	r.values[op] = append(r.values[op], d.Seconds())
}

// Time runs f and records how long it took.
func (r *Recorder) Time(op string, f func() error) error {
	start := time.Now()
	err := f()
	r.Observe(op, time.Since(start), err)
	return err
}

// Summary summarizes every operation recorded.
func (r *Recorder) Summary() map[string]Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Latency{}
	for op, v := range r.values {
		out[op] = Summarize(v, r.errors[op])
	}
	for op, n := range r.errors {
		if _, ok := out[op]; !ok {
			out[op] = Summarize(nil, n)
		}
	}
	return out
}

// Requests counts the requests recorded (failed ones too).
func (r *Recorder) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.values {
		n += len(v)
	}
	for _, e := range r.errors {
		n += e
	}
	return n
}

// ErrorSamples returns a few error messages per operation.
func (r *Recorder) ErrorSamples() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for k, v := range r.lastErrors {
		out[k] = slices.Clone(v)
	}
	return out
}
