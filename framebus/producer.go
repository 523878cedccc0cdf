package framebus

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"runtime/debug"
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
// index and wakes the consumers (PROTOCOL.md section 4). Its methods are not
// safe for concurrent use, except Close, Stats and AddSourceDrops.
type Producer struct {
	name, dir, path, lockPath string
	opts                      ProducerOptions
	gid                       int

	lock        *sysFile // byte 0 held for the producer's life
	lockCreated bool     // takeOwnership created the lock file (disown removes it)

	mu     sync.Mutex // held from Begin to Commit/Abort; excludes generation changes
	held   bool
	back   uint32 // slot index handed out by Begin
	closed bool

	segMu sync.Mutex // guards seg's lifetime against the heartbeat goroutine
	seg   *pseg

	seq       uint64      // the last sequence number published (ours, not read back from the segment); under mu
	needRegen atomic.Bool // the heartbeat found the name removed or the file truncated
	lastErr   atomic.Pointer[error]

	stop chan struct{}
	done chan struct{}

	table *crc32.Table
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pseg is one generation as the producer sees it: the whole file mapped
// read-write.
type pseg struct {
	f   *sysFile
	mem []byte
	id  fileID
	h   header
	g   geometry

	state, active                                       *atomic.Uint32
	lastSeq, published, lastCommit, heartbeat, srcDrops *atomic.Uint64
	reclaimed                                           *atomic.Uint64
	wakeSeq, wakeWaiters                                *atomic.Uint32 // nil without FlagSharedWake
	slots                                               []pslot
	entries                                             []pentry
}

type pslot struct {
	lock                        *atomic.Uint64
	seq, capture, commit, bytes *atomic.Uint64
	checksum, flags, metaLen    *atomic.Uint32
	meta                        []byte
	data                        []byte // slot_capacity bytes
}

type pentry struct {
	off                 uint64
	state, sem, waiters *atomic.Uint32
}

func newPseg(f *sysFile, mem []byte, id fileID, h header, g geometry) *pseg {
	s := &pseg{f: f, mem: mem, id: id, h: h, g: g}
	s.state = u32At(mem, offState)
	s.active = u32At(mem, offActive)
	s.lastSeq = u64At(mem, offLastSeq)
	s.published = u64At(mem, offFramesPublished)
	s.lastCommit = u64At(mem, offLastCommitNS)
	s.heartbeat = u64At(mem, offHeartbeatNS)
	s.srcDrops = u64At(mem, offSourceDrops)
	s.reclaimed = u64At(mem, offConsumersReclaimed)
	if h.Flags&FlagSharedWake != 0 {
		s.wakeSeq, s.wakeWaiters = u32At(mem, offWakeSeq), u32At(mem, offWakeWaiters)
	}
	s.slots = make([]pslot, g.slotCount)
	for i := range s.slots {
		d := g.slotTableOff + uint64(i)*SlotDescSize
		data := g.payloadOff + uint64(i)*g.slotStride
		s.slots[i] = pslot{
			lock: u64At(mem, d+slotLock), seq: u64At(mem, d+slotFrameSeq),
			capture: u64At(mem, d+slotCaptureNS), commit: u64At(mem, d+slotCommitNS),
			bytes: u64At(mem, d+slotBytes), checksum: u32At(mem, d+slotChecksum),
			flags: u32At(mem, d+slotFrameFlags), metaLen: u32At(mem, d+slotUserMetaLen),
			meta: mem[d+slotUserMeta : d+slotUserMeta+UserMetaMax : d+slotUserMeta+UserMetaMax],
			data: mem[data : data+g.slotCapacity : data+g.slotCapacity],
		}
	}
	s.entries = make([]pentry, g.consumerCap)
	for i := range s.entries {
		e := g.consumerTableOff + uint64(i)*ConsumerEntrySize
		s.entries[i] = pentry{off: e, state: u32At(mem, e+entState), sem: u32At(mem, e+entSem), waiters: u32At(mem, e+entWaiters)}
	}
	return s
}

func (s *pseg) release() {
	unmap(s.mem)
	s.mem = nil
	s.f.close()
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
		opts: opts, gid: gid, table: castagnoli,
	}
	if err := p.takeOwnership(); err != nil {
		return nil, err
	}
	// The segment path must be ours to replace: no symlink, no other user's file.
	prevGen, prevSeq := uint64(0), uint64(0)
	old, err := p.previous()
	if err != nil {
		p.disown()
		return nil, err
	}
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
	p.seg = seg
	p.seq = prevSeq
	if old != nil {
		_ = p.guard(old.retire)
		old.release()
		p.needRegen.Store(false) // a fault in the old file's retire is not ours
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
		ok, err := lf.tryLock(0, 1, true)
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
				_, id, _, _, serr := lf.stat()
				if cur, lerr := lstatPath(p.lockPath); serr == nil && lerr == nil && cur.exists && cur.id == id {
					unlinkFile(p.lockPath)
				}
				lf.close()
				continue
			}
			lf.close()
			return &BusyError{PID: ownerPID(p.path)}
		}
		// The lock must be on the file that is at the path now (a closing
		// producer or gc may have unlinked it between our open and lock).
		_, id, _, _, err := lf.stat()
		info, lerr := lstatPath(p.lockPath)
		if err == nil && lerr == nil && info.exists && info.regular && info.id == id {
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
		if cur, _ := lstatPath(p.lockPath); cur.exists {
			if _, id, _, _, err := p.lock.stat(); err == nil && id == cur.id {
				unlinkFile(p.lockPath)
			}
		}
	}
	p.lock.unlock(0, 1)
	p.lock.close()
}

// ownerPID reads producer_pid from the segment at path, 0 if it cannot.
func ownerPID(path string) uint32 {
	f, err := openExisting(path, false)
	if err != nil {
		return 0
	}
	defer f.close()
	var b [HeaderSize]byte
	n, _ := f.preadFull(b[:], 0)
	size, _ := f.size()
	h, err := validateSegment(b[:n], size)
	if err != nil {
		return 0
	}
	return h.ProducerPID
}

// previous opens the segment a dead producer left at the path, if any, so
// that its generation and frame numbers are continued and it can be retired.
// Anything at the path that is not a regular file of ours is refused.
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
	f, err := openExisting(p.path, true)
	if err != nil {
		return nil, nil // unreadable leftovers are simply replaced
	}
	size, id, _, _, err := f.stat()
	if err != nil {
		f.close()
		return nil, nil
	}
	var b [HeaderSize]byte
	n, _ := f.preadFull(b[:], 0)
	h, err := validateSegment(b[:n], size)
	if err != nil {
		f.close()
		return nil, nil // a corrupt leftover is replaced by generation 1
	}
	s, err := openPseg(f, h)
	if err != nil {
		f.close()
		return nil, nil
	}
	s.id = id
	s.h.LastSeq = s.lastSeq.Load()
	return s, nil
}

// openPseg maps the control block of a validated segment that is not ours
// (an old generation), enough to read last_seq, set its state and wake its
// consumers.
func openPseg(f *sysFile, h header) (*pseg, error) {
	mem, err := f.mapRegion(0, h.PayloadOffset, true)
	if err != nil {
		return nil, err
	}
	g := geometry{slotCount: h.SlotCount, consumerCap: h.ConsumerCapacity, slotCapacity: h.SlotCapacity, slotStride: h.SlotStride,
		slotTableOff: h.SlotTableOffset, consumerTableOff: h.ConsumerTableOffset, payloadOff: h.PayloadOffset, payloadSize: h.PayloadSize, total: h.TotalSize}
	s := &pseg{f: f, mem: mem, h: h, g: g}
	s.state = u32At(mem, offState)
	s.lastSeq = u64At(mem, offLastSeq)
	s.entries = make([]pentry, g.consumerCap)
	for i := range s.entries {
		e := g.consumerTableOff + uint64(i)*ConsumerEntrySize
		s.entries[i] = pentry{off: e, state: u32At(mem, e+entState), sem: u32At(mem, e+entSem), waiters: u32At(mem, e+entWaiters)}
	}
	return s, nil
}

// retire marks an old generation RETIRED (unless BROKEN) and wakes its consumers.
func (s *pseg) retire() {
	if st := s.state.Load(); st != StateBroken {
		s.state.Store(StateRetired)
	}
	s.wakeAll()
}

// newGeneration builds a complete segment under the temporary name and
// renames it over the bus name (PROTOCOL.md section 2).
func (p *Producer) newGeneration(ctx context.Context, f Format, gen, lastSeq uint64) (*pseg, error) {
	o := &p.opts
	g := computeGeometry(uint32(o.Slots), uint32(o.Consumers), f.FrameSize)
	avail, err := freeSpace(p.dir)
	if err != nil {
		return nil, err
	}
	if g.total > avail {
		return nil, &SpaceError{Dir: p.dir, Needed: g.total, Available: avail}
	}
	tmp := tmpName(p.path)
	if info, _ := lstatPath(tmp); info.exists && info.regular {
		unlinkFile(tmp) // left by a dead process that had our pid
	}
	file, err := createExcl(tmp, o.Mode, p.gid)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*pseg, error) {
		file.close()
		unlinkFile(tmp)
		return nil, err
	}
	if err := file.allocate(int64(g.total)); err != nil {
		if errors.Is(err, ErrNoSpace) {
			err = &SpaceError{Dir: p.dir, Needed: g.total, Available: avail}
		}
		return fail(err)
	}
	mem, err := file.mapRegion(0, g.total, true)
	if err != nil {
		return fail(err)
	}
	// Pre-fault every page with a write, so that the first frames cost what
	// later ones do (a first write to fresh shared memory takes a page fault
	// per 4 KiB).
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 0
		if i&(64<<20-1) == 0 && ctx.Err() != nil { // every 64 MiB
			unmap(mem)
			return fail(ctxErr(ctx))
		}
	}
	now := uint64(Now())
	var flags uint32
	if o.Checksum {
		flags |= FlagChecksum
	}
	if !o.PerEntryWake && sharedWakeOS {
		flags |= FlagSharedWake
	}
	h := header{
		Magic: Magic, ABIVersion: ABIVersion, HeaderSize: HeaderSize, State: StateInitializing, Flags: flags,
		TotalSize: g.total, Generation: gen, HeartbeatNS: now, PayloadOffset: g.payloadOff, PayloadSize: g.payloadSize,
		ProducerPID: getpid(), SlotCount: g.slotCount, SlotStride: g.slotStride, SlotCapacity: g.slotCapacity,
		ConsumerCapacity: g.consumerCap, HeartbeatIntervalMS: uint32(o.Heartbeat / time.Millisecond),
		Width: f.Width, Height: f.Height, PixelFormat: uint32(f.PixelFormat), PlaneCount: f.PlaneCount,
		PlaneStride: f.PlaneStride, PlaneOffset: f.PlaneOffset, FPSNum: f.FPSNum, FPSDen: f.FPSDen,
		SlotTableOffset: g.slotTableOff, ConsumerTableOffset: g.consumerTableOff,
		SlotDescSize: SlotDescSize, ConsumerEntrySize: ConsumerEntrySize, CreatedNS: now, LastSeq: lastSeq,
	}
	encodeHeader(mem[:HeaderSize], &h)
	_, id, _, _, err := file.stat()
	if err != nil {
		unmap(mem)
		return fail(err)
	}
	s := newPseg(file, mem, id, h, g)
	s.state.Store(StateReady)
	if ctx.Err() != nil {
		unmap(mem)
		return fail(ctxErr(ctx))
	}
	if err := renameFile(tmp, p.path); err != nil {
		unmap(mem)
		return fail(err)
	}
	s.h.State = StateReady
	return s, nil
}

// Name returns the bus name.
func (p *Producer) Name() string { return p.name }

// Path returns the segment file's path.
func (p *Producer) Path() string { return p.path }

// Format returns the frame format of the current generation.
func (p *Producer) Format() Format { return p.opts.Format }

// Generation returns the current generation number.
func (p *Producer) Generation() uint64 {
	p.segMu.Lock()
	defer p.segMu.Unlock()
	if p.seg == nil {
		return 0
	}
	return p.seg.h.Generation
}

// Begin hands out the back slot's bytes (the frame capacity, zero-copy) for
// the caller to fill; Commit publishes them, Abort gives the slot back. The
// slot is marked as being written (its sequence lock is odd) until then.
// The returned slice is valid until Commit or Abort.
func (p *Producer) Begin() ([]byte, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, &Error{Op: "begin", Name: p.name, Err: ErrProducerClosed}
	}
	if p.needRegen.Load() {
		if err := p.regenLocked(p.opts.Format); err != nil {
			p.mu.Unlock()
			return nil, wrap("begin", p.name, err)
		}
	}
	var data []byte
	if err := p.guard(func() { data = p.beginLocked() }); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	return data, nil
}

// beginLocked is steps 1 and 2 of the commit. Called with p.mu held.
func (p *Producer) beginLocked() []byte {
	s := p.seg
	b := (s.active.Load() + 1) % s.g.slotCount // step 1: the back buffer
	sl := &s.slots[b]
	if faultsOn {
		fault(stepBeforeOdd)
	}
	sl.lock.Store(sl.lock.Load() | 1) // step 2: odd
	storeFence()
	p.held, p.back = true, b
	return sl.data
}

// Abort gives back the slot handed out by Begin without publishing it. The
// slot's old frame is invalidated (its data may be half overwritten).
func (p *Producer) Abort() {
	if !p.held {
		return
	}
	p.abortLocked()
	p.held = false
	p.mu.Unlock()
}

// Commit publishes the first n bytes of the slot handed out by Begin
// (steps 3-6 of the commit protocol) and returns the frame's sequence number.
// An error means the frame was not published (its number is not used): on a
// segment file truncated under the producer it wraps ErrCorrupt, and the
// next Begin publishes a new generation.
func (p *Producer) Commit(n int, m Meta) (seq uint64, err error) {
	if !p.held {
		return 0, &Error{Op: "commit", Name: p.name, Err: ErrSlotNotHeld}
	}
	defer p.mu.Unlock()
	p.held = false
	before := p.seq
	if gerr := p.guard(func() { seq, err = p.commit(n, m, 0) }); gerr != nil {
		return p.afterFault(before, gerr)
	}
	return seq, err
}

// afterFault is the result of a commit that faulted on a truncated file:
// an error if the frame never became visible; its number and no error if
// the fault came after the flip (consumers may have read it; the new
// generation follows at the next Begin either way).
func (p *Producer) afterFault(before uint64, err error) (uint64, error) {
	if p.seq != before {
		return p.seq, nil
	}
	return 0, err
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
		p.needRegen.Store(true)
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
	buf, err := p.Begin()
	if err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	p.held = false
	if uint64(len(data)) > uint64(len(buf)) {
		p.abortLocked()
		return 0, &Error{Op: "publish", Name: p.name, Err: fmt.Errorf("%w: frame of %d bytes, slot capacity %d", ErrBadOptions, len(data), len(buf))}
	}
	if err := p.guard(func() {
		if faultsOn {
			h := len(data) / 2
			copy(buf, data[:h])
			fault(stepMidData)
			copy(buf[h:], data[h:])
			return
		}
		copy(buf, data)
	}); err != nil {
		p.abortLocked()
		return 0, err
	}
	var seq uint64
	before := p.seq
	if gerr := p.guard(func() { seq, err = p.commit(len(data), m, 0) }); gerr != nil {
		return p.afterFault(before, gerr)
	}
	return seq, err
}

// abortLocked gives the held slot back, its old frame invalidated.
func (p *Producer) abortLocked() {
	_ = p.guard(func() {
		sl := &p.seg.slots[p.back]
		sl.seq.Store(0)
		sl.bytes.Store(0)
		sl.lock.Store(sl.lock.Load() + 1)
	})
}

// guard runs fn with memory faults turned into an error: a segment file
// truncated from outside must not kill the producer with SIGBUS.
func (p *Producer) guard(fn func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			p.needRegen.Store(true)
			err = &Error{Op: "publish", Name: p.name, Err: fmt.Errorf("%w: segment file truncated under the producer (%v); a new generation follows", ErrCorrupt, r)}
		}
	}()
	fn()
	return nil
}

// commit runs steps 3-6 on the held back slot. Called with p.mu held.
func (p *Producer) commit(n int, m Meta, flags uint32) (seq uint64, err error) {
	s := p.seg
	sl := &s.slots[p.back]
	if n < 0 || uint64(n) > uint64(len(sl.data)) {
		p.abortLocked()
		return 0, &Error{Op: "commit", Name: p.name, Err: fmt.Errorf("%w: frame of %d bytes, slot capacity %d", ErrBadOptions, n, len(sl.data))}
	}
	if len(m.UserMeta) > UserMetaMax {
		p.abortLocked()
		return 0, &Error{Op: "commit", Name: p.name, Err: fmt.Errorf("%w: %d bytes of user metadata, at most %d", ErrBadOptions, len(m.UserMeta), UserMetaMax)}
	}
	var sum uint32
	if s.h.Flags&FlagChecksum != 0 && n > 0 {
		sum = crc32.Update(0, p.table, sl.data[:n])
	}
	seq = p.seq + 1
	capture := m.CaptureNS
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
	if capture == 0 {
		capture = now
	}
	sl.capture.Store(uint64(capture))
	sl.commit.Store(uint64(now))
	if faultsOn {
		fault(stepBeforeEven)
	}
	sl.lock.Store(sl.lock.Load() + 1) // step 4: even, committed
	if faultsOn {
		fault(stepBeforeFlip)
	}
	s.lastSeq.Store(seq) // step 5: last_seq, then the flip
	s.active.Store(p.back)
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
	return seq, nil
}

// AddSourceDrops counts frames the source produced that could not be published.
func (p *Producer) AddSourceDrops(n uint64) {
	p.segMu.Lock()
	defer p.segMu.Unlock()
	if p.seg != nil {
		_ = p.guard(func() { p.seg.srcDrops.Add(n) })
	}
}

// Reconfigure starts a new generation with another frame format (a
// resolution or pixel format change). Consumers follow it by themselves.
func (p *Producer) Reconfigure(f Format) error {
	f, err := f.Complete()
	if err != nil {
		return wrap("reconfigure", p.name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return &Error{Op: "reconfigure", Name: p.name, Err: ErrProducerClosed}
	}
	return wrap("reconfigure", p.name, p.regenLocked(f))
}

// regenLocked replaces the current generation by a new one of format f.
// Called with p.mu held.
func (p *Producer) regenLocked(f Format) error {
	old := p.seg
	seg, err := p.newGeneration(context.Background(), f, old.h.Generation+1, p.seq)
	if err != nil {
		return err
	}
	p.segMu.Lock()
	p.seg = seg
	p.opts.Format = f
	p.segMu.Unlock()
	// Retire first: on a truncated old file retire faults, and guard then
	// asks for a new generation; that request is the one just served.
	_ = p.guard(old.retire)
	old.release()
	p.needRegen.Store(false)
	return nil
}

// heartbeatLoop keeps heartbeat_ns fresh, reclaims the entries of dead
// consumers, and notices a segment removed or truncated from outside.
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
	p.segMu.Lock()
	s := p.seg
	broken := false
	if size, err := s.f.size(); err != nil || uint64(size) < s.g.total {
		broken = true // truncated: touching the mapping could fault
	}
	if !broken && p.guard(func() {
		// The stable prefix must still be ours: a file truncated and grown
		// back reads zeros there (and new consumers would refuse the bus).
		if u32At(s.mem, offMagic).Load() != Magic || u64At(s.mem, offTotalSize).Load() != s.g.total ||
			u64At(s.mem, offGeneration).Load() != s.h.Generation {
			broken = true
			return
		}
		s.heartbeat.Store(uint64(Now()))
		p.reclaim(s)
	}) != nil {
		broken = true // truncated between the size check and the store
	}
	info, err := lstatPath(p.path)
	moved := err == nil && (!info.exists || info.id != s.id)
	p.segMu.Unlock()
	if err := p.keepLock(); err != nil {
		// Another process holds the lock file now at our path: the name is
		// no longer ours, and we do not fight for it.
		p.lastErr.Store(&err)
		return
	}
	if broken || moved {
		if broken {
			_ = p.guard(func() { s.state.Store(StateBroken) })
		}
		// Only for the segment that is still current: Begin may have
		// replaced it since (then the request is served already).
		p.segMu.Lock()
		if p.seg == s {
			p.needRegen.Store(true)
		}
		p.segMu.Unlock()
		// Publish the new generation now unless a frame is being written;
		// then Begin does it.
		if p.mu.TryLock() {
			if !p.closed && p.needRegen.Load() {
				if err := p.regenLocked(p.opts.Format); err != nil {
					p.lastErr.Store(&err)
				}
			}
			p.mu.Unlock()
		}
	}
}

// keepLock re-creates and re-takes the lock file when it was removed from
// outside (systemd's RemoveIPC removes every file of the user in /dev/shm):
// without it, consumers and tools that open the lock path find no owner, and
// a second producer could take the name of a live one. It fails (ErrBusy)
// when another process holds the lock file now at the path. Called by the
// heartbeat goroutine, the only user of p.lock until Close stops it.
func (p *Producer) keepLock() error {
	info, err := lstatPath(p.lockPath)
	if err != nil {
		return err
	}
	if info.exists {
		if _, id, _, _, err := p.lock.stat(); err == nil && id == info.id {
			return nil
		}
	}
	old := p.lock
	if err := p.takeOwnership(); err != nil { // sets p.lock only on success
		return err
	}
	old.unlock(0, 1)
	old.close()
	return nil
}

// reclaim takes back the entries of dead consumers: only an entry whose
// liveness lock can be taken exclusively is freed (PROTOCOL.md section 2).
func (p *Producer) reclaim(s *pseg) {
	for i := range s.entries {
		e := &s.entries[i]
		st := e.state.Load()
		if st != EntryClaiming && st != EntryActive {
			continue
		}
		ok, err := s.f.tryLock(e.off, ConsumerEntrySize, true)
		if err != nil || !ok {
			continue
		}
		if e.state.CompareAndSwap(st, EntryFree) {
			s.reclaimed.Add(1)
		}
		s.f.unlock(e.off, ConsumerEntrySize)
	}
}

// Err returns the last error of the background heartbeat, if any.
func (p *Producer) Err() error {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Close ends the stream cleanly: an end-of-stream frame, state RETIRED, every
// consumer woken, the name and the lock file removed, the lock released.
// Consumers see ErrEndOfStream at once.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	if p.held {
		p.abortLocked()
		p.held = false
	}
	p.closed = true
	close(p.stop)
	<-p.done
	s := p.seg
	var err error
	// The end-of-stream frame, RETIRED, the wake; a truncated file cannot
	// take them, and its consumers find the name gone with no owner.
	_ = p.guard(func() {
		p.beginLocked()
		p.held = false
		_, err = p.commit(0, Meta{}, FrameEndOfStream)
		s.state.Store(StateRetired)
		s.wakeAll()
	})
	if info, _ := lstatPath(p.path); info.exists && info.id == s.id {
		if uerr := unlinkFile(p.path); uerr != nil && err == nil {
			err = uerr
		}
	}
	if info, _ := lstatPath(p.lockPath); info.exists {
		if _, id, _, _, serr := p.lock.stat(); serr == nil && id == info.id {
			unlinkFile(p.lockPath)
		}
	}
	p.lock.unlock(0, 1)
	p.lock.close()
	p.segMu.Lock()
	s.release()
	p.seg = nil
	p.segMu.Unlock()
	p.mu.Unlock()
	return wrap("close", p.name, err)
}

// ProducerStats is a snapshot of the producer's counters.
type ProducerStats struct {
	Generation, LastSeq, FramesPublished, SourceDrops, ConsumersReclaimed uint64
	ActiveConsumers                                                       int
}

// Stats reads the producer's counters from the segment.
func (p *Producer) Stats() ProducerStats {
	p.segMu.Lock()
	defer p.segMu.Unlock()
	s := p.seg
	if s == nil {
		return ProducerStats{}
	}
	st := ProducerStats{Generation: s.h.Generation}
	_ = p.guard(func() {
		st.LastSeq = s.lastSeq.Load()
		st.FramesPublished, st.SourceDrops, st.ConsumersReclaimed = s.published.Load(), s.srcDrops.Load(), s.reclaimed.Load()
		for i := range s.entries {
			if s.entries[i].state.Load() == EntryActive {
				st.ActiveConsumers++
			}
		}
	})
	return st
}
