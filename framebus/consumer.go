package framebus

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"runtime/debug"
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
	// is due, then spins on the active slot for at most Spin before going
	// back to sleep on the semaphore. 0 (the default) never spins. A few
	// hundred microseconds suit a camera's pacing; the CPU it costs is
	// about the window per frame.
	Spin time.Duration
}

// Frame is one delivered frame. It is owned by the Consumer and valid until
// the next call to Next, ReadInto or Close.
type Frame struct {
	Seq       uint64 // frame sequence number
	CaptureNS int64  // when the source produced it (CLOCK_MONOTONIC, see Now)
	CommitNS  int64  // when the producer committed it
	WakeNS    int64  // when this consumer read it

	// Data is the frame's bytes: a read-only view into shared memory for
	// Next (call Valid after use to know it was not overwritten meanwhile),
	// the caller's buffer for ReadInto.
	Data     []byte
	UserMeta []byte // the frame's user metadata (0-64 bytes)

	Format     Format
	Generation uint64
	// GenerationChanged is set on the first frame of a new generation
	// (producer restart or format change) that the consumer followed.
	GenerationChanged bool

	Dropped     uint64 // frames missed since the previous delivered frame
	TornRetries uint64 // reads that lost a race with the producer for this frame

	slot *cslot
	lock uint64
}

// Valid reports whether a zero-copy frame is still intact: the producer has
// not started to overwrite its slot since it was read (PROTOCOL.md section 5
// step 3, repeated after use). A frame from ReadInto is always valid.
func (f *Frame) Valid() bool {
	if f.slot == nil {
		return true
	}
	ok := false
	if guard(func() {
		loadFence()
		ok = f.slot.lock.Load() == f.lock
	}) != nil {
		return false // the file was truncated under the view
	}
	return ok
}

// Use runs fn on the frame's data and then validates the frame, with memory
// faults turned into an error: nil when the frame stayed intact while fn ran;
// an error wrapping ErrOverwritten when the producer came back to the slot
// meanwhile (what fn read may be torn: discard what it made of it); a
// *FaultError (ErrCorrupt) when the bus file was truncated under the view,
// which without Use would kill the process with SIGBUS. fn runs on the
// calling goroutine and must not hand the data to C code or other
// goroutines (copy it for them: ReadInto).
func (f *Frame) Use(fn func(data []byte)) error {
	if err := guard(func() { fn(f.Data) }); err != nil {
		return err
	}
	if !f.Valid() {
		return fmt.Errorf("%w: frame %d", ErrOverwritten, f.Seq)
	}
	return nil
}

// Consumer reads frames from a bus. It is not safe for concurrent use.
type Consumer struct {
	name, dir, path, lockPath string
	opts                      ConsumerOptions

	seg   *cseg
	old   *cseg // the previous generation, released at the next call
	lockF *sysFile

	token   uint64
	lastSeq uint64
	frame   Frame
	meta    [UserMetaMax]byte

	lastCheck       int64 // Now() of the last liveness check, kept across calls
	spin            spinState
	genChanged      bool
	goneReported    bool
	stalledReported bool
	eos             bool
	broken          bool // the mapping faulted: the file was truncated
	hbDue           bool // a wake to record in the entry's heartbeat_ns after the read
	closed          bool

	// context binding: a cancelled context wakes the futex sleeper.
	boundCtx context.Context
	stopCtx  func() bool
	sleepOn  atomic.Uintptr
}

// cseg is one generation as a consumer sees it: the control block mapped
// read-write and the frame data read-only.
type cseg struct {
	f    *sysFile
	ctl  []byte
	data []byte
	id   fileID
	h    header
	fmt  Format
	hb   time.Duration

	state, active        *atomic.Uint32
	lastSeq              *atomic.Uint64
	heartbeat            *atomic.Uint64
	wakeSeq, wakeWaiters *atomic.Uint32 // amendment 7's shared wake word; nil without the flag
	slots                []cslot
	checksum             bool

	entry                                           int
	eOff                                            uint64
	eState, eSem, eWaiters                          *atomic.Uint32
	eToken, eLast, eDelivered, eDropped, eHB, eTorn *atomic.Uint64
}

type cslot struct {
	lock, seq, capture, commit, bytes *atomic.Uint64
	checksum, flags, metaLen          *atomic.Uint32
	meta                              []byte
	data                              []byte
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
		seg, err := c.attach()
		if err == nil {
			c.seg = seg
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

// attach opens, validates, maps and joins the segment at the bus path.
func (c *Consumer) attach() (*cseg, error) {
	f, err := openExisting(c.path, true)
	if err != nil {
		return nil, err
	}
	seg, err := mapConsumer(f)
	if err != nil {
		f.close()
		return nil, err
	}
	if err := seg.join(c.token); err != nil {
		seg.release()
		return nil, err
	}
	c.lastSeq = seg.eLast.Load()
	if c.opts.Newest && c.lastSeq > 0 {
		// The newest committed frame counts as not yet delivered.
		c.lastSeq--
		seg.eLast.Store(c.lastSeq)
	}
	return seg, nil
}

// countVersionMismatch bumps version_mismatch_count of a segment whose
// abi_version this reader refuses (PROTOCOL.md section 3.1).
func countVersionMismatch(f *sysFile) {
	m, err := f.mapRegion(0, 64, true)
	if err != nil {
		return
	}
	u64At(m, offVersionMismatchCount).Add(1)
	unmap(m)
}

func mapConsumer(f *sysFile) (*cseg, error) {
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
	s := &cseg{f: f, ctl: ctl, data: data, id: id, h: h, fmt: h.format(),
		hb: time.Duration(h.HeartbeatIntervalMS) * time.Millisecond, checksum: h.Flags&FlagChecksum != 0}
	s.state = u32At(ctl, offState)
	s.active = u32At(ctl, offActive)
	s.lastSeq = u64At(ctl, offLastSeq)
	s.heartbeat = u64At(ctl, offHeartbeatNS)
	if h.Flags&FlagSharedWake != 0 && !perEntryWakeOnly {
		s.wakeSeq, s.wakeWaiters = u32At(ctl, offWakeSeq), u32At(ctl, offWakeWaiters)
	}
	s.slots = make([]cslot, h.SlotCount)
	for i := range s.slots {
		d := h.SlotTableOffset + uint64(i)*SlotDescSize
		o := uint64(i) * h.SlotStride
		s.slots[i] = cslot{
			lock: u64At(ctl, d+slotLock), seq: u64At(ctl, d+slotFrameSeq),
			capture: u64At(ctl, d+slotCaptureNS), commit: u64At(ctl, d+slotCommitNS),
			bytes: u64At(ctl, d+slotBytes), checksum: u32At(ctl, d+slotChecksum),
			flags: u32At(ctl, d+slotFrameFlags), metaLen: u32At(ctl, d+slotUserMetaLen),
			meta: ctl[d+slotUserMeta : d+slotUserMeta+UserMetaMax : d+slotUserMeta+UserMetaMax],
			data: data[o : o+h.SlotCapacity : o+h.SlotCapacity],
		}
	}
	s.entry = -1
	return s, nil
}

func (s *cseg) release() {
	unmap(s.ctl)
	unmap(s.data)
	s.ctl, s.data = nil, nil
	s.f.close()
}

func (s *cseg) bindEntry(i int) {
	e := s.h.ConsumerTableOffset + uint64(i)*ConsumerEntrySize
	s.entry, s.eOff = i, e
	s.eState, s.eSem, s.eWaiters = u32At(s.ctl, e+entState), u32At(s.ctl, e+entSem), u32At(s.ctl, e+entWaiters)
	s.eToken, s.eLast = u64At(s.ctl, e+entToken), u64At(s.ctl, e+entLastSeq)
	s.eDelivered, s.eDropped = u64At(s.ctl, e+entDelivered), u64At(s.ctl, e+entDropped)
	s.eHB, s.eTorn = u64At(s.ctl, e+entHeartbeatNS), u64At(s.ctl, e+entTornRetries)
}

// join claims a free entry: shared lock first, then CAS 0 -> 1, fill, CAS
// 1 -> 2 (the model-checked order of PROTOCOL.md section 2).
func (s *cseg) join(token uint64) error {
	for i := 0; i < int(s.h.ConsumerCapacity); i++ {
		off := s.h.ConsumerTableOffset + uint64(i)*ConsumerEntrySize
		ok, err := s.f.tryLock(off, ConsumerEntrySize, false)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if !u32At(s.ctl, off+entState).CompareAndSwap(EntryFree, EntryClaiming) {
			s.f.unlock(off, ConsumerEntrySize)
			continue
		}
		s.bindEntry(i)
		u32At(s.ctl, off+entPID).Store(getpid())
		s.eSem.Store(0)
		s.eWaiters.Store(0)
		s.eToken.Store(token)
		s.eLast.Store(s.lastSeq.Load())
		s.eDelivered.Store(0)
		s.eDropped.Store(0)
		s.eTorn.Store(0)
		s.eHB.Store(uint64(Now()))
		if !s.eState.CompareAndSwap(EntryClaiming, EntryActive) {
			s.f.unlock(off, ConsumerEntrySize)
			s.entry = -1
			continue
		}
		return nil
	}
	return &TableFullError{Capacity: s.h.ConsumerCapacity}
}

// leave gives the entry back: CAS 2 -> 0, then drop the lock.
func (s *cseg) leave(token uint64) {
	if s.entry < 0 || s.ctl == nil {
		return
	}
	if s.eToken.Load() == token {
		s.eState.CompareAndSwap(EntryActive, EntryFree)
	}
	s.f.unlock(s.eOff, ConsumerEntrySize)
	s.entry = -1
}

// Format returns the frame format of the current generation.
func (c *Consumer) Format() Format { return c.seg.fmt }

// Generation returns the generation the consumer is attached to.
func (c *Consumer) Generation() uint64 { return c.seg.h.Generation }

// Entry returns the index of the consumer's table entry.
func (c *Consumer) Entry() int { return c.seg.entry }

// ConsumerStats are the consumer's counters in its current generation.
type ConsumerStats struct {
	Generation                               uint64
	Entry                                    int
	LastSeq, Delivered, Dropped, TornRetries uint64

	// The spin (ConsumerOptions.Spin): frames found while spinning, and
	// spins that ended with no frame (the consumer then slept for it).
	// Counted by this process only; 0 without Spin.
	SpinHits, SpinMisses uint64

	// SharedWake says the consumer sleeps on the bus's shared wake word
	// (PROTOCOL.md amendment 7) rather than its entry's semaphore.
	SharedWake bool
}

// Stats reads the consumer's counters from its table entry.
func (c *Consumer) Stats() ConsumerStats {
	s := c.seg
	if s == nil || s.entry < 0 {
		return ConsumerStats{}
	}
	return ConsumerStats{Generation: s.h.Generation, Entry: s.entry, LastSeq: s.eLast.Load(),
		Delivered: s.eDelivered.Load(), Dropped: s.eDropped.Load(), TornRetries: s.eTorn.Load(),
		SpinHits: c.spin.hits, SpinMisses: c.spin.misses, SharedWake: s.wakeSeq != nil}
}

// Next waits for a frame newer than the last one delivered and returns the
// newest as a zero-copy, read-only view, validated by the sequence lock (and
// the checksum, when the bus carries one). It follows a new generation by
// itself (Frame.GenerationChanged). Errors wrap ErrEndOfStream (the producer
// ended the stream), ErrProducerGone, ErrStalled (both reported once per
// episode; calling Next again keeps waiting), ErrRetired, a layout error, or
// the context's error (os.ErrDeadlineExceeded for a deadline).
func (c *Consumer) Next(ctx context.Context) (*Frame, error) {
	return c.next(ctx, nil, false)
}

// ReadInto is Next that copies the frame into dst (Frame.Data = dst[:n]).
// If dst is too small the error wraps ErrShortBuffer, names the size, and the
// frame is not consumed.
func (c *Consumer) ReadInto(ctx context.Context, dst []byte) (*Frame, error) {
	return c.next(ctx, dst, true)
}

// next runs a read with memory faults turned into an error: a segment file
// truncated under our mappings must not kill the process with SIGBUS
// (PROTOCOL.md section 6). Every access of the read and the wait is
// covered; what the caller does with a zero-copy view is its own.
func (c *Consumer) next(ctx context.Context, dst []byte, copyOut bool) (fr *Frame, err error) {
	op := "next"
	if copyOut {
		op = "read"
	}
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			c.broken = true
			c.sleepOn.Store(0)
			fr, err = nil, &Error{Op: op, Name: c.name, Err: fmt.Errorf("%w: segment file truncated under the consumer (%v)", ErrCorrupt, r)}
		}
	}()
	return c.nextGuarded(ctx, dst, copyOut, op)
}

func (c *Consumer) nextGuarded(ctx context.Context, dst []byte, copyOut bool, op string) (*Frame, error) {
	if c.closed {
		return nil, &Error{Op: op, Name: c.name, Err: ErrConsumerClosed}
	}
	if c.old != nil {
		c.old.release()
		c.old = nil
	}
	if c.eos {
		return nil, &Error{Op: op, Name: c.name, Err: &EndOfStreamError{Seq: c.lastSeq}}
	}
	// A context that is already done ends the call even with a frame ready,
	// as a read with a past deadline does: a loop bounded by its context
	// must end while frames keep coming.
	if ctx.Err() != nil {
		return nil, &Error{Op: op, Name: c.name, Err: ctxErr(ctx)}
	}
	c.bind(ctx)
	for {
		if c.broken {
			if err := c.recoverBroken(ctx); err != nil {
				if err == errFollowed {
					continue
				}
				return nil, &Error{Op: op, Name: c.name, Err: err}
			}
		}
		fr, err := c.tryRead(dst, copyOut)
		if c.hbDue && !c.broken {
			// The heartbeat of the wake (PROTOCOL.md section 3.5), stored
			// once the frame is read: the entry's line is the one the
			// producer's step 6 just wrote, and fetching it back before
			// the read would add its transfer to the frame's latency.
			c.hbDue = false
			var hb int64
			if fr != nil {
				hb = fr.WakeNS // the read's own stamp: no second clock read
			} else {
				hb = Now()
			}
			c.seg.eHB.Store(uint64(hb))
		}
		if err != nil {
			return nil, &Error{Op: op, Name: c.name, Err: err}
		}
		if fr != nil {
			return fr, nil
		}
		// Nothing new: a RETIRED or BROKEN segment means the name must be
		// looked at now, not at the next timeout (PROTOCOL.md section 2).
		if st := c.seg.state.Load(); st == StateRetired || st == StateBroken {
			if err := c.check(); err != nil {
				if err == errFollowed {
					continue
				}
				return nil, &Error{Op: op, Name: c.name, Err: err}
			}
		}
		if err := c.wait(ctx); err != nil {
			if err == errFollowed {
				continue
			}
			return nil, &Error{Op: op, Name: c.name, Err: err}
		}
	}
}

// recoverBroken waits, one heartbeat interval at most, for a new generation
// to replace a segment that faulted under us, and joins it. It touches
// nothing of the broken mapping.
func (c *Consumer) recoverBroken(ctx context.Context) error {
	deadline := time.Now().Add(c.seg.hb)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for {
		info, err := lstatPath(c.path)
		if err != nil {
			return err
		}
		if info.exists && info.id != c.seg.id {
			f, err := openExisting(c.path, true)
			if err == nil {
				seg, err := mapConsumer(f)
				if err == nil {
					if err := seg.join(c.token); err != nil {
						seg.release()
						return err
					}
					// Our entry in the broken file cannot be touched: the
					// lock goes with the descriptor, the producer has
					// abandoned that file.
					c.broken = false
					c.adopt(seg)
					return errFollowed
				}
				f.close()
			}
		}
		if !time.Now().Before(deadline) {
			if ctx.Err() != nil {
				return ctxErr(ctx)
			}
			if !c.ownerAlive() {
				return ErrProducerGone
			}
			return fmt.Errorf("%w: segment file truncated; waiting for the producer's next generation", ErrCorrupt)
		}
		select {
		case <-ctx.Done():
			return ctxErr(ctx)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// tryRead is the read protocol of PROTOCOL.md section 5. It returns nil, nil
// when there is nothing new.
func (c *Consumer) tryRead(dst []byte, copyOut bool) (*Frame, error) {
	s := c.seg
	var torn uint64
	for spins := 0; ; spins++ {
		a := s.active.Load()
		if a >= s.h.SlotCount {
			return nil, layoutErr("active", uint64(a), "want < slot_count (%d)", s.h.SlotCount)
		}
		sl := &s.slots[a]
		l1 := sl.lock.Load() // step 1
		if l1&1 != 0 {
			if spins > 1000 {
				return nil, nil // a producer died mid-write; the timeouts will tell
			}
			continue
		}
		seq := sl.seq.Load() // step 2
		if seq <= c.lastSeq {
			return nil, nil // nothing new (or a stale active): deliver nothing
		}
		n := sl.bytes.Load()
		flags := sl.flags.Load()
		sum := sl.checksum.Load()
		ml := sl.metaLen.Load()
		capture, commit := sl.capture.Load(), sl.commit.Load()
		// Only the bytes in use: with no metadata the reader never touches
		// the descriptor's second cache line, which the producer wrote.
		copy(c.meta[:], sl.meta[:min(uint64(ml), UserMetaMax)])
		bad := n > uint64(len(sl.data)) || ml > UserMetaMax
		short := false
		crcBad := false
		if !bad {
			if copyOut {
				if uint64(len(dst)) < n {
					short = true
				} else {
					copy(dst, sl.data[:n])
				}
			} else if s.checksum && !c.opts.SkipChecksum && n > 0 {
				crcBad = crc32.Update(0, castagnoli, sl.data[:n]) != sum
			}
		}
		loadFence()
		if sl.lock.Load() != l1 { // step 3: overwritten mid-read
			torn++
			s.eTorn.Add(1)
			continue
		}
		wake := Now() // read and validated; what follows is bookkeeping
		if bad {
			return nil, fmt.Errorf("%w: slot %d: bytes = %d (capacity %d), user_meta_len = %d", ErrCorrupt, a, n, len(sl.data), ml)
		}
		if short {
			return nil, fmt.Errorf("%w: frame of %d bytes, buffer of %d", ErrShortBuffer, n, len(dst))
		}
		if copyOut && s.checksum && !c.opts.SkipChecksum && n > 0 {
			crcBad = crc32.Update(0, castagnoli, dst[:n]) != sum
		}
		if faultsOn {
			consumerFault(c.path)
		}
		// step 4: accounting. The entry's words first, our own last_seq
		// after them: a store that faults (the file truncated under us)
		// leaves the frame unconsumed, so the caller is told of it as
		// dropped with the next frame instead of never.
		var dropped uint64
		if seq > c.lastSeq+1 {
			dropped = seq - c.lastSeq - 1
		}
		s.eLast.Store(seq)
		if crcBad {
			// Intact by the sequence lock yet not what the producer summed:
			// corrupted in memory. It is consumed and counted as dropped, so
			// the next call moves on instead of failing on it again.
			s.eDropped.Add(dropped + 1)
			c.lastSeq = seq
			return nil, fmt.Errorf("%w: frame %d", ErrChecksum, seq)
		}
		s.eDropped.Add(dropped)
		s.eDelivered.Add(1)
		c.lastSeq = seq
		if flags&FrameEndOfStream != 0 {
			c.eos = true
			return nil, &EndOfStreamError{Seq: seq, Dropped: dropped}
		}
		if c.opts.Spin > 0 {
			c.spin.learn(seq, int64(commit)) // not the end of stream: it keeps no rhythm
		}
		f := &c.frame
		*f = Frame{Seq: seq, CaptureNS: int64(capture), CommitNS: int64(commit), WakeNS: wake,
			UserMeta: c.meta[:ml], Format: s.fmt, Generation: s.h.Generation, GenerationChanged: c.genChanged,
			Dropped: dropped, TornRetries: torn}
		if copyOut {
			f.Data = dst[:n]
		} else {
			f.Data = sl.data[:n:n]
			f.slot, f.lock = sl, l1
		}
		c.genChanged = false
		return f, nil
	}
}

var errFollowed = errors.New("followed a new generation")

// wait sleeps until a wake (PROTOCOL.md section 5), checking liveness and
// generation on every timeout. It sleeps on the shared wake word when the
// producer keeps one (amendment 7), else on the entry's semaphore. With
// ConsumerOptions.Spin it sleeps only until just before the next frame is
// due and spins for it from there (spin.go).
func (c *Consumer) wait(ctx context.Context) error {
	s := c.seg
	if c.lastCheck == 0 {
		c.lastCheck = Now()
	}
	for {
		// The word to sleep on, the value it must still have, and where
		// we count ourselves as sleeping.
		shared := s.wakeSeq != nil
		word, val, waiters := s.eSem, uint32(0), s.eWaiters
		if shared {
			word, val, waiters = s.wakeSeq, s.wakeSeq.Load(), s.wakeWaiters // val before the pending check
		} else if s.eSem.Swap(0) > 0 {
			c.hbDue = true // stored after the read: see nextGuarded
			return nil
		}
		timeout := s.hb
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			if left <= 0 {
				return ctxErr(ctx)
			}
			timeout = min(timeout, left)
		}
		if done := ctx.Done(); done != nil {
			select {
			case <-done:
				return ctxErr(ctx)
			default:
			}
		}
		// The spin: sleep until the window opens, then watch the slot.
		early := int64(0)
		if c.opts.Spin > 0 {
			if start, end, ok := c.spin.window(c.lastSeq, c.opts.Spin); ok {
				now := Now()
				if now >= start {
					if c.spinFor(ctx, end) {
						c.hbDue = true // stored after the read: see nextGuarded
						return nil
					}
					continue // missed: sleep for it as usual
				}
				if d := time.Duration(start - now); d < timeout {
					timeout, early = d, start
				}
			}
		}
		waiters.Add(1)
		if shared && c.pending() {
			waiters.Add(^uint32(0))
			c.hbDue = true // stored after the read: see nextGuarded
			return nil
		}
		c.sleepOn.Store(futexAddr(word))
		err := sleepWhile(word, val, timeout)
		c.sleepOn.Store(0)
		waiters.Add(^uint32(0))
		if done := ctx.Done(); done != nil {
			select {
			case <-done:
				return ctxErr(ctx)
			default:
			}
		}
		if shared && word.Load() != val {
			c.hbDue = true // stored after the read: see nextGuarded
			return nil
		}
		now := Now()
		if err == errTimedOut && early != 0 {
			c.spin.overslept(now - early)
			if now-c.lastCheck < int64(s.hb) {
				continue // the spin window opens: not a heartbeat timeout
			}
		}
		if err == errTimedOut || now-c.lastCheck >= int64(s.hb) {
			c.lastCheck = now
			s.eHB.Store(uint64(now))
			if c.pending() {
				// A committed frame we have not read (say, the end of stream
				// of a producer that closed while we were stopped) comes
				// before any verdict on the producer.
				return nil
			}
			if err := c.check(); err != nil {
				return err
			}
			s = c.seg
		}
	}
}

// pending reports whether the active slot holds a committed frame newer than
// the last one delivered.
func (c *Consumer) pending() bool {
	s := c.seg
	a := s.active.Load()
	return a < s.h.SlotCount && s.slots[a].seq.Load() > c.lastSeq
}

// check is what a consumer does on every wait timeout (PROTOCOL.md sections 2
// and 5): keep its entry, and look at state, owner, heartbeat and the file
// behind the name.
func (c *Consumer) check() error {
	s := c.seg
	if s.eState.Load() != EntryActive || s.eToken.Load() != c.token {
		// Our entry was taken from us (it must not be while we hold its lock,
		// but a hostile peer can write anything): join again.
		s.f.unlock(s.eOff, ConsumerEntrySize)
		s.entry = -1
		if err := s.join(c.token); err != nil {
			return err
		}
		s.eLast.Store(c.lastSeq)
	}
	info, err := lstatPath(c.path)
	if err != nil {
		return err
	}
	if info.exists && info.id != s.id {
		return c.follow()
	}
	st := s.state.Load()
	alive := c.ownerAlive()
	if st == StateRetired || st == StateBroken || !info.exists {
		if alive {
			return nil // the producer is replacing the segment: wait for it
		}
		if st == StateRetired {
			return ErrRetired
		}
	}
	if !alive {
		c.stalledReported = false
		if !c.goneReported {
			c.goneReported = true
			return ErrProducerGone
		}
		return nil
	}
	c.goneReported = false
	hb := int64(s.heartbeat.Load())
	if Now()-hb > 3*int64(s.hb) {
		if !c.stalledReported {
			c.stalledReported = true
			return ErrStalled
		}
		return nil
	}
	c.stalledReported = false
	return nil
}

// ownerAlive tests the producer's lock on byte 0 of the lock file
// (F_OFD_GETLK, taking nothing).
func (c *Consumer) ownerAlive() bool {
	if c.lockF != nil {
		if info, err := lstatPath(c.lockPath); err == nil && info.exists {
			if _, id, _, _, err := c.lockF.stat(); err == nil && id != info.id {
				c.openLock() // a new producer made a new lock file
			}
		}
	} else {
		c.openLock()
	}
	if c.lockF == nil {
		return false
	}
	held, err := c.lockF.ownerHeld()
	return err == nil && held
}

// follow joins the generation now behind the name.
func (c *Consumer) follow() error {
	f, err := openExisting(c.path, true)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	seg, err := mapConsumer(f)
	if err != nil {
		f.close()
		if errors.Is(err, errNotReady) {
			return nil
		}
		return err
	}
	if err := seg.join(c.token); err != nil {
		seg.release()
		return err
	}
	c.seg.leave(c.token)
	c.adopt(seg)
	return errFollowed
}

// adopt makes seg, a joined new generation, the consumer's segment.
func (c *Consumer) adopt(seg *cseg) {
	if c.old != nil { // a second change within one call
		c.old.release()
	}
	c.old = c.seg // released at the next call: the caller may hold views into it
	c.seg = seg
	// Gap accounting in the new generation (PROTOCOL.md section 2, as
	// amended in docs/PROTOCOL.md): when the producer continued the frame
	// numbers, keep our own last_seq, so frames committed before we joined
	// count as dropped instead of vanishing; when it restarted them, restart
	// at the generation's last_seq.
	if joined := seg.eLast.Load(); joined >= c.lastSeq {
		seg.eLast.Store(c.lastSeq)
	} else {
		c.lastSeq = joined
	}
	c.genChanged = true
	c.goneReported, c.stalledReported = false, false
	c.openLock()
}

// Close leaves the consumer table and unmaps the segment.
func (c *Consumer) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.stopCtx != nil {
		c.stopCtx()
		c.stopCtx = nil
	}
	if c.old != nil {
		c.old.release()
		c.old = nil
	}
	if c.seg != nil {
		if !c.broken { // a truncated file's entry cannot be touched; its lock goes with the descriptor
			c.seg.leave(c.token)
		}
		c.seg.release()
	}
	if c.lockF != nil {
		c.lockF.close()
	}
	return nil
}

// bind arranges for a cancellation of ctx to wake the futex sleeper. The
// registration is kept while the same context is passed again, so a loop
// over Next with one context allocates nothing per frame.
func (c *Consumer) bind(ctx context.Context) {
	if ctx == c.boundCtx {
		return
	}
	if c.stopCtx != nil {
		c.stopCtx()
		c.stopCtx = nil
	}
	c.boundCtx = ctx
	if ctx.Done() == nil {
		return
	}
	c.stopCtx = context.AfterFunc(ctx, func() { futexWakeAddr(c.sleepOn.Load(), 1<<30) })
}

type deadlineError struct{}

func (deadlineError) Error() string { return "deadline exceeded" }
func (deadlineError) Timeout() bool { return true }
func (deadlineError) Unwrap() []error {
	return []error{os.ErrDeadlineExceeded, context.DeadlineExceeded}
}

func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return deadlineError{}
	}
	return err
}
