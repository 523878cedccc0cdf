//go:build linux

package framebus_test

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// BenchmarkSpinLatency: commit-to-wake latency of a spinning consumer
// (ConsumerOptions.Spin) against its floor measured in the same run between
// the same two CPUs: one cache line carrying a CLOCK_MONOTONIC stamp from a
// writer to a reader that spins on it. A spinning consumer makes no system
// call, so what separates it from that floor is the cache lines the commit
// writes and the read fetches after the stamp: the producer's flip and wake
// word, the consumer's look at active, the slot descriptor and its entry.
//
// The producer goroutine is pinned to the first allowed CPU, the consumer
// goroutine to the second (their threads locked); frames of 64x64 GREY come
// at a steady rhythm, paced by busy waiting:
//
//	continuous  every 100 us, shorter than the spin window (400 us): the
//	            consumer is spinning when each commit lands, so this is the
//	            transport's own cost (2000 samples per method)
//	60fps       every 16.7 ms: the consumer sleeps between frames and must
//	            be spinning again when the next one lands, so this also
//	            measures how the window is placed (spin.go) and how a vCPU
//	            back from a sleep reads (300 samples per method)
//
// The misses (hit-frac) are the first frames of each round, while the
// consumer learns, and frames it was descheduled for. The two methods
// alternate in rounds, whatever b.N (ns/op is the whole run). Metrics: spin-p50-us and spin-p90-us (over
// all frames, caught by the spin or not), line-p50-us, p50-x-line (the
// ratio of the medians) and hit-frac (the frames the spin caught).
func BenchmarkSpinLatency(b *testing.B) {
	orig, cpus := allowedCPUs(b)
	if len(cpus) < 2 {
		b.Skip("needs two CPUs")
	}
	b.Run("continuous", func(b *testing.B) { benchSpin(b, orig, cpus, 2000, 250, 100*time.Microsecond) })
	b.Run("60fps", func(b *testing.B) { benchSpin(b, orig, cpus, 300, 150, time.Second/60) })
}

func benchSpin(b *testing.B, orig *unix.CPUSet, cpus []int, samples, round int, spacing time.Duration) {

	dir := framebus.ShmDir(b)
	p, err := framebus.Create("spin", framebus.ProducerOptions{
		Format: framebus.Format{Width: 64, Height: 64, PixelFormat: framebus.FormatGrey}, Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("spin", framebus.ConsumerOptions{Dir: dir, Spin: 400 * time.Microsecond})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	frame := make([]byte, p.Format().FrameSize)

	// The floor's line: the writer's stamp, alone in its cache line.
	var line struct {
		_     [64]byte
		stamp atomic.Int64
		_     [56]byte
	}
	spinLat := make([]int64, 0, samples)
	lineLat := make([]int64, 0, samples)
	turn := make(chan bool) // true: the consumer's round, false: the line's
	done := make(chan error, 1)
	go func() { // the reader, on the second CPU
		// Locked and never unlocked: its pinned thread ends with it
		// instead of going back to the runtime's pool.
		runtime.LockOSThread()
		if err := unix.SchedSetaffinity(0, cpuSet(cpus[1])); err != nil {
			done <- err
			return
		}
		var end uint64 // the last frame of the consumer's rounds so far
		for fb := range turn {
			if fb {
				// Until the round's last frame: one the consumer missed
				// (it was descheduled) is counted as dropped, not waited for.
				for end += uint64(round); ; {
					fr, err := c.Next(context.Background())
					if err != nil {
						done <- err
						return
					}
					spinLat = append(spinLat, fr.WakeNS-fr.CommitNS)
					if fr.Seq >= end {
						break
					}
				}
				done <- nil
				continue
			}
			// Every new stamp until the writer's end mark (-1); a stamp
			// overwritten before it was seen is not waited for.
			for last := line.stamp.Load(); ; {
				var s int64
				for s = line.stamp.Load(); s == last; s = line.stamp.Load() {
				}
				if s < 0 {
					break
				}
				lineLat = append(lineLat, framebus.Now()-s)
				last = s
			}
			done <- nil
		}
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.SchedSetaffinity(0, cpuSet(cpus[0])); err != nil {
		b.Skip("cannot pin:", err)
	}
	defer unix.SchedSetaffinity(0, orig)
	b.ResetTimer()
	for r := 0; r < samples/round; r++ {
		for _, fb := range []bool{true, false} {
			turn <- fb
			time.Sleep(5 * time.Millisecond) // the reader is at its post
			// A camera's steady rhythm, kept by busy waiting (a timer's
			// sleep is late by tens of microseconds, unevenly).
			next := framebus.Now()
			for i := 0; i < round; i++ {
				next += int64(spacing)
				for framebus.Now() < next {
				}
				if fb {
					if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
						b.Fatal(err)
					}
				} else {
					line.stamp.Store(framebus.Now())
				}
			}
			if !fb {
				time.Sleep(spacing)
				line.stamp.Store(-1)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	close(turn)
	b.StopTimer()
	st := c.Stats()
	slices.Sort(spinLat)
	slices.Sort(lineLat)
	s50, l50 := float64(percentile(spinLat, 0.5)), float64(percentile(lineLat, 0.5))
	b.ReportMetric(s50/1e3, "spin-p50-us")
	b.ReportMetric(float64(percentile(spinLat, 0.9))/1e3, "spin-p90-us")
	b.ReportMetric(l50/1e3, "line-p50-us")
	b.ReportMetric(s50/l50, "p50-x-line")
	b.ReportMetric(float64(st.SpinHits)/float64(max(st.SpinHits+st.SpinMisses, 1)), "hit-frac")
}
