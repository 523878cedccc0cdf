package framebus

import (
	"math/bits"
)

// Holds, the consumer's side (PROTOCOL.md amendment 10): Frame.Hold asks
// the producer, through the entry's hold_mask, to leave a frame's slot
// alone until Release (the grant G1-G5); the producer's side is holds.go.
// Not to be confused with ConsumerOptions.Hold, the held wait (a way of
// sleeping before a frame is due, wait.go).

// maxHolds bounds the Hold values a consumer has outstanding at once: its
// distinct held slots are at most the bus's cap (slot_count - 2, 6 at
// most); the rest are holds of the same frames, which share their slot's
// bit.
const maxHolds = 64

// Hold is a frame a consumer keeps: the producer does not write its slot
// until Release (or the consumer's Close or death), so its Data stays a
// valid, intact zero-copy view however long it is used, across later calls
// to Next. It is a value (the loan of iceoryx2's samples, without an
// allocation): copies of it name the same hold, which is released once.
//
// A hold can end early in one way: a producer with a lease
// (ProducerOptions.HoldMax) takes back a hold older than the lease when it
// needs the slot; Valid then reports false, and Release is still required
// (it returns nil).
type Hold struct {
	c          *Consumer
	sl         *slotView
	data       []byte
	lock, seq  uint64
	capture    int64
	commit     int64
	serial     uint64
	rec        uint32
	generation uint64
}

// holdRec is one outstanding Hold of a consumer.
type holdRec struct {
	seg    *cseg
	slot   uint32
	lock   uint64
	serial uint64 // 0: free
}

// Data is the held frame's bytes: a read-only view into shared memory,
// intact while held (Valid), usable until Release or the consumer's Close.
func (h Hold) Data() []byte { return h.data }

// Seq is the held frame's sequence number.
func (h Hold) Seq() uint64 { return h.seq }

// CaptureNS is when the source produced the held frame (CLOCK_MONOTONIC).
func (h Hold) CaptureNS() int64 { return h.capture }

// CommitNS is when the producer committed the held frame; a lease counts
// from it.
func (h Hold) CommitNS() int64 { return h.commit }

// Generation is the generation the held frame belongs to.
func (h Hold) Generation() uint64 { return h.generation }

// Valid reports whether the hold is still in force and its frame intact:
// false once released, or taken back by the producer's lease (the slot is
// being rewritten: what was read of Data since may be torn).
func (h Hold) Valid() bool {
	c := h.c
	if c == nil || c.holds[h.rec].serial != h.serial {
		return false
	}
	ok := false
	if guard(func() {
		loadFence()
		ok = lockSettles(h.sl, h.lock)
	}) != nil {
		return false
	}
	return ok
}

// lockSettles reports whether slot sl's lock is l, reading it again for a
// short, bounded time while it is l+1: a producer backing off at C4 has
// made the slot odd without writing it and stores l back at once
// (PROTOCOL.md amendment 10, validating a hold). Still odd after that, or
// any other value, the slot is being (or was) rewritten.
func lockSettles(sl *slotView, l uint64) bool {
	v := sl.lock.Load()
	for i := 0; v == l+1 && i < settleReads; i++ {
		v = sl.lock.Load()
	}
	return v == l
}

// settleReads bounds lockSettles: a few microseconds of loads, against the
// ~100 ns of a back-off (two scans of the consumer table).
const settleReads = 4096

// Release gives the hold back: the producer may write the slot again once
// no hold of this consumer on that frame remains. Releasing twice (this
// value or a copy of it) is an error wrapping ErrHoldReleased; after the
// consumer's Close, which released every hold, ErrConsumerClosed. A hold
// taken back by a lease is released without an error.
func (h Hold) Release() error {
	c := h.c
	if c == nil {
		return &Error{Op: "release", Err: ErrHoldReleased}
	}
	if c.phase == closed {
		return &Error{Op: "release", Name: c.name, Err: ErrConsumerClosed}
	}
	r := &c.holds[h.rec]
	if r.serial != h.serial {
		return &Error{Op: "release", Name: c.name, Err: ErrHoldReleased}
	}
	c.releaseRec(r)
	return nil
}

// Hold keeps the frame, zero-copy, until the returned Hold is released
// (PROTOCOL.md amendment 10): call it on a frame of Next before the next
// call to Next. It never waits. A refusal is an error that matches
// ErrNoHold and says why: ErrHoldCap (slot_count - 2 slots are held on the
// bus already, by this consumer or others; a 2-slot bus holds none),
// ErrOverwritten (the producer came back to the slot before the hold was
// granted), ErrHoldUnsupported (the producer does not know holds),
// ErrHoldCopy (a frame of ReadInto is a copy already). The caller then
// copies what it needs instead. Hold and Release allocate nothing.
func (f *Frame) Hold() (Hold, error) {
	c := f.c
	if c == nil {
		return Hold{}, &Error{Op: "hold", Err: errHoldRefused[refusedCopy]}
	}
	if c.phase == closed {
		return Hold{}, &Error{Op: "hold", Name: c.name, Err: ErrConsumerClosed}
	}
	if f.slot == nil {
		return Hold{}, c.holdRefusal(refusedCopy)
	}
	s := f.seg
	if !s.holdsOK {
		return Hold{}, c.holdRefusal(refusedUnsupported)
	}
	if s != c.seg || c.phase != attached || !s.joined {
		return Hold{}, c.holdRefusal(refusedOverwritten) // a generation left behind
	}
	var h Hold
	var why refusal
	if gerr := guard(func() { h, why = c.grant(f) }); gerr != nil {
		c.phase = broken
		c.sleepOn.Store(0)
		return Hold{}, &Error{Op: "hold", Name: c.name, Err: gerr}
	}
	if why != granted {
		return Hold{}, c.holdRefusal(why)
	}
	return h, nil
}

// refusal is why a hold was refused.
type refusal uint8

const (
	granted refusal = iota
	refusedCap
	refusedOverwritten
	refusedUnsupported
	refusedCopy
	nRefusals
)

var errHoldRefused = [nRefusals]*HoldError{
	refusedCap:         {Reason: ErrHoldCap},
	refusedOverwritten: {Reason: ErrOverwritten},
	refusedUnsupported: {Reason: ErrHoldUnsupported},
	refusedCopy:        {Reason: ErrHoldCopy},
}

// holdRefusal is the error of a refusal, made once per consumer and
// reason: a consumer refused every frame allocates nothing.
func (c *Consumer) holdRefusal(why refusal) error {
	if c.holdErrs[why] == nil {
		c.holdErrs[why] = &Error{Op: "hold", Name: c.name, Err: errHoldRefused[why]}
	}
	return c.holdErrs[why]
}

// grant is G1-G5 on frame f of the current segment, whose slot and lock
// were read intact; the accounting of a grant or a refusal; the local
// record. Sequentially consistent atomics throughout (Go's).
func (c *Consumer) grant(f *Frame) (Hold, refusal) {
	s := c.seg
	i, l1 := f.idx, f.lock
	sl := f.slot
	bit := uint32(1) << i
	if c.nHolds == maxHolds {
		return Hold{}, c.refuseHold(refusedCap)
	}
	if s.holdLock[i] == l1 && s.holdCount[i] > 0 {
		// This frame is held already: its bit is set, the holds share it.
		if sl.lock.Load() != l1 {
			return Hold{}, c.refuseHold(refusedOverwritten) // taken back meanwhile
		}
		s.holdCount[i]++
		return c.granted(f), granted
	}
	// Any earlier hold of this slot was of another frame, taken back (the
	// producer cleared the bit): those Hold values release nothing now.
	s.holdLock[i], s.holdCount[i] = 0, 0
	if s.holdCap == 0 {
		return Hold{}, c.refuseHold(refusedCap) // G3 could only fail
	}
	m := s.e.holdMask
	pend := bit << HoldPendingShift
	m.Or(bit | pend)          // G1
	if !lockSettles(sl, l1) { // G2
		m.And(^(bit | pend))
		return Hold{}, c.refuseHold(refusedOverwritten)
	}
	if s.heldSlots() > s.holdCap { // G3
		m.And(^(bit | pend))
		return Hold{}, c.refuseHold(refusedCap)
	}
	m.And(^pend)              // G4
	if !lockSettles(sl, l1) { // G5
		m.And(^bit)
		return Hold{}, c.refuseHold(refusedOverwritten)
	}
	s.holdLock[i], s.holdCount[i] = l1, 1
	return c.granted(f), granted
}

// heldSlots is G3's count: the distinct slots in the union of the hold
// bits 0..slot_count-1 of every entry in state 2, pending ones included.
func (s *cseg) heldSlots() int {
	slotBits := uint32(1)<<s.h.SlotCount - 1
	var union uint32
	for i := 0; i < int(s.h.ConsumerCapacity); i++ {
		e := s.g.entryOff(i)
		if u32At(s.ctl, e+entState).Load() != EntryActive {
			continue
		}
		union |= u32At(s.ctl, e+entHoldMask).Load() & slotBits
	}
	return bits.OnesCount32(union)
}

// refuseHold counts a refusal that reached the bus (entry and header).
func (c *Consumer) refuseHold(why refusal) refusal {
	c.seg.e.holdsRefused.Add(1)
	c.seg.holdsRefused.Add(1)
	return why
}

// granted counts a grant (entry and header) and records the new Hold.
func (c *Consumer) granted(f *Frame) Hold {
	s := c.seg
	s.e.holdsGranted.Add(1)
	s.holdsGranted.Add(1)
	ri := c.freeRec
	for c.holds[ri].serial != 0 {
		ri = (ri + 1) % maxHolds
	}
	c.freeRec = (ri + 1) % maxHolds
	c.holdSerial++
	c.holds[ri] = holdRec{seg: s, slot: f.idx, lock: f.lock, serial: c.holdSerial}
	c.nHolds++
	s.holdRecs++
	return Hold{c: c, sl: f.slot, data: f.Data, lock: f.lock, seq: f.Seq, capture: f.CaptureNS, commit: f.CommitNS,
		serial: c.holdSerial, rec: uint32(ri), generation: f.Generation}
}

// releaseRec ends the hold of record r: the slot's bit is cleared when the
// consumer's last hold of that frame ends (on a segment it still has an
// entry in), and a previous generation kept mapped for its holds is
// released with its last one.
func (c *Consumer) releaseRec(r *holdRec) {
	s, i, l := r.seg, r.slot, r.lock
	*r = holdRec{}
	c.nHolds--
	s.holdRecs--
	if s.holdLock[i] == l && s.holdCount[i] > 0 {
		s.holdCount[i]--
		if s.holdCount[i] == 0 {
			s.holdLock[i] = 0
			if s.joined && s.ctl != nil && !(s == c.seg && c.phase == broken) {
				_ = guard(func() { s.e.holdMask.And(^(uint32(1) << i)) })
			}
		}
	}
	if s.holdRecs == 0 && s != c.seg && s != c.old {
		for k, o := range c.kept {
			if o == s {
				c.kept = append(c.kept[:k], c.kept[k+1:]...)
				s.release()
				break
			}
		}
	}
}

// dropSeg releases a generation the consumer has left, unless holds are
// still out on it: then it stays mapped until the last is released.
func (c *Consumer) dropSeg(s *cseg) {
	if s.holdRecs > 0 {
		c.kept = append(c.kept, s)
		return
	}
	s.release()
}

// dropHolds forgets every hold (Close: leaving the entry clears its
// hold_mask) and releases the generations kept for them.
func (c *Consumer) dropHolds() {
	for i := range c.holds {
		if c.holds[i].serial != 0 {
			c.holds[i].seg.holdRecs--
			c.holds[i] = holdRec{}
		}
	}
	c.nHolds = 0
	for _, s := range c.kept {
		s.release()
	}
	c.kept = nil
}
