package framebus

import (
	"encoding/binary"
	"sync/atomic"
)

// The wire layout of PROTOCOL.md version 1: the structs below are its one
// Go description. The byte offsets the live accessors use are derived from
// them (wire_unsafe.go), the codec reads and writes them field by field
// (encoding/binary), and layout_test.go checks them against the protocol's
// tables, the C header and golden bytes: change nothing here without
// changing docs/PROTOCOL.md, include/framebus.h and testdata/header.golden
// together.

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
	FlagSharedWake   = 1 << 1 // header.flags: the producer bumps and wakes wake_seq at every commit (amendment 7, the shared wake word)
	FlagHolds        = 1 << 2 // header.flags: the producer honours holds (amendment 10)
	FrameEndOfStream = 1 << 0 // slot.frame_flags: end of stream
)

// HoldPendingShift places an entry's pending bits in its hold_mask
// (amendment 10): bits 0-7 are the slots the consumer holds, bit
// HoldPendingShift + i is set while its grant on slot i is in progress.
const HoldPendingShift = 8

// Consumer entry states (entry.state).
const (
	EntryFree     = 0
	EntryClaiming = 1
	EntryActive   = 2
)

// Header is the fixed 512-byte control block header (PROTOCOL.md sections
// 3.1-3.3; the offsets are in the comments, JSON names are the protocol's).
// It encodes a header at creation and holds a decoded snapshot (a joiner's,
// Inspect's); the live, concurrently written words are reached through the
// views below, never through a copy of this struct.
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
	ProducerPIDNS       uint64    `json:"producer_pidns"`        // 248, amendment 8 (creation and liveness across PID namespaces)

	// 3.3 publication and counters, bytes 256-511
	Active             uint32   `json:"active"` // 256 atomic
	_                  uint32   // 260
	LastSeq            uint64   `json:"last_seq"`            // 264 atomic
	FramesPublished    uint64   `json:"frames_published"`    // 272 atomic
	LastCommitNS       uint64   `json:"last_commit_ns"`      // 280 atomic
	SourceDrops        uint64   `json:"source_drops"`        // 288 atomic
	ConsumersReclaimed uint64   `json:"consumers_reclaimed"` // 296 atomic
	_                  [16]byte // 304
	WakeSeq            uint32   `json:"wake_seq"`     // 320 atomic, amendment 7: its own cache line
	WakeWaiters        uint32   `json:"wake_waiters"` // 324 atomic, amendment 7
	_                  [56]byte // 328-383
	HoldMaxNS          uint64   `json:"hold_max_ns"`      // 384, amendment 10: the lease, 0 = none
	HoldsGranted       uint64   `json:"holds_granted"`    // 392 atomic, amendment 10
	HoldsRefused       uint64   `json:"holds_refused"`    // 400 atomic, amendment 10
	HoldsTakenBack     uint64   `json:"holds_taken_back"` // 408 atomic, amendment 10
	HoldsIgnored       uint64   `json:"holds_ignored"`    // 416 atomic, amendment 10
	_                  [88]byte // 424-511
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
	State          uint32 // 0 atomic
	PID            uint32 // 4
	Sem            uint32 // 8 atomic futex word
	Waiters        uint32 // 12 atomic
	Token          uint64 // 16
	LastSeq        uint64 // 24 atomic
	Delivered      uint64 // 32 atomic
	Dropped        uint64 // 40 atomic
	HeartbeatNS    uint64 // 48 atomic
	TornRetries    uint64 // 56 atomic
	PIDNS          uint64 // 64, amendment 8
	HoldMask       uint32 // 72 atomic, amendment 10: bit i holds slot i, bit 8+i its grant in progress
	_              uint32 // 76
	HoldsGranted   uint64 // 80 atomic, amendment 10
	HoldsRefused   uint64 // 88 atomic, amendment 10
	HoldsTakenBack uint64 // 96 atomic, amendment 10 (written by the producer)
	_              [24]byte
}

// ---- the codec: snapshots of the structs, field by field ----

var le = binary.LittleEndian

// decodeHeader reads a header snapshot out of b (at least HeaderSize bytes).
// Every value is loaded once here; callers use the copy, never the live
// bytes.
func decodeHeader(b []byte) header {
	var h header
	binary.Decode(b[:HeaderSize], le, &h)
	return h
}

// encodeHeader writes h into b (HeaderSize bytes, reserved bytes zero). It
// is used on a fresh, private segment only.
func encodeHeader(b []byte, h *header) {
	binary.Encode(b[:HeaderSize], le, h)
}

// decodeSlot and decodeEntry read a snapshot of a slot descriptor and of a
// consumer entry out of b (at least 128 bytes).
func decodeSlot(b []byte) (d slotDesc) {
	binary.Decode(b[:SlotDescSize], le, &d)
	return d
}

func decodeEntry(b []byte) (e consumerEntry) {
	binary.Decode(b[:ConsumerEntrySize], le, &e)
	return e
}

// ---- the geometry of a segment ----

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

// geometryOf is the geometry a validated header describes.
func geometryOf(h *header) geometry {
	return geometry{slotCount: h.SlotCount, consumerCap: h.ConsumerCapacity, slotCapacity: h.SlotCapacity, slotStride: h.SlotStride,
		slotTableOff: h.SlotTableOffset, consumerTableOff: h.ConsumerTableOffset, payloadOff: h.PayloadOffset,
		payloadSize: h.PayloadSize, total: h.TotalSize}
}

// slotDescOff and entryOff are where slot descriptor i and consumer entry i
// start in the control block.
func (g *geometry) slotDescOff(i int) uint64 { return g.slotTableOff + uint64(i)*SlotDescSize }
func (g *geometry) entryOff(i int) uint64    { return g.consumerTableOff + uint64(i)*ConsumerEntrySize }

// ---- views: the live words of a mapped control block ----

// headerWords are the header's concurrently written words.
type headerWords struct {
	state, active                                       *atomic.Uint32
	lastSeq, published, lastCommit, heartbeat, srcDrops *atomic.Uint64
	reclaimed, versionMismatch                          *atomic.Uint64
	wakeSeq, wakeWaiters                                *atomic.Uint32 // amendment 7's shared wake word; nil without FlagSharedWake
	holdsGranted, holdsRefused, holdsTakenBack          *atomic.Uint64 // amendment 10's counters
	holdsIgnored                                        *atomic.Uint64
}

// newHeaderWords views the header words of ctl. With shared set, the
// shared wake word too.
func newHeaderWords(ctl []byte, shared bool) headerWords {
	w := headerWords{
		state: u32At(ctl, offState), active: u32At(ctl, offActive),
		lastSeq: u64At(ctl, offLastSeq), published: u64At(ctl, offFramesPublished), lastCommit: u64At(ctl, offLastCommitNS),
		heartbeat: u64At(ctl, offHeartbeatNS), srcDrops: u64At(ctl, offSourceDrops),
		reclaimed: u64At(ctl, offConsumersReclaimed), versionMismatch: u64At(ctl, offVersionMismatchCount),
		holdsGranted: u64At(ctl, offHoldsGranted), holdsRefused: u64At(ctl, offHoldsRefused),
		holdsTakenBack: u64At(ctl, offHoldsTakenBack), holdsIgnored: u64At(ctl, offHoldsIgnored),
	}
	if shared {
		w.wakeSeq, w.wakeWaiters = u32At(ctl, offWakeSeq), u32At(ctl, offWakeWaiters)
	}
	return w
}

// slotView is one slot: its descriptor's words and its data.
type slotView struct {
	lock, seq, capture, commit, bytes *atomic.Uint64
	checksum, flags, metaLen          *atomic.Uint32
	meta                              []byte // UserMetaMax bytes
	data                              []byte // slot_capacity bytes
}

// newSlotView views the descriptor at d of ctl and the slot's data.
func newSlotView(ctl []byte, d uint64, data []byte) slotView {
	return slotView{
		lock: u64At(ctl, d+slotLock), seq: u64At(ctl, d+slotFrameSeq),
		capture: u64At(ctl, d+slotCaptureNS), commit: u64At(ctl, d+slotCommitNS),
		bytes: u64At(ctl, d+slotBytes), checksum: u32At(ctl, d+slotChecksum),
		flags: u32At(ctl, d+slotFrameFlags), metaLen: u32At(ctl, d+slotUserMetaLen),
		meta: ctl[d+slotUserMeta : d+slotUserMeta+UserMetaMax : d+slotUserMeta+UserMetaMax],
		data: data,
	}
}

// slotViews views every slot of a segment of geometry g, whose payload
// (slot 0's data onwards) is payload.
func slotViews(ctl, payload []byte, g *geometry) []slotView {
	s := make([]slotView, g.slotCount)
	for i := range s {
		o := uint64(i) * g.slotStride
		s[i] = newSlotView(ctl, g.slotDescOff(i), payload[o:o+g.slotCapacity:o+g.slotCapacity])
	}
	return s
}

// entryView is one consumer table entry.
type entryView struct {
	index                                               int
	off                                                 uint64 // in the segment: the entry's lock range starts here
	state, pid, sem, waiters                            *atomic.Uint32
	token, lastSeq, delivered, dropped, heartbeat, torn *atomic.Uint64
	pidns                                               *atomic.Uint64
	holdMask                                            *atomic.Uint32 // amendment 10
	holdsGranted, holdsRefused, holdsTakenBack          *atomic.Uint64
}

// newEntryView views entry i of a segment of geometry g.
func newEntryView(ctl []byte, g *geometry, i int) entryView {
	e := g.entryOff(i)
	return entryView{index: i, off: e,
		state: u32At(ctl, e+entState), pid: u32At(ctl, e+entPID), sem: u32At(ctl, e+entSem), waiters: u32At(ctl, e+entWaiters),
		token: u64At(ctl, e+entToken), lastSeq: u64At(ctl, e+entLastSeq), delivered: u64At(ctl, e+entDelivered),
		dropped: u64At(ctl, e+entDropped), heartbeat: u64At(ctl, e+entHeartbeatNS), torn: u64At(ctl, e+entTornRetries),
		pidns:    u64At(ctl, e+entPIDNS),
		holdMask: u32At(ctl, e+entHoldMask), holdsGranted: u64At(ctl, e+entHoldsGranted),
		holdsRefused: u64At(ctl, e+entHoldsRefused), holdsTakenBack: u64At(ctl, e+entHoldsTakenBack),
	}
}

// entryViews views the whole consumer table.
func entryViews(ctl []byte, g *geometry) []entryView {
	e := make([]entryView, g.consumerCap)
	for i := range e {
		e[i] = newEntryView(ctl, g, i)
	}
	return e
}
