package framebus

// Sequence-lock fences on arm64 (PROTOCOL.md section 5, memory ordering).
//
// Go's atomic Store is STLR (release) and Load is LDAR (acquire). A release
// store orders the data writes before the even lock store, and an acquire load
// orders everything after the first lock load. Two orders are missing and are
// supplied here in assembly (fence_arm64.s):
//
//   - writer: the odd lock store (STLR) may be observed after the plain data
//     stores that follow it: storeFence is DMB ISHST between them;
//   - reader: plain data loads may be satisfied after a later LDAR of the lock:
//     loadFence is DMB ISHLD between the data reads and the second lock load.
//
// This is gVisor's seqcount and the Linux kernel's smp_wmb/smp_rmb pairing.

// storeFence orders the odd lock store before the data stores that follow.
//
//go:noescape
func storeFence()

// loadFence orders the data loads before the second lock load.
//
//go:noescape
func loadFence()
