package framebus

import (
	"context"
	"time"
)

// perEntryWakeOnly makes consumers ignore the shared wake word (tests of a
// reader that does not know amendment 7).
var perEntryWakeOnly = false

// spinState is what a spinning consumer (ConsumerOptions.Spin) learns about
// the stream: the frame period and its jitter from the commit times of
// consecutive frames, and how late its timed sleeps end. All in
// nanoseconds; moving averages with a weight of 1/8.
type spinState struct {
	lastCommit int64  // commit_ns of the last frame delivered
	period     int64  // mean commit-to-commit interval
	jitter     int64  // mean absolute deviation from the period
	late       int64  // mean lateness of a timed sleep's end
	missed     uint64 // last_seq when a spin ended with no frame: sleep until it comes
	samples    int

	hits, misses uint64 // ConsumerStats.SpinHits, SpinMisses
}

const (
	spinMinWindow = 20 * time.Microsecond
	spinMaxPeriod = time.Second // slower streams are not worth a spin
	spinLearn     = 4           // intervals seen before the first spin
)

// learn takes the commit time of a frame just delivered.
func (s *spinState) learn(commit int64, dropped uint64) {
	prev := s.lastCommit
	s.lastCommit = commit
	if prev == 0 || dropped != 0 {
		return // an interval with a frame missing in it is not a period
	}
	d := commit - prev
	if d <= 0 || d > int64(spinMaxPeriod) {
		return
	}
	if s.period == 0 {
		s.period = d
		s.samples = 1
		return
	}
	dev := d - s.period
	s.period += dev / 8
	if dev < 0 {
		dev = -dev
	}
	s.jitter += (dev - s.jitter) / 8
	s.samples++
}

// overslept takes how late a timed sleep that should have ended at the
// start of a spin window actually ended.
func (s *spinState) overslept(d int64) {
	if d < 0 {
		d = 0
	}
	s.late += (d - s.late) / 8
}

// window gives the spin window for the frame after lastSeq: start (when to
// be awake, the timer's lateness allowed for) and end, in Now() time. ok is
// false while the period is unknown, or once a spin for this frame missed.
func (s *spinState) window(lastSeq uint64, limit time.Duration) (start, end int64, ok bool) {
	if s.samples < spinLearn || s.missed == lastSeq+1 {
		return 0, 0, false
	}
	half := min(max(2*s.jitter+int64(spinMinWindow), int64(spinMinWindow)), int64(limit)/2)
	due := s.lastCommit + s.period
	if now := Now(); due+half < now {
		// Past the window: the frame is late or was dropped at the source.
		// Aim at the next period rather than spinning on a lost cause.
		due += ((now-due)/s.period + 1) * s.period
	}
	return due - half - s.late, due + half, true
}

// spinFor watches the active slot until a new frame is there (true) or end
// passes (false, and no more spinning for this frame).
func (c *Consumer) spinFor(ctx context.Context, end int64) bool {
	done := ctx.Done()
	for i := 0; ; i++ {
		if c.pending() {
			c.spin.hits++
			return true
		}
		if i&255 == 255 {
			if Now() > end {
				c.spin.missed = c.lastSeq + 1
				c.spin.misses++
				return false
			}
			if done != nil {
				select {
				case <-done:
					return false
				default:
				}
			}
		}
	}
}
