package framebus

import (
	"sync/atomic"
	"unsafe"
)

// Typed access to the shared words of a mapping. Every offset passed here
// comes from a validated header and is a multiple of the word size; the slice
// index bounds-checks it against the mapping (a panic here would be a bug in
// validation, never a wild access). The mapping base is page aligned, so the
// words are naturally aligned.

func u32At(b []byte, off uint64) *atomic.Uint32 {
	_ = b[off+3]
	return (*atomic.Uint32)(unsafe.Pointer(&b[off]))
}

func u64At(b []byte, off uint64) *atomic.Uint64 {
	_ = b[off+7]
	return (*atomic.Uint64)(unsafe.Pointer(&b[off]))
}

// futexAddr is the address of a futex word for the futex system call.
func futexAddr(w *atomic.Uint32) uintptr { return uintptr(unsafe.Pointer(w)) }

// Now returns CLOCK_MONOTONIC in nanoseconds, the clock of every timestamp in
// a segment (capture_ns, commit_ns, heartbeat_ns). It is the Go runtime's own
// vDSO clock read, with no system call and no allocation.
func Now() int64 { return nanotime() }

//go:linkname nanotime runtime.nanotime
func nanotime() int64
