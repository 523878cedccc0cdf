//go:build linux

package framebus_test

// BenchmarkWakeLatency (the list of benchmarks is in bench_test.go): the
// cross-process wake of a sleeping consumer against a raw shared futex. Its
// children are this test binary re-executed in the roles wake-framebus and
// wake-futex (startChild, process_helpers_test.go).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// ---- wake latency -------------------------------------------------------

const (
	wakeSamples    = 1000 // per method and placement, regardless of b.N
	wakeRound      = 100  // samples of one method before the other's turn
	wakeSpacing    = time.Millisecond
	wakeMaxSamples = 1 << 15

	futexWaitOp = 0 // FUTEX_WAIT, shared (no FUTEX_PRIVATE_FLAG)
	futexWakeOp = 1 // FUTEX_WAKE, shared
)

// wakeShared is the little shared file between the parent and one child:
// control words, then per-sample timestamps. Every word is accessed
// atomically.
type wakeShared struct {
	ready   atomic.Uint64 // child: set up and about to wait
	stop    atomic.Uint64 // parent: finish
	count   atomic.Uint64 // child: samples recorded
	last    atomic.Uint64 // child: last frame sequence / futex value seen
	dropped atomic.Uint64 // child: frames it never saw
	asleep  atomic.Uint64 // futex child: 1 from just before FUTEX_WAIT to just after the sample
	_       [1]uint64
	word    atomic.Uint32 // futex child: the futex word, parent stores 1, 2, 3, ...
	_       [15]uint32
	t0      [wakeMaxSamples]atomic.Int64 // futex: parent's CLOCK_MONOTONIC just before the wake
	lat     [wakeMaxSamples]atomic.Int64 // child: wake latency of sample i, ns
}

func mapWakeShared(path string, create bool) (*wakeShared, func(), error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	n := int(unsafe.Sizeof(wakeShared{}))
	if create {
		if err := f.Truncate(int64(n)); err != nil {
			return nil, nil, err
		}
	}
	m, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil, err
	}
	return (*wakeShared)(unsafe.Pointer(&m[0])), func() { unix.Munmap(m) }, nil
}

func futexWord(w *atomic.Uint32) uintptr { return uintptr(unsafe.Pointer(w)) }

// pinAllThreads sets the CPU affinity of every thread of this process (a Go
// process has several, and threads made later inherit their creator's mask).
func pinAllThreads(set *unix.CPUSet) error {
	seen := map[int]bool{}
	for pass := 0; pass < 5; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || seen[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return err
			}
			seen[tid], fresh = true, true
		}
		if !fresh {
			return nil
		}
	}
	return nil
}

// wakeChild is the other process of BenchmarkWakeLatency (the child roles
// wake-framebus and wake-futex): pinned to -cpu, it maps the -shared file and
// takes samples as the framebus consumer of -dir and -name or as the raw
// futex waiter, until the parent says stop.
func wakeChild(role string, args []string) error {
	fs := flag.NewFlagSet("wake-"+role, flag.ContinueOnError)
	cpu := fs.Int("cpu", 0, "the CPU to run on")
	shared := fs.String("shared", "", "the file shared with the parent")
	dir := fs.String("dir", "", "bus directory")
	name := fs.String("name", "", "bus name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := pinAllThreads(cpuSet(*cpu)); err != nil {
		return fmt.Errorf("pin to CPU %d: %v", *cpu, err)
	}
	sh, unmap, err := mapWakeShared(*shared, false)
	if err != nil {
		return err
	}
	defer unmap()
	if role == "framebus" {
		return benchChildFramebus(sh, *dir, *name)
	}
	return benchChildFutex(sh)
}

// benchChildFramebus is a consumer that sleeps in Next and records, for every
// frame, WakeNS - CommitNS.
func benchChildFramebus(sh *wakeShared, dir, name string) error {
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir, Wait: 10 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sh.ready.Store(1)
	for {
		f, err := c.Next(ctx)
		if errors.Is(err, framebus.ErrEndOfStream) || errors.Is(err, framebus.ErrProducerGone) {
			return nil
		}
		if errors.Is(err, framebus.ErrStalled) {
			continue
		}
		if err != nil {
			return err
		}
		i := sh.count.Load()
		if i < wakeMaxSamples {
			sh.lat[i].Store(f.WakeNS - f.CommitNS)
		}
		sh.dropped.Add(f.Dropped)
		sh.count.Store(i + 1)
		sh.last.Store(f.Seq)
		if sh.stop.Load() != 0 {
			return nil
		}
	}
}

// benchChildFutex is the raw baseline: FUTEX_WAIT on a shared word until the
// parent changes it, then the time since the parent's timestamp taken just
// before its FUTEX_WAKE. It wakes every 100 ms to look for the stop flag and
// its parent, as a framebus consumer does every heartbeat interval.
func benchChildFutex(sh *wakeShared) error {
	ts := unix.NsecToTimespec(int64(100 * time.Millisecond))
	ppid := os.Getppid()
	seen := sh.word.Load()
	sh.ready.Store(1)
	for {
		v := sh.word.Load()
		if v == seen {
			if sh.stop.Load() != 0 || os.Getppid() != ppid {
				return nil
			}
			// asleep tells the parent (as a framebus consumer's waiters
			// word does) that this process is about to sleep: it only
			// paces the parent, it takes no part in the wake.
			sh.asleep.Store(1)
			unix.Syscall6(unix.SYS_FUTEX, futexWord(&sh.word), futexWaitOp, uintptr(seen), uintptr(unsafe.Pointer(&ts)), 0, 0)
			continue
		}
		t1 := framebus.Now()
		sh.asleep.Store(0)
		if sh.stop.Load() != 0 {
			return nil // the parent's last store, not a sample
		}
		if v > 0 && v <= wakeMaxSamples {
			i := sh.count.Load()
			if i < wakeMaxSamples {
				sh.lat[i].Store(t1 - sh.t0[v-1].Load())
			}
			sh.count.Store(i + 1)
		}
		sh.dropped.Add(uint64(v - seen - 1))
		seen = v
		sh.last.Store(uint64(v))
	}
}

// startWakeChild starts the wake child of role (framebus or futex) on cpu,
// sharing the file shared; it is killed at the end of the benchmark whatever
// happens.
func startWakeChild(b *testing.B, role, shared, dir, name string, cpu int) *child {
	return startChild(b, role+" child", childOpts{}, "wake-"+role,
		busArgs(dir, name, "-shared", shared, "-cpu", strconv.Itoa(cpu))...)
}

// waitFor polls cond every 200 us until it holds or d runs out (or the
// child died).
func waitFor(d time.Duration, ch *child, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ch.done:
			return cond()
		case <-time.After(200 * time.Microsecond):
		}
	}
	return true
}

// BenchmarkWakeLatency: publish-to-wake latency of a consumer in another
// process that sleeps on its futex between frames (one 64x64 GREY frame
// every ~1 ms), against the raw floor of the same wake: a shared-memory
// FUTEX_WAKE by the parent and FUTEX_WAIT by a child process, each one-way
// latency taken as CLOCK_MONOTONIC just before the wake (framebus: commit_ns)
// to just after the waiter returns (framebus: Frame.WakeNS). No round trips
// are divided.
//
// Both children live for the whole run and the two methods alternate in
// rounds of 100 samples, so they see the same machine. Before each sample the
// parent sleeps 1 ms, then waits (bounded) until the child has taken the
// previous sample and is asleep again (framebus: the bus's count of
// sleeping consumers, Producer.Sleepers in export_test.go; futex child: a flag it sets before FUTEX_WAIT), so every
// sample is a wake of a sleeping process and none is lost to a late child;
// asleep-frac and futex-asleep-frac are the shares where that held.
//
// Placements: split (parent pinned to the first allowed CPU, children to the
// second) and shared (all on the first). Each run takes a fixed 1000 samples
// per method (about 2.5 s), whatever b.N: ns/op is the wall time of the whole
// run, not a per-frame figure; the latencies are the p50-us, p99-us (framebus)
// and futex-p50-us, futex-p99-us metrics, and p50-x-futex their ratio (target
// <= 1.3). Only ratios from the same run and placement mean anything: on a
// shared KVM guest the absolute latencies move with the neighbours' load.
func BenchmarkWakeLatency(b *testing.B) {
	orig, cpus := allowedCPUs(b)
	for _, placement := range []string{"split", "shared"} {
		b.Run(placement, func(b *testing.B) {
			parentCPU, childCPU := cpus[0], cpus[0]
			if placement == "split" {
				if len(cpus) < 2 {
					b.Skip("needs two CPUs")
				}
				childCPU = cpus[1]
			}
			benchWake(b, orig, parentCPU, childCPU)
		})
	}
}

func benchWake(b *testing.B, orig *unix.CPUSet, parentCPU, childCPU int) {
	if err := pinAllThreads(cpuSet(parentCPU)); err != nil {
		b.Skip("cannot pin:", err)
	}
	b.Cleanup(func() { pinAllThreads(orig) })
	// One CPU, one P: what the runtime picks by itself for a process started
	// pinned to one CPU, as the children are (they inherit the parent's
	// mask at exec, then pin themselves).
	b.Cleanup(func(n int) func() { return func() { runtime.GOMAXPROCS(n) } }(runtime.GOMAXPROCS(1)))

	dir := framebus.ShmDir(b)
	const name = "wake"
	p, err := framebus.Create(name, framebus.ProducerOptions{
		Format: framebus.Format{Width: 64, Height: 64, PixelFormat: framebus.FormatGrey},
		Dir:    dir,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	frame := make([]byte, p.Format().FrameSize)

	fbPath, fxPath := filepath.Join(dir, "fb-shared"), filepath.Join(dir, "futex-shared")
	fb, unmapFB, err := mapWakeShared(fbPath, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(unmapFB)
	fx, unmapFX, err := mapWakeShared(fxPath, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(unmapFX)

	// Cleanups run last-in first-out: the children are killed before the
	// mappings and the producer go.
	fbChild := startWakeChild(b, "framebus", fbPath, dir, name, childCPU)
	fxChild := startWakeChild(b, "futex", fxPath, dir, name, childCPU)
	if !waitFor(15*time.Second, fbChild, func() bool { return fb.ready.Load() != 0 }) {
		b.Fatalf("framebus child not ready: %s", fbChild.describe())
	}
	if !waitFor(15*time.Second, fxChild, func() bool { return fx.ready.Load() != 0 }) {
		b.Fatalf("futex child not ready: %s", fxChild.describe())
	}

	// The consumer counted asleep (on the shared wake word, wake_waiters, or
	// on its entry's semaphore, the entry's waiters word): before each
	// publish the parent waits (bounded) until the child has taken the
	// previous frame and sleeps on its futex again, so that every sample is
	// the sleeping-consumer wake and none is lost to a late child; the futex
	// child is paced the same way. asleep-frac is the share of samples where
	// that held.

	b.ReportAllocs()
	b.ResetTimer()
	var seq uint64
	var word uint32
	fbAsleep, fxAsleep := 0, 0
	for round := 0; round < wakeSamples/wakeRound; round++ {
		for i := 0; i < wakeRound; i++ {
			time.Sleep(wakeSpacing)
			if waitFor(time.Second, fbChild, func() bool { return fb.last.Load() >= seq && p.Sleepers() != 0 }) {
				fbAsleep++
			}
			s, err := p.Publish(frame, framebus.Meta{})
			if err != nil {
				b.Fatal(err)
			}
			seq = s
		}
		if !waitFor(2*time.Second, fbChild, func() bool { return fb.last.Load() >= seq }) {
			b.Fatalf("framebus child saw frame %d of %d: %s", fb.last.Load(), seq, fbChild.describe())
		}
		for i := 0; i < wakeRound; i++ {
			time.Sleep(wakeSpacing)
			if waitFor(time.Second, fxChild, func() bool { return fx.last.Load() >= uint64(word) && fx.asleep.Load() != 0 }) {
				fxAsleep++
			}
			word++
			fx.t0[word-1].Store(framebus.Now())
			fx.word.Store(word)
			unix.Syscall6(unix.SYS_FUTEX, futexWord(&fx.word), futexWakeOp, 1, 0, 0, 0)
		}
		if !waitFor(2*time.Second, fxChild, func() bool { return fx.last.Load() >= uint64(word) }) {
			b.Fatalf("futex child saw %d of %d: %s", fx.last.Load(), word, fxChild.describe())
		}
	}
	b.StopTimer()

	// Stop both children and let them exit by themselves.
	fb.stop.Store(1)
	fx.stop.Store(1)
	fx.word.Store(word + 1)
	unix.Syscall6(unix.SYS_FUTEX, futexWord(&fx.word), futexWakeOp, 1, 0, 0, 0)
	p.Close()
	for _, ch := range []*child{fbChild, fxChild} {
		if _, err := ch.waitExit(5 * time.Second); err != nil {
			b.Fatalf("child failed: %s", ch.describe())
		}
	}

	lat := func(sh *wakeShared) []int64 {
		n := min(sh.count.Load(), wakeMaxSamples)
		s := make([]int64, n)
		for i := range s {
			s[i] = sh.lat[i].Load()
		}
		slices.Sort(s)
		return s
	}
	fbLat, fxLat := lat(fb), lat(fx)
	if len(fbLat) == 0 || len(fxLat) == 0 {
		b.Fatalf("no samples: framebus %d, futex %d", len(fbLat), len(fxLat))
	}
	fbP50, fbP99 := float64(percentile(fbLat, 0.50))/1e3, float64(percentile(fbLat, 0.99))/1e3
	fxP50, fxP99 := float64(percentile(fxLat, 0.50))/1e3, float64(percentile(fxLat, 0.99))/1e3
	b.ReportMetric(fbP50, "p50-us")
	b.ReportMetric(fbP99, "p99-us")
	b.ReportMetric(fxP50, "futex-p50-us")
	b.ReportMetric(fxP99, "futex-p99-us")
	b.ReportMetric(fbP50/fxP50, "p50-x-futex")
	b.ReportMetric(float64(len(fbLat)), "samples")
	b.ReportMetric(float64(fbAsleep)/float64(wakeSamples), "asleep-frac")
	b.ReportMetric(float64(fxAsleep)/float64(wakeSamples), "futex-asleep-frac")
	if d := fb.dropped.Load() + fx.dropped.Load(); d != 0 {
		b.ReportMetric(float64(d), "dropped")
	}
}
