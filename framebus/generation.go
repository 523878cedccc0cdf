package framebus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A generation is one segment file, its size and format fixed for its life
// (PROTOCOL.md section 2). A new one is built completely under a temporary
// name and renamed over the bus name; the old one is then RETIRED.

// pseg is one generation as the producer sees it: the whole file mapped
// read-write (or, for an old generation being retired, its control block).
type pseg struct {
	f   *sysFile
	mem []byte
	id  fileID
	h   header
	g   geometry

	headerWords
	slots   []slotView // nil for an old generation
	entries []entryView

	// Amendment 10 (holds.go): the bus honours holds, its lease, and what
	// the producer committed each slot's frame (its own copy, which no
	// consumer can forge).
	holds      bool
	holdMax    int64
	slotCommit [MaxSlots]int64
	want       []byte // h encoded: the fixed fields the heartbeat compares (heartbeat.go)
}

// newPseg views a freshly built generation.
func newPseg(f *sysFile, mem []byte, id fileID, h header) *pseg {
	g := geometryOf(&h)
	s := &pseg{f: f, mem: mem, id: id, h: h, g: g}
	s.headerWords = newHeaderWords(mem, h.Flags&FlagSharedWake != 0)
	s.slots = slotViews(mem[:g.payloadOff], mem[g.payloadOff:], &g)
	s.entries = entryViews(mem, &g)
	s.holds, s.holdMax = h.Flags&FlagHolds != 0, int64(h.HoldMaxNS)
	return s
}

// openOldSegment maps the control block of a validated segment that is not
// ours (an old generation), enough to read last_seq, set its state and wake
// its consumers.
func openOldSegment(f *sysFile, h header) (*pseg, error) {
	mem, err := f.mapRegion(0, h.PayloadOffset, true)
	if err != nil {
		return nil, err
	}
	_, id, _, _, _ := f.stat()
	g := geometryOf(&h)
	s := &pseg{f: f, mem: mem, id: id, h: h, g: g}
	s.headerWords = newHeaderWords(mem, h.Flags&FlagSharedWake != 0)
	s.entries = entryViews(mem, &g)
	return s, nil
}

// intact reports whether the whole segment is still there to write into
// (the file not truncated under the mapping), its name removed or not.
func (s *pseg) intact() bool {
	size, err := s.f.size()
	return err == nil && uint64(size) >= s.g.total
}

func (s *pseg) release() {
	unmap(s.mem)
	s.mem = nil
	s.f.close()
}

// retire marks an old generation RETIRED (unless BROKEN) and wakes its
// consumers, so that they look at the name at once.
func (s *pseg) retire() {
	if st := s.state.Load(); st != StateBroken {
		s.state.Store(StateRetired)
	}
	s.wakeAll()
}

// errTempVanished: the temporary file of a creation was removed from
// outside before its rename (by something that does not take its lock).
var errTempVanished = errors.New("temporary file vanished")

// newGeneration builds a complete segment of format f under the temporary
// name and renames it over the bus name. A temporary file removed from
// outside before the rename makes it start again, twice at most.
func (p *Producer) newGeneration(ctx context.Context, f Format, gen, lastSeq uint64) (*pseg, error) {
	for try := 1; ; try++ {
		s, err := p.buildGeneration(ctx, f, gen, lastSeq)
		if !errors.Is(err, errTempVanished) || try == 3 {
			return s, err
		}
	}
}

func (p *Producer) buildGeneration(ctx context.Context, f Format, gen, lastSeq uint64) (*pseg, error) {
	o := &p.opts
	g := computeGeometry(uint32(o.Slots), uint32(o.Consumers), f.FrameSize)
	// Abandoned temporary files of this bus (a creator killed before us,
	// maybe pid 1 of a container) hold space we may need.
	collectTemps(p.dir, p.name)
	avail, err := freeSpace(p.dir)
	if err != nil {
		return nil, err
	}
	if g.total > avail {
		return nil, &SpaceError{Dir: p.dir, Needed: g.total, Available: avail}
	}
	tmp := tmpName(p.path)
	file, err := p.createTemp(tmp)
	if err != nil {
		return nil, err
	}
	mem, err := p.fill(ctx, file, &g, avail)
	if err == nil && ctx.Err() != nil {
		unmap(mem)
		err = ctxErr(ctx)
	}
	if err != nil {
		file.close()
		unlinkFile(tmp)
		return nil, err
	}
	h := p.newHeader(f, &g, gen, lastSeq)
	encodeHeader(mem[:HeaderSize], &h)
	_, id, _, _, err := file.stat()
	if err == nil {
		s := newPseg(file, mem, id, h)
		s.state.Store(StateReady)
		if err = renameFile(tmp, p.path); err == nil {
			file.releaseCreation()
			s.h.State = StateReady
			return s, nil
		}
	}
	unmap(mem)
	file.close()
	if !errors.Is(err, errTempVanished) {
		unlinkFile(tmp)
	}
	return nil, err
}

// createTemp makes the temporary file of a creation and takes the lock that
// proves it alive (PROTOCOL.md amendment 8, creation and liveness across PID namespaces). An abandoned file of the same
// name (a dead creator that had our pid, say in another PID namespace) is
// collected first; a file that a collector took before we locked it is
// made again.
func (p *Producer) createTemp(tmp string) (*sysFile, error) {
	for try := 0; try < 8; try++ {
		file, err := createExcl(tmp, p.opts.Mode, p.gid)
		if errors.Is(err, fs.ErrExist) {
			collectTemp(tmp)
			continue
		}
		if err != nil {
			return nil, err
		}
		if ok, err := file.holdCreation(tmp); err != nil || ok {
			if err != nil {
				file.close()
				return nil, err
			}
			return file, nil
		}
		file.close() // a collector took it between our create and our lock
	}
	return nil, fmt.Errorf("%w: the temporary file %s is held by another process", ErrBusy, tmp)
}

// collectTemp removes the temporary file at path if it is abandoned: if its
// creator's lock can be taken, and path still names the file (amendment 8).
func collectTemp(path string) bool {
	f, err := openExisting(path, true)
	if err != nil {
		return false
	}
	defer f.close()
	if ok, err := f.holdCreation(path); err != nil || !ok {
		return false
	}
	defer f.releaseCreation()
	return unlinkFile(path) == nil
}

// collectTemps collects the abandoned temporary files of bus name in dir
// (every one of them, if name is ""), and returns the paths it removed.
func collectTemps(dir, name string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		bus, ok := tempBus(e.Name())
		if !ok || (name != "" && bus != name) || !e.Type().IsRegular() {
			continue
		}
		if path := filepath.Join(dir, e.Name()); provenTemp(path) && collectTemp(path) {
			removed = append(removed, path)
		}
	}
	return removed
}

// tempBus says whose temporary file a file name of the bus directory is.
func tempBus(file string) (string, bool) {
	base, ok := strings.CutPrefix(file, filePrefix)
	if !ok {
		return "", false
	}
	i := strings.Index(base, ".tmp-")
	if i <= 0 || ValidateName(base[:i]) != nil {
		return "", false
	}
	return base[:i], true
}

// fill gives a new segment file its size and maps it with every page
// pre-faulted by a write, so that the first frames cost what later ones do
// (a first write to fresh shared memory takes a page fault per 4 KiB). A
// cancelled ctx stops it.
func (p *Producer) fill(ctx context.Context, file *sysFile, g *geometry, avail uint64) ([]byte, error) {
	if err := file.allocate(int64(g.total)); err != nil {
		if errors.Is(err, ErrNoSpace) {
			err = &SpaceError{Dir: p.dir, Needed: g.total, Available: avail}
		}
		return nil, err
	}
	mem, err := file.mapRegion(0, g.total, true)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 0
		if i&(64<<20-1) == 0 && ctx.Err() != nil { // every 64 MiB
			unmap(mem)
			return nil, ctxErr(ctx)
		}
	}
	return mem, nil
}

// newHeader is the header of a new generation.
func (p *Producer) newHeader(f Format, g *geometry, gen, lastSeq uint64) header {
	o := &p.opts
	now := uint64(Now())
	var flags uint32
	if o.Checksum {
		flags |= FlagChecksum
	}
	if !o.PerEntryWake && sharedWakeOS {
		flags |= FlagSharedWake
	}
	flags |= FlagHolds // always: a 2-slot bus has a cap of 0 (amendment 10)
	return header{
		Magic: Magic, ABIVersion: ABIVersion, HeaderSize: HeaderSize, State: StateInitializing, Flags: flags,
		TotalSize: g.total, Generation: gen, HeartbeatNS: now, PayloadOffset: g.payloadOff, PayloadSize: g.payloadSize,
		ProducerPID: getpid(), SlotCount: g.slotCount, SlotStride: g.slotStride, SlotCapacity: g.slotCapacity,
		ConsumerCapacity: g.consumerCap, HeartbeatIntervalMS: uint32(o.Heartbeat / time.Millisecond),
		Width: f.Width, Height: f.Height, PixelFormat: uint32(f.PixelFormat), PlaneCount: f.PlaneCount,
		PlaneStride: f.PlaneStride, PlaneOffset: f.PlaneOffset, FPSNum: f.FPSNum, FPSDen: f.FPSDen,
		SlotTableOffset: g.slotTableOff, ConsumerTableOffset: g.consumerTableOff,
		SlotDescSize: SlotDescSize, ConsumerEntrySize: ConsumerEntrySize, CreatedNS: now, ProducerPIDNS: pidNamespace(),
		LastSeq: lastSeq, HoldMaxNS: uint64(o.HoldMax),
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
	if err := p.usable(); err != nil {
		return &Error{Op: "reconfigure", Name: p.name, Err: err}
	}
	return wrap("reconfigure", p.name, p.regenLocked(f))
}

// errWriteFaulted is why a generation is replaced after a write into it
// faulted (Begin, Commit, Fill: the file was truncated under the producer).
var errWriteFaulted = errors.New("a write into the segment faulted: the file was truncated")

// regenLocked replaces the current generation by a new one of format f.
// Called with p.mu held. A replacement that was asked for (needRegen: the
// heartbeat found the segment damaged, or a write faulted) is a
// ProducerEvent, made or failed. A slot lent out by Begin in the old
// generation keeps its mapping until its Commit (which carries the frame
// over: moveHeld) or Abort.
func (p *Producer) regenLocked(f Format) error {
	old := p.seg
	asked := p.needRegen.Load()
	seg, err := p.newGeneration(context.Background(), f, old.h.Generation+1, p.seq)
	if err != nil {
		if asked && !p.regenFailing {
			p.regenFailing = true
			p.event(ProducerEvent{Old: old.h.Generation, Reason: p.reason(), Err: wrap("new generation", p.name, err)})
		}
		return err
	}
	p.seg = seg
	p.opts.Format = f
	// Retire first: a truncated old file faults here, and that says
	// nothing about the new one.
	_ = guard(old.retire)
	if !p.held || p.heldSeg != old {
		old.release()
	}
	if asked {
		p.event(ProducerEvent{Old: old.h.Generation, Generation: seg.h.Generation, Reason: p.reason(), SlotLent: p.held})
	}
	p.needRegen.Store(false)
	p.regenWhy, p.regenFailing = nil, false
	return nil
}

// reason is why the generation is being replaced.
func (p *Producer) reason() error {
	if p.regenWhy != nil {
		return p.regenWhy
	}
	return &DamageError{What: "write faulted", Path: p.path}
}

// moveHeld carries a frame of n bytes, written into slot b of an old
// generation that the heartbeat replaced while Begin had lent the slot out,
// into the back slot of the current generation, which it begins; and
// releases the old generation. A fault reading the old slot (the file was
// truncated: the writer's own writes faulted too, or wrote into nothing)
// loses the frame, an error wrapping ErrCorrupt. Called with p.mu held.
func (p *Producer) moveHeld(old *pseg, b uint32, n int) (*pseg, uint32, error) {
	defer old.release()
	s := p.seg
	if n > len(s.slots[0].data) { // only a Reconfigure between Begin and Commit can do that
		return nil, 0, &Error{Op: "commit", Name: p.name, Err: fmt.Errorf("%w: frame of %d bytes, slot capacity %d", ErrBadOptions, n, len(s.slots[0].data))}
	}
	var nb uint32
	if err := p.guard("commit", func() { nb = p.beginSlot(s) }); err != nil {
		return nil, 0, err
	}
	if err := guard(func() { copy(s.slots[nb].data[:n], old.slots[b].data[:n]) }); err != nil {
		p.abortSlot(s, nb)
		return nil, 0, &Error{Op: "commit", Name: p.name, Err: fmt.Errorf("%w; the frame was written into generation %d, replaced meanwhile", err, old.h.Generation)}
	}
	return s, nb, nil
}
