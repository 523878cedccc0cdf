package framebus

// The wire layout of PROTOCOL.md version 1. Every offset here is checked
// against the protocol's tables, the C header and golden bytes by
// layout_test.go; change nothing here without changing docs/PROTOCOL.md,
// include/framebus.h and testdata/header.golden together.

const (
	Magic      = 0x53554246 // "FBUS" read as a little-endian u32
	ABIVersion = 1

	HeaderSize        = 512   // sections 3.1-3.3
	SlotDescSize      = 128   // section 3.4
	ConsumerEntrySize = 128   // section 3.5
	PayloadAlign      = 65536 // payload_offset and slot_stride are multiples of it
	MinSlots          = 2
	MaxSlots          = 8
	MaxConsumers      = 1024
	DefaultConsumers  = 32
	UserMetaMax       = 64
	MaxPlanes         = 4

	DefaultHeartbeatMS = 100
)

// Segment states (header.state).
const (
	StateInitializing = 0
	StateReady        = 1
	StateBroken       = 2
	StateRetired      = 3
)

// Header flags and per-frame flags.
const (
	FlagChecksum     = 1 << 0 // header.flags: slots carry CRC-32C checksums
	FlagSharedWake   = 1 << 1 // header.flags: the producer bumps and wakes wake_seq at every commit (amendment 7)
	FrameEndOfStream = 1 << 0 // slot.frame_flags: end of stream
)

// Consumer entry states (entry.state).
const (
	EntryFree     = 0
	EntryClaiming = 1
	EntryActive   = 2
)

// Header is the fixed 512-byte control block header. It is the one Go
// description of the layout: offsets (PROTOCOL.md section 3) are given in the
// comments and enforced by TestLayoutOffsets; JSON names are the protocol's
// field names. It is used to encode a header at creation and to decode a
// snapshot (Inspect); the live, concurrently written words are accessed
// through the atomic accessors of segment_unsafe.go at the off* constants
// below, never through a copy of this struct.
type Header struct {
	// 3.1 stable prefix, bytes 0-63
	Magic                uint32 `json:"magic"`                  // 0
	ABIVersion           uint16 `json:"abi_version"`            // 4
	HeaderSize           uint16 `json:"header_size"`            // 6
	State                uint32 `json:"state"`                  // 8 atomic
	Flags                uint32 `json:"flags"`                  // 12
	TotalSize            uint64 `json:"total_size"`             // 16
	Generation           uint64 `json:"generation"`             // 24
	HeartbeatNS          uint64 `json:"heartbeat_ns"`           // 32 atomic
	PayloadOffset        uint64 `json:"payload_offset"`         // 40
	PayloadSize          uint64 `json:"payload_size"`           // 48
	VersionMismatchCount uint64 `json:"version_mismatch_count"` // 56 atomic
	_                    [64]byte

	// 3.2 stream description, bytes 128-255
	ProducerPID         uint32    `json:"producer_pid"`          // 128
	SlotCount           uint32    `json:"slot_count"`            // 132
	SlotStride          uint64    `json:"slot_stride"`           // 136
	SlotCapacity        uint64    `json:"slot_capacity"`         // 144
	ConsumerCapacity    uint32    `json:"consumer_capacity"`     // 152
	HeartbeatIntervalMS uint32    `json:"heartbeat_interval_ms"` // 156
	Width               uint32    `json:"width"`                 // 160
	Height              uint32    `json:"height"`                // 164
	PixelFormat         uint32    `json:"pixel_format"`          // 168
	PlaneCount          uint32    `json:"plane_count"`           // 172
	PlaneStride         [4]uint32 `json:"plane_stride"`          // 176
	PlaneOffset         [4]uint32 `json:"plane_offset"`          // 192
	FPSNum              uint32    `json:"fps_num"`               // 208
	FPSDen              uint32    `json:"fps_den"`               // 212
	SlotTableOffset     uint64    `json:"slot_table_offset"`     // 216
	ConsumerTableOffset uint64    `json:"consumer_table_offset"` // 224
	SlotDescSize        uint32    `json:"slot_desc_size"`        // 232
	ConsumerEntrySize   uint32    `json:"consumer_entry_size"`   // 236
	CreatedNS           uint64    `json:"created_ns"`            // 240
	_                   uint64    // 248

	// 3.3 publication and counters, bytes 256-511
	Active             uint32    `json:"active"` // 256 atomic
	_                  uint32    // 260
	LastSeq            uint64    `json:"last_seq"`            // 264 atomic
	FramesPublished    uint64    `json:"frames_published"`    // 272 atomic
	LastCommitNS       uint64    `json:"last_commit_ns"`      // 280 atomic
	SourceDrops        uint64    `json:"source_drops"`        // 288 atomic
	ConsumersReclaimed uint64    `json:"consumers_reclaimed"` // 296 atomic
	_                  [16]byte  // 304
	WakeSeq            uint32    `json:"wake_seq"`     // 320 atomic, amendment 7: its own cache line
	WakeWaiters        uint32    `json:"wake_waiters"` // 324 atomic, amendment 7
	_                  [184]byte // 328-511
}

// header is the package's own name for Header.
type header = Header

// slotDesc is one 128-byte slot descriptor (section 3.4).
type slotDesc struct {
	Lock        uint64 // 0 atomic sequence lock
	FrameSeq    uint64 // 8
	CaptureNS   uint64 // 16
	CommitNS    uint64 // 24
	Bytes       uint64 // 32
	Checksum    uint32 // 40
	FrameFlags  uint32 // 44
	UserMetaLen uint32 // 48
	_           [12]byte
	UserMeta    [64]byte // 64
}

// consumerEntry is one 128-byte consumer table entry (section 3.5).
type consumerEntry struct {
	State       uint32 // 0 atomic
	PID         uint32 // 4
	Sem         uint32 // 8 atomic futex word
	Waiters     uint32 // 12 atomic
	Token       uint64 // 16
	LastSeq     uint64 // 24 atomic
	Delivered   uint64 // 32 atomic
	Dropped     uint64 // 40 atomic
	HeartbeatNS uint64 // 48 atomic
	TornRetries uint64 // 56 atomic
	_           [64]byte
}

// Byte offsets of the header fields (section 3).
const (
	offMagic                = 0
	offABIVersion           = 4
	offHeaderSize           = 6
	offState                = 8
	offFlags                = 12
	offTotalSize            = 16
	offGeneration           = 24
	offHeartbeatNS          = 32
	offPayloadOffset        = 40
	offPayloadSize          = 48
	offVersionMismatchCount = 56
	offProducerPID          = 128
	offSlotCount            = 132
	offSlotStride           = 136
	offSlotCapacity         = 144
	offConsumerCapacity     = 152
	offHeartbeatIntervalMS  = 156
	offWidth                = 160
	offHeight               = 164
	offPixelFormat          = 168
	offPlaneCount           = 172
	offPlaneStride          = 176
	offPlaneOffset          = 192
	offFPSNum               = 208
	offFPSDen               = 212
	offSlotTableOffset      = 216
	offConsumerTableOffset  = 224
	offSlotDescSize         = 232
	offConsumerEntrySize    = 236
	offCreatedNS            = 240
	offActive               = 256
	offLastSeq              = 264
	offFramesPublished      = 272
	offLastCommitNS         = 280
	offSourceDrops          = 288
	offConsumersReclaimed   = 296
	offWakeSeq              = 320
	offWakeWaiters          = 324
)

// Byte offsets inside a slot descriptor (section 3.4).
const (
	slotLock        = 0
	slotFrameSeq    = 8
	slotCaptureNS   = 16
	slotCommitNS    = 24
	slotBytes       = 32
	slotChecksum    = 40
	slotFrameFlags  = 44
	slotUserMetaLen = 48
	slotUserMeta    = 64
)

// Byte offsets inside a consumer entry (section 3.5).
const (
	entState       = 0
	entPID         = 4
	entSem         = 8
	entWaiters     = 12
	entToken       = 16
	entLastSeq     = 24
	entDelivered   = 32
	entDropped     = 40
	entHeartbeatNS = 48
	entTornRetries = 56
)

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// geometry is the derived size of a segment.
type geometry struct {
	slotCount, consumerCap         uint32
	slotCapacity, slotStride       uint64
	slotTableOff, consumerTableOff uint64
	payloadOff, payloadSize, total uint64
}

func computeGeometry(slotCount, consumerCap uint32, slotCapacity uint64) geometry {
	g := geometry{slotCount: slotCount, consumerCap: consumerCap, slotCapacity: slotCapacity}
	g.slotStride = alignUp(slotCapacity, PayloadAlign)
	if g.slotStride == 0 {
		g.slotStride = PayloadAlign
	}
	g.slotTableOff = HeaderSize
	g.consumerTableOff = g.slotTableOff + uint64(slotCount)*SlotDescSize
	g.payloadOff = alignUp(g.consumerTableOff+uint64(consumerCap)*ConsumerEntrySize, PayloadAlign)
	g.payloadSize = uint64(slotCount) * g.slotStride
	g.total = g.payloadOff + g.payloadSize
	return g
}
