package viewer

import (
	"strconv"
	"time"
)

// progressEvery is how often the long-running consumers log their rates.
const progressEvery = 5 * time.Second

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// rateMeter measures events per second over the last second or so, from
// the times of the last 64 events (no allocation).
type rateMeter struct {
	t [64]int64
	n int // events recorded
}

func (r *rateMeter) add(ns int64) {
	r.t[r.n%len(r.t)] = ns
	r.n++
}

// fps is the rate over the events of the last second before now (0 with
// fewer than two).
func (r *rateMeter) fps(now int64) float64 {
	k := min(r.n, len(r.t))
	if k < 2 {
		return 0
	}
	last := r.t[(r.n-1)%len(r.t)]
	if now-last > int64(2*time.Second) {
		return 0
	}
	first, count := last, 0
	for i := 1; i < k; i++ {
		t := r.t[(r.n-1-i)%len(r.t)]
		if last-t > int64(time.Second) {
			break
		}
		first, count = t, i
	}
	if count == 0 || last-first < int64(250*time.Millisecond) {
		return 0 // too few to say
	}
	return float64(count) / time.Duration(last-first).Seconds()
}
