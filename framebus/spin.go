package framebus

import "time"

// The model of the spinning consumer (ConsumerOptions.Spin): what it
// learns of the stream's pace and where it puts the spin window. The spin
// itself is in wait.go (trySpin, spinFor).

// spinState is what a spinning consumer (ConsumerOptions.Spin) learns about
// the stream. The period is the mean interval since an anchor frame
// ((commit - anchor commit) / (seq - anchor seq)), which a burst of late
// frames caught up at once does not throw. The predicted commit time of the
// next frame is corrected by a sixteenth of each error, like a phase-locked
// loop, so that one late frame does not move the next window much. Three
// predictions in a row off by more than half a period (a stall, a new rate)
// start the learning again. All times in nanoseconds of Now().
type spinState struct {
	anchorSeq    uint64
	anchorCommit int64
	period       int64  // mean commit-to-commit interval
	nextSeq      uint64 // the frame predicted
	next         int64  // its predicted commit_ns; 0: none yet
	jitter       int64  // mean absolute prediction error
	lo, hi       int64  // running 10th and 90th percentiles of the prediction error
	late         int64  // mean lateness of a timed sleep's end
	bad          int    // predictions in a row off by more than half a period
	missed       uint64 // last_seq when a spin ended with no frame: sleep until it comes
	heldMissed   uint64 // the same for a held wait (wait.go)
	samples      int

	n waitCounts // kept when the learning starts again
}

// waitCounts are ConsumerStats' SpinHits, SpinMisses, HoldHits, HoldMisses.
type waitCounts struct{ hits, misses, holdHits, holdMisses uint64 }

const (
	spinMinWindow = 20 * time.Microsecond
	// spinLead opens the window this long before the 10th percentile of
	// the arrivals. A vCPU that has just come back from a sleep reads the
	// bus slowly for a while (its caches and the host's state are cold):
	// on a 2-vCPU KVM guest at 60 fps, BenchmarkSpinLatency/60fps had a
	// median 5-8x the cache-line floor with 20 us of lead and 1.4-3.8x with
	// 100 us, for about 80 us more spinning per frame (0.5% of a CPU).
	spinLead      = 100 * time.Microsecond
	spinMaxPeriod = time.Second // slower streams are not worth a spin
	spinLearn     = 8           // frames predicted before the first spin

	// The held wait (ConsumerOptions.Hold, wait.go) opens holdLead before
	// the 10th percentile of the arrivals and closes holdTail after the
	// 90th: it costs no CPU, so it can afford to be wide.
	holdLead = 2 * time.Millisecond
	holdTail = time.Millisecond
	// DefaultHold is the longest held wait when ConsumerOptions.Hold is 0.
	DefaultHold = 4 * time.Millisecond
	// holdMinPeriod: faster streams get no held wait. Go's scheduler takes
	// the processor of a goroutine in a system call away after 10 ms, so
	// at short periods the plain sleep keeps it anyway, and a stream that
	// fast (or unpaced: as fast as the consumers go) on a busy machine
	// does worse held (1080p RGBA as fast as possible, a Python and a Go
	// consumer on one bus, 2 vCPUs: Go p50 95.8 us held, 23.4 us not).
	holdMinPeriod = 5 * time.Millisecond
)

// learn takes the sequence number and commit time of a frame just delivered.
func (s *spinState) learn(seq uint64, commit int64) {
	if s.anchorSeq == 0 || seq <= s.anchorSeq || commit <= s.anchorCommit {
		*s = spinState{anchorSeq: seq, anchorCommit: commit, late: s.late, n: s.n}
		return
	}
	s.period = (commit - s.anchorCommit) / int64(seq-s.anchorSeq)
	if s.period <= 0 || s.period > int64(spinMaxPeriod) {
		*s = spinState{anchorSeq: seq, anchorCommit: commit, late: s.late, n: s.n}
		return
	}
	if s.next == 0 || seq < s.nextSeq {
		s.next, s.nextSeq = commit+s.period, seq+1
		return
	}
	want := s.next + int64(seq-s.nextSeq)*s.period
	err := commit - want
	if err > s.period/2 || err < -s.period/2 {
		if s.bad++; s.bad >= 3 {
			// Learn again from here; the old period stays as a rough
			// figure until the next frame measures the new one.
			*s = spinState{anchorSeq: seq, anchorCommit: commit, period: s.period, late: s.late, n: s.n}
			return
		}
		s.next, s.nextSeq = want+s.period, seq+1 // keep the phase
		return
	}
	s.bad = 0
	s.next, s.nextSeq = want+err/16+s.period, seq+1
	// Arrival times are skewed (a producer is late now and then, never
	// much early): the window follows percentiles of the error, not its
	// mean, with steps of a quarter of the mean error.
	step := max(s.jitter/4, int64(2*time.Microsecond))
	s.lo = quantileStep(s.lo, err, step, 10)
	s.hi = quantileStep(s.hi, err, step, 90)
	if err < 0 {
		err = -err
	}
	s.jitter += (err - s.jitter) / 8
	s.samples++
}

// quantileStep moves the estimate est of the pct-th percentile of a stream
// by one step towards x (stochastic approximation: up by pct/100 of a step
// when x is above, down by the rest when below).
func quantileStep(est, x, step int64, pct int64) int64 {
	if x < est {
		return est - step*(100-pct)/100
	}
	return est + step*pct/100
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
// be awake, the timer's lateness allowed for) and end, in Now() time. It
// spans the 10th to 90th percentile of the arrival times around the
// prediction, opened lead early and closed tail late, at most limit from
// its start. ok is false while the loop is not locked, or once a wait of
// this kind for this frame missed (missed is lastSeq+1 then).
func (s *spinState) window(lastSeq uint64, lead, tail, limit time.Duration, missed uint64) (start, end int64, ok bool) {
	if s.samples < spinLearn || missed == lastSeq+1 || s.period <= 0 || lastSeq+1 < s.nextSeq {
		return 0, 0, false
	}
	due := s.next + int64(lastSeq+1-s.nextSeq)*s.period
	lo, hi := s.lo-int64(lead), s.hi+int64(tail)
	if hi-lo > int64(limit) {
		hi = lo + int64(limit)
	}
	if now := Now(); due+hi < now {
		// Past the window: the frame is late or was dropped at the source.
		// Aim at the next period rather than waiting on a lost cause.
		due += ((now-due-hi)/s.period + 1) * s.period
	}
	return due + lo - s.late, due + hi, true
}
