//go:build linux

package bench

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ctlBlock is the small shared file of one run between its processes: the
// lockstep acks of rate 0, and the futex baseline's words and timestamps.
// Every word is accessed atomically; offsets are multiples of the word size
// and the mapping is page aligned.
//
//	0     stop          uint32  producer side: the run is over
//	4     prodWaiting   uint32  producer side: about to sleep on acks
//	8     acks          uint32  consumers: frames finished (futex word)
//	64    waiter i      64 bytes each, i < ctlMaxWaiters:
//	        +0 word     uint32  futex baseline: the sample number (futex word)
//	        +4 waiting  uint32  the waiter is about to sleep (like framebus's waiters)
//	        +8 ready    uint32  the waiter is set up
//	        +12 entry   uint32  framebus consumer: its table entry + 1
//	ctlRingOff          int64 x ctlRing: sample k's start time at k % ctlRing
//	ctlPhaseOff         uint32 x ctlRing: sample k's phase
type ctlBlock struct {
	mem []byte
}

const (
	ctlStop        = 0
	ctlProdWaiting = 4
	ctlAcks        = 8
	ctlWaitersOff  = 64
	ctlWaiterSize  = 64
	ctlMaxWaiters  = MaxConsumers
	ctlRing        = 4096
	ctlRingOff     = ctlWaitersOff + ctlMaxWaiters*ctlWaiterSize
	ctlPhaseOff    = ctlRingOff + ctlRing*8
	ctlSize        = ctlPhaseOff + ctlRing*4
)

// createCtl makes the zeroed shared file at path.
func createCtl(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(ctlSize)
}

// mapCtl maps the shared file at path.
func mapCtl(path string) (*ctlBlock, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != ctlSize {
		return nil, fmt.Errorf("control file %s: not %d bytes", path, ctlSize)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, ctlSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return &ctlBlock{mem: m}, nil
}

func (c *ctlBlock) unmap() { unix.Munmap(c.mem) }

func (c *ctlBlock) u32(off int) *atomic.Uint32 {
	_ = c.mem[off+3]
	return (*atomic.Uint32)(unsafe.Pointer(&c.mem[off]))
}

func (c *ctlBlock) i64(off int) *atomic.Int64 {
	_ = c.mem[off+7]
	return (*atomic.Int64)(unsafe.Pointer(&c.mem[off]))
}

func (c *ctlBlock) stop() *atomic.Uint32        { return c.u32(ctlStop) }
func (c *ctlBlock) prodWaiting() *atomic.Uint32 { return c.u32(ctlProdWaiting) }
func (c *ctlBlock) acks() *atomic.Uint32        { return c.u32(ctlAcks) }
func (c *ctlBlock) word(i int) *atomic.Uint32   { return c.u32(ctlWaitersOff + i*ctlWaiterSize) }
func (c *ctlBlock) waiting(i int) *atomic.Uint32 {
	return c.u32(ctlWaitersOff + i*ctlWaiterSize + 4)
}
func (c *ctlBlock) ready(i int) *atomic.Uint32 { return c.u32(ctlWaitersOff + i*ctlWaiterSize + 8) }
func (c *ctlBlock) entry(i int) *atomic.Uint32 { return c.u32(ctlWaitersOff + i*ctlWaiterSize + 12) }
func (c *ctlBlock) start(k uint32) *atomic.Int64 {
	return c.i64(ctlRingOff + int(k%ctlRing)*8)
}
func (c *ctlBlock) phase(k uint32) *atomic.Uint32 { return c.u32(ctlPhaseOff + int(k%ctlRing)*4) }

// The shared (not FUTEX_PRIVATE_FLAG) futex operations: the words live in a
// file mapped by several processes.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *w == val, at most d. Any return (a wake, EAGAIN,
// EINTR, the timeout) sends the caller back to look at *w.
func futexWait(w *atomic.Uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWake wakes up to n sleepers on w.
func futexWake(w *atomic.Uint32, n int) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, uintptr(n), 0, 0, 0)
}

// segWaiters maps the control block of the framebus segment at path
// read-only and returns the waiters word of each consumer entry (PROTOCOL.md
// 3.1 and 3.5: consumer_table_offset at byte 224, 128-byte entries, waiters
// at +12, non-zero while the consumer sleeps on its semaphore), so that a
// lockstep producer can tell that its consumers sleep before it commits.
// When the segment has the shared wake word (flags bit 1, PROTOCOL.md
// amendment 7, the shared wake word), consumers sleep on it and count themselves in wake_waiters
// (byte 324) instead: then shared is that word and words is nil.
// Every offset read from the file is checked against the mapping.
func segWaiters(path string, entries []int) (words []*atomic.Uint32, shared *atomic.Uint32, unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	var h [256]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: header: %w", path, err)
	}
	le := func(off int) uint64 {
		var v uint64
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint64(h[off+i])
		}
		return v
	}
	payload, table := le(40), le(224)
	if payload == 0 || payload > 1<<30 || table >= payload {
		return nil, nil, nil, fmt.Errorf("%s: payload_offset %d, consumer_table_offset %d: not a framebus segment", path, payload, table)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(payload), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	if flags := uint32(le(12)); flags&(1<<1) != 0 {
		return nil, (*atomic.Uint32)(unsafe.Pointer(&m[324])), func() { unix.Munmap(m) }, nil
	}
	words = make([]*atomic.Uint32, len(entries))
	for i, e := range entries {
		off := table + uint64(e)*128 + 12
		if e < 0 || off+4 > payload {
			unix.Munmap(m)
			return nil, nil, nil, fmt.Errorf("%s: consumer entry %d outside the control block", path, e)
		}
		words[i] = (*atomic.Uint32)(unsafe.Pointer(&m[off]))
	}
	return words, nil, func() { unix.Munmap(m) }, nil
}

// schedYield gives the CPU to another runnable thread, if any.
func schedYield() { unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
