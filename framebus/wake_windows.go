//go:build windows

package framebus

import (
	"errors"
	"time"

	"golang.org/x/sys/windows"
	"sync/atomic"
)

// The wake semaphores (PROTOCOL.md section 5 on Windows).

// semFor returns entry i's semaphore of this generation, created on first use
// (by whichever side comes first: the producer waking or the consumer
// sleeping). Its maximum count is 1: a pending wake is a wake, more would be
// spurious wakes.
func (f *sysFile) semFor(i int) windows.Handle {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0
	}
	if h, ok := f.sems[i]; ok {
		return h
	}
	name, _ := windows.UTF16PtrFromString(f.o.semName(f.gen, i))
	h, err := createSemaphore(f.sa, 0, 1, name)
	if errors.Is(err, windows.ERROR_ALREADY_EXISTS) && h != 0 {
		err = nil
	}
	if err != nil {
		return 0
	}
	if f.sems == nil {
		f.sems = map[int]windows.Handle{}
	}
	f.sems[i] = h
	return h
}

// semAt finds the semaphore behind the sem word at addr.
func semAt(addr uintptr) windows.Handle {
	f, off, ok := lookupView(addr)
	if !ok {
		return 0
	}
	i, ok := f.entryIndex(off, entSem)
	if !ok {
		return 0
	}
	return f.semFor(i)
}

// futexWakeOn is the wake of step 6 on Windows: the caller has done
// sem += 1 and seen waiters != 0; the entry's semaphore is released.
func futexWakeOn(w *atomic.Uint32, n int) { futexWakeAddr(futexAddr(w), n) }

// futexWakeAddr wakes the sleeper on the sem word at addr (a context's
// AfterFunc; an address no longer mapped wakes nobody).
func futexWakeAddr(addr uintptr, n int) {
	if addr == 0 {
		return
	}
	viewsMu.RLock()
	defer viewsMu.RUnlock()
	if h := semAt(addr); h != 0 {
		releaseSemaphore(h, 1, nil) // ERROR_TOO_MANY_POSTS: a wake is pending already
	}
}

// sleep is the wait of PROTOCOL.md section 5 on Windows. The caller has done
// waiters += 1; a semaphore does not compare the word the way FUTEX_WAIT
// does, so *w is checked here, after waiters += 1 and before sleeping. With
// the producer's sem += 1 before its read of waiters (both sequentially
// consistent), either the producer sees waiters != 0 and releases the
// semaphore, or this load sees its increment: no wake is lost.
func sleep(w *atomic.Uint32, d time.Duration) error {
	if w.Load() != 0 {
		return nil
	}
	viewsMu.RLock()
	h := semAt(futexAddr(w))
	viewsMu.RUnlock()
	if h == 0 {
		time.Sleep(min(d, 10*time.Millisecond))
		return errTimedOut
	}
	ms := uint32((d + time.Millisecond - 1) / time.Millisecond)
	if d > 0 && ms == 0 {
		ms = 1
	}
	ev, err := windows.WaitForSingleObject(h, ms)
	if err == nil && ev == uint32(windows.WAIT_TIMEOUT) {
		return errTimedOut
	}
	return nil
}
