package framebus

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ProducerOptions configures Create. The zero value is usable but for the
// frame format, whose width and height must be given.
type ProducerOptions struct {
	Format Format // width, height, pixel format (default RGBA), planes, fps

	Slots     int           // frame slots, 2 (double buffering, the default) to 8
	Consumers int           // consumer table entries, default 32, at most 1024
	Heartbeat time.Duration // heartbeat interval, default 100 ms, 1 ms to 60 s

	Mode  fs.FileMode // file mode of the segment and lock file, default 0600; never world-writable
	Group string      // group name or id for the files (with Mode 0660), default none

	Checksum bool   // carry a CRC-32C of every frame
	Dir      string // bus directory, default $FRAMEBUS_DIR or /dev/shm

	// PerEntryWake leaves out the shared wake word of PROTOCOL.md amendment
	// 7: every sleeping consumer then costs Commit its own FUTEX_WAKE, as in
	// section 5 as written. For comparisons; the default is cheaper.
	PerEntryWake bool

	// HoldMax is the lease of a consumer's hold (Frame.Hold, PROTOCOL.md
	// amendment 10): a held frame older than HoldMax (by its commit time)
	// may be taken back when the producer needs its slot, and the holder's
	// Hold.Valid turns false. 0 (the default) is no lease: a hold lasts
	// until it is released or its consumer dies. No lease is needed to keep
	// the stream going, since at most Slots-2 slots can be held at once
	// (the cap: the producer always has a slot that is neither the newest
	// frame nor held), and a lease would silently invalidate zero-copy
	// views a slow consumer still reads: with none, a hold means what it
	// says. Set it when a stopped or stuck holder must not keep its slots
	// (and so the consumers' depth of history) for ever.
	HoldMax time.Duration
}

func (o *ProducerOptions) complete() error {
	f, err := o.Format.Complete()
	if err != nil {
		return err
	}
	o.Format = f
	if o.Slots == 0 {
		o.Slots = MinSlots
	}
	if o.Slots < MinSlots || o.Slots > MaxSlots {
		return fmt.Errorf("%w: %d slots, want %d-%d", ErrBadOptions, o.Slots, MinSlots, MaxSlots)
	}
	if o.Consumers == 0 {
		o.Consumers = DefaultConsumers
	}
	if o.Consumers < 1 || o.Consumers > MaxConsumers {
		return fmt.Errorf("%w: %d consumers, want 1-%d", ErrBadOptions, o.Consumers, MaxConsumers)
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeatMS * time.Millisecond
	}
	if o.Heartbeat < time.Millisecond || o.Heartbeat > time.Minute {
		return fmt.Errorf("%w: heartbeat %v, want 1ms-60s", ErrBadOptions, o.Heartbeat)
	}
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if o.Mode&^0o777 != 0 || o.Mode&0o002 != 0 {
		return fmt.Errorf("%w: mode %04o: must be a permission mode that is not world-writable", ErrBadOptions, o.Mode)
	}
	if o.Mode&0o600 != 0o600 {
		return fmt.Errorf("%w: mode %04o: the owner needs read and write", ErrBadOptions, o.Mode)
	}
	if o.HoldMax < 0 {
		return fmt.Errorf("%w: hold lease %v, want >= 0", ErrBadOptions, o.HoldMax)
	}
	if o.Format.FrameSize > math.MaxInt32*2 {
		return fmt.Errorf("%w: frame of %d bytes is too large", ErrBadOptions, o.Format.FrameSize)
	}
	return nil
}

// Meta is what a producer says about a frame at commit.
type Meta struct {
	CaptureNS int64  // when the source produced the frame (Now()'s clock); 0 = commit time
	UserMeta  []byte // up to 64 bytes carried with the frame
}

// Producer owns a bus: it writes frames into the back slot, flips the active
// index and wakes the consumers (PROTOCOL.md section 4; commit.go). A
// background goroutine keeps its heartbeat, reclaims dead consumers' entries
// and replaces a segment removed, truncated or rewritten from outside, a
// slot lent out by Begin or not (heartbeat.go); each replacement is a
// ProducerEvent on Events, for the caller to log.
//
// Begin, Commit, Abort, Fill, Publish and Reconfigure are for one goroutine
// at a time; Close, Stats, AddSourceDrops, Generation and Err may be called
// from any goroutine, also while a slot is lent out by Begin.
type Producer struct {
	name, dir, path, lockPath string
	opts                      ProducerOptions
	gid                       int

	lock        *sysFile // byte 0 held for the producer's life
	lockCreated bool     // takeOwnership created the lock file (disown removes it)

	// mu guards what follows. It is held inside a call only, never from
	// Begin to Commit: a slot lent out is the held/heldSeg state instead.
	mu      sync.Mutex
	seg     *pseg
	held    bool   // Begin lent the back slot out
	back    uint32 // its index
	heldSeg *pseg  // the generation it belongs to
	closed  bool
	seq     uint64 // the last sequence number published (ours, not read back from the segment)

	needRegen    atomic.Bool  // the segment is truncated or its name gone: the next Begin (or beat) replaces it
	regenTried   int64        // Now() of the last attempt that could not (under mu)
	regenWhy     *DamageError // what the heartbeat found (under mu); nil: a write faulted
	regenFailing bool         // the replacement failed, and said so (under mu)
	lastErr      atomic.Pointer[error]
	events       chan ProducerEvent
	eventsLost   atomic.Uint64

	stop chan struct{}
	done chan struct{}

	table *crc32.Table
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Create makes a new bus, or takes over the name of a dead producer's bus
// (its generation + 1, its frame numbers continued), and starts the
// heartbeat. A second producer on a live name gets an error wrapping ErrBusy
// that names the owner's pid.
func Create(name string, opts ProducerOptions) (*Producer, error) {
	return CreateContext(context.Background(), name, opts)
}

// CreateContext is Create with a context that can interrupt the creation:
// building a large segment (pre-faulting every page) takes a while, and a
// signal meanwhile must leave nothing behind. When ctx ends first, the
// temporary file and a lock file this call made are removed and the
// context's error is returned.
func CreateContext(ctx context.Context, name string, opts ProducerOptions) (*Producer, error) {
	p, err := create(ctx, name, opts)
	return p, wrap("create", name, err)
}

func create(ctx context.Context, name string, opts ProducerOptions) (*Producer, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := opts.complete(); err != nil {
		return nil, err
	}
	gid, err := groupID(opts.Group)
	if err != nil {
		return nil, err
	}
	dir := Dir(opts.Dir)
	p := &Producer{
		name: name, dir: dir, path: SegmentPath(dir, name), lockPath: LockPath(dir, name),
		opts: opts, gid: gid, table: castagnoli, events: make(chan ProducerEvent, eventBuffer),
	}
	if err := p.takeOwnership(); err != nil {
		return nil, err
	}
	// The segment path must be ours to replace: no symlink, no other user's file.
	old, err := p.previous()
	if err != nil {
		p.disown()
		return nil, err
	}
	prevGen, prevSeq := uint64(0), uint64(0)
	if old != nil {
		prevGen, prevSeq = old.h.Generation, old.h.LastSeq
	}
	seg, err := p.newGeneration(ctx, opts.Format, prevGen+1, prevSeq)
	if err != nil {
		if old != nil {
			old.release()
		}
		p.disown()
		return nil, err
	}
	p.seg, p.seq = seg, prevSeq
	if old != nil {
		_ = guard(old.retire) // a fault in the old file's retire is not ours
		old.release()
	}
	p.stop = make(chan struct{})
	p.done = make(chan struct{})
	go p.heartbeatLoop()
	return p, nil
}

// takeOwnership opens the lock file and takes its byte 0 (PROTOCOL.md section 2).
func (p *Producer) takeOwnership() error {
	for try := 0; try < 10; try++ {
		lf, created, err := openLockFile(p.lockPath, p.opts.Mode, p.gid)
		if err != nil {
			return err
		}
		ok, err := lf.lockOwner()
		if err != nil {
			lf.close()
			return err
		}
		if !ok {
			// Byte 0 is locked. A producer holds a write lock; a read lock
			// there is somebody who can read the lock file blocking the
			// name (SECURITY.md): this lock file is given up and a new one
			// made, which consumers follow as they follow a restart.
			if held, err := lf.ownerHeld(); err == nil && !held && try < 9 {
				if same, _ := lf.isAt(p.lockPath); same {
					unlinkFile(p.lockPath)
				}
				lf.close()
				continue
			}
			lf.close()
			return ownerBusy(p.path)
		}
		// The lock must be on the file that is at the path now (a closing
		// producer or gc may have unlinked it between our open and lock).
		if same, err := lf.isAt(p.lockPath); err == nil && same {
			p.lock, p.lockCreated = lf, created
			return nil
		}
		lf.close()
	}
	return fmt.Errorf("%w: lock file %s keeps changing", ErrBusy, p.lockPath)
}

// disown undoes takeOwnership after a failed Create: with no segment at the
// name, or a lock file this Create made, the lock file is unlinked while
// byte 0 is still held (so nothing is left behind), then the lock is
// released.
func (p *Producer) disown() {
	if info, _ := lstatPath(p.path); !info.exists || p.lockCreated {
		p.unlinkLock()
	}
	p.lock.unlockOwner()
	p.lock.close()
}

// unlinkLock removes the lock file if it is still the one we hold (byte 0
// held: PROTOCOL.md section 2).
func (p *Producer) unlinkLock() {
	if same, _ := p.lock.isAt(p.lockPath); same {
		unlinkFile(p.lockPath)
	}
}

// ownerBusy is the BusyError of the live producer of the segment at path:
// its pid and PID namespace as the segment records them (0 if it cannot be
// read).
func ownerBusy(path string) *BusyError {
	f, h, err := openValid(path, false)
	if err != nil {
		return &BusyError{}
	}
	f.close()
	e := &BusyError{PID: h.ProducerPID}
	if ns := h.ProducerPIDNS; ns != 0 && ns != pidNamespace() {
		e.PIDNS = ns
	}
	return e
}

// openValid opens the segment at path and validates its header.
func openValid(path string, write bool) (*sysFile, header, error) {
	f, err := openExisting(path, write)
	if err != nil {
		return nil, header{}, err
	}
	var b [HeaderSize]byte
	n, err := f.preadFull(b[:], 0)
	size, serr := f.size()
	if err == nil {
		err = serr
	}
	var h header
	if err == nil {
		h, err = validateSegment(b[:n], size)
	}
	if err != nil {
		f.close()
		return nil, header{}, err
	}
	return f, h, nil
}

// previous opens the segment a dead producer left at the path, if any, so
// that its generation and frame numbers are continued and it can be retired.
// Anything at the path that is not a regular file of ours is refused;
// unreadable or corrupt leftovers are simply replaced (by generation 1).
func (p *Producer) previous() (*pseg, error) {
	info, err := lstatPath(p.path)
	if err != nil || !info.exists {
		return nil, err
	}
	if info.symlink || !info.regular {
		return nil, fmt.Errorf("%w: %s is not a regular file (refusing to replace it)", ErrUnsafePath, p.path)
	}
	if euid := uint32(geteuid()); info.uid != euid {
		return nil, &PermissionError{Path: p.path, Mode: info.mode, UID: info.uid, Err: errors.New("segment belongs to another user")}
	}
	f, h, err := openValid(p.path, true)
	if err != nil {
		return nil, nil
	}
	s, err := openOldSegment(f, h)
	if err != nil {
		f.close()
		return nil, nil
	}
	s.h.LastSeq = s.lastSeq.Load()
	return s, nil
}

// Name returns the bus name.
func (p *Producer) Name() string { return p.name }

// Path returns the segment file's path.
func (p *Producer) Path() string { return p.path }

// Format returns the frame format of the current generation.
func (p *Producer) Format() Format {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.Format
}

// Generation returns the current generation number.
func (p *Producer) Generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seg == nil {
		return 0
	}
	return p.seg.h.Generation
}

// Err returns the last error of the background heartbeat, if any.
func (p *Producer) Err() error {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// ProducerEvent is something the producer did on its own, for the caller
// to log (the package never logs): a generation replaced because the
// heartbeat found the segment damaged from outside or a write into it
// faulted, or the failure to make that replacement (Err).
type ProducerEvent struct {
	Old        uint64 // the generation replaced
	Generation uint64 // the new generation (0 when Err is set)
	Reason     error  // why: a *DamageError (errors.Is ErrCorrupt)
	SlotLent   bool   // Begin had lent a slot out of the old generation: its Commit carries the frame over
	Err        error  // the new generation could not be made (it is tried again every heartbeat interval)
}

func (e ProducerEvent) String() string {
	if e.Err != nil {
		return fmt.Sprintf("generation %d damaged (%v), no new generation yet: %v", e.Old, e.Reason, e.Err)
	}
	return fmt.Sprintf("generation %d replaced by %d: %v", e.Old, e.Generation, e.Reason)
}

// eventBuffer is how many events wait for a reader before more are lost.
const eventBuffer = 16

// Events returns the channel of the producer's events. It is never closed;
// an event that finds it full is lost (EventsLost counts it), so a caller
// that does not read it costs nothing.
func (p *Producer) Events() <-chan ProducerEvent { return p.events }

// EventsLost is how many events found Events' channel full.
func (p *Producer) EventsLost() uint64 { return p.eventsLost.Load() }

// event sends e without waiting.
func (p *Producer) event(e ProducerEvent) {
	select {
	case p.events <- e:
	default:
		p.eventsLost.Add(1)
	}
}

// ProducerStats is a snapshot of the producer's counters.
type ProducerStats struct {
	Generation, LastSeq, FramesPublished, SourceDrops, ConsumersReclaimed uint64
	ActiveConsumers                                                       int

	// Holds (amendment 10), all consumers of the current generation.
	HoldsGranted, HoldsRefused, HoldsTakenBack, HoldsIgnored uint64
}

// Stats reads the producer's counters from the segment.
func (p *Producer) Stats() ProducerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.seg
	if s == nil {
		return ProducerStats{}
	}
	st := ProducerStats{Generation: s.h.Generation}
	_ = guard(func() {
		st.LastSeq = s.lastSeq.Load()
		st.FramesPublished, st.SourceDrops, st.ConsumersReclaimed = s.published.Load(), s.srcDrops.Load(), s.reclaimed.Load()
		st.HoldsGranted, st.HoldsRefused = s.holdsGranted.Load(), s.holdsRefused.Load()
		st.HoldsTakenBack, st.HoldsIgnored = s.holdsTakenBack.Load(), s.holdsIgnored.Load()
		for i := range s.entries {
			if s.entries[i].state.Load() == EntryActive {
				st.ActiveConsumers++
			}
		}
	})
	return st
}

// AddSourceDrops counts frames the source produced that could not be published.
func (p *Producer) AddSourceDrops(n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seg != nil {
		_ = p.guard("add source drops", func() { p.seg.srcDrops.Add(n) })
	}
}

// Close ends the stream cleanly: an end-of-stream frame, state RETIRED, every
// consumer woken, the name and the lock file removed, the lock released.
// Consumers see ErrEndOfStream at once. A slot lent out by Begin is given up
// (Commit then returns ErrProducerClosed); its mapping stays until that
// Commit or Abort, so a goroutine still filling it writes into valid memory.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done // the heartbeat is over: nothing but us touches the segment now
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.seg
	// The end-of-stream frame, RETIRED, the wake; a truncated file cannot
	// take them, and its consumers find the name gone with no owner.
	var err error
	_ = p.guard("close", func() {
		err = p.commitFrame(s, p.beginSlot(s), 0, Meta{}, FrameEndOfStream)
		s.state.Store(StateRetired)
		s.wakeAll()
	})
	if same, _ := s.f.isAt(p.path); same {
		if uerr := unlinkFile(p.path); uerr != nil && err == nil {
			err = uerr
		}
	}
	p.unlinkLock()
	p.lock.unlockOwner()
	p.lock.close()
	if !p.held || p.heldSeg != s {
		s.release()
	} // else the holder's Commit or Abort releases it
	p.seg = nil
	return wrap("close", p.name, err)
}
