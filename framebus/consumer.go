package framebus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// ConsumerOptions configures Open. The zero value is the sensible default.
type ConsumerOptions struct {
	Dir string // bus directory, default $FRAMEBUS_DIR or /dev/shm

	// Wait is how long Open waits for a producer that has not created the
	// bus yet (or is still initialising it); 0 fails at once with ErrNotFound.
	Wait time.Duration

	// SkipChecksum skips the CRC-32C check of frames that carry one.
	SkipChecksum bool

	// Newest makes the first Next deliver the newest frame already committed
	// when the consumer joined, at once, instead of waiting for the next one
	// (a preview of a slow or paused producer shows a picture straight away).
	Newest bool

	// Spin turns on the low-latency wait: the consumer learns the frame
	// period from the commit times, sleeps until just before the next frame
	// is due, then watches the bus's shared wake word (which the producer
	// bumps right after each flip) for at most Spin before going back to
	// sleep. 0 (the default) never spins. A few hundred microseconds suit a
	// camera's pacing; the CPU it costs is about the window per frame.
	Spin time.Duration

	// Hold bounds the held wait, which a consumer that does not spin does
	// for the last stretch before a frame is due: it learns the pace like
	// Spin, sleeps as usual until about 2 ms before the frame, and waits
	// the rest on a raw futex system call that keeps its goroutine on its
	// thread and processor, so the wake goes straight back to the reader
	// rather than through the Go scheduler (a third of the wake latency
	// of a camera stream on a 2-vCPU VM: docs/BENCHMARKS.md). It costs no
	// CPU; while it lasts that processor runs nothing else and a garbage
	// collection's stop-the-world waits for it, so it is bounded: at most
	// Hold (0: DefaultHold, 4 ms) and a quarter of the frame period, and
	// only for streams of 200 fps and less (5 ms periods and longer);
	// negative turns it off. Linux only.
	Hold time.Duration
}

// Consumer reads frames from a bus. It is not safe for concurrent use.
//
// Its life (phase): attached to a generation, reading and waiting; broken
// when the file faulted under it (it touches nothing of that mapping and
// waits for the producer's next generation); ended by the end of the
// stream; closed.
type Consumer struct {
	name, dir, path, lockPath string
	opts                      ConsumerOptions

	seg   *cseg
	old   *cseg // the previous generation, released at the next call (the caller may hold views into it)
	lockF *sysFile

	token   uint64
	lastSeq uint64
	frame   Frame
	meta    [UserMetaMax]byte

	phase      phase
	verdict    verdict // the liveness verdict reported in this episode
	genChanged bool    // the next frame is the first of a generation we followed
	lastCheck  int64   // Now() of the last liveness check, kept across calls
	spin       spinState

	// Refused reads and re-synchronisations (PROTOCOL.md amendment 9, forged words refused).
	refused, resyncs uint64
	lastRefusal      error
	refusedSlot      uint32 // the slot and lock of the last frame refused
	refusedLock      uint64

	// Holds (hold.go): the outstanding Hold values, and the generations
	// left behind that stay mapped for theirs.
	holds      [maxHolds]holdRec
	nHolds     int
	freeRec    int
	holdSerial uint64
	kept       []*cseg
	holdErrs   [nRefusals]*Error

	// context binding: a cancelled context wakes the futex sleeper.
	boundCtx context.Context
	stopCtx  func() bool
	sleepOn  atomic.Uintptr
}

type phase uint8

const (
	attached phase = iota
	broken
	ended
	closed
)

// verdict is what a consumer last said about a live producer's absence,
// so that it says it once per episode.
type verdict uint8

const (
	verdictNone verdict = iota
	verdictGone
	verdictStalled
)

// cseg is one generation as a consumer sees it: the control block mapped
// read-write and the frame data read-only, and the consumer's own entry.
type cseg struct {
	f    *sysFile
	ctl  []byte
	data []byte
	id   fileID
	h    header
	g    geometry
	fmt  Format
	hb   time.Duration

	headerWords
	slots    []slotView
	checksum bool

	joined bool
	e      entryView

	// Holds (amendment 10; hold.go): the bus honours them, its cap, and
	// this consumer's holds per slot: the frame (its lock), how many Hold
	// values share it, and the Hold values out on this generation.
	holdsOK   bool
	holdCap   int
	holdLock  [MaxSlots]uint64
	holdCount [MaxSlots]uint32
	holdRecs  int
}

// Open joins a bus as a consumer: it maps the segment, validates it and
// registers in the consumer table (PROTOCOL.md section 2).
func Open(name string, opts ConsumerOptions) (*Consumer, error) {
	return OpenContext(context.Background(), name, opts)
}

// OpenContext is Open with a context bounding the wait for the producer.
func OpenContext(ctx context.Context, name string, opts ConsumerOptions) (*Consumer, error) {
	c, err := openConsumer(ctx, name, opts)
	return c, wrap("open", name, err)
}

var errNotReady = errors.New("segment is still initialising")

func openConsumer(ctx context.Context, name string, opts ConsumerOptions) (*Consumer, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	dir := Dir(opts.Dir)
	c := &Consumer{name: name, dir: dir, path: SegmentPath(dir, name), lockPath: LockPath(dir, name), opts: opts}
	c.token = rand.Uint64() | 1
	deadline := time.Now().Add(opts.Wait)
	for {
		err := c.attach()
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, errNotReady) && !errors.Is(err, ErrProducerGone) {
			return nil, err
		}
		if !time.Now().Before(deadline) {
			if errors.Is(err, errNotReady) {
				return nil, fmt.Errorf("%w: %s never became ready", ErrNotFound, c.path)
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctxErr(ctx)
		case <-time.After(min(20*time.Millisecond, time.Until(deadline)+time.Millisecond)):
		}
	}
	c.openLock()
	return c, nil
}

func (c *Consumer) openLock() {
	if c.lockF != nil {
		c.lockF.close()
		c.lockF = nil
	}
	if f, err := openExisting(c.lockPath, false); err == nil {
		c.lockF = f
	}
}

// attach joins the segment at the bus path as the consumer's first.
func (c *Consumer) attach() error {
	seg, err := c.joinPath()
	if err != nil {
		return err
	}
	c.seg = seg
	c.lastSeq = seg.e.lastSeq.Load()
	if c.opts.Newest && c.lastSeq > 0 {
		// The newest committed frame counts as not yet delivered.
		c.lastSeq--
		seg.e.lastSeq.Store(c.lastSeq)
	}
	return nil
}

// joinPath opens, validates, maps and joins the segment at the bus path.
func (c *Consumer) joinPath() (*cseg, error) {
	f, err := openExisting(c.path, true)
	if err != nil {
		return nil, err
	}
	seg, err := mapSegment(f)
	if err != nil {
		f.close()
		return nil, err
	}
	if err := seg.join(c.token); err != nil {
		seg.release()
		return nil, err
	}
	return seg, nil
}

// mapSegment validates the segment of f against its size and maps it: the
// control block read-write, the frame data read-only.
func mapSegment(f *sysFile) (*cseg, error) {
	size, id, _, _, err := f.stat()
	if err != nil {
		return nil, err
	}
	var b [HeaderSize]byte
	n, err := f.preadFull(b[:], 0)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(b[:n], size); err != nil {
		var ve *VersionError
		if errors.As(err, &ve) && size >= 64 {
			countVersionMismatch(f)
		}
		return nil, err
	}
	h := decodeHeader(b[:])
	if err := validateHeader(&h, size); err != nil {
		return nil, err
	}
	if h.State == StateInitializing {
		return nil, errNotReady
	}
	ctl, err := f.mapRegion(0, h.PayloadOffset, true)
	if err != nil {
		return nil, err
	}
	data, err := f.mapRegion(h.PayloadOffset, h.PayloadSize, false)
	if err != nil {
		unmap(ctl)
		return nil, err
	}
	g := geometryOf(&h)
	s := &cseg{f: f, ctl: ctl, data: data, id: id, h: h, g: g, fmt: h.format(),
		hb: time.Duration(h.HeartbeatIntervalMS) * time.Millisecond, checksum: h.Flags&FlagChecksum != 0}
	s.headerWords = newHeaderWords(ctl, h.Flags&FlagSharedWake != 0 && !perEntryWakeOnly)
	s.slots = slotViews(ctl, data, &g)
	if s.holdsOK = h.Flags&FlagHolds != 0; s.holdsOK {
		s.holdCap = int(h.SlotCount) - 2
	}
	return s, nil
}

// perEntryWakeOnly makes consumers ignore the shared wake word (tests of a
// reader that does not know amendment 7, the shared wake word).
var perEntryWakeOnly = false

// countVersionMismatch bumps version_mismatch_count of a segment whose
// abi_version this reader refuses (PROTOCOL.md section 3.1).
func countVersionMismatch(f *sysFile) {
	m, err := f.mapRegion(0, 64, true)
	if err != nil {
		return
	}
	_ = guard(func() { u64At(m, offVersionMismatchCount).Add(1) })
	unmap(m)
}

func (s *cseg) release() {
	unmap(s.ctl)
	unmap(s.data)
	s.ctl, s.data = nil, nil
	s.f.close()
}

// join claims a free entry: shared lock first, then CAS 0 -> 1, fill, CAS
// 1 -> 2 (the model-checked order of PROTOCOL.md section 2).
func (s *cseg) join(token uint64) error {
	for i := 0; i < int(s.h.ConsumerCapacity); i++ {
		e := newEntryView(s.ctl, &s.g, i)
		ok, err := s.f.lockEntry(i, e.off, false)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if !e.state.CompareAndSwap(EntryFree, EntryClaiming) {
			s.f.unlockEntry(i, e.off)
			continue
		}
		e.pid.Store(getpid())
		e.pidns.Store(pidNamespace())
		e.sem.Store(0)
		e.waiters.Store(0)
		e.token.Store(token)
		e.lastSeq.Store(s.lastSeq.Load())
		e.delivered.Store(0)
		e.dropped.Store(0)
		e.torn.Store(0)
		if s.holdsOK { // amendment 10: a joiner stores 0 in hold_mask while claiming
			e.holdMask.Store(0)
			e.holdsGranted.Store(0)
			e.holdsRefused.Store(0)
			e.holdsTakenBack.Store(0)
			s.holdLock, s.holdCount = [MaxSlots]uint64{}, [MaxSlots]uint32{}
		}
		e.heartbeat.Store(uint64(Now()))
		if !e.state.CompareAndSwap(EntryClaiming, EntryActive) {
			s.f.unlockEntry(i, e.off)
			continue
		}
		s.e, s.joined = e, true
		return nil
	}
	return &TableFullError{Capacity: s.h.ConsumerCapacity}
}

// leave gives the entry back: CAS 2 -> 0, then drop the lock.
func (s *cseg) leave(token uint64) {
	if !s.joined || s.ctl == nil {
		return
	}
	if s.e.token.Load() == token {
		s.e.pidns.Store(0) // amendment 8 (creation and liveness across PID namespaces): a joiner that does not write it must not inherit ours
		if s.holdsOK {
			s.e.holdMask.Store(0) // amendment 10: every hold released, before the CAS
		}
		s.e.state.CompareAndSwap(EntryActive, EntryFree)
	}
	s.drop()
}

// drop lets go of the entry's lock without touching the entry.
func (s *cseg) drop() {
	s.f.unlockEntry(s.e.index, s.e.off)
	s.joined = false
}

// Format returns the frame format of the current generation.
func (c *Consumer) Format() Format { return c.seg.fmt }

// Generation returns the generation the consumer is attached to.
func (c *Consumer) Generation() uint64 { return c.seg.h.Generation }

// Entry returns the index of the consumer's table entry (-1 when it has
// none).
func (c *Consumer) Entry() int {
	if !c.seg.joined {
		return -1
	}
	return c.seg.e.index
}

// ConsumerStats are the consumer's counters in its current generation.
type ConsumerStats struct {
	Generation                               uint64
	Entry                                    int
	LastSeq, Delivered, Dropped, TornRetries uint64

	// The spin (ConsumerOptions.Spin): frames found while spinning, and
	// spins that ended with no frame (the consumer then slept for it).
	// Counted by this process only; 0 without Spin.
	SpinHits, SpinMisses uint64

	// The held wait (ConsumerOptions.Hold): frames that came during one,
	// and held waits that ended with no frame. This process only.
	HoldHits, HoldMisses uint64

	// SharedWake says the consumer sleeps on the bus's shared wake word
	// (PROTOCOL.md amendment 7) rather than its entry's semaphore.
	SharedWake bool

	// Holds (Frame.Hold, PROTOCOL.md amendment 10; not the held wait
	// above): granted, refused and taken back by the producer's lease, as
	// counted in the entry (this generation), and the Hold values out now.
	HoldsGranted, HoldsRefused, HoldsTakenBack uint64
	Holds                                      int

	// Refused counts reads refused for a word no honest producer writes
	// (a frame newer than the header says, an active slot out of range,
	// impossible sizes: PROTOCOL.md amendment 9); Resyncs the times the
	// consumer took the header's last_seq as its own, after its own had
	// been moved ahead by such a word. Both since Open, this process only.
	Refused, Resyncs uint64
}

// Stats reads the consumer's counters from its table entry.
func (c *Consumer) Stats() ConsumerStats {
	s := c.seg
	if s == nil || !s.joined || c.phase == broken {
		return ConsumerStats{}
	}
	st := ConsumerStats{Generation: s.h.Generation, Entry: s.e.index,
		SpinHits: c.spin.n.hits, SpinMisses: c.spin.n.misses, HoldHits: c.spin.n.holdHits, HoldMisses: c.spin.n.holdMisses, SharedWake: s.wakeSeq != nil,
		Refused: c.refused, Resyncs: c.resyncs, Holds: c.nHolds}
	_ = guard(func() {
		st.LastSeq, st.Delivered, st.Dropped, st.TornRetries = s.e.lastSeq.Load(), s.e.delivered.Load(), s.e.dropped.Load(), s.e.torn.Load()
		if s.holdsOK {
			st.HoldsGranted, st.HoldsRefused, st.HoldsTakenBack = s.e.holdsGranted.Load(), s.e.holdsRefused.Load(), s.e.holdsTakenBack.Load()
		}
	})
	return st
}

// Refusals returns how many reads were refused (ConsumerStats.Refused),
// re-synchronisations made, and why the last read was refused. It reads no
// shared memory: a loop can call it after every frame.
func (c *Consumer) Refusals() (refused, resyncs uint64, last error) {
	return c.refused, c.resyncs, c.lastRefusal
}

// Close leaves the consumer table and unmaps the segment. Every Hold is
// released with it (their Data must not be used after Close).
func (c *Consumer) Close() error {
	if c.phase == closed {
		return nil
	}
	wasBroken := c.phase == broken
	c.phase = closed
	if c.stopCtx != nil {
		c.stopCtx()
		c.stopCtx = nil
	}
	c.dropHolds() // leaving clears the entry's hold_mask
	if c.old != nil {
		c.old.release()
		c.old = nil
	}
	if c.seg != nil {
		if !wasBroken { // a truncated file's entry cannot be touched; its lock goes with the descriptor
			_ = guard(func() { c.seg.leave(c.token) })
		}
		c.seg.release()
	}
	if c.lockF != nil {
		c.lockF.close()
	}
	return nil
}
