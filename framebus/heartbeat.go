package framebus

import (
	"fmt"
	"time"
)

// The producer's background goroutine, once per heartbeat interval: it
// refreshes heartbeat_ns, reclaims the entries of dead consumers, keeps its
// lock file, and notices a segment damaged from outside (truncated, its name
// removed or given to another file, a fixed header field rewritten), which
// it replaces by a new generation at once, a slot lent out by Begin or not
// (PROTOCOL.md sections 2 and 6). What it did is a ProducerEvent.

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
	damage := p.beatSegment(s)
	if damage == nil || damage.What != "truncated" {
		// A removed name says more than the RETIRED state `rm --force`
		// left in the file.
		if info, err := lstatPath(p.path); err == nil && !info.exists {
			damage = &DamageError{What: "name removed", Path: p.path}
		} else if err == nil && info.id != s.id {
			damage = &DamageError{What: "name given to another file", Path: p.path}
		}
	}
	p.mu.Unlock()
	if err := p.keepLock(); err != nil {
		// Another process holds the lock file now at our path: the name is
		// no longer ours, and we do not fight for it.
		p.lastErr.Store(&err)
		return
	}
	if damage == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seg != s || p.closed {
		return // Begin replaced it meanwhile (the request is served), or Close ended it
	}
	if damage.broken() {
		_ = guard(func() { s.state.Store(StateBroken) })
	}
	p.needRegen.Store(true)
	// Publish the new generation now, even while a slot is lent out: the
	// source may not deliver its next frame for a long time (a pipe, a
	// WHIP publisher not there yet), and consumers must not find a damaged
	// bus meanwhile. The lent slot stays mapped in the old generation; its
	// Commit carries the frame over (commit.go, moveHeld). One that cannot
	// be made is tried again at the next beat.
	p.regenTried = 0
	p.regenWhy = damage
	_ = p.replaceIfNeeded()
}

// DamageError says what the producer's heartbeat found wrong with its
// segment, the reason of the new generation it published (ProducerEvent).
type DamageError struct {
	What  string // "truncated", "name removed", "name given to another file", "header field changed", "write faulted"
	Path  string
	Field string // the header field that changed (What "header field changed")
	Got   uint64 // its value in the file, or the file's size (What "truncated")
	Want  uint64 // the producer's own value, or total_size
}

func (e *DamageError) Error() string {
	switch {
	case e.Field != "":
		return fmt.Sprintf("segment %s: header field %s is %d (%#x), the producer wrote %d (%#x)", e.Path, e.Field, e.Got, e.Got, e.Want, e.Want)
	case e.What == "truncated":
		return fmt.Sprintf("segment %s truncated to %d bytes of %d", e.Path, e.Got, e.Want)
	}
	return fmt.Sprintf("segment %s: %s", e.Path, e.What)
}

// Unwrap: a damaged segment is a corrupt one.
func (e *DamageError) Unwrap() error { return ErrCorrupt }

// broken says whether the damaged file itself is marked BROKEN (its name
// merely removed or reused, it is only RETIRED).
func (e *DamageError) broken() bool {
	return e.What != "name removed" && e.What != "name given to another file"
}

// headerField is one fixed field of the header, as the heartbeat compares it.
type headerField struct {
	name string
	off  uint64
	size int // 2, 4 or 8 bytes
}

// fixedFields are the header fields a producer writes once per generation
// (PROTOCOL.md sections 3.1 and 3.2, and the lease of holds). state is compared apart: it must be
// READY while the producer publishes.
var fixedFields = []headerField{
	{"magic", offMagic, 4}, {"abi_version", offABIVersion, 2}, {"header_size", offHeaderSize, 2},
	{"flags", offFlags, 4}, {"total_size", offTotalSize, 8}, {"generation", offGeneration, 8},
	{"payload_offset", offPayloadOffset, 8}, {"payload_size", offPayloadSize, 8},
	{"producer_pid", offProducerPID, 4}, {"slot_count", offSlotCount, 4}, {"slot_stride", offSlotStride, 8},
	{"slot_capacity", offSlotCapacity, 8}, {"consumer_capacity", offConsumerCapacity, 4},
	{"heartbeat_interval_ms", offHeartbeatIntervalMS, 4}, {"width", offWidth, 4}, {"height", offHeight, 4},
	{"pixel_format", offPixelFormat, 4}, {"plane_count", offPlaneCount, 4},
	{"plane_stride[0]", offPlaneStride, 4}, {"plane_stride[1]", offPlaneStride + 4, 4},
	{"plane_stride[2]", offPlaneStride + 8, 4}, {"plane_stride[3]", offPlaneStride + 12, 4},
	{"plane_offset[0]", offPlaneOffset, 4}, {"plane_offset[1]", offPlaneOffset + 4, 4},
	{"plane_offset[2]", offPlaneOffset + 8, 4}, {"plane_offset[3]", offPlaneOffset + 12, 4},
	{"fps_num", offFPSNum, 4}, {"fps_den", offFPSDen, 4},
	{"slot_table_offset", offSlotTableOffset, 8}, {"consumer_table_offset", offConsumerTableOffset, 8},
	{"slot_desc_size", offSlotDescSize, 4}, {"consumer_entry_size", offConsumerEntrySize, 4},
	{"created_ns", offCreatedNS, 8}, {"producer_pidns", offProducerPIDNS, 8}, {"hold_max_ns", offHoldMaxNS, 8},
}

// load reads the field in a mapped header m, atomically as the words other
// processes may write (abi_version and header_size share one aligned
// 32-bit word).
func (f headerField) load(m []byte) uint64 {
	switch f.size {
	case 8:
		return u64At(m, f.off).Load()
	case 4:
		return uint64(u32At(m, f.off).Load())
	}
	w := u32At(m, f.off&^3).Load()
	return uint64(w>>(8*(f.off&3))) & 0xffff
}

// of reads the field in an encoded header b of our own.
func (f headerField) of(b []byte) uint64 {
	switch f.size {
	case 8:
		return le.Uint64(b[f.off:])
	case 4:
		return uint64(le.Uint32(b[f.off:]))
	}
	return uint64(le.Uint16(b[f.off:]))
}

// beatSegment stores the heartbeat and reclaims dead consumers in s. It
// reports what is wrong with s, nil when nothing is: truncated (touching
// the mapping could fault), a fixed header field that is not what the
// producer wrote (truncated and grown back reads zeros; a scribbler's
// value; either way new consumers would refuse the bus or misread it), or
// a state that is not READY. Called with p.mu held.
func (p *Producer) beatSegment(s *pseg) (damage *DamageError) {
	if size, err := s.f.size(); err != nil || uint64(size) < s.g.total {
		return &DamageError{What: "truncated", Path: p.path, Got: uint64(max(size, 0)), Want: s.g.total}
	}
	if s.want == nil {
		s.want = make([]byte, HeaderSize)
		encodeHeader(s.want, &s.h)
	}
	if guard(func() {
		for _, f := range fixedFields {
			if got, want := f.load(s.mem), f.of(s.want); got != want {
				damage = &DamageError{What: "header field changed", Path: p.path, Field: f.name, Got: got, Want: want}
				return
			}
		}
		if st := s.state.Load(); st != StateReady {
			damage = &DamageError{What: "header field changed", Path: p.path, Field: "state", Got: uint64(st), Want: StateReady}
			return
		}
		s.heartbeat.Store(uint64(Now()))
		s.reclaim()
		s.countIgnoredHolds()
	}) != nil {
		// truncated between the size check and the loads
		return &DamageError{What: "truncated", Path: p.path, Want: s.g.total}
	}
	return damage
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
			e.pidns.Store(0)    // amendment 8 (creation and liveness across PID namespaces): under the exclusive lock, before anyone joins
			e.holdMask.Store(0) // amendment 10: a dead consumer's holds come back
			s.reclaimed.Add(1)
		}
		s.f.unlockEntry(e.index, e.off)
	}
}
