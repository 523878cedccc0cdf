//go:build !linux

package framebus

import (
	"sync/atomic"
	"time"
)

// sharedWakeOS is false: without a futex on shared memory the producer does
// not offer amendment 7's shared wake word, so consumers never wait on it.
const sharedWakeOS = false

// sleepWhile is never reached without FlagSharedWake; it waits like sleep.
func sleepWhile(w *atomic.Uint32, val uint32, d time.Duration) error {
	if val == 0 {
		return sleep(w, d)
	}
	time.Sleep(d)
	return errTimedOut
}

// sleepHeld is sleepWhile: the held wait is Linux's.
func sleepHeld(w *atomic.Uint32, val uint32, d time.Duration) error {
	return sleepWhile(w, val, d)
}
