package framebus

// Fuzz tests of the segment validation (PROTOCOL.md section 6: "wrong magic /
// abi_version / sizes, truncated file, offsets out of range: open fails with
// a typed error ... no panic, no SIGBUS").
//
//	go test -run '^$' -fuzz FuzzValidateSegment -fuzztime 60s ./framebus/
//	go test -run '^$' -fuzz FuzzConsumerOpen -fuzztime 60s ./framebus/
//
// The seed corpus is f.Add (full-size segments, built at run time) plus the
// files of testdata/fuzz/<Fuzz...>/ (headers only, small enough to commit),
// written by go test -run TestFuzzSeedCorpus -update.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"testing"
	"time"
)

// seedSegment is the whole file of h: the header encoded, the rest zero.
func seedSegment(h header) []byte {
	b := make([]byte, h.TotalSize)
	encodeHeader(b, &h)
	return b
}

// seedMutations are named variants of a valid 512-byte header, one rule of
// validateHeader broken in each (and two valid ones).
func seedMutations(tb testing.TB) []seedFile {
	base := validTestHeader(tb)
	enc := func(mut func(h *header)) []byte {
		h := base
		mut(&h)
		return encoded(&h)
	}
	i420, _ := Format{Width: 32, Height: 16, PixelFormat: FormatI420}.Complete()
	i420h := headerFor(i420, 3, 2)
	i420h.Active = 2
	return []seedFile{
		{"valid-header", enc(func(h *header) {})},
		{"valid-i420-3-slots", encoded(&i420h)},
		{"bad-magic", enc(func(h *header) { h.Magic = 0xdeadbeef })},
		{"abi-version-2", enc(func(h *header) { h.ABIVersion = 2 })},
		{"truncated-100", enc(func(h *header) {})[:100]},
		{"slot-count-9", enc(func(h *header) { h.SlotCount = 9 })},
		{"payload-offset-near-2-64", enc(func(h *header) { h.PayloadOffset = math.MaxUint64 - PayloadAlign + 1 })},
		{"slot-capacity-over-stride", enc(func(h *header) { h.SlotCapacity = h.SlotStride + 1 })},
		{"consumer-capacity-1025", enc(func(h *header) { h.ConsumerCapacity = 1025 })},
		{"total-size-2-63", enc(func(h *header) { h.TotalSize = 1 << 63 })},
		{"stride-overflow", enc(func(h *header) { h.SlotStride = 1 << 63 })},
		{"plane-offset-past-capacity", enc(func(h *header) { h.PlaneOffset[0] = uint32(h.SlotCapacity) })},
		{"active-2", enc(func(h *header) { h.Active = 2 })},
		{"initializing", enc(func(h *header) { h.State = StateInitializing })},
	}
}

// addSeeds adds the seeds both fuzz targets share: the valid segment's
// header and tables (ctlEnd bytes) and every seed mutation.
func addSeeds(f *testing.F) (base header, ctlEnd uint64) {
	base = validTestHeader(f)
	ctlEnd = base.ConsumerTableOffset + uint64(base.ConsumerCapacity)*ConsumerEntrySize
	f.Add(seedSegment(base)[:ctlEnd])
	for _, m := range seedMutations(f) {
		f.Add(m.Data)
	}
	return base, ctlEnd
}

// inside reports whether [off, off+n) lies inside [0, limit), without
// overflow.
func inside(off, n, limit uint64) bool { return off <= limit && n <= limit-off }

// checkRegions asserts that every region derived from a header that
// validateHeader accepted lies inside a file of size bytes, and inside the
// two mappings a consumer makes of it: the control block [0, payload_offset)
// and the payload [payload_offset, payload_offset+payload_size).
func checkRegions(t *testing.T, h *header, size uint64) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("validateSegment accepted a header with "+format+"\nheader: %s\nfile size: %d", append(args, headerString(*h), size)...)
	}
	if h.TotalSize != size {
		fail("total_size %d", h.TotalSize)
	}
	ctl := h.PayloadOffset
	if !inside(0, HeaderSize, ctl) {
		fail("a control block of %d bytes, smaller than the header", ctl)
	}
	if h.SlotCount == 0 || h.SlotCount > MaxSlots || h.ConsumerCapacity == 0 || h.ConsumerCapacity > MaxConsumers {
		fail("slot_count %d, consumer_capacity %d", h.SlotCount, h.ConsumerCapacity)
	}
	if !inside(h.SlotTableOffset, uint64(h.SlotCount)*SlotDescSize, ctl) || h.SlotTableOffset < HeaderSize {
		fail("the slot table [%d, +%d) outside the control block (%d bytes)", h.SlotTableOffset, h.SlotCount*SlotDescSize, ctl)
	}
	if h.ConsumerTableOffset < h.SlotTableOffset+uint64(h.SlotCount)*SlotDescSize {
		fail("the consumer table at %d overlapping the slot table", h.ConsumerTableOffset)
	}
	if !inside(h.ConsumerTableOffset, uint64(h.ConsumerCapacity)*ConsumerEntrySize, ctl) || h.ConsumerTableOffset%8 != 0 {
		fail("the consumer table [%d, +%d) outside the control block (%d bytes) or misaligned", h.ConsumerTableOffset, h.ConsumerCapacity*ConsumerEntrySize, ctl)
	}
	if h.PayloadOffset%PayloadAlign != 0 || h.SlotStride%PayloadAlign != 0 || h.SlotStride == 0 {
		fail("payload_offset %d / slot_stride %d not multiples of %d", h.PayloadOffset, h.SlotStride, PayloadAlign)
	}
	if !inside(h.PayloadOffset, h.PayloadSize, size) {
		fail("the payload [%d, +%d) outside the file", h.PayloadOffset, h.PayloadSize)
	}
	if h.SlotCapacity == 0 || h.SlotCapacity > h.SlotStride {
		fail("slot_capacity %d, slot_stride %d", h.SlotCapacity, h.SlotStride)
	}
	for i := uint64(0); i < uint64(h.SlotCount); i++ {
		hi, o := bits.Mul64(i, h.SlotStride)
		if hi != 0 || !inside(o, h.SlotCapacity, h.PayloadSize) {
			fail("slot %d's data [%d, +%d) outside the payload (%d bytes)", i, o, h.SlotCapacity, h.PayloadSize)
		}
	}
	if h.PlaneCount == 0 || h.PlaneCount > MaxPlanes {
		fail("plane_count %d", h.PlaneCount)
	}
	for i := uint32(0); i < h.PlaneCount; i++ {
		if uint64(h.PlaneOffset[i]) >= h.SlotCapacity {
			fail("plane %d at %d outside the slot (%d bytes)", i, h.PlaneOffset[i], h.SlotCapacity)
		}
	}
	if h.Active >= h.SlotCount {
		fail("active %d", h.Active)
	}
}

// viewLikeConsumer makes, on the bytes themselves, every view a consumer
// takes of a segment (mapSegment: the header words and slotViews of the
// control block and the payload; join: the entry views) with the
// constructors of wire.go, and loads every word and a byte of every plane:
// a header validateSegment accepted must never make them panic.
func viewLikeConsumer(t *testing.T, h *header, data []byte) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("viewing a validated segment like mapSegment panics: %v\nheader: %s", r, headerString(*h))
		}
	}()
	g := geometryOf(h)
	ctl := data[:g.payloadOff:g.payloadOff]
	payload := data[g.payloadOff : g.payloadOff+g.payloadSize : g.payloadOff+g.payloadSize]
	w := newHeaderWords(ctl, h.Flags&FlagSharedWake != 0)
	_ = w.state.Load() + w.active.Load()
	_ = w.lastSeq.Load() + w.published.Load() + w.lastCommit.Load() + w.heartbeat.Load() + w.srcDrops.Load() +
		w.reclaimed.Load() + w.versionMismatch.Load()
	if w.wakeSeq != nil {
		_ = w.wakeSeq.Load() + w.wakeWaiters.Load()
	}
	for _, s := range slotViews(ctl, payload, &g) {
		_ = s.lock.Load() + s.seq.Load() + s.capture.Load() + s.commit.Load() + s.bytes.Load()
		_ = s.checksum.Load() + s.flags.Load() + s.metaLen.Load()
		_ = s.meta[UserMetaMax-1]
		for p := uint32(0); p < h.PlaneCount; p++ {
			_ = s.data[h.PlaneOffset[p]]
		}
	}
	for _, e := range entryViews(ctl, &g) {
		_ = e.state.Load() + e.pid.Load() + e.sem.Load() + e.waiters.Load()
		_ = e.token.Load() + e.lastSeq.Load() + e.delivered.Load() + e.dropped.Load() + e.heartbeat.Load() + e.torn.Load() + e.pidns.Load()
	}
}

// checkTypedError asserts that a refusal is one of the typed errors of
// PROTOCOL.md section 6.
func checkTypedError(t *testing.T, err error) {
	t.Helper()
	var le *LayoutError
	var ve *VersionError
	switch {
	case errors.As(err, &le):
		if !errors.Is(err, ErrCorrupt) || le.Field == "" {
			t.Fatalf("layout error %v: not ErrCorrupt or no field", err)
		}
	case errors.As(err, &ve):
		if !errors.Is(err, ErrVersionMismatch) || ve.Got == ABIVersion {
			t.Fatalf("version error %v with got %d", err, ve.Got)
		}
	case errors.Is(err, ErrBadMagic):
	default:
		t.Fatalf("untyped error %v (%T)", err, err)
	}
}

// fuzzScratch is a file image for FuzzValidateSegment (one per fuzz worker
// process; the fuzz function is not run concurrently within one).
var fuzzScratch []byte

// FuzzValidateSegment: validateSegment never panics, refuses with a typed
// error, and a header it accepts keeps every derived region inside the file
// and inside the consumer's two mappings. The seeds are small (a header and
// its tables, not a whole segment), so that mutating and minimizing stay
// cheap; a header that claims a total_size up to 1 MiB is also checked on a
// file image of that size.
func FuzzValidateSegment(f *testing.F) {
	addSeeds(f)
	f.Add([]byte{})
	f.Add([]byte("FBUS"))

	f.Fuzz(func(t *testing.T, data []byte) {
		// The file is data.
		h, err := validateSegment(data, int64(len(data)))
		if err != nil {
			checkTypedError(t, err)
		} else {
			checkRegions(t, &h, uint64(len(data)))
			viewLikeConsumer(t, &h, data)
		}

		// As mapSegment calls it: the first 512 bytes against the file size,
		// here the size the header claims (a small input stands for a large
		// file).
		if len(data) < HeaderSize {
			return
		}
		claimed := binary.LittleEndian.Uint64(data[offTotalSize:])
		if claimed > math.MaxInt64 {
			return
		}
		h, err = validateSegment(data[:HeaderSize], int64(claimed))
		if err != nil {
			checkTypedError(t, err)
			return
		}
		checkRegions(t, &h, claimed)
		if claimed <= 1<<20 {
			if fuzzScratch == nil {
				fuzzScratch = make([]byte, 1<<20)
			}
			img := fuzzScratch[:claimed:claimed]
			copy(img, data[:HeaderSize])
			viewLikeConsumer(t, &h, img)
		}
	})
}

// FuzzConsumerOpen writes the input as a segment file and opens it through
// the public API: an error or a working consumer, never a panic or SIGBUS.
// An input whose header claims a larger total_size (up to 1 MiB) is opened a
// second time, the file extended with zeros to that size: the seeds are the
// header and tables only (about 1 KiB, cheap to mutate and minimize), and
// still reach the mapping, joining and reading code.
func FuzzConsumerOpen(f *testing.F) {
	base, ctlEnd := addSeeds(f)
	// A frame committed in slot 1 (with metadata), and a full consumer table.
	withFrame := seedSegment(base)[:ctlEnd]
	sd := base.SlotTableOffset + 1*SlotDescSize
	binary.LittleEndian.PutUint32(withFrame[offActive:], 1)
	binary.LittleEndian.PutUint64(withFrame[offLastSeq:], 5)
	binary.LittleEndian.PutUint64(withFrame[sd+slotLock:], 2)
	binary.LittleEndian.PutUint64(withFrame[sd+slotFrameSeq:], 5)
	binary.LittleEndian.PutUint64(withFrame[sd+slotBytes:], 3072)
	binary.LittleEndian.PutUint32(withFrame[sd+slotUserMetaLen:], 64)
	f.Add(withFrame)
	withCRC := append([]byte(nil), withFrame...)
	binary.LittleEndian.PutUint32(withCRC[offFlags:], FlagChecksum)
	f.Add(withCRC)
	full := seedSegment(base)[:ctlEnd]
	for i := uint64(0); i < uint64(base.ConsumerCapacity); i++ {
		binary.LittleEndian.PutUint32(full[base.ConsumerTableOffset+i*ConsumerEntrySize+entState:], EntryActive)
	}
	f.Add(full)

	dir := shmDir(f) // tmpfs: rewriting a segment file costs microseconds there
	const name = "fuzz"
	path := SegmentPath(dir, name)

	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		fuzzOpen(t, dir, name, len(data))
		if len(data) < HeaderSize {
			return
		}
		claimed := binary.LittleEndian.Uint64(data[offTotalSize:])
		if claimed <= uint64(len(data)) || claimed > 1<<20 {
			return
		}
		if err := os.Truncate(path, int64(claimed)); err != nil {
			t.Fatal(err)
		}
		fuzzOpen(t, dir, name, int(claimed))
	})
}

func fuzzOpen(t *testing.T, dir, name string, size int) {
	t.Helper()
	// Go's fuzzer has no per-input timeout: turn a hang into a crash, which
	// it records with its input.
	watchdog := time.AfterFunc(10*time.Second, func() {
		panic(fmt.Sprintf("FuzzConsumerOpen: Open/Next/Close of a %d-byte segment hung for 10s", size))
	})
	defer watchdog.Stop()
	c, err := Open(name, ConsumerOptions{Dir: dir})
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip(err) // sys_other.go: not implemented on this system yet
	}
	if err != nil {
		var fe *Error
		if !errors.As(err, &fe) || fe.Op != "open" {
			t.Fatalf("Open: %v (%T) is not a *framebus.Error", err, err)
		}
		switch {
		case errors.Is(err, ErrBadMagic), errors.Is(err, ErrVersionMismatch), errors.Is(err, ErrTableFull),
			errors.Is(err, ErrNotFound): // state INITIALIZING: never became ready
		case errors.Is(err, ErrCorrupt):
			var le *LayoutError
			if !errors.As(err, &le) {
				t.Fatalf("Open: %v: ErrCorrupt without a *LayoutError", err)
			}
		default:
			t.Fatalf("Open of a %d-byte file: unexpected error %v", size, err)
		}
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	fr, err := c.Next(ctx)
	if err != nil {
		return // deadline, producer gone, retired, corrupt slot, checksum: all typed
	}
	var sum byte
	for _, b := range fr.Data { // touch every byte: a SIGBUS would show here
		sum += b
	}
	_ = sum
	if uint64(len(fr.Data)) > c.Format().FrameSize || len(fr.UserMeta) > UserMetaMax {
		t.Fatalf("frame of %d bytes (capacity %d), %d bytes of metadata", len(fr.Data), c.Format().FrameSize, len(fr.UserMeta))
	}
}

// TestFuzzSeedCorpus checks the committed seed files of the fuzz tests
// (testdata/fuzz/<Fuzz...>/seed-*): each is what seedMutations makes today,
// in go's corpus format. With -update it writes them.
func TestFuzzSeedCorpus(t *testing.T) {
	for _, target := range []string{"FuzzValidateSegment", "FuzzConsumerOpen"} {
		checkSeedCorpus(t, target, seedMutations(t), *update, "go test -run TestFuzzSeedCorpus -update")
	}
}
