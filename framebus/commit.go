package framebus

import (
	"fmt"
	"hash/crc32"
	"math"
)

// The commit protocol of PROTOCOL.md section 4, whole: Begin lends the back
// slot out (steps 1-2), Commit publishes it (steps 3-5) and wakes the
// consumers (step 6, wakeAll). Abort gives the slot back; Fill and Publish
// are the guarded zero-copy and the copying forms of Begin + Commit.

// Begin hands out the back slot's bytes (the frame capacity, zero-copy) for
// the caller to fill; Commit publishes them, Abort gives the slot back. The
// slot is marked as being written (its sequence lock is odd) until then.
// The returned slice is valid until Commit or Abort.
//
// Writing it faults (SIGBUS) if the bus file is truncated under the
// producer meanwhile; Fill is the form that turns that into an error. A
// second Begin before Commit or Abort is an error wrapping ErrSlotHeld.
func (p *Producer) Begin() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return nil, &Error{Op: "begin", Name: p.name, Err: err}
	}
	if p.held {
		return nil, &Error{Op: "begin", Name: p.name, Err: ErrSlotHeld}
	}
	if err := p.replaceIfNeeded(); err != nil {
		return nil, wrap("begin", p.name, err)
	}
	s := p.seg
	var b uint32
	if err := p.guard("begin", func() { b = p.beginSlot(s) }); err != nil {
		return nil, err
	}
	p.held, p.back, p.heldSeg = true, b, s
	return s.slots[b].data, nil
}

// replaceIfNeeded publishes the new generation that a fault or the
// heartbeat asked for. When it cannot be made (a full bus directory, say,
// after the name was removed from outside) and the current segment is still
// whole, the producer carries on in it (its consumers keep their frames)
// and tries again at most once a heartbeat interval, the error in Err; a
// segment that is not whole any more (truncated) is the error. Called with
// p.mu held and no slot lent out.
func (p *Producer) replaceIfNeeded() error {
	if !p.needRegen.Load() {
		return nil
	}
	now := Now()
	intact := p.seg.intact()
	if intact && now-p.regenTried < int64(p.opts.Heartbeat) {
		return nil // carrying on; the heartbeat retries too
	}
	p.regenTried = now
	err := p.regenLocked(p.opts.Format)
	if err == nil {
		p.lastErr.Store(nil)
		return nil
	}
	werr := wrap("new generation", p.name, err)
	p.lastErr.Store(&werr)
	if intact {
		return nil
	}
	return err
}

// usable says why the producer cannot publish (nil when it can).
func (p *Producer) usable() error {
	if p.closed {
		return ErrProducerClosed
	}
	return nil
}

// beginSlot is steps 1 and 2: the back slot, marked odd. On a bus with
// holds, step 1 is amendment 10's choice around the held slots (holds.go).
func (p *Producer) beginSlot(s *pseg) uint32 {
	if s.holds {
		return s.chooseBack()
	}
	b := (s.active.Load() + 1) % s.g.slotCount // step 1: the back buffer
	sl := &s.slots[b]
	if faultsOn {
		fault(stepBeforeOdd)
	}
	sl.lock.Store(sl.lock.Load() | 1) // step 2: odd
	storeFence()
	return b
}

// Commit publishes the first n bytes of the slot handed out by Begin
// (steps 3-6 of the commit protocol) and returns the frame's sequence number.
// An error means the frame was not published (its number is not used): on a
// segment file truncated under the producer it wraps ErrCorrupt, and the
// next Begin publishes a new generation. Commit without Begin is an error
// wrapping ErrSlotNotHeld; after Close, ErrProducerClosed.
func (p *Producer) Commit(n int, m Meta) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, b, err := p.takeHeld("commit")
	if err != nil {
		return 0, err
	}
	if err := checkFrame(len(s.slots[b].data), n, m); err != nil {
		if s != p.seg {
			s.release()
		} else {
			p.abortSlot(s, b)
		}
		return 0, &Error{Op: "commit", Name: p.name, Err: err}
	}
	if s != p.seg {
		// The heartbeat replaced the damaged generation while the slot
		// was lent out: the frame goes to the new one.
		if s, b, err = p.moveHeld(s, b, n); err != nil {
			return 0, err
		}
	}
	before := p.seq
	var cerr error
	if gerr := p.guard("commit", func() { cerr = p.commitFrame(s, b, n, m, 0) }); gerr != nil {
		// A fault after the flip published the frame (consumers may have
		// read it): its number is used and the commit is no error.
		if p.seq != before {
			return p.seq, nil
		}
		return 0, gerr
	}
	return p.seq, cerr
}

// takeHeld ends the loan of Begin: the slot and its generation. After
// Close (which gave the slot up) it releases the generation's mapping,
// which Close left for this call.
func (p *Producer) takeHeld(op string) (*pseg, uint32, error) {
	if !p.held {
		if p.closed {
			return nil, 0, &Error{Op: op, Name: p.name, Err: ErrProducerClosed}
		}
		return nil, 0, &Error{Op: op, Name: p.name, Err: ErrSlotNotHeld}
	}
	s, b := p.heldSeg, p.back
	p.held, p.heldSeg = false, nil
	if p.closed {
		s.release()
		return nil, 0, &Error{Op: op, Name: p.name, Err: ErrProducerClosed}
	}
	return s, b, nil
}

// checkFrame checks a frame of n bytes with metadata m against a slot of
// capacity bytes.
func checkFrame(capacity, n int, m Meta) error {
	if n < 0 || n > capacity {
		return fmt.Errorf("%w: frame of %d bytes, slot capacity %d", ErrBadOptions, n, capacity)
	}
	if len(m.UserMeta) > UserMetaMax {
		return fmt.Errorf("%w: %d bytes of user metadata, at most %d", ErrBadOptions, len(m.UserMeta), UserMetaMax)
	}
	return nil
}

// Abort gives back the slot handed out by Begin without publishing it. The
// slot's old frame is invalidated (its data may be half overwritten). Abort
// without Begin does nothing.
func (p *Producer) Abort() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, b, err := p.takeHeld("abort"); err == nil {
		if s != p.seg {
			s.release() // a generation replaced meanwhile (moveHeld)
			return
		}
		p.abortSlot(s, b)
	}
}

// abortSlot makes a begun slot even again with no frame in it.
func (p *Producer) abortSlot(s *pseg, b uint32) {
	_ = p.guard("abort", func() {
		sl := &s.slots[b]
		sl.seq.Store(0)
		sl.bytes.Store(0)
		sl.lock.Store(sl.lock.Load() + 1)
	})
}

// Fill publishes one frame written in place: it hands the back slot's bytes
// to fill (zero-copy, as Begin does) and commits the n bytes fill says it
// wrote, with its metadata. A memory fault inside fill (the bus file
// truncated under the producer, which without Fill would kill the process
// with SIGBUS) aborts the frame with a *FaultError (wrapping ErrCorrupt),
// and the next frame goes to a new generation. An error of fill aborts the
// frame and is returned as it is (io.EOF, a context's error, ...). fill runs
// on the calling goroutine and must not write the slot from C code (cgo) or
// from other goroutines: a fault there is not covered.
func (p *Producer) Fill(fill func(slot []byte) (n int, m Meta, err error)) (uint64, error) {
	buf, err := p.Begin()
	if err != nil {
		return 0, err
	}
	var n int
	var m Meta
	var ferr error
	if gerr := guard(func() { n, m, ferr = fill(buf) }); gerr != nil {
		p.mu.Lock()
		if p.held && p.heldSeg == p.seg { // not a generation the heartbeat replaced already
			p.needRegen.Store(true)
		}
		p.mu.Unlock()
		p.Abort()
		return 0, &Error{Op: "fill", Name: p.name, Err: gerr}
	}
	if ferr != nil {
		p.Abort()
		return 0, ferr
	}
	return p.Commit(n, m)
}

// Publish copies data into the back slot and commits it: the copying form of
// Begin and Commit.
func (p *Producer) Publish(data []byte, m Meta) (uint64, error) {
	return p.Fill(func(buf []byte) (int, Meta, error) {
		if len(data) > len(buf) {
			return 0, m, &Error{Op: "publish", Name: p.name, Err: fmt.Errorf("%w: frame of %d bytes, slot capacity %d", ErrBadOptions, len(data), len(buf))}
		}
		if faultsOn {
			h := len(data) / 2
			copy(buf, data[:h])
			fault(stepMidData)
			copy(buf[h:], data[h:])
			return len(data), m, nil
		}
		copy(buf, data)
		return len(data), m, nil
	})
}

// commitFrame is steps 3-6 on begun slot b of s: the frame's descriptor,
// the even lock, the flip and the wake. It sets p.seq once the frame is
// visible. Called with p.mu held.
func (p *Producer) commitFrame(s *pseg, b uint32, n int, m Meta, flags uint32) error {
	sl := &s.slots[b]
	var sum uint32
	if s.h.Flags&FlagChecksum != 0 && n > 0 {
		sum = crc32.Update(0, p.table, sl.data[:n])
	}
	seq := p.seq + 1
	// step 3: the descriptor; commit_ns last
	sl.seq.Store(seq)
	sl.bytes.Store(uint64(n))
	sl.checksum.Store(sum)
	sl.flags.Store(flags)
	// The bytes past user_meta_len stay zero; only those the slot's last
	// frame used need clearing, so a bus without metadata never writes the
	// descriptor's second cache line (a reader would have to fetch it).
	used := min(uint64(sl.metaLen.Load()), UserMetaMax)
	sl.metaLen.Store(uint32(len(m.UserMeta)))
	copy(sl.meta, m.UserMeta)
	if used > uint64(len(m.UserMeta)) {
		clear(sl.meta[len(m.UserMeta):used])
	}
	now := Now()
	capture := m.CaptureNS
	if capture == 0 {
		capture = now
	}
	sl.capture.Store(uint64(capture))
	sl.commit.Store(uint64(now))
	s.slotCommit[b] = now // the producer's own copy, for the lease (holds.go)
	if faultsOn {
		fault(stepBeforeEven)
	}
	sl.lock.Store(sl.lock.Load() + 1) // step 4: even, committed
	if faultsOn {
		fault(stepBeforeFlip)
	}
	s.lastSeq.Store(seq) // step 5: last_seq, then the flip
	s.active.Store(b)
	// The number is used once the frame is visible. Not before: a commit
	// that faults on a truncated file published nothing, and the next
	// generation must continue from the last frame consumers could see.
	p.seq = seq
	s.published.Add(1)
	s.lastCommit.Store(uint64(now))
	if faultsOn {
		fault(stepBeforeWake)
	}
	s.wakeAll() // step 6
	if faultsOn {
		fault(stepAfterWake)
	}
	return nil
}

// wakeAll is step 6 of the commit: every active entry gets sem += 1, and a
// FUTEX_WAKE only if it sleeps. sem += 1 and the read of waiters are
// sequentially consistent atomics (the store-buffering handshake of
// PROTOCOL.md section 5). Before them, the shared wake word of amendment 7:
// one FUTEX_WAKE for every consumer that sleeps on it, however many, and the
// word a spinning consumer watches, bumped right after the flip.
func (s *pseg) wakeAll() {
	if s.wakeSeq != nil {
		s.wakeSeq.Add(1)
		if s.wakeWaiters.Load() != 0 {
			futexWakeOn(s.wakeSeq, math.MaxInt32)
		}
	}
	for i := range s.entries {
		e := &s.entries[i]
		if e.state.Load() != EntryActive {
			continue
		}
		e.sem.Add(1)
		if e.waiters.Load() != 0 {
			futexWakeOn(e.sem, math.MaxInt32)
		}
	}
}

// guard runs fn with memory faults turned into an error naming op: a
// segment file truncated from outside must not kill the producer with
// SIGBUS. A fault asks for a new generation at the next Begin.
func (p *Producer) guard(op string, fn func()) error {
	if err := guard(fn); err != nil {
		p.needRegen.Store(true)
		return &Error{Op: op, Name: p.name, Err: fmt.Errorf("%w; a new generation follows", err)}
	}
	return nil
}
