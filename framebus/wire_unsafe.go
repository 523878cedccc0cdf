package framebus

import (
	"sync/atomic"
	"unsafe"
)

// The byte offsets of the wire layout, derived from the structs of wire.go
// (the one description of the layout): the live accessors of the views
// use these, and nothing else in the package writes an offset down.

// Header fields (PROTOCOL.md section 3).
const (
	offMagic                = uint64(unsafe.Offsetof(header{}.Magic))
	offABIVersion           = uint64(unsafe.Offsetof(header{}.ABIVersion))
	offHeaderSize           = uint64(unsafe.Offsetof(header{}.HeaderSize))
	offState                = uint64(unsafe.Offsetof(header{}.State))
	offFlags                = uint64(unsafe.Offsetof(header{}.Flags))
	offTotalSize            = uint64(unsafe.Offsetof(header{}.TotalSize))
	offGeneration           = uint64(unsafe.Offsetof(header{}.Generation))
	offHeartbeatNS          = uint64(unsafe.Offsetof(header{}.HeartbeatNS))
	offPayloadOffset        = uint64(unsafe.Offsetof(header{}.PayloadOffset))
	offPayloadSize          = uint64(unsafe.Offsetof(header{}.PayloadSize))
	offVersionMismatchCount = uint64(unsafe.Offsetof(header{}.VersionMismatchCount))
	offProducerPID          = uint64(unsafe.Offsetof(header{}.ProducerPID))
	offSlotCount            = uint64(unsafe.Offsetof(header{}.SlotCount))
	offSlotStride           = uint64(unsafe.Offsetof(header{}.SlotStride))
	offSlotCapacity         = uint64(unsafe.Offsetof(header{}.SlotCapacity))
	offConsumerCapacity     = uint64(unsafe.Offsetof(header{}.ConsumerCapacity))
	offHeartbeatIntervalMS  = uint64(unsafe.Offsetof(header{}.HeartbeatIntervalMS))
	offWidth                = uint64(unsafe.Offsetof(header{}.Width))
	offHeight               = uint64(unsafe.Offsetof(header{}.Height))
	offPixelFormat          = uint64(unsafe.Offsetof(header{}.PixelFormat))
	offPlaneCount           = uint64(unsafe.Offsetof(header{}.PlaneCount))
	offPlaneStride          = uint64(unsafe.Offsetof(header{}.PlaneStride))
	offPlaneOffset          = uint64(unsafe.Offsetof(header{}.PlaneOffset))
	offFPSNum               = uint64(unsafe.Offsetof(header{}.FPSNum))
	offFPSDen               = uint64(unsafe.Offsetof(header{}.FPSDen))
	offSlotTableOffset      = uint64(unsafe.Offsetof(header{}.SlotTableOffset))
	offConsumerTableOffset  = uint64(unsafe.Offsetof(header{}.ConsumerTableOffset))
	offSlotDescSize         = uint64(unsafe.Offsetof(header{}.SlotDescSize))
	offConsumerEntrySize    = uint64(unsafe.Offsetof(header{}.ConsumerEntrySize))
	offCreatedNS            = uint64(unsafe.Offsetof(header{}.CreatedNS))
	offProducerPIDNS        = uint64(unsafe.Offsetof(header{}.ProducerPIDNS))
	offActive               = uint64(unsafe.Offsetof(header{}.Active))
	offLastSeq              = uint64(unsafe.Offsetof(header{}.LastSeq))
	offFramesPublished      = uint64(unsafe.Offsetof(header{}.FramesPublished))
	offLastCommitNS         = uint64(unsafe.Offsetof(header{}.LastCommitNS))
	offSourceDrops          = uint64(unsafe.Offsetof(header{}.SourceDrops))
	offConsumersReclaimed   = uint64(unsafe.Offsetof(header{}.ConsumersReclaimed))
	offWakeSeq              = uint64(unsafe.Offsetof(header{}.WakeSeq))
	offWakeWaiters          = uint64(unsafe.Offsetof(header{}.WakeWaiters))
	offHoldMaxNS            = uint64(unsafe.Offsetof(header{}.HoldMaxNS))
	offHoldsGranted         = uint64(unsafe.Offsetof(header{}.HoldsGranted))
	offHoldsRefused         = uint64(unsafe.Offsetof(header{}.HoldsRefused))
	offHoldsTakenBack       = uint64(unsafe.Offsetof(header{}.HoldsTakenBack))
	offHoldsIgnored         = uint64(unsafe.Offsetof(header{}.HoldsIgnored))
)

// Slot descriptor fields (section 3.4).
const (
	slotLock        = uint64(unsafe.Offsetof(slotDesc{}.Lock))
	slotFrameSeq    = uint64(unsafe.Offsetof(slotDesc{}.FrameSeq))
	slotCaptureNS   = uint64(unsafe.Offsetof(slotDesc{}.CaptureNS))
	slotCommitNS    = uint64(unsafe.Offsetof(slotDesc{}.CommitNS))
	slotBytes       = uint64(unsafe.Offsetof(slotDesc{}.Bytes))
	slotChecksum    = uint64(unsafe.Offsetof(slotDesc{}.Checksum))
	slotFrameFlags  = uint64(unsafe.Offsetof(slotDesc{}.FrameFlags))
	slotUserMetaLen = uint64(unsafe.Offsetof(slotDesc{}.UserMetaLen))
	slotUserMeta    = uint64(unsafe.Offsetof(slotDesc{}.UserMeta))
)

// Consumer entry fields (section 3.5).
const (
	entState          = uint64(unsafe.Offsetof(consumerEntry{}.State))
	entPID            = uint64(unsafe.Offsetof(consumerEntry{}.PID))
	entSem            = uint64(unsafe.Offsetof(consumerEntry{}.Sem))
	entWaiters        = uint64(unsafe.Offsetof(consumerEntry{}.Waiters))
	entToken          = uint64(unsafe.Offsetof(consumerEntry{}.Token))
	entLastSeq        = uint64(unsafe.Offsetof(consumerEntry{}.LastSeq))
	entDelivered      = uint64(unsafe.Offsetof(consumerEntry{}.Delivered))
	entDropped        = uint64(unsafe.Offsetof(consumerEntry{}.Dropped))
	entHeartbeatNS    = uint64(unsafe.Offsetof(consumerEntry{}.HeartbeatNS))
	entTornRetries    = uint64(unsafe.Offsetof(consumerEntry{}.TornRetries))
	entPIDNS          = uint64(unsafe.Offsetof(consumerEntry{}.PIDNS))
	entHoldMask       = uint64(unsafe.Offsetof(consumerEntry{}.HoldMask))
	entHoldsGranted   = uint64(unsafe.Offsetof(consumerEntry{}.HoldsGranted))
	entHoldsRefused   = uint64(unsafe.Offsetof(consumerEntry{}.HoldsRefused))
	entHoldsTakenBack = uint64(unsafe.Offsetof(consumerEntry{}.HoldsTakenBack))
)

// The structs are the sizes the protocol says, or this does not compile.
var (
	_ [HeaderSize - unsafe.Sizeof(header{})]byte
	_ [unsafe.Sizeof(header{}) - HeaderSize]byte
	_ [SlotDescSize - unsafe.Sizeof(slotDesc{})]byte
	_ [unsafe.Sizeof(slotDesc{}) - SlotDescSize]byte
	_ [ConsumerEntrySize - unsafe.Sizeof(consumerEntry{})]byte
	_ [unsafe.Sizeof(consumerEntry{}) - ConsumerEntrySize]byte
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
