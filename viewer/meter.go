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

// counterRate turns samples of a growing counter into a rate per second:
// over the last second or more once there is one, over the last quarter of
// a second or more before (0 before that), so that a rate is real from the
// first second.
type counterRate struct {
	at   time.Time // the sample that started the current window
	n    uint64    // the counter then
	full bool      // a whole window has passed
	last float64
}

func (c *counterRate) rate(now time.Time, n uint64) float64 {
	switch {
	case c.at.IsZero() || n < c.n: // the first sample, or a new encoder
		*c = counterRate{at: now, n: n}
	case now.Sub(c.at) >= time.Second:
		c.last = float64(n-c.n) / now.Sub(c.at).Seconds()
		c.at, c.n, c.full = now, n, true
	case !c.full && now.Sub(c.at) >= 250*time.Millisecond:
		c.last = float64(n-c.n) / now.Sub(c.at).Seconds()
	}
	return c.last
}
