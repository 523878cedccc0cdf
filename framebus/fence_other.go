//go:build !amd64 && !arm64

package framebus

import "sync/atomic"

// Sequence-lock fences on the other architectures Go builds for (PROTOCOL.md
// section 5, memory ordering; docs/PORTABILITY.md has the table). Each is an
// atomic read-modify-write of a private word, which Go compiles (sync/atomic
// is intrinsified; internal/runtime/atomic is the same code) to:
//
//	ppc64, ppc64le   LWSYNC; LWAR/STWCCC loop; LWSYNC. LWSYNC orders every
//	                 earlier store before every later store and every earlier
//	                 load before every later load: the seqlock's
//	                 smp_wmb/smp_rmb pair, as in the Linux kernel.
//	riscv64          AMOADD.W.aqrl: sequentially consistent, so it orders
//	                 every earlier access before every later one (RVWMO).
//	loong64          AMADD_DB.W: the _DB forms are full barriers.
//	mips, mips64(le) SYNC; LL/SC loop; SYNC: full barriers.
//	arm (32-bit)     a CAS loop: LDREX; DMB ISHST; STREX; DMB ISH (ARMv7; on
//	                 ARMv6 the kernel's cmpxchg helper, with its barriers):
//	                 the DMB ISH after it is a full barrier.
//	s390x            LAA (interlocked access; CS in the runtime's copy):
//	                 serialising.
//	386              LOCK XADD: a full barrier (x86 is TSO anyway).
//	wasm             single-threaded.
//
// That is at least the store-store and load-load ordering the writer and the
// reader need, and slower than arm64's DMB ISHST/ISHLD, but correct. The
// atomic add is never optimised away: its result is a shared word's.

var fenceWord atomic.Uint32

func storeFence() { fenceWord.Add(1) }

func loadFence() { fenceWord.Add(1) }
