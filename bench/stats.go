package bench

import (
	"fmt"
	"math"
	"slices"

	// HdrHistogram: a well-kept implementation of Gil Tene's histogram (fixed
	// memory, no allocation per value, exact tails at 3 significant digits,
	// a standard interchange encoding), better than a histogram of our own.
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms hold nanoseconds, from 1 ns to 100 s, to 3 significant digits.
const (
	histLowest  = 1
	histHighest = 100e9
	histDigits  = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// record adds one duration in ns, clamped to the histogram's range (a clock
// that went backwards across CPUs cannot make a negative latency).
func record(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(ns, histLowest), histHighest))
}

// encodeHist is the base64 HdrHistogram V2 compressed encoding, which the
// HdrHistogram tools of every language read.
func encodeHist(h *hdrhistogram.Histogram) (string, error) {
	if h == nil {
		return "", nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	return string(b), err
}

func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return nil, nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("histogram: %w", err)
	}
	return h, nil
}

// merge adds src into dst (dst nil: a new histogram).
func merge(dst, src *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	if src == nil {
		return dst
	}
	if dst == nil {
		dst = newHist()
	}
	dst.Merge(src)
	return dst
}

// Percentiles of a latency distribution, in microseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// percentiles summarises h (nil when it is empty).
func percentiles(h *hdrhistogram.Histogram) *Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	us := func(ns int64) float64 { return math.Round(float64(ns)/1e3*1000) / 1000 }
	return &Percentiles{
		P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max()), Mean: math.Round(h.Mean()) / 1e3,
	}
}

// median of xs (NaN for none); xs is reordered.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
