package framebus

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// What a consumer does about the producer (PROTOCOL.md sections 2 and 5):
// on every wait timeout it keeps its entry, and looks at the state, the
// owner's lock, the heartbeat and the file behind the name; a new file is a
// new generation, which it follows (joins, and adopts with the gap
// accounting of amendment 1, gap accounting across a generation
// change); a file that faulted under it (truncated) is
// given up for the producer's next generation.

// check is the look of every wait timeout. followed: the consumer is on a
// new generation now (read again).
func (c *Consumer) check() (followed bool, err error) {
	if err := c.keepEntry(); err != nil {
		return false, err
	}
	s := c.seg
	info, err := lstatPath(c.path)
	if err != nil {
		return false, err
	}
	if info.exists && info.id != s.id {
		return c.follow()
	}
	st := s.state.Load()
	alive := c.ownerAlive()
	if st == StateRetired || st == StateBroken || !info.exists {
		if alive {
			return false, nil // the producer is replacing the segment: wait for it
		}
		if st == StateRetired {
			return false, ErrRetired
		}
	}
	if alive {
		c.resync()
	}
	return false, c.judge(alive)
}

// resync takes the header's last_seq as the consumer's own when its own is
// ahead of it while the active slot holds an intact frame of exactly that
// number (PROTOCOL.md amendment 9): a forged frame_seq or last_seq moved it
// ahead, and without this every real frame would be "nothing new" for good.
// Called at each check, while the producer is alive.
func (c *Consumer) resync() {
	s := c.seg
	last := s.lastSeq.Load()
	if last >= c.lastSeq {
		return
	}
	a := s.active.Load()
	if a >= s.h.SlotCount {
		return
	}
	sl := &s.slots[a]
	l1 := sl.lock.Load()
	seq := sl.seq.Load()
	loadFence()
	if l1&1 != 0 || sl.lock.Load() != l1 || seq != last {
		return
	}
	c.lastRefusal = fmt.Errorf("%w: this consumer's last frame %d is ahead of the bus's last_seq %d: re-synchronised", ErrCorrupt, c.lastSeq, last)
	c.resyncs++
	c.lastSeq = last
	s.e.lastSeq.Store(last)
	c.spin = spinState{n: c.spin.n}
}

// keepEntry joins again when the consumer's entry was taken from it (it
// must not be while we hold its lock, but a hostile peer can write
// anything).
func (c *Consumer) keepEntry() error {
	s := c.seg
	if s.e.state.Load() == EntryActive && s.e.token.Load() == c.token {
		return nil
	}
	s.drop()
	if err := s.join(c.token); err != nil {
		return err
	}
	s.e.lastSeq.Store(c.lastSeq)
	return nil
}

// judge says, once per episode, that a producer is gone (its lock is free)
// or stalled (alive, its heartbeat older than 3 intervals).
func (c *Consumer) judge(alive bool) error {
	if !alive {
		if c.verdict != verdictGone {
			c.verdict = verdictGone
			return ErrProducerGone
		}
		return nil
	}
	if Now()-int64(c.seg.heartbeat.Load()) > 3*int64(c.seg.hb) {
		if c.verdict != verdictStalled {
			c.verdict = verdictStalled
			return ErrStalled
		}
		return nil
	}
	c.verdict = verdictNone
	return nil
}

// ownerAlive tests the producer's lock on byte 0 of the lock file
// (F_OFD_GETLK, taking nothing).
func (c *Consumer) ownerAlive() bool {
	if c.lockF == nil {
		c.openLock()
	} else if same, err := c.lockF.isAt(c.lockPath); err == nil && !same {
		if info, _ := lstatPath(c.lockPath); info.exists {
			c.openLock() // a new producer made a new lock file
		}
	}
	if c.lockF == nil {
		return false
	}
	held, err := c.lockF.ownerHeld()
	return err == nil && held
}

// follow joins the generation now behind the name (none yet, or not ready:
// not followed, no error).
func (c *Consumer) follow() (bool, error) {
	seg, err := c.joinPath()
	if errors.Is(err, ErrNotFound) || errors.Is(err, errNotReady) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.seg.leave(c.token)
	c.adopt(seg)
	return true, nil
}

// recoverBroken waits, one heartbeat interval at most, for a new generation
// to replace a segment that faulted under us, and joins it. It touches
// nothing of the broken mapping: our entry there cannot be touched, and its
// lock goes with the descriptor.
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
			seg, err := c.joinPath()
			if err == nil {
				c.phase = attached
				c.adopt(seg)
				return nil
			}
			if errors.Is(err, ErrTableFull) {
				return err
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

// adopt makes seg, a joined new generation, the consumer's segment.
func (c *Consumer) adopt(seg *cseg) {
	if c.old != nil { // a second change within one call
		c.dropSeg(c.old)
	}
	c.old = c.seg // released at the next call: the caller may hold views into it
	c.seg = seg
	// Gap accounting in the new generation (PROTOCOL.md section 2, as
	// amended in docs/PROTOCOL.md): when the producer continued the frame
	// numbers, keep our own last_seq, so frames committed before we joined
	// count as dropped instead of vanishing; when it restarted them, restart
	// at the generation's last_seq.
	if joined := seg.e.lastSeq.Load(); joined >= c.lastSeq {
		seg.e.lastSeq.Store(c.lastSeq)
	} else {
		c.lastSeq = joined
	}
	c.genChanged = true
	c.verdict = verdictNone
	c.openLock()
}
