//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
)

// The child roles.
const (
	roleFBProducer  = "framebus-producer"
	roleFBConsumer  = "framebus-consumer"
	roleFutexWaker  = "futex-waker"
	roleFutexWaiter = "futex-waiter"
	roleSender      = "stream-sender"
	roleReceiver    = "stream-receiver"
	roleMemcpy      = "memcpy"
)

// Frame phases, carried with every frame or sample.
const (
	phaseWarm    = 1 // discarded
	phaseMeasure = 2 // measured
)

// childSpec is a child's job, JSON on its stdin.
type childSpec struct {
	Role      string          `json:"role"`
	Mode      Mode            `json:"mode,omitempty"`
	Width     uint32          `json:"width"`
	Height    uint32          `json:"height"`
	Format    framebus.FourCC `json:"format"`
	Consumers int             `json:"consumers"`
	Index     int             `json:"index"` // consumer index
	Rate      float64         `json:"rate"`
	Warmup    time.Duration   `json:"warmup"`
	Measure   time.Duration   `json:"measure"`
	Deadline  time.Duration   `json:"deadline"` // the child exits with an error after this long, whatever happens
	Dir       string          `json:"dir"`      // the run's directory (bus, control file, memcpy mapping)
	Bus       string          `json:"bus,omitempty"`
	Ctl       string          `json:"ctl,omitempty"`
	Spin      time.Duration   `json:"spin,omitempty"`
	Checksum  bool            `json:"checksum,omitempty"` // the producer carries CRC-32C checksums
	Slots     int             `json:"slots,omitempty"`    // the bus's slots (0: the producer's default)
	HoldFor   time.Duration   `json:"hold_for,omitempty"` // the slow and hold modes' analysis of a frame
	CPUs      []int           `json:"cpus,omitempty"`     // the CPUs the child must be pinned to (nil: any)
	FDs       int             `json:"fds,omitempty"`      // inherited stream descriptors, from fd 3
}

func (s *childSpec) lockstep() bool { return s.Rate == 0 }

// childResult is what a child measured, JSON on its stdout.
type childResult struct {
	Role     string `json:"role"`
	Frames   int64  `json:"frames"`    // measured frames published, received or copied
	WindowNS int64  `json:"window_ns"` // from the first to the last measured frame
	CPUNS    int64  `json:"cpu_ns"`    // CPU time (user + system) in the measured window
	Bytes    int64  `json:"bytes"`

	Latency string `json:"latency,omitempty"` // HdrHistogram V2, ns
	Read    string `json:"read,omitempty"`
	Publish string `json:"publish,omitempty"`
	Begin   string `json:"begin,omitempty"`  // the producer's Begin (framebus, Go): the back slot chosen and made odd
	Commit  string `json:"commit,omitempty"` // commit_ns to the wake (framebus)

	Analysis *Analysis `json:"analysis,omitempty"` // the slow and hold modes' consumer

	Dropped     uint64 `json:"dropped"`
	Torn        uint64 `json:"torn"`
	Overwritten uint64 `json:"overwritten"`
	Waiting     int64  `json:"waiting"` // measured frames the consumer was already waiting for; -1 unknown
	Note        string `json:"note,omitempty"`
}

// Child plays the role that in describes and writes its result to out. It
// is what a benchmark child runs (IsChild); a watchdog ends the process
// when the job's deadline passes.
func Child(ctx context.Context, in io.Reader, out io.Writer) error {
	var spec childSpec
	if err := json.NewDecoder(in).Decode(&spec); err != nil {
		return fmt.Errorf("bench child: reading the job: %w", err)
	}
	if spec.Deadline <= 0 {
		spec.Deadline = time.Minute
	}
	watchdog := time.AfterFunc(spec.Deadline, func() {
		fmt.Fprintf(os.Stderr, "bench child %s: still running after %v: exiting\n", spec.Role, spec.Deadline)
		os.Exit(4)
	})
	defer watchdog.Stop()
	ctx, cancel := context.WithTimeout(ctx, spec.Deadline)
	defer cancel()
	// One thread for the whole job: no migration between threads, and the
	// timer slack below stays set.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := checkAffinity(spec.CPUs); err != nil {
		return fmt.Errorf("bench child %s: %w", spec.Role, err)
	}
	var res *childResult
	var err error
	switch spec.Role {
	case roleFBProducer:
		res, err = fbProducer(ctx, &spec)
	case roleFBConsumer:
		res, err = fbConsumer(ctx, &spec)
	case roleFutexWaker:
		res, err = futexWaker(ctx, &spec)
	case roleFutexWaiter:
		res, err = futexWaiter(ctx, &spec)
	case roleSender:
		res, err = streamSender(ctx, &spec)
	case roleReceiver:
		res, err = streamReceiver(ctx, &spec)
	case roleMemcpy:
		res, err = memcpyRole(ctx, &spec)
	default:
		err = fmt.Errorf("unknown role %q", spec.Role)
	}
	if err != nil {
		return fmt.Errorf("bench child %s: %w", spec.Role, err)
	}
	res.Role = spec.Role
	return json.NewEncoder(out).Encode(res)
}

// checkAffinity verifies that the process inherited the CPU mask it was
// started with (all its threads have it).
func checkAffinity(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return err
	}
	want := cpuSet(cpus)
	if set != *want {
		return fmt.Errorf("pinned to CPUs %v, want %v", cpuList(&set), cpus)
	}
	return nil
}

// cpuTime is the process's CPU time so far (user + system, every thread).
func cpuTime() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// newSource is the built-in test pattern at the job's size: the same frames
// for every transport.
func newSource(s *childSpec) (*capture.Pattern, error) {
	return capture.NewPattern(capture.Config{Width: s.Width, Height: s.Height, PixelFormat: s.Format})
}

// schedule decides the phase of each frame from the clock: warm-up, then
// the measured window, then the end.
type schedule struct {
	warmEnd, measureEnd int64
	measuring           bool
	frames              int64 // measured frames so far
	first, last         int64 // Now() of the first and last measured frame
	cpu0                int64
}

func newSchedule(s *childSpec) *schedule {
	now := framebus.Now()
	return &schedule{warmEnd: now + int64(s.Warmup), measureEnd: -1}
}

// next reports the phase of the frame about to go out, and false when the
// run is over. k is the frame's index from 0.
func (sc *schedule) next(s *childSpec, k int64) (uint32, bool) {
	now := framebus.Now()
	if !sc.measuring {
		if now < sc.warmEnd || k < 3 {
			return phaseWarm, true
		}
		sc.measuring = true
		sc.measureEnd = now + int64(s.Measure)
		sc.cpu0 = cpuTime()
		return phaseMeasure, true
	}
	if now >= sc.measureEnd && sc.frames >= 2 {
		return 0, false
	}
	return phaseMeasure, true
}

// measured counts a measured frame sent at t.
func (sc *schedule) measured(t int64) {
	if sc.frames == 0 {
		sc.first = t
	}
	sc.frames++
	sc.last = t
}

// pacer keeps a fixed rate with absolute deadlines; a frame whose time has
// passed is skipped, as a camera would.
type pacer struct {
	period, next int64
}

func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	// A precise sleeper: the default 50 µs timer slack would add jitter.
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	return &pacer{period: int64(float64(time.Second) / rate)}
}

func (p *pacer) wait(ctx context.Context) error {
	if p.period == 0 {
		return ctx.Err()
	}
	now := framebus.Now()
	if p.next == 0 {
		p.next = now
	}
	for p.next+p.period <= now {
		p.next += p.period
	}
	ts := unix.NsecToTimespec(p.next)
	for {
		err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.next += p.period
	return ctx.Err()
}

var errTimeout = errors.New("timed out")

// ack tells the producer side that a consumer finished n frames (lockstep).
// Every consumer acks every frame once, and the producer waits for frame k
// until acks = k x consumers, so only the last consumer of a frame reaches a
// multiple of consumers: only it wakes the producer.
func (c *ctlBlock) ack(n uint32, consumers int) {
	if c.acks().Add(n)%uint32(consumers) == 0 && c.prodWaiting().Load() != 0 {
		futexWake(c.acks(), 1)
	}
}

// waitAcks sleeps until the consumers acknowledged target frames in all, or
// the deadline (Now's clock) passed. The prodWaiting flag and acks form the
// same store-buffering handshake as framebus's waiters and sem.
func (c *ctlBlock) waitAcks(target uint32, deadline int64) error {
	a := c.acks()
	for {
		if a.Load() >= target {
			return nil
		}
		if framebus.Now() > deadline {
			return fmt.Errorf("waiting for the consumers' acks (%d of %d): %w", a.Load(), target, errTimeout)
		}
		c.prodWaiting().Store(1)
		if v := a.Load(); v < target {
			futexWait(a, v, 100*time.Millisecond)
		}
		c.prodWaiting().Store(0)
	}
}

// ackTimeout is how long a lockstep producer waits for one frame's acks.
const ackTimeout = int64(10 * time.Second)

// asleepWaiter waits until every consumer sleeps on its futex (each word is
// non-zero), so that the next hand-off times the wake of a sleeping process,
// not a race with one still on its way to sleep. It yields the CPU (a
// consumer may share it), then naps; after 20 ms it gives up and says so.
// The CPU it burns is the benchmark's, not the producer's: it is counted
// apart and taken out of the producer's CPU time.
type asleepWaiter struct {
	words  []*atomic.Uint32 // per-entry waiters
	shared *atomic.Uint32   // or the bus's wake_waiters, counting sleepers
	n      uint32           // consumers
	awake  int64            // measured frames handed off to a consumer still awake
	cpu    int64            // CPU time spent waiting
}

func (a *asleepWaiter) asleep() bool {
	if a.shared != nil {
		return a.shared.Load() >= a.n
	}
	for _, w := range a.words {
		if w.Load() == 0 {
			return false
		}
	}
	return true
}

func (a *asleepWaiter) wait(phase uint32) {
	if a.asleep() {
		return // nearly always: the consumers went to sleep long ago
	}
	c0 := cpuTime()
	defer func() {
		if phase == phaseMeasure {
			a.cpu += cpuTime() - c0
		}
	}()
	deadline := framebus.Now() + int64(20*time.Millisecond)
	nap := unix.NsecToTimespec(int64(20 * time.Microsecond))
	for i := 0; !a.asleep(); i++ {
		if framebus.Now() > deadline {
			if phase == phaseMeasure {
				a.awake++
			}
			return
		}
		if i < 100 {
			schedYield()
		} else {
			unix.Nanosleep(&nap, nil)
		}
	}
}

// awakeNote explains frames handed off before every consumer slept.
func awakeNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d frames were handed off while a consumer was still awake (it did not fall asleep within 20 ms)", n)
}

// joinNotes puts two notes of one child together.
func joinNotes(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}
