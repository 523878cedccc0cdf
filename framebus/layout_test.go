package framebus

// The wire layout of wire.go checked three ways: against the offsets of
// docs/PROTOCOL.md typed out by hand (TestLayoutOffsets), against the tables
// parsed out of PROTOCOL.md and the C header as the C compiler sees it
// (TestLayoutMatchesProtocolAndC, in protocol_doc_test.go with the parsers),
// and against golden bytes (TestGoldenHeader).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"
)

// layoutRow is one field: where PROTOCOL.md puts it (typed out from the
// document), where the Go struct puts it, and the off*/slot*/ent* constant.
type layoutRow struct {
	name            string // protocol name
	docOff, docSize uintptr
	goOff, goSize   uintptr
	hasConst        bool
	constVal        uintptr
}

func row(name string, docOff, docSize, goOff, goSize uintptr, c ...uint64) layoutRow {
	r := layoutRow{name: name, docOff: docOff, docSize: docSize, goOff: goOff, goSize: goSize}
	if len(c) > 0 {
		r.hasConst, r.constVal = true, uintptr(c[0])
	}
	return r
}

// TestLayoutOffsets compares every field of header, slotDesc and consumerEntry
// with the offset and size PROTOCOL.md gives it, and with its offset constant.
func TestLayoutOffsets(t *testing.T) {
	var h header
	var s slotDesc
	var e consumerEntry

	headerRows := []layoutRow{
		// 3.1
		row("magic", 0, 4, unsafe.Offsetof(h.Magic), unsafe.Sizeof(h.Magic), offMagic),
		row("abi_version", 4, 2, unsafe.Offsetof(h.ABIVersion), unsafe.Sizeof(h.ABIVersion), offABIVersion),
		row("header_size", 6, 2, unsafe.Offsetof(h.HeaderSize), unsafe.Sizeof(h.HeaderSize), offHeaderSize),
		row("state", 8, 4, unsafe.Offsetof(h.State), unsafe.Sizeof(h.State), offState),
		row("flags", 12, 4, unsafe.Offsetof(h.Flags), unsafe.Sizeof(h.Flags), offFlags),
		row("total_size", 16, 8, unsafe.Offsetof(h.TotalSize), unsafe.Sizeof(h.TotalSize), offTotalSize),
		row("generation", 24, 8, unsafe.Offsetof(h.Generation), unsafe.Sizeof(h.Generation), offGeneration),
		row("heartbeat_ns", 32, 8, unsafe.Offsetof(h.HeartbeatNS), unsafe.Sizeof(h.HeartbeatNS), offHeartbeatNS),
		row("payload_offset", 40, 8, unsafe.Offsetof(h.PayloadOffset), unsafe.Sizeof(h.PayloadOffset), offPayloadOffset),
		row("payload_size", 48, 8, unsafe.Offsetof(h.PayloadSize), unsafe.Sizeof(h.PayloadSize), offPayloadSize),
		row("version_mismatch_count", 56, 8, unsafe.Offsetof(h.VersionMismatchCount), unsafe.Sizeof(h.VersionMismatchCount), offVersionMismatchCount),
		// 3.2
		row("producer_pid", 128, 4, unsafe.Offsetof(h.ProducerPID), unsafe.Sizeof(h.ProducerPID), offProducerPID),
		row("slot_count", 132, 4, unsafe.Offsetof(h.SlotCount), unsafe.Sizeof(h.SlotCount), offSlotCount),
		row("slot_stride", 136, 8, unsafe.Offsetof(h.SlotStride), unsafe.Sizeof(h.SlotStride), offSlotStride),
		row("slot_capacity", 144, 8, unsafe.Offsetof(h.SlotCapacity), unsafe.Sizeof(h.SlotCapacity), offSlotCapacity),
		row("consumer_capacity", 152, 4, unsafe.Offsetof(h.ConsumerCapacity), unsafe.Sizeof(h.ConsumerCapacity), offConsumerCapacity),
		row("heartbeat_interval_ms", 156, 4, unsafe.Offsetof(h.HeartbeatIntervalMS), unsafe.Sizeof(h.HeartbeatIntervalMS), offHeartbeatIntervalMS),
		row("width", 160, 4, unsafe.Offsetof(h.Width), unsafe.Sizeof(h.Width), offWidth),
		row("height", 164, 4, unsafe.Offsetof(h.Height), unsafe.Sizeof(h.Height), offHeight),
		row("pixel_format", 168, 4, unsafe.Offsetof(h.PixelFormat), unsafe.Sizeof(h.PixelFormat), offPixelFormat),
		row("plane_count", 172, 4, unsafe.Offsetof(h.PlaneCount), unsafe.Sizeof(h.PlaneCount), offPlaneCount),
		row("plane_stride", 176, 16, unsafe.Offsetof(h.PlaneStride), unsafe.Sizeof(h.PlaneStride), offPlaneStride),
		row("plane_offset", 192, 16, unsafe.Offsetof(h.PlaneOffset), unsafe.Sizeof(h.PlaneOffset), offPlaneOffset),
		row("fps_num", 208, 4, unsafe.Offsetof(h.FPSNum), unsafe.Sizeof(h.FPSNum), offFPSNum),
		row("fps_den", 212, 4, unsafe.Offsetof(h.FPSDen), unsafe.Sizeof(h.FPSDen), offFPSDen),
		row("slot_table_offset", 216, 8, unsafe.Offsetof(h.SlotTableOffset), unsafe.Sizeof(h.SlotTableOffset), offSlotTableOffset),
		row("consumer_table_offset", 224, 8, unsafe.Offsetof(h.ConsumerTableOffset), unsafe.Sizeof(h.ConsumerTableOffset), offConsumerTableOffset),
		row("slot_desc_size", 232, 4, unsafe.Offsetof(h.SlotDescSize), unsafe.Sizeof(h.SlotDescSize), offSlotDescSize),
		row("consumer_entry_size", 236, 4, unsafe.Offsetof(h.ConsumerEntrySize), unsafe.Sizeof(h.ConsumerEntrySize), offConsumerEntrySize),
		row("created_ns", 240, 8, unsafe.Offsetof(h.CreatedNS), unsafe.Sizeof(h.CreatedNS), offCreatedNS),
		row("producer_pidns", 248, 8, unsafe.Offsetof(h.ProducerPIDNS), unsafe.Sizeof(h.ProducerPIDNS), offProducerPIDNS),
		// 3.3
		row("active", 256, 4, unsafe.Offsetof(h.Active), unsafe.Sizeof(h.Active), offActive),
		row("last_seq", 264, 8, unsafe.Offsetof(h.LastSeq), unsafe.Sizeof(h.LastSeq), offLastSeq),
		row("frames_published", 272, 8, unsafe.Offsetof(h.FramesPublished), unsafe.Sizeof(h.FramesPublished), offFramesPublished),
		row("last_commit_ns", 280, 8, unsafe.Offsetof(h.LastCommitNS), unsafe.Sizeof(h.LastCommitNS), offLastCommitNS),
		row("source_drops", 288, 8, unsafe.Offsetof(h.SourceDrops), unsafe.Sizeof(h.SourceDrops), offSourceDrops),
		row("consumers_reclaimed", 296, 8, unsafe.Offsetof(h.ConsumersReclaimed), unsafe.Sizeof(h.ConsumersReclaimed), offConsumersReclaimed),
		row("wake_seq", 320, 4, unsafe.Offsetof(h.WakeSeq), unsafe.Sizeof(h.WakeSeq), offWakeSeq),
		row("wake_waiters", 324, 4, unsafe.Offsetof(h.WakeWaiters), unsafe.Sizeof(h.WakeWaiters), offWakeWaiters),
		// amendment 10
		row("hold_max_ns", 384, 8, unsafe.Offsetof(h.HoldMaxNS), unsafe.Sizeof(h.HoldMaxNS), offHoldMaxNS),
		row("holds_granted", 392, 8, unsafe.Offsetof(h.HoldsGranted), unsafe.Sizeof(h.HoldsGranted), offHoldsGranted),
		row("holds_refused", 400, 8, unsafe.Offsetof(h.HoldsRefused), unsafe.Sizeof(h.HoldsRefused), offHoldsRefused),
		row("holds_taken_back", 408, 8, unsafe.Offsetof(h.HoldsTakenBack), unsafe.Sizeof(h.HoldsTakenBack), offHoldsTakenBack),
		row("holds_ignored", 416, 8, unsafe.Offsetof(h.HoldsIgnored), unsafe.Sizeof(h.HoldsIgnored), offHoldsIgnored),
	}
	slotRows := []layoutRow{
		row("lock", 0, 8, unsafe.Offsetof(s.Lock), unsafe.Sizeof(s.Lock), slotLock),
		row("frame_seq", 8, 8, unsafe.Offsetof(s.FrameSeq), unsafe.Sizeof(s.FrameSeq), slotFrameSeq),
		row("capture_ns", 16, 8, unsafe.Offsetof(s.CaptureNS), unsafe.Sizeof(s.CaptureNS), slotCaptureNS),
		row("commit_ns", 24, 8, unsafe.Offsetof(s.CommitNS), unsafe.Sizeof(s.CommitNS), slotCommitNS),
		row("bytes", 32, 8, unsafe.Offsetof(s.Bytes), unsafe.Sizeof(s.Bytes), slotBytes),
		row("checksum", 40, 4, unsafe.Offsetof(s.Checksum), unsafe.Sizeof(s.Checksum), slotChecksum),
		row("frame_flags", 44, 4, unsafe.Offsetof(s.FrameFlags), unsafe.Sizeof(s.FrameFlags), slotFrameFlags),
		row("user_meta_len", 48, 4, unsafe.Offsetof(s.UserMetaLen), unsafe.Sizeof(s.UserMetaLen), slotUserMetaLen),
		row("user_meta", 64, 64, unsafe.Offsetof(s.UserMeta), unsafe.Sizeof(s.UserMeta), slotUserMeta),
	}
	entryRows := []layoutRow{
		row("state", 0, 4, unsafe.Offsetof(e.State), unsafe.Sizeof(e.State), entState),
		row("pid", 4, 4, unsafe.Offsetof(e.PID), unsafe.Sizeof(e.PID), entPID),
		row("sem", 8, 4, unsafe.Offsetof(e.Sem), unsafe.Sizeof(e.Sem), entSem),
		row("waiters", 12, 4, unsafe.Offsetof(e.Waiters), unsafe.Sizeof(e.Waiters), entWaiters),
		row("token", 16, 8, unsafe.Offsetof(e.Token), unsafe.Sizeof(e.Token), entToken),
		row("last_seq", 24, 8, unsafe.Offsetof(e.LastSeq), unsafe.Sizeof(e.LastSeq), entLastSeq),
		row("delivered", 32, 8, unsafe.Offsetof(e.Delivered), unsafe.Sizeof(e.Delivered), entDelivered),
		row("dropped", 40, 8, unsafe.Offsetof(e.Dropped), unsafe.Sizeof(e.Dropped), entDropped),
		row("heartbeat_ns", 48, 8, unsafe.Offsetof(e.HeartbeatNS), unsafe.Sizeof(e.HeartbeatNS), entHeartbeatNS),
		row("torn_retries", 56, 8, unsafe.Offsetof(e.TornRetries), unsafe.Sizeof(e.TornRetries), entTornRetries),
		row("pidns", 64, 8, unsafe.Offsetof(e.PIDNS), unsafe.Sizeof(e.PIDNS), entPIDNS),
		// amendment 10
		row("hold_mask", 72, 4, unsafe.Offsetof(e.HoldMask), unsafe.Sizeof(e.HoldMask), entHoldMask),
		row("holds_granted", 80, 8, unsafe.Offsetof(e.HoldsGranted), unsafe.Sizeof(e.HoldsGranted), entHoldsGranted),
		row("holds_refused", 88, 8, unsafe.Offsetof(e.HoldsRefused), unsafe.Sizeof(e.HoldsRefused), entHoldsRefused),
		row("holds_taken_back", 96, 8, unsafe.Offsetof(e.HoldsTakenBack), unsafe.Sizeof(e.HoldsTakenBack), entHoldsTakenBack),
	}

	for _, tc := range []struct {
		structName string
		typ        reflect.Type
		size, want uintptr
		rows       []layoutRow
	}{
		{"header", reflect.TypeFor[header](), unsafe.Sizeof(h), HeaderSize, headerRows},
		{"slotDesc", reflect.TypeFor[slotDesc](), unsafe.Sizeof(s), SlotDescSize, slotRows},
		{"consumerEntry", reflect.TypeFor[consumerEntry](), unsafe.Sizeof(e), ConsumerEntrySize, entryRows},
	} {
		if tc.size != tc.want {
			t.Errorf("unsafe.Sizeof(%s) = %d, PROTOCOL.md says %d", tc.structName, tc.size, tc.want)
		}
		for _, r := range tc.rows {
			if r.goOff != r.docOff || r.goSize != r.docSize {
				t.Errorf("%s.%s: Go has offset %d size %d, PROTOCOL.md has offset %d size %d",
					tc.structName, r.name, r.goOff, r.goSize, r.docOff, r.docSize)
			}
			if r.hasConst && r.constVal != r.docOff {
				t.Errorf("%s.%s: offset constant is %d, PROTOCOL.md has %d", tc.structName, r.name, r.constVal, r.docOff)
			}
			if r.docOff%min(r.docSize, 8) != 0 {
				t.Errorf("%s.%s: offset %d is not naturally aligned", tc.structName, r.name, r.docOff)
			}
		}
		// Every named field of the struct is in the table: a field added to
		// the struct without a row here is noticed.
		named := 0
		for i := 0; i < tc.typ.NumField(); i++ {
			if tc.typ.Field(i).Name != "_" {
				named++
			}
		}
		if named != len(tc.rows) {
			t.Errorf("%s has %d named fields, the table lists %d", tc.structName, named, len(tc.rows))
		}
	}
	if got := unsafe.Alignof(h); got != 8 {
		t.Errorf("alignment of header = %d, want 8", got)
	}
}

func TestLayoutProtoName(t *testing.T) {
	for in, want := range map[string]string{
		"Magic": "magic", "ABIVersion": "abi_version", "HeartbeatNS": "heartbeat_ns",
		"VersionMismatchCount": "version_mismatch_count", "ProducerPID": "producer_pid",
		"HeartbeatIntervalMS": "heartbeat_interval_ms", "FPSNum": "fps_num", "PID": "pid",
		"UserMetaLen": "user_meta_len", "ConsumersReclaimed": "consumers_reclaimed",
	} {
		if got := protoName(in); got != want {
			t.Errorf("protoName(%q) = %q, want %q", in, got, want)
		}
	}
}

// goldenHeader is a fixed, fully specified header: every field has a value
// of its own (so that two swapped fields show), and the geometry is what
// computeGeometry gives for 1920x1080 RGBA, 2 slots, 32 consumers.
func goldenHeader(t testing.TB) header {
	f, err := Format{Width: 1920, Height: 1080, PixelFormat: FormatRGBA, FPSNum: 30000, FPSDen: 1001}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	g := computeGeometry(2, 32, f.FrameSize)
	return header{
		Magic: Magic, ABIVersion: ABIVersion, HeaderSize: HeaderSize,
		State: StateReady, Flags: FlagChecksum | FlagHolds,
		TotalSize: g.total, Generation: 7, HeartbeatNS: 0x0102030405060708,
		PayloadOffset: g.payloadOff, PayloadSize: g.payloadSize, VersionMismatchCount: 3,
		ProducerPID: 4242, SlotCount: g.slotCount, SlotStride: g.slotStride, SlotCapacity: g.slotCapacity,
		ConsumerCapacity: g.consumerCap, HeartbeatIntervalMS: 100,
		Width: f.Width, Height: f.Height, PixelFormat: uint32(f.PixelFormat), PlaneCount: f.PlaneCount,
		PlaneStride: f.PlaneStride, PlaneOffset: f.PlaneOffset, FPSNum: f.FPSNum, FPSDen: f.FPSDen,
		SlotTableOffset: g.slotTableOff, ConsumerTableOffset: g.consumerTableOff,
		SlotDescSize: SlotDescSize, ConsumerEntrySize: ConsumerEntrySize,
		CreatedNS: 0x1112131415161718,
		Active:    1, LastSeq: 0x2122232425262728, FramesPublished: 0x3132333435363738,
		LastCommitNS: 0x4142434445464748, SourceDrops: 5, ConsumersReclaimed: 6,
		HoldMaxNS: 0x5152535455565758, HoldsGranted: 9, HoldsRefused: 10, HoldsTakenBack: 11, HoldsIgnored: 12,
	}
}

const goldenPath = "testdata/header.golden"

// TestGoldenHeader encodes goldenHeader and compares the 512 bytes with
// testdata/header.golden (go test -run TestGoldenHeader -update rewrites it),
// decodes the golden bytes back to the same struct, and spot-checks bytes at
// PROTOCOL.md's offsets so that a wrong golden file cannot pass unnoticed.
func TestGoldenHeader(t *testing.T) {
	h := goldenHeader(t)
	if err := validateHeader(&h, int64(h.TotalSize)); err != nil {
		t.Fatalf("the golden header is not valid: %v", err)
	}
	// encodeHeader writes the fields only; a fresh segment is zero, so encode
	// into zeroed bytes as newGeneration does.
	got := encoded(&h)

	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenPath)
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenHeader -update to create it)", err)
	}
	if len(want) != HeaderSize {
		t.Fatalf("%s is %d bytes, want %d", goldenPath, len(want), HeaderSize)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("byte %d: encodeHeader wrote 0x%02x, golden has 0x%02x", i, got[i], want[i])
			}
		}
	}

	// Round trip: the golden bytes decode to the struct they were made from.
	if back := decodeHeader(want); back != h {
		t.Errorf("decodeHeader(golden) differs from the encoded header (decoded != encoded): %v", headerDiff(back, h))
	}
	if back, err := validateSegment(want, int64(h.TotalSize)); err != nil || back != h {
		t.Errorf("validateSegment(golden, total_size): %v; decoded != encoded: %v", err, headerDiff(back, h))
	}

	// Independent spot checks at the document's offsets.
	le := binary.LittleEndian
	if string(want[0:4]) != "FBUS" {
		t.Errorf("bytes 0-3 = %q, want \"FBUS\"", want[0:4])
	}
	for _, c := range []struct {
		off  int
		size int
		want uint64
	}{
		{4, 2, 1}, {6, 2, 512}, {8, 4, StateReady}, {12, 4, FlagChecksum | 4}, {16, 8, h.TotalSize},
		{24, 8, 7}, {32, 8, 0x0102030405060708}, {40, 8, 65536}, {48, 8, 2 * alignUp(1920*1080*4, 65536)},
		{56, 8, 3}, {128, 4, 4242}, {132, 4, 2}, {136, 8, alignUp(1920*1080*4, 65536)},
		{144, 8, 1920 * 1080 * 4}, {152, 4, 32}, {156, 4, 100}, {160, 4, 1920}, {164, 4, 1080},
		{168, 4, 0x34324241 /* "AB24" */}, {172, 4, 1}, {176, 4, 1920 * 4}, {192, 4, 0},
		{208, 4, 30000}, {212, 4, 1001}, {216, 8, 512}, {224, 8, 512 + 2*128}, {232, 4, 128},
		{236, 4, 128}, {240, 8, 0x1112131415161718}, {256, 4, 1}, {264, 8, 0x2122232425262728},
		{272, 8, 0x3132333435363738}, {280, 8, 0x4142434445464748}, {288, 8, 5}, {296, 8, 6},
		{384, 8, 0x5152535455565758}, {392, 8, 9}, {400, 8, 10}, {408, 8, 11}, {416, 8, 12},
	} {
		var v uint64
		switch c.size {
		case 2:
			v = uint64(le.Uint16(want[c.off:]))
		case 4:
			v = uint64(le.Uint32(want[c.off:]))
		case 8:
			v = le.Uint64(want[c.off:])
		}
		if v != c.want {
			t.Errorf("golden offset %d (u%d) = %d (%#x), want %d (%#x)", c.off, 8*c.size, v, v, c.want, c.want)
		}
	}
	for _, r := range [][2]int{{64, 128}, {196, 208}, {248, 256}, {260, 264}, {304, 320}, {328, 384}, {424, 512}} {
		if !isZero(want[r[0]:r[1]]) {
			t.Errorf("golden bytes %d-%d are reserved or unused but not zero: % x", r[0], r[1]-1, want[r[0]:r[1]])
		}
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestLayoutGeometry checks computeGeometry against PROTOCOL.md's rules for
// the sizes a producer can ask for.
func TestLayoutGeometry(t *testing.T) {
	for _, slots := range []uint32{MinSlots, 3, MaxSlots} {
		for _, consumers := range []uint32{1, DefaultConsumers, 500, MaxConsumers} {
			for _, capacity := range []uint64{1, 4096, 65536, 65537, 1920 * 1080 * 4, 1 << 32} {
				name := fmt.Sprintf("%d slots, %d consumers, %d bytes", slots, consumers, capacity)
				g := computeGeometry(slots, consumers, capacity)
				h := header{Magic: Magic, ABIVersion: ABIVersion, HeaderSize: HeaderSize, State: StateReady,
					TotalSize: g.total, PayloadOffset: g.payloadOff, PayloadSize: g.payloadSize,
					SlotCount: slots, SlotStride: g.slotStride, SlotCapacity: g.slotCapacity,
					ConsumerCapacity: consumers, HeartbeatIntervalMS: 100, PlaneCount: 1,
					Width: 1, Height: 1, PixelFormat: uint32(FormatMJPEG),
					SlotTableOffset: g.slotTableOff, ConsumerTableOffset: g.consumerTableOff,
					SlotDescSize: SlotDescSize, ConsumerEntrySize: ConsumerEntrySize}
				if err := validateHeader(&h, int64(g.total)); err != nil {
					t.Errorf("%s: computeGeometry gives a header validateHeader refuses: %v", name, err)
				}
				if g.payloadOff%PayloadAlign != 0 || g.slotStride%PayloadAlign != 0 || g.slotStride < capacity {
					t.Errorf("%s: %+v breaks alignment or capacity", name, g)
				}
				if g.slotTableOff != HeaderSize || g.consumerTableOff != HeaderSize+uint64(slots)*SlotDescSize {
					t.Errorf("%s: tables at %d and %d", name, g.slotTableOff, g.consumerTableOff)
				}
			}
		}
	}
}
