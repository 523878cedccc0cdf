package framebus

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"sort"
	"strings"
)

// SlotInfo is a snapshot of one slot descriptor (PROTOCOL.md section 3.4).
type SlotInfo struct {
	Index       int    `json:"index"`
	Lock        uint64 `json:"lock"`
	FrameSeq    uint64 `json:"frame_seq"`
	CaptureNS   uint64 `json:"capture_ns"`
	CommitNS    uint64 `json:"commit_ns"`
	Bytes       uint64 `json:"bytes"`
	Checksum    uint32 `json:"checksum"`
	FrameFlags  uint32 `json:"frame_flags"`
	UserMetaLen uint32 `json:"user_meta_len"`
}

// ConsumerInfo is a snapshot of one consumer table entry (section 3.5).
type ConsumerInfo struct {
	Index       int    `json:"index"`
	State       uint32 `json:"state"`
	PID         uint32 `json:"pid"`
	Sem         uint32 `json:"sem"`
	Waiters     uint32 `json:"waiters"`
	Token       uint64 `json:"token"`
	LastSeq     uint64 `json:"last_seq"`
	Delivered   uint64 `json:"delivered"`
	Dropped     uint64 `json:"dropped"`
	HeartbeatNS uint64 `json:"heartbeat_ns"`
	TornRetries uint64 `json:"torn_retries"`
	PIDNS       uint64 `json:"pidns"` // its PID namespace (amendment 8), 0 when unknown
	Alive       bool   `json:"alive"` // its liveness lock is held

	// Holds (amendment 10): the raw hold_mask (bit 8+i: a grant on
	// slot i in progress), the slots it holds (bits below slot_count), the age of the
	// oldest frame it holds (the snapshot's now_ns - that slot's
	// commit_ns; 0 with none), and its counters.
	HoldMask       uint32 `json:"hold_mask"`
	Holds          int    `json:"holds"`
	OldestHoldNS   int64  `json:"oldest_hold_ns"`
	HoldsGranted   uint64 `json:"holds_granted"`
	HoldsRefused   uint64 `json:"holds_refused"`
	HoldsTakenBack uint64 `json:"holds_taken_back"`
}

// Snapshot is what Inspect reads of a segment without registering: the
// header, the slot descriptors and the non-free consumer entries.
type Snapshot struct {
	Name       string         `json:"name"`
	Path       string         `json:"path"`
	FileSize   int64          `json:"file_size"`
	Mode       fs.FileMode    `json:"mode"`
	UID        uint32         `json:"uid"`
	Header     Header         `json:"header"`
	Format     Format         `json:"-"`
	Slots      []SlotInfo     `json:"slots"`
	Consumers  []ConsumerInfo `json:"consumers"`
	OwnerAlive bool           `json:"owner_alive"` // the producer's lock is held
	NowNS      int64          `json:"now_ns"`      // CLOCK_MONOTONIC when the snapshot was taken
	// Holds (amendment 10; the header's hold_max_ns and holds_* counters
	// are in Header): HoldCap is how many slots consumers may hold at once
	// (slot_count - 2 when the producer honours holds, else 0), Held the
	// distinct slots held by active entries now.
	HoldCap int    `json:"hold_cap"`
	Held    int    `json:"held"`
	PIDNS   uint64 `json:"pidns"` // the inspector's own PID namespace, to compare with the pids' (0: unknown)
	// Invalid is the layout error of a corrupt segment (nil when valid).
	// Header holds the raw decoded bytes either way; Slots and Consumers are
	// only read from a valid layout.
	Invalid error `json:"-"`
}

// Inspect reads a snapshot of the bus name in dir ("" for the default) with
// pread, never mapping or registering, so it works on corrupt, BROKEN and
// truncated segments alike. On a corrupt segment it returns the snapshot and
// an error wrapping the layout error.
func Inspect(name, dir string) (*Snapshot, error) {
	s, err := inspect(name, dir)
	return s, wrap("inspect", name, err)
}

func inspect(name, dir string) (*Snapshot, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	dir = Dir(dir)
	path := SegmentPath(dir, name)
	f, err := openExisting(path, false)
	if err != nil {
		return nil, err
	}
	defer f.close()
	size, _, uid, mode, err := f.stat()
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Name: name, Path: path, FileSize: size, Mode: mode, UID: uid, NowNS: Now(), PIDNS: pidNamespace()}
	s.OwnerAlive = ownerAlive(LockPath(dir, name))
	var b [HeaderSize]byte
	n, err := f.preadFull(b[:], 0)
	if err != nil {
		return nil, err
	}
	s.Header = decodeHeader(b[:]) // zero beyond n
	if err := checkIdentity(b[:n], size); err != nil {
		s.Invalid = err
		return s, err
	}
	if err := validateHeader(&s.Header, size); err != nil {
		s.Invalid = err
		return s, err
	}
	h := &s.Header
	s.Format = h.format()
	ctl := make([]byte, h.PayloadOffset)
	if m, err := f.preadFull(ctl, 0); err != nil || uint64(m) < h.PayloadOffset {
		s.Invalid = layoutErr("file size", uint64(size), "control block cut short")
		return s, s.Invalid
	}
	g := geometryOf(h)
	if h.Flags&FlagHolds != 0 {
		s.HoldCap = int(h.SlotCount) - 2
	}
	slotBits := uint32(1)<<h.SlotCount - 1
	var held uint32
	for i := 0; i < int(h.SlotCount); i++ {
		d := decodeSlot(ctl[g.slotDescOff(i):])
		s.Slots = append(s.Slots, SlotInfo{Index: i, Lock: d.Lock, FrameSeq: d.FrameSeq, CaptureNS: d.CaptureNS,
			CommitNS: d.CommitNS, Bytes: d.Bytes, Checksum: d.Checksum, FrameFlags: d.FrameFlags, UserMetaLen: d.UserMetaLen})
	}
	for i := 0; i < int(h.ConsumerCapacity); i++ {
		off := g.entryOff(i)
		e := decodeEntry(ctl[off:])
		if e.State == EntryFree {
			continue
		}
		alive, _ := f.entryHeld(i, off)
		ci := ConsumerInfo{Index: i, State: e.State, PID: e.PID, Sem: e.Sem, Waiters: e.Waiters,
			Token: e.Token, LastSeq: e.LastSeq, Delivered: e.Delivered, Dropped: e.Dropped, HeartbeatNS: e.HeartbeatNS,
			TornRetries: e.TornRetries, PIDNS: e.PIDNS, Alive: alive}
		if h.Flags&FlagHolds != 0 {
			ci.HoldMask, ci.HoldsGranted, ci.HoldsRefused, ci.HoldsTakenBack = e.HoldMask, e.HoldsGranted, e.HoldsRefused, e.HoldsTakenBack
			m := e.HoldMask & slotBits
			ci.Holds = bits.OnesCount32(m)
			for ; m != 0; m &= m - 1 {
				if age := s.NowNS - int64(s.Slots[bits.TrailingZeros32(m)].CommitNS); age > ci.OldestHoldNS {
					ci.OldestHoldNS = age
				}
			}
			if e.State == EntryActive {
				held |= e.HoldMask & slotBits
			}
		}
		s.Consumers = append(s.Consumers, ci)
	}
	s.Held = bits.OnesCount32(held)
	return s, nil
}

// PIDNamespace is the identity of this process's PID namespace, as the
// segment records its producer's and its consumers' (PROTOCOL.md amendment
// 8: the inode number of /proc/self/ns/pid on Linux), 0 when unknown. A pid
// recorded with another namespace names no process of this one.
func PIDNamespace() uint64 { return pidNamespace() }

// ownerAlive tests the producer lock of a bus without taking it.
func ownerAlive(lockPath string) bool {
	alive, _ := ownerCheck(lockPath)
	return alive
}

// ownerCheck tests the producer lock of a bus without taking it: alive, and
// known, whether that could be checked at all. No lock file, or something
// at its path that is not a regular file, is no producer; a lock file this
// process may not open (another user's bus) is not known.
func ownerCheck(lockPath string) (alive, known bool) {
	lf, err := openExisting(lockPath, false)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnsafePath) {
		return false, true
	}
	if err != nil {
		return false, false
	}
	defer lf.close()
	held, err := lf.ownerHeld()
	return err == nil && held, err == nil
}

// BusInfo is one bus of List.
type BusInfo struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Generation uint64 `json:"generation"`
	State      uint32 `json:"state"`
	Format     string `json:"format"`
	OwnerAlive bool   `json:"owner_alive"`
	// OwnerUnknown: whether the producer is alive could not be checked
	// (no permission to open the lock file: another user's bus).
	OwnerUnknown bool      `json:"owner_unknown,omitempty"`
	Snapshot     *Snapshot `json:"-"`
	Err          error     `json:"-"` // why the segment could not be read or is invalid
}

// List returns every bus in dir ("" for the default), sorted by name.
func List(dir string) ([]BusInfo, error) {
	dir = Dir(dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Op: "list", Err: err}
	}
	var out []BusInfo
	for _, e := range ents {
		name, ok := busName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		bi := BusInfo{Name: name, Path: SegmentPath(dir, name)}
		_, known := ownerCheck(LockPath(dir, name))
		bi.OwnerUnknown = !known
		s, err := Inspect(name, dir)
		bi.Snapshot, bi.Err = s, err
		if s != nil {
			bi.Size, bi.Generation, bi.State, bi.OwnerAlive = s.FileSize, s.Header.Generation, s.Header.State, s.OwnerAlive
			if s.Invalid == nil {
				bi.Format = s.Format.String()
			}
		}
		out = append(out, bi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// busName extracts the bus name from a segment file name.
func busName(file string) (string, bool) {
	name, ok := strings.CutPrefix(file, filePrefix)
	if !ok || ValidateName(name) != nil {
		return "", false
	}
	return name, true
}

// Remove deletes a bus. A bus whose producer is alive is refused (an error
// wrapping ErrBusy, naming the pid) unless force is set; then the segment is
// marked RETIRED, its consumers are woken and its name removed (the live
// producer notices at its next heartbeat and publishes a new generation, as
// after systemd's RemoveIPC). A stale bus loses its segment and lock file.
func Remove(name, dir string, force bool) error {
	return wrap("remove", name, remove(name, dir, force))
}

func remove(name, dir string, force bool) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	dir = Dir(dir)
	path, lockPath := SegmentPath(dir, name), LockPath(dir, name)
	info, err := lstatPath(path)
	if err != nil {
		return err
	}
	if info.exists && !info.regular {
		return fmt.Errorf("%w: %s is not a regular file", ErrUnsafePath, path)
	}
	lk, _ := lstatPath(lockPath)
	if !info.exists && !lk.exists {
		return fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
	}
	var lf *sysFile
	if lk.exists && lk.regular {
		if lf, err = openExisting(lockPath, true); err != nil {
			return err
		}
		defer lf.close()
		ok, err := lf.lockOwner()
		if err != nil {
			return err
		}
		if !ok {
			if !force {
				return ownerBusy(path)
			}
			if info.exists {
				retireFile(path)
				return unlinkFile(path)
			}
			return nil
		}
		defer lf.unlockOwner()
	}
	if info.exists {
		retireFile(path)
		if err := unlinkFile(path); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if lf != nil {
		if cur, _ := lstatPath(lockPath); cur.exists && cur.id == lk.id {
			unlinkFile(lockPath) // still holding byte 0
		}
	}
	return nil
}

// retireFile marks a valid segment RETIRED and wakes its consumers, so that
// they re-check the name at once instead of at their next timeout.
func retireFile(path string) {
	f, h, err := openValid(path, true)
	if err != nil {
		return
	}
	defer f.close()
	s, err := openOldSegment(f, h)
	if err != nil {
		return
	}
	_ = guard(s.retire)
	unmap(s.mem)
}

// GC removes every stale bus of dir (segments and lock files with no live
// producer) and the temporary files of creations whose creator is gone
// (PROTOCOL.md amendment 8: their creator's lock is free, whatever PID
// namespace it ran in). It removes only files it proves are framebus's
// (gc.go): a segment with framebus's magic, an empty lock file, a
// temporary file of the creation pattern; any other file named framebus.*
// is left alone. It returns the paths it removed.
func GC(dir string) ([]string, error) {
	dir = Dir(dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Op: "gc", Err: err}
	}
	removed := collectTemps(dir, "")
	seen := map[string]bool{}
	for _, e := range ents {
		file := e.Name()
		if !strings.HasPrefix(file, filePrefix) || !e.Type().IsRegular() {
			continue
		}
		if _, tmp := tempBus(file); tmp {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(file, filePrefix), ".lock")
		if ValidateName(name) != nil || seen[name] {
			continue
		}
		seen[name] = true
		removed = append(removed, gcBus(dir, name)...)
	}
	return removed, nil
}
