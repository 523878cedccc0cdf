//go:build !amd64 && !arm64

package framebus

import "sync/atomic"

// Sequence-lock fences on the other architectures Go builds for (PROTOCOL.md
// section 5, memory ordering). Go's atomic read-modify-write operations are
// implemented with full barriers on each of them (riscv64 AMO .aqrl with
// FENCE, ppc64 SYNC/ISYNC, loong64 DBAR, mips SYNC, s390x serialising
// instructions, 386 LOCK), so a read-modify-write of a private word orders
// every earlier memory access before every later one. That is stronger, and
// slower, than the DMB ISHST/ISHLD of arm64, and correct.

var fenceWord atomic.Uint32

func storeFence() { fenceWord.Add(1) }

func loadFence() { fenceWord.Add(1) }
