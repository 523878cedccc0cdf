//go:build linux

package framebus

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations, which x/sys/unix does not define. The wake word lives in
// shared memory, so these are the shared (not FUTEX_PRIVATE_FLAG) forms.
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// futexWaitOn sleeps while *w == val, for at most ts (nil: forever). It
// returns nil when woken (or spuriously), EAGAIN when *w != val, ETIMEDOUT
// when the time ran out, EINTR on a signal.
func futexWaitOn(w *atomic.Uint32, val uint32, ts *unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, futexAddr(w), futexWait, uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// futexWakeOn wakes up to n sleepers on w.
func futexWakeOn(w *atomic.Uint32, n int) {
	unix.Syscall6(unix.SYS_FUTEX, futexAddr(w), futexWake, uintptr(n), 0, 0, 0)
}

// futexWakeAddr wakes sleepers on a futex word by address: used from a
// context's AfterFunc, which must not touch a mapping that may be gone (the
// kernel answers EFAULT for an unmapped address; nothing is dereferenced).
func futexWakeAddr(addr uintptr, n int) {
	if addr != 0 {
		unix.Syscall6(unix.SYS_FUTEX, addr, futexWake, uintptr(n), 0, 0, 0)
	}
}

// sharedWakeOS says the producer can keep amendment 7's shared wake word:
// a futex on the header, which every process maps.
const sharedWakeOS = true

// sleepWhile is the FUTEX_WAIT of PROTOCOL.md section 5 (val 0, on the
// entry's sem) and of amendment 7 (val the wake_seq read before the pending
// check): it sleeps while *w == val, at most d. It reports errTimedOut when
// d ran out; any other return (a wake, a spurious wake, EAGAIN because *w
// changed, EINTR) is nil: the caller re-checks *w either way.
func sleepWhile(w *atomic.Uint32, val uint32, d time.Duration) error {
	ts := unix.NsecToTimespec(int64(d))
	if err := futexWaitOn(w, val, &ts); err == unix.ETIMEDOUT {
		return errTimedOut
	}
	return nil
}

// sleepHeld is sleepWhile on a raw system call, for the held wait
// (ConsumerOptions.Hold): the goroutine stays on its thread and keeps its
// processor, so a wake returns to it without the scheduler's exitsyscall,
// which after a sleep longer than 10 ms (the processor retaken by sysmon)
// has to find a processor again, and without the entersyscall that wakes
// sysmon. It must be short: nothing else runs on that processor and a
// stop-the-world waits until it returns (a signal restarts it).
func sleepHeld(w *atomic.Uint32, val uint32, d time.Duration) error {
	ts := unix.NsecToTimespec(int64(d))
	_, _, e := unix.RawSyscall6(unix.SYS_FUTEX, futexAddr(w), futexWait, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	if e == unix.ETIMEDOUT {
		return errTimedOut
	}
	return nil
}
