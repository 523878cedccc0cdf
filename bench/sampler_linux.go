//go:build linux

package bench

import hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

// sampler is what every consumer-side role measures: per measured frame the
// wake (t1 - t0), the read (t2 - t0) and, where the frame says when it was
// committed, commit-to-wake (t1 - commit_ns) latencies, counts and bytes,
// and the CPU time and window from the first measured wake to the last. The
// C legs' samples (framebus/testdata/c) are replayed through it too, with
// the CPU times the C process read at the same points (cpuNow).
type sampler struct {
	res               childResult
	lat, read, commit *hdrhistogram.Histogram
	first, last       int64
	cpu0              int64
	readIsTheWake     bool         // sockets and pipes: the receive is the read
	cpuNow            func() int64 // the process's CPU time now (cpuTime)
}

func newSampler(readIsTheWake bool) *sampler {
	s := &sampler{lat: newHist(), readIsTheWake: readIsTheWake, cpuNow: cpuTime}
	if readIsTheWake {
		s.res.Waiting = -1 // not measurable: the sender blocks, not the receiver
	} else {
		s.read = newHist()
	}
	return s
}

// add records one measured frame: t0 the producer's clock before the
// hand-off, tCall when the consumer started waiting, t1 its wake, t2 the end
// of its read (ignored when the read is the wake), commitNS the frame's
// commit_ns (0: the transport has none).
func (s *sampler) add(tCall, t0, t1, t2, commitNS int64, dropped uint64, bytes int) {
	if s.res.Frames == 0 {
		s.first, s.cpu0 = t1, s.cpuNow()
	}
	s.last = t1
	s.res.Frames++
	record(s.lat, t1-t0)
	if s.read != nil {
		record(s.read, t2-t0)
		if tCall < t0 {
			s.res.Waiting++ // asleep (or about to be) before the hand-off began
		}
	}
	if commitNS > 0 {
		if s.commit == nil {
			s.commit = newHist()
		}
		record(s.commit, t1-commitNS)
	}
	s.res.Dropped += dropped
	s.res.Bytes += int64(bytes)
}

// finish returns the result with the CPU time, window and histograms.
func (s *sampler) finish() (*childResult, error) {
	res := &s.res
	if res.Frames > 0 {
		res.CPUNS = s.cpuNow() - s.cpu0
	}
	res.WindowNS = s.last - s.first
	var err error
	if res.Latency, err = encodeHist(s.lat); err != nil {
		return nil, err
	}
	if res.Commit, err = encodeHist(s.commit); err != nil {
		return nil, err
	}
	if s.read == nil {
		res.Read = res.Latency
		return res, nil
	}
	res.Read, err = encodeHist(s.read)
	return res, err
}
