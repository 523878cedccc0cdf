//go:build linux

package bench

import (
	"sync/atomic"
	"unsafe"
)

// wordAt is the shared 32-bit word at off of a mapping (tests that forge or
// wake a bus's words from outside).
func wordAt(mem []byte, off int) *atomic.Uint32 {
	_ = mem[off+3]
	return (*atomic.Uint32)(unsafe.Pointer(&mem[off]))
}
