package framebus

// Internals for the external tests (package framebus_test), in the manner of
// the standard library's export_test.go files (internal/poll, net, os): this
// file is compiled into package framebus for the tests only, so what it
// names is visible to them and to nobody else. The external tests write
// hostile bytes and read snapshots of segment files through these, and never
// type an offset of PROTOCOL.md out themselves: every offset is derived once,
// from the structs of wire.go (wire_unsafe.go), and layout_test.go and
// protocol_doc_test.go check the structs against PROTOCOL.md's tables, the C
// header and golden bytes.

// Byte offsets of header fields (PROTOCOL.md section 3.1-3.3), for tests
// that patch or scribble on a segment file.
const (
	OffMagic                = offMagic
	OffABIVersion           = offABIVersion
	OffHeaderSize           = offHeaderSize
	OffState                = offState
	OffFlags                = offFlags
	OffTotalSize            = offTotalSize
	OffHeartbeatNS          = offHeartbeatNS
	OffPayloadOffset        = offPayloadOffset
	OffVersionMismatchCount = offVersionMismatchCount
	OffSlotCount            = offSlotCount
	OffSlotStride           = offSlotStride
	OffSlotCapacity         = offSlotCapacity
	OffConsumerCapacity     = offConsumerCapacity
	OffPlaneOffset          = offPlaneOffset
	OffActive               = offActive // the first byte of section 3.3, publication and counters
	OffLastSeq              = offLastSeq
)

// Byte offsets of fields in a slot descriptor (section 3.4) and in a
// consumer entry (section 3.5), from the start of each.
const (
	SlotLock        = slotLock
	SlotFrameSeq    = slotFrameSeq
	SlotBytes       = slotBytes
	SlotFrameFlags  = slotFrameFlags
	SlotUserMetaLen = slotUserMetaLen

	EntState    = entState
	EntSem      = entSem
	EntWaiters  = entWaiters
	EntToken    = entToken
	EntHoldMask = entHoldMask
)

// SlotDesc is a snapshot of a slot descriptor (its fields are the
// protocol's, under Go names).
type SlotDesc = slotDesc

// DecodeHeader and DecodeSlot read snapshots out of the bytes of a segment
// (b: at least HeaderSize, or SlotDescSize, bytes), with the package's own
// codec.
func DecodeHeader(b []byte) Header { return decodeHeader(b) }
func DecodeSlot(b []byte) SlotDesc { return decodeSlot(b) }

// Sleepers is how many consumers of the producer's current generation are
// counted asleep on a futex (sleepers in helpers_test.go).
func (p *Producer) Sleepers() uint32 { return sleepers(p) }

// The helpers of helpers_test.go that the external tests share with the
// internal ones.
var (
	ShmDir         = shmDir
	PortableDir    = portableDir
	PortableFormat = portableFormat
	PortableCreate = portableCreate
	PortableOpen   = portableOpen
	FrameBytes     = frameBytes
	Uniform        = uniform
	HangCtx        = hangCtx

	Update          = update // the -update flag
	CheckSeedCorpus = checkSeedCorpus
)

type SeedFile = seedFile
