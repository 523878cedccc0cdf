package testutil

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, at most d; the test fails (naming
// what) if it does not. It polls every millisecond at first, then less
// often (at most every 20 ms).
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Within polls cond as WaitFor does and reports whether it held within d.
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
	return true
}
