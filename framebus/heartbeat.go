package framebus

import "time"

// The producer's background goroutine, once per heartbeat interval: it
// refreshes heartbeat_ns, reclaims the entries of dead consumers, keeps its
// lock file, and notices a segment removed or truncated from outside, which
// it replaces by a new generation (PROTOCOL.md sections 2 and 6).

// heartbeatLoop runs beat every interval until Close.
func (p *Producer) heartbeatLoop() {
	defer close(p.done)
	t := time.NewTicker(p.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.beat()
	}
}

func (p *Producer) beat() {
	p.mu.Lock()
	s := p.seg
	broken := p.beatSegment(s)
	info, err := lstatPath(p.path)
	moved := err == nil && (!info.exists || info.id != s.id)
	p.mu.Unlock()
	if err := p.keepLock(); err != nil {
		// Another process holds the lock file now at our path: the name is
		// no longer ours, and we do not fight for it.
		p.lastErr.Store(&err)
		return
	}
	if !broken && !moved {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seg != s || p.closed {
		return // Begin replaced it meanwhile (the request is served), or Close ended it
	}
	if broken {
		_ = guard(func() { s.state.Store(StateBroken) })
	}
	p.needRegen.Store(true)
	// Publish the new generation now unless a frame is being written; then
	// Begin does it. One that cannot be made is tried again at the next beat.
	if !p.held {
		p.regenTried = 0
		_ = p.replaceIfNeeded()
	}
}

// beatSegment stores the heartbeat and reclaims dead consumers in s. It
// reports whether s is broken: truncated (touching the mapping could fault),
// or truncated and grown back (its stable prefix reads zeros, and new
// consumers would refuse the bus). Called with p.mu held.
func (p *Producer) beatSegment(s *pseg) (broken bool) {
	if size, err := s.f.size(); err != nil || uint64(size) < s.g.total {
		return true
	}
	if guard(func() {
		if u32At(s.mem, offMagic).Load() != Magic || u64At(s.mem, offTotalSize).Load() != s.g.total ||
			u64At(s.mem, offGeneration).Load() != s.h.Generation {
			broken = true
			return
		}
		s.heartbeat.Store(uint64(Now()))
		s.reclaim()
		s.countIgnoredHolds()
	}) != nil {
		broken = true // truncated between the size check and the stores
	}
	return broken
}

// keepLock re-creates and re-takes the lock file when it was removed from
// outside (systemd's RemoveIPC removes every file of the user in /dev/shm):
// without it, consumers and tools that open the lock path find no owner, and
// a second producer could take the name of a live one. It fails (ErrBusy)
// when another process holds the lock file now at the path. Called by the
// heartbeat goroutine, the only user of p.lock until Close stops it.
func (p *Producer) keepLock() error {
	if same, err := p.lock.isAt(p.lockPath); err != nil || same {
		return err
	}
	old := p.lock
	if err := p.takeOwnership(); err != nil { // sets p.lock only on success
		return err
	}
	old.unlockOwner()
	old.close()
	return nil
}

// reclaim takes back the entries of dead consumers: only an entry whose
// liveness lock can be taken exclusively is freed (PROTOCOL.md section 2).
func (s *pseg) reclaim() {
	for i := range s.entries {
		e := &s.entries[i]
		st := e.state.Load()
		if st != EntryClaiming && st != EntryActive {
			continue
		}
		ok, err := s.f.lockEntry(e.index, e.off, true)
		if err != nil || !ok {
			continue
		}
		if e.state.CompareAndSwap(st, EntryFree) {
			e.pidns.Store(0)    // amendment 8: under the exclusive lock, before anyone joins
			e.holdMask.Store(0) // amendment 10: a dead consumer's holds come back
			s.reclaimed.Add(1)
		}
		s.f.unlockEntry(e.index, e.off)
	}
}
