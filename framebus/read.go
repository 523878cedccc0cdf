package framebus

import (
	"context"
	"fmt"
	"hash/crc32"
)

// The read protocol of PROTOCOL.md section 5: Next and ReadInto take the
// newest frame under the sequence lock (tryRead), sleeping (wait.go) while
// there is none, and keep an eye on the producer while they wait
// (liveness.go).

// Frame is one delivered frame. It is owned by the Consumer and valid until
// the next call to Next, ReadInto or Close; Hold keeps a frame of Next
// longer.
type Frame struct {
	Seq       uint64 // frame sequence number
	CaptureNS int64  // when the source produced it (CLOCK_MONOTONIC, see Now)
	CommitNS  int64  // when the producer committed it
	WakeNS    int64  // when this consumer read it

	// Data is the frame's bytes: a read-only view into shared memory for
	// Next (call Valid after use to know it was not overwritten meanwhile,
	// or read it inside Use), the caller's buffer for ReadInto.
	Data     []byte
	UserMeta []byte // the frame's user metadata (0-64 bytes)

	Format     Format
	Generation uint64
	// GenerationChanged is set on the first frame of a new generation
	// (producer restart or format change) that the consumer followed.
	GenerationChanged bool

	Dropped     uint64 // frames missed since the previous delivered frame
	TornRetries uint64 // reads that lost a race with the producer for this frame

	slot *slotView
	lock uint64
	c    *Consumer // for Hold (hold.go)
	seg  *cseg
	idx  uint32 // the slot's index
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
// covered; what the caller does with a zero-copy view is its own (Use).
func (c *Consumer) next(ctx context.Context, dst []byte, copyOut bool) (fr *Frame, err error) {
	op := "next"
	if copyOut {
		op = "read"
	}
	if gerr := guard(func() { fr, err = c.nextGuarded(ctx, dst, copyOut) }); gerr != nil {
		c.phase = broken
		c.sleepOn.Store(0)
		return nil, &Error{Op: op, Name: c.name, Err: fmt.Errorf("%w (the consumer waits for the producer's next generation)", gerr)}
	}
	if err != nil {
		return nil, &Error{Op: op, Name: c.name, Err: err}
	}
	return fr, nil
}

func (c *Consumer) nextGuarded(ctx context.Context, dst []byte, copyOut bool) (*Frame, error) {
	switch c.phase {
	case closed:
		return nil, ErrConsumerClosed
	case ended:
		return nil, &EndOfStreamError{Seq: c.lastSeq}
	}
	if c.old != nil {
		c.dropSeg(c.old) // kept while holds are out on it
		c.old = nil
	}
	// A context that is already done ends the call even with a frame ready,
	// as a read with a past deadline does: a loop bounded by its context
	// must end while frames keep coming.
	if ctx.Err() != nil {
		return nil, ctxErr(ctx)
	}
	c.bind(ctx)
	woke := false
	for {
		if c.phase == broken {
			if err := c.recoverBroken(ctx); err != nil {
				return nil, err
			}
		}
		fr, err := c.tryRead(dst, copyOut)
		if woke && c.phase != broken {
			// The heartbeat of the wake (PROTOCOL.md section 3.5), stored
			// once the frame is read: the entry's line is the one the
			// producer's step 6 just wrote, and fetching it back before
			// the read would add its transfer to the frame's latency.
			woke = false
			hb := Now()
			if fr != nil {
				hb = fr.WakeNS // the read's own stamp: no second clock read
			}
			c.seg.e.heartbeat.Store(uint64(hb))
		}
		if err != nil || fr != nil {
			return fr, err
		}
		// Nothing new: a RETIRED or BROKEN segment means the name must be
		// looked at now, not at the next timeout (PROTOCOL.md section 2).
		if st := c.seg.state.Load(); st == StateRetired || st == StateBroken {
			followed, err := c.check()
			if err != nil {
				return nil, err
			}
			if followed {
				continue
			}
		}
		if woke, err = c.wait(ctx); err != nil {
			return nil, err
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
			c.refuse(a, 0, layoutErr("active", uint64(a), "want < slot_count (%d)", s.h.SlotCount))
			return nil, nil // forged or torn: the producer's next flip mends it
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
		if seq <= c.lastSeq || c.refusedHere(a, l1) {
			return nil, nil // nothing new (or a stale active, or a frame refused already)
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
			s.e.torn.Add(1)
			continue
		}
		wake := Now() // read and validated; what follows is bookkeeping
		if last := s.lastSeq.Load(); seq > last {
			// Newer than the header says (amendment 9): one ahead is a
			// frame committed and not yet flipped (its flip and wake
			// follow); more is a forged word.
			if seq > last+1 {
				c.refuse(a, l1, fmt.Errorf("%w: slot %d: frame_seq = %d, newer than last_seq %d", ErrCorrupt, a, seq, last))
			}
			return nil, nil
		}
		if bad {
			c.refuse(a, l1, fmt.Errorf("%w: slot %d: bytes = %d (capacity %d), user_meta_len = %d", ErrCorrupt, a, n, len(sl.data), ml))
			return nil, nil
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
		return c.deliver(sl, a, seq, l1, read{n: n, flags: flags, ml: ml, capture: capture, commit: commit, wake: wake,
			torn: torn, crcBad: crcBad}, dst, copyOut)
	}
}

// refuse counts a read refused for a word no honest producer writes
// (amendment 9): the frame in slot a under lock l is not taken, and not
// looked at again while that lock stays.
func (c *Consumer) refuse(a uint32, l uint64, why error) {
	c.refused++
	c.lastRefusal = why
	c.refusedSlot, c.refusedLock = a, l
}

// refusedHere says whether the frame in slot a under lock l was refused.
func (c *Consumer) refusedHere(a uint32, l uint64) bool {
	return c.refused != 0 && c.refusedSlot == a && c.refusedLock == l
}

// read is what tryRead read of a frame, intact by the sequence lock.
type read struct {
	n               uint64
	flags, ml       uint32
	capture, commit uint64
	wake            int64
	torn            uint64
	crcBad          bool
}

// deliver is step 4: the accounting, then the frame. The entry's words
// first, our own last_seq after them: a store that faults (the file
// truncated under us) leaves the frame unconsumed, so the caller is told of
// it as dropped with the next frame instead of never.
func (c *Consumer) deliver(sl *slotView, idx uint32, seq, l1 uint64, r read, dst []byte, copyOut bool) (*Frame, error) {
	s := c.seg
	var dropped uint64
	if seq > c.lastSeq+1 {
		dropped = seq - c.lastSeq - 1
	}
	s.e.lastSeq.Store(seq)
	if r.crcBad {
		// Intact by the sequence lock yet not what the producer summed:
		// corrupted in memory. It is consumed and counted as dropped, so
		// the next call moves on instead of failing on it again.
		s.e.dropped.Add(dropped + 1)
		c.lastSeq = seq
		return nil, fmt.Errorf("%w: frame %d", ErrChecksum, seq)
	}
	s.e.dropped.Add(dropped)
	s.e.delivered.Add(1)
	c.lastSeq = seq
	if r.flags&FrameEndOfStream != 0 {
		c.phase = ended
		return nil, &EndOfStreamError{Seq: seq, Dropped: dropped}
	}
	if c.opts.Spin > 0 || c.opts.Hold >= 0 {
		c.spin.learn(seq, int64(r.commit)) // not the end of stream: it keeps no rhythm
	}
	f := &c.frame
	*f = Frame{Seq: seq, CaptureNS: int64(r.capture), CommitNS: int64(r.commit), WakeNS: r.wake,
		UserMeta: c.meta[:r.ml], Format: s.fmt, Generation: s.h.Generation, GenerationChanged: c.genChanged,
		Dropped: dropped, TornRetries: r.torn, c: c, seg: s, idx: idx}
	if copyOut {
		f.Data = dst[:r.n]
	} else {
		f.Data = sl.data[:r.n:r.n]
		f.slot, f.lock = sl, l1
	}
	c.genChanged = false
	return f, nil
}
