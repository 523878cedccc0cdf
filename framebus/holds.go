package framebus

import "math/bits"

// Holds, the producer's side (PROTOCOL.md amendment 10): the choice of the
// back slot around the slots consumers hold (C1-C4, replacing step 1 of the
// commit), taking a hold back (the lease, forged words), and the
// heartbeat's count of hold bits nobody honours. The consumer's side
// (Frame.Hold, the grant G1-G5, Release) is in hold.go.

// holdSets is C1: the hold bits of every entry in state 2, below slot_count.
// all is their union; held the finished holds (bits whose pending bit,
// HoldPendingShift higher, is clear: a grant in progress may be taken, it
// fails at G5); fin the finished holds including those whose lease ran out
// (held is fin without them).
func (s *pseg) holdSets(now int64) (all, held, fin uint32) {
	n := s.g.slotCount
	slotBits := uint32(1)<<n - 1
	for i := range s.entries {
		e := &s.entries[i]
		m := e.holdMask.Load()
		if m == 0 || e.state.Load() != EntryActive {
			continue
		}
		b := m & slotBits
		all |= b
		fin |= b &^ (m >> HoldPendingShift)
	}
	held = fin
	if s.holdMax > 0 && fin != 0 {
		for m := fin; m != 0; m &= m - 1 {
			i := bits.TrailingZeros32(m)
			if now-s.slotCommit[i] > s.holdMax {
				// The lease ran out: the slot is taken back when its turn
				// comes, as if it were not held.
				held &^= 1 << i
				all &^= 1 << i
			}
		}
	}
	return all, held, fin
}

// chooseBack is C1-C4 (and step 2, the odd lock): the back slot, made odd,
// never a finished hold unless its lease ran out or no scan finds another
// (then it is taken back first). Without any hold bit on the bus it is
// (active + 1) % slot_count, as without holds. A slot C4 found held is left
// out of the next scans; when that leaves no slot, the scan starts afresh
// (the grant may have withdrawn at G5 meanwhile, and C1's reads of the
// entries one by one can see a released hold beside a new one). It
// allocates nothing and scans 2 * slot_count times at most: only forged
// words, or holds that change during every scan, exhaust that.
func (s *pseg) chooseBack() uint32 {
	n := s.g.slotCount
	active := s.active.Load()
	var now int64
	if s.holdMax > 0 {
		now = Now()
	}
	if faultsOn {
		fault(stepBeforeOdd)
	}
	var excluded uint32 // slots C4 found held meanwhile
	for try := uint32(0); try < 2*n; try++ {
		all, held, _ := s.holdSets(now) // C1
		b, ok := pickBack(active, n, all|excluded, held|excluded)
		if !ok {
			excluded = 0 // start afresh
			continue
		}
		sl := &s.slots[b]
		l := sl.lock.Load()
		sl.lock.Store(l | 1)            // C3 = step 2, sequentially consistent
		_, held, fin := s.holdSets(now) // C4
		if held&(1<<b) != 0 {
			sl.lock.Store(l) // a grant finished meanwhile: no data was written
			excluded |= 1 << b
			continue
		}
		if fin&(1<<b) != 0 {
			s.takeBack(b) // its lease ran out
		}
		storeFence()
		return b
	}
	// Every scan found every slot but the active one held: forged words,
	// or holds changing all the time. Never wait: take one back.
	b := (active + 1) % n
	sl := &s.slots[b]
	sl.lock.Store(sl.lock.Load() | 1)
	s.takeBack(b)
	storeFence()
	return b
}

// pickBack is C2: the first of active+1, active+2, ... (mod n, never active)
// in neither all nor held, else the first not in held.
func pickBack(active, n, all, held uint32) (uint32, bool) {
	if all == 0 {
		return (active + 1) % n, true // the bus without holds: as before
	}
	for pass := 0; pass < 2; pass++ {
		avoid := all
		if pass == 1 {
			avoid = held
		}
		for k := uint32(1); k < n; k++ {
			b := (active + k) % n
			if b != active%n && avoid&(1<<b) == 0 {
				return b, true
			}
		}
	}
	return 0, false
}

// takeBack clears slot b's bit in every entry whose finished hold it is,
// counting each in the entry and the header. The slot's lock is odd
// already: the holders' Valid says false from now on.
func (s *pseg) takeBack(b uint32) {
	bit := uint32(1) << b
	for i := range s.entries {
		e := &s.entries[i]
		m := e.holdMask.Load()
		if m&bit == 0 || e.state.Load() != EntryActive {
			continue
		}
		if m&(bit<<HoldPendingShift) != 0 {
			continue // a grant in progress, not a hold: it fails at G5
		}
		e.holdMask.And(^bit)
		e.holdsTakenBack.Add(1)
		s.holdsTakenBack.Add(1)
	}
}

// countIgnoredHolds is the heartbeat's scan: hold bits of entries not in
// state 2, bits at or past slot_count, and pending bits without their
// slot's bit are ignored by both sides; each one seen adds 1 to
// holds_ignored.
func (s *pseg) countIgnoredHolds() {
	if s.h.Flags&FlagHolds == 0 {
		return
	}
	slotBits := uint32(1)<<s.g.slotCount - 1
	var n uint64
	for i := range s.entries {
		e := &s.entries[i]
		m := e.holdMask.Load()
		if m == 0 {
			continue
		}
		held := m & 0xff
		if e.state.Load() != EntryActive {
			n += uint64(bits.OnesCount32(held))
		} else {
			n += uint64(bits.OnesCount32(held&^slotBits)) + uint64(bits.OnesCount32((m>>HoldPendingShift)&0xff&^held))
			n += uint64(bits.OnesCount32(m >> (2 * HoldPendingShift)))
		}
	}
	if n > 0 {
		s.holdsIgnored.Add(n)
	}
}
