//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// The futex baseline is framebus with framebus taken out: the same frames
// rendered into two slot-sized regions of a shared file, the same reads, the
// same pacing and lockstep, and in place of the protocol a raw futex word per
// waiter with the waiters flag framebus uses. Its latency is the wake limit,
// measured with the same timing around it (how long a consumer has slept
// before the wake changes what the wake costs on a virtual machine).

// slotsFile is the futex baseline's two frame regions.
const slotsFile = "slots"

// slotStride separates the two regions as framebus separates its slots.
func slotStride(frame int) int { return (frame + 65535) / 65536 * 65536 }

func mapSlots(path string, frame int, write bool) ([]byte, error) {
	flags, prot := os.O_RDONLY, unix.PROT_READ
	if write {
		flags, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := 2 * slotStride(frame)
	if st, err := f.Stat(); err != nil || st.Size() != int64(size) {
		return nil, fmt.Errorf("%s: not %d bytes", path, size)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, prot, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	if write {
		for i := 0; i < len(m); i += 4096 {
			m[i] = 0 // pre-fault, as framebus pre-faults its segments
		}
	}
	return m, nil
}

// futexWaker is the baseline's producer side: it renders each frame into
// the next region, then takes the time, stores the sample number in every
// waiter's word and wakes those that sleep, paced like a framebus producer.
//
// Longer than 80 lines on purpose: a measured loop, kept whole so that no
// call or closure of a helper sits between its timestamps (as are
// fbProducer, fbConsumer, fbAnalyst and futexWaker, read side by side).
func futexWaker(ctx context.Context, s *childSpec) (*childResult, error) {
	ctl, err := mapCtl(s.Ctl)
	if err != nil {
		return nil, err
	}
	defer ctl.unmap()
	defer func() {
		// However the run ends, the waiters must not sleep forever.
		ctl.stop().Store(1)
		for i := 0; i < s.Consumers; i++ {
			ctl.word(i).Add(1 << 31)
			futexWake(ctl.word(i), 1)
		}
	}()
	src, err := newSource(s)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	frame := int(src.Format().FrameSize)
	slots, err := mapSlots(s.Dir+"/"+slotsFile, frame, true)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(slots)
	stride := slotStride(frame)

	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < s.Consumers; i++ {
		for ctl.ready(i).Load() == 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("waiter %d not ready within 15 s", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	asleep := asleepWaiter{words: make([]*atomic.Uint32, s.Consumers)}
	for i := range asleep.words {
		asleep.words[i] = ctl.waiting(i)
	}
	pub := newHist()
	pace := newPacer(s.Rate)
	sched := newSchedule(s)
	var sent uint32
	for k := int64(0); ; k++ {
		if err := pace.wait(ctx); err != nil {
			return nil, err
		}
		phase, more := sched.next(s, k)
		if !more {
			break
		}
		next := sent + 1
		off := int(next&1) * stride
		if _, _, err := src.Read(ctx, slots[off:off+frame]); err != nil {
			return nil, err
		}
		if s.lockstep() && k > 0 {
			if err := ctl.waitAcks(sent*uint32(s.Consumers), framebus.Now()+ackTimeout); err != nil {
				return nil, err
			}
			asleep.wait(phase)
		}
		sent = next
		ctl.phase(sent).Store(phase)
		t0 := framebus.Now()
		ctl.start(sent).Store(t0)
		for i := 0; i < s.Consumers; i++ {
			w := ctl.word(i)
			w.Store(sent)
			if ctl.waiting(i).Load() != 0 {
				futexWake(w, 1)
			}
		}
		t1 := framebus.Now()
		if phase == phaseMeasure {
			record(pub, t1-t0)
			sched.measured(t0)
		}
	}
	cpu := cpuTime() - sched.cpu0 - asleep.cpu
	if s.lockstep() && sent > 0 {
		if err := ctl.waitAcks(sent*uint32(s.Consumers), framebus.Now()+ackTimeout); err != nil {
			return nil, err
		}
	}
	res := &childResult{Frames: sched.frames, WindowNS: sched.last - sched.first, CPUNS: cpu, Waiting: -1, Note: awakeNote(asleep.awake)}
	res.Publish, err = encodeHist(pub)
	return res, err
}

// futexWaiter is the baseline's consumer side: FUTEX_WAIT on its word until
// the sample number changes (the wake), then a copy of the frame out of its
// region (the read). It wakes every 100 ms to look at the stop flag and its
// parent, as a framebus consumer wakes every heartbeat interval.
func futexWaiter(ctx context.Context, s *childSpec) (*childResult, error) {
	ctl, err := mapCtl(s.Ctl)
	if err != nil {
		return nil, err
	}
	defer ctl.unmap()
	i := s.Index
	if i < 0 || i >= ctlMaxWaiters {
		return nil, fmt.Errorf("waiter index %d out of range", i)
	}
	f, err := (framebus.Format{Width: s.Width, Height: s.Height, PixelFormat: s.Format}).Complete()
	if err != nil {
		return nil, err
	}
	frame := int(f.FrameSize)
	slots, err := mapSlots(s.Dir+"/"+slotsFile, frame, false)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(slots)
	stride := slotStride(frame)
	buf := make([]byte, frame)

	word, waiting := ctl.word(i), ctl.waiting(i)
	sm := newSampler(false)
	ppid := os.Getppid()
	seen := word.Load()
	finish := sm.finish
	ctl.ready(i).Store(1)
	for {
		tCall := framebus.Now()
		v := word.Load()
		for v == seen {
			if ctl.stop().Load() != 0 || os.Getppid() != ppid || ctx.Err() != nil {
				return finish()
			}
			waiting.Store(1)
			if v = word.Load(); v == seen {
				futexWait(word, seen, 100*time.Millisecond)
				v = word.Load()
			}
			waiting.Store(0)
		}
		t1 := framebus.Now()
		if ctl.stop().Load() != 0 {
			return finish()
		}
		t0, phase := ctl.start(v).Load(), ctl.phase(v).Load()
		off := int(v&1) * stride
		n := copy(buf, slots[off:off+frame])
		t2 := framebus.Now()
		missed := v - seen - 1
		seen = v
		if s.lockstep() {
			ctl.ack(1+missed, s.Consumers)
		}
		if phase != phaseMeasure {
			continue
		}
		sm.add(tCall, t0, t1, t2, 0, uint64(missed), n)
	}
}
