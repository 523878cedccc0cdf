package framebus

// Sequence-lock fences on amd64 (PROTOCOL.md section 5, memory ordering).
//
// x86-64 is TSO: stores are not reordered with other stores and loads are not
// reordered with other loads, so the writer's odd-store -> data and data ->
// even-store orders and the reader's data -> second-lock-load order hold in
// hardware. What remains is the compiler: Go's sync/atomic operations are
// compiler barriers (the SSA backend never moves memory operations across
// them), and these functions are only ever called next to one. They are
// empty, and inlined away.

// storeFence orders the odd lock store before the data stores that follow.
func storeFence() {}

// loadFence orders the data loads before the second lock load.
func loadFence() {}
