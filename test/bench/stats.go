package bench

import (
	"math"
	"slices"
)

// Summary is the median and range of a figure's samples.
type Summary struct {
	N      int       `json:"n"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

// Summarize returns the median, minimum and maximum of values (NaN values,
// which stand for "not measured", are left out).
func Summarize(values []float64) Summary {
	var v []float64
	for _, x := range values {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	s := Summary{N: len(v), Values: v}
	if len(v) == 0 {
		s.Values = []float64{}
		return s
	}
	sorted := slices.Clone(v)
	slices.Sort(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if len(sorted)%2 == 1 {
		s.Median = sorted[len(sorted)/2]
	} else {
		s.Median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	return s
}

// Percentile is the nearest-rank percentile p (0 < p ≤ 100) of values.
func Percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// round3 rounds to milliseconds (or to 3 decimals of any unit) for the JSON.
func round3(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	return math.Round(x*1000) / 1000
}

// finite is x, or 0 when x is NaN or infinite (JSON has no NaN).
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}
