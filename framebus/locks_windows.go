//go:build windows

package framebus

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/windows"
)

// The protocol's locks (PROTOCOL.md section 2) as mutexes: the owner mutex
// of a lock path, and one mutex per consumer entry of a generation. Shared
// and exclusive are the same on Windows: the consumer table's join order
// makes an exclusive entry lock right. WAIT_ABANDONED, a holder that died,
// counts as taken.

// ownerIndex is the key of the owner mutex among a file's held mutexes.
const ownerIndex = -1

// lockOwner takes the owner mutex of a lock path without waiting.
func (f *sysFile) lockOwner() (bool, error) {
	if f.kind != kindMutex {
		return false, fmt.Errorf("%w: %s is not a lock path", ErrBadOptions, f.path)
	}
	return f.take(ownerIndex, f.mtx)
}

// unlockOwner releases it.
func (f *sysFile) unlockOwner() { f.release(ownerIndex) }

// ownerHeld reports whether a live thread (of any process, this one
// included) holds the owner mutex, taking nothing.
func (f *sysFile) ownerHeld() (bool, error) {
	if f.kind != kindMutex {
		return false, fmt.Errorf("%w: %s is not a lock path", ErrBadOptions, f.path)
	}
	return mutexHeld(f.mtx)
}

// lockEntry takes entry i's mutex without waiting (creating it on first use).
func (f *sysFile) lockEntry(i int, off uint64, exclusive bool) (bool, error) {
	h, err := f.entryMutex(i, true)
	if err != nil {
		return false, err
	}
	return f.take(i, h)
}

// unlockEntry releases it.
func (f *sysFile) unlockEntry(i int, off uint64) { f.release(i) }

// entryHeld reports whether a live thread holds entry i's mutex (a live
// consumer), taking nothing.
func (f *sysFile) entryHeld(i int, off uint64) (bool, error) {
	h, err := f.entryMutex(i, false)
	if err != nil || h == 0 {
		return false, err
	}
	return mutexHeld(h)
}

// entryMutex returns entry i's mutex of this generation: created when create
// is set, else opened (0 when it does not exist).
func (f *sysFile) entryMutex(i int, create bool) (windows.Handle, error) {
	if f.kind != kindSection {
		return 0, fmt.Errorf("%w: %s is not a segment", ErrBadOptions, f.path)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, fmt.Errorf("%w: %s is closed", ErrUnsafePath, f.path)
	}
	if h, ok := f.mutexes[i]; ok {
		return h, nil
	}
	name := f.o.entryName(f.gen, i)
	p, _ := windows.UTF16PtrFromString(name)
	var h windows.Handle
	var err error
	if create {
		h, err = windows.CreateMutex(f.sa, false, p)
		if errors.Is(err, windows.ERROR_ALREADY_EXISTS) && h != 0 {
			err = nil
		}
	} else {
		h, err = windows.OpenMutex(windows.SYNCHRONIZE|windows.MUTANT_QUERY_STATE, false, p)
		if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
			return 0, nil
		}
	}
	if err != nil {
		return 0, winErr("lock", name, f.o.global, err)
	}
	if f.mutexes == nil {
		f.mutexes = map[int]windows.Handle{}
	}
	f.mutexes[i] = h
	return h, nil
}

// take takes mutex h, the file's mutex i, without waiting, and keeps it
// (on a locked OS thread) until release(i).
func (f *sysFile) take(i int, h windows.Handle) (bool, error) {
	// A mutex held by a live process (this one included) is not worth a
	// thread: ask first.
	if held, err := mutexHeld(h); err == nil && held {
		return false, nil
	}
	hd, ok, err := holdMutex(h)
	if err != nil {
		return false, winErr("lock", f.path, f.o.global, err)
	}
	if !ok {
		return false, nil
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		hd.release()
		return false, fmt.Errorf("%w: %s is closed", ErrUnsafePath, f.path)
	}
	if f.holds == nil {
		f.holds = map[int]*mutexHold{}
	}
	if old := f.holds[i]; old != nil { // cannot happen: one holder per mutex
		old.release()
	}
	f.holds[i] = hd
	f.mu.Unlock()
	return true, nil
}

// release lets go of the file's mutex i, if it holds it.
func (f *sysFile) release(i int) {
	f.mu.Lock()
	hd := f.holds[i]
	delete(f.holds, i)
	f.mu.Unlock()
	if hd != nil {
		hd.release()
	}
}

// mutexHeld asks NtQueryMutant whether a mutex is owned (an abandoned mutex
// is free). Without NtQueryMutant it takes and releases the mutex on a
// locked thread, which a racing taker may see as busy for a moment.
func mutexHeld(h windows.Handle) (bool, error) {
	var mbi mutantBasicInfo
	if st := ntQueryMutant(h, 0, &mbi, sizeofMutantBasicInfo, nil); st == nil {
		return mbi.CurrentCount <= 0, nil
	}
	hd, ok, err := holdMutex(h)
	if err != nil {
		return false, err
	}
	if ok {
		hd.release()
		return false, nil
	}
	return true, nil
}

// mutexHold is a mutex taken by a goroutine locked to its OS thread, which
// keeps it until release.
type mutexHold struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (hd *mutexHold) release() {
	hd.once.Do(func() {
		close(hd.stop)
		<-hd.done
	})
}

// holdMutex takes h without waiting on a dedicated, locked OS thread. ok is
// false when another thread holds it.
func holdMutex(h windows.Handle) (hd *mutexHold, ok bool, err error) {
	type result struct {
		ok  bool
		err error
	}
	res := make(chan result, 1)
	hd = &mutexHold{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		ev, err := windows.WaitForSingleObject(h, 0)
		if err != nil || (ev != windows.WAIT_OBJECT_0 && ev != windows.WAIT_ABANDONED) {
			runtime.UnlockOSThread()
			res <- result{false, err}
			close(hd.done)
			return
		}
		res <- result{true, nil}
		<-hd.stop
		if windows.ReleaseMutex(h) == nil {
			runtime.UnlockOSThread()
		}
		// If the release failed the thread still owns the mutex: the
		// goroutine exits locked, the runtime ends the thread, and the
		// mutex is abandoned, which every other party reads as released.
		close(hd.done)
	}()
	r := <-res
	if !r.ok {
		return nil, false, r.err
	}
	return hd, true, nil
}
