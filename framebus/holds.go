package framebus

import "math/bits"

// Holds, the producer's side (PROTOCOL.md amendment 10): the choice of the
// back slot around the slots consumers hold (C1-C4, replacing step 1 of the
// commit), taking a hold back (the lease, forged words), and the
// heartbeat's count of hold bits nobody honours. The consumer's side
// (Frame.Hold, the grant G1-G5, Release) is in hold.go.

// holdSets is C1: the hold bits of every entry in state 2, below slot_count.
// all is their union; held the finished holds; fin the finished holds
// including those whose lease ran out (held is fin without them).
//
// An entry with HoldPending set has one grant in progress and may have
// finished holds besides: its bits are those holds and the slot being
// granted. The grant is always for the newest frame that consumer has read
// (a consumer reads frames in order and holds the one it has just read), so
// the newest of its bits by frame_seq is the one in progress (pending: it
// may be taken, the grant fails at G5), the others are finished holds. The
// amendment's text puts every bit of a pending entry in pending, which lets
// the producer take a finished hold of a consumer that is granting another
// one (see docs/DESIGN.md, holds); this reading keeps C2's promise that a
// slot outside the finished holds always exists (they are at most the cap).
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
		if m&HoldPending != 0 {
			b &^= s.newest(b)
		}
		fin |= b
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

// newest is the bit of b whose slot holds the newest frame (0 for b == 0).
func (s *pseg) newest(b uint32) uint32 {
	var best uint32
	var seq uint64
	for m := b; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		if best == 0 || s.slotSeq[i] > seq {
			best, seq = 1<<i, s.slotSeq[i]
		}
	}
	return best
}

// chooseBack is C1-C4 (and step 2, the odd lock): the back slot, made odd,
// never a finished hold unless its lease ran out or forged words leave no
// other (then it is taken back first). Without any hold bit on the bus it is
// (active + 1) % slot_count, as without holds. It allocates nothing and
// loops slot_count + 1 times at most.
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
	for try := uint32(0); try <= n; try++ {
		all, held, _ := s.holdSets(now) // C1
		b, ok := pickBack(active, n, all|excluded, held|excluded)
		if !ok {
			break
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
	// Only forged words get here: every slot but the active one is held.
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
	slotBits := uint32(1)<<s.g.slotCount - 1
	for i := range s.entries {
		e := &s.entries[i]
		m := e.holdMask.Load()
		if m&bit == 0 || e.state.Load() != EntryActive {
			continue
		}
		if m&HoldPending != 0 && s.newest(m&slotBits) == bit {
			continue // a grant in progress, not a hold: it fails at G5
		}
		e.holdMask.And(^bit)
		e.holdsTakenBack.Add(1)
		s.holdsTakenBack.Add(1)
	}
}

// countIgnoredHolds is the heartbeat's scan: hold bits of entries not in
// state 2, and bits at or past slot_count (HoldPending aside), are ignored
// by both sides; each one seen adds 1 to holds_ignored.
func (s *pseg) countIgnoredHolds() {
	if s.h.Flags&FlagHolds == 0 {
		return
	}
	slotBits := uint32(1)<<s.g.slotCount - 1
	var n uint64
	for i := range s.entries {
		e := &s.entries[i]
		m := e.holdMask.Load() &^ HoldPending
		if m == 0 {
			continue
		}
		if e.state.Load() != EntryActive {
			n += uint64(bits.OnesCount32(m))
		} else {
			n += uint64(bits.OnesCount32(m &^ slotBits))
		}
	}
	if n > 0 {
		s.holdsIgnored.Add(n)
	}
}
