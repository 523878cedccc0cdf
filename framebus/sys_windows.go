//go:build windows

package framebus

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/windows"
	"io/fs"
)

// The Windows side of PROTOCOL.md section 1 (its Windows column). The shared
// code speaks of paths, files, the protocol's locks (lockOwner, lockEntry)
// and futex words; these files give each of them its Windows object
// (names_windows.go, index_windows.go, locks_windows.go, wake_windows.go,
// security_windows.go):
//
//	path framebus.<name>        the index mapping <ns>framebus.<name>, which
//	                            names the current generation; "exists" means
//	                            it names one (generation != 0)
//	path framebus.<name>.lock   the owner mutex <ns>framebus.<name>.owner
//	path framebus.<name>.tmp-N  a generation being built, not yet named by
//	                            the index; its mapping <ns>framebus.<name>.g<G>
//	                            exists from allocate on
//	rename(tmp, name)           store G as the index's generation
//	unlink(name)                store 0 as the index's generation
//	file identity (inode)       (scope, G)
//	entry i's liveness lock     the mutex <ns>framebus.<name>.g<G>.c<i>
//	futex word of entry i       the semaphore <ns>framebus.<name>.g<G>.s<i>
//
// <ns> is the bus directory: Local\ (the default) or Global\. Any other
// directory string names a private scope inside Local\: its objects are
// <Local\framebus-<hash of the directory>.<name>...>, which keeps buses of
// different directories apart (the tests give every test its own).
//
// Named objects live while a handle to them is open: a bus whose producer and
// consumers are all gone disappears by itself. A consumer holds the index for
// as long as it holds a generation, so generation numbers never restart
// under a live consumer.
//
// Windows mutexes belong to a thread, and goroutines move between threads:
// every mutex framebus takes is taken and released by one goroutine locked
// to its OS thread for the whole time it holds it (see holdMutex). Tests of a
// mutex that must not take it (is the producer alive? is this entry held?)
// use NtQueryMutant.

type fileID struct{ dev, ino uint64 }

// sysFile is an open generation mapping (with its index) or the owner mutex.
type sysFile struct {
	path string
	o    objPath
	kind fileKind

	idx  *winIndex
	sec  windows.Handle
	gen  uint64 // the generation in the mapping's name
	tmp  bool   // built under a tmp path, not yet named by the index
	mode fs.FileMode
	sa   *windows.SecurityAttributes // for the objects of this generation

	mtx windows.Handle // kindMutex: the owner mutex

	mu      sync.Mutex
	closed  bool
	hdrOK   bool
	ctOff   uint64
	ctCap   uint32
	mutexes map[int]windows.Handle // entry mutexes (kindMutex: index 0 is mtx)
	holds   map[int]*mutexHold
	sems    map[int]windows.Handle
}

// pending maps a tmp path to the generation being built under it, for renameFile.
var pending struct {
	sync.Mutex
	m map[string]*sysFile
}

// openExisting opens the generation the index names now (a segment path) or
// the owner mutex (a lock path).
func openExisting(path string, write bool) (*sysFile, error) {
	o, kind, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case pathLock:
		name, _ := windows.UTF16PtrFromString(o.ownerName())
		h, err := windows.OpenMutex(windows.SYNCHRONIZE|windows.MUTANT_QUERY_STATE, false, name)
		if err != nil {
			return nil, winErr("open", o.ownerName(), o.global, err)
		}
		return &sysFile{path: path, o: o, kind: kindMutex, mtx: h}, nil
	case pathTmp:
		return nil, fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
	}
	idx, err := openIndex(o, nil)
	if err != nil {
		return nil, err
	}
	g := idx.gen.Load()
	if g == 0 {
		idx.close()
		return nil, fmt.Errorf("%w: %s names no generation", ErrNotFound, o.indexName())
	}
	access := uint32(windows.FILE_MAP_READ | sectionQuery | windows.READ_CONTROL)
	if write {
		access |= windows.FILE_MAP_WRITE
	}
	name, _ := windows.UTF16PtrFromString(o.genName(g))
	h, err := openFileMapping(access, false, name)
	if err != nil {
		idx.close()
		return nil, winErr("open", o.genName(g), o.global, err)
	}
	f := &sysFile{path: path, o: o, kind: kindSection, idx: idx, sec: h, gen: g, mode: 0o600}
	f.sa = inheritedSecurity(h)
	return f, nil
}

// createExcl starts a new generation under a tmp path: it opens (creating if
// needed) the bus's index and picks the next generation number. The mapping
// itself is created by allocate, when its size is known.
func createExcl(path string, mode fs.FileMode, gid int) (*sysFile, error) {
	o, kind, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	if kind != pathTmp {
		return nil, fmt.Errorf("%w: %s: a generation is built under a temporary name", ErrUnsafePath, path)
	}
	sa, err := securityFor(mode, gid)
	if err != nil {
		return nil, err
	}
	idx, err := openIndex(o, sa)
	if err != nil {
		return nil, err
	}
	f := &sysFile{path: path, o: o, kind: kindSection, idx: idx, tmp: true, mode: mode, sa: sa}
	pending.Lock()
	if pending.m == nil {
		pending.m = map[string]*sysFile{}
	}
	pending.m[path] = f
	pending.Unlock()
	return f, nil
}

// allocate creates the generation's mapping, size bytes of committed memory
// (pagefile-backed, zero-filled): a commit limit that cannot take it fails
// here, with ErrNoSpace.
func (f *sysFile) allocate(size int64) error {
	if f.kind != kindSection || !f.tmp || f.sec != 0 {
		return fmt.Errorf("%w: %s cannot be resized", ErrUnsafePath, f.path)
	}
	g := max(f.idx.last.Load(), f.idx.gen.Load()) + 1
	for try := 0; ; try++ {
		name, _ := windows.UTF16PtrFromString(f.o.genName(g))
		h, err := windows.CreateFileMapping(windows.InvalidHandle, f.sa, windows.PAGE_READWRITE, uint32(uint64(size)>>32), uint32(size), name)
		if err == nil {
			f.sec, f.gen = h, g
			for {
				l := f.idx.last.Load()
				if l >= g || f.idx.last.CompareAndSwap(l, g) {
					break
				}
			}
			return nil
		}
		if h != 0 {
			windows.CloseHandle(h)
		}
		if !errors.Is(err, windows.ERROR_ALREADY_EXISTS) || try == 64 {
			return winErr("create", f.o.genName(g), f.o.global, err)
		}
		// A generation of this number is still held by someone (a consumer
		// of a bus whose index was dropped): skip it.
		g++
	}
}

// openLockFile opens (creating if needed) the owner mutex.
func openLockFile(path string, mode fs.FileMode, gid int) (*sysFile, bool, error) {
	o, kind, err := parsePath(path)
	if err != nil {
		return nil, false, err
	}
	if kind != pathLock {
		return nil, false, fmt.Errorf("%w: %s is not a lock path", ErrUnsafePath, path)
	}
	sa, err := securityFor(mode, gid)
	if err != nil {
		return nil, false, err
	}
	name, _ := windows.UTF16PtrFromString(o.ownerName())
	h, err := windows.CreateMutex(sa, false, name)
	created := err == nil
	if errors.Is(err, windows.ERROR_ALREADY_EXISTS) && h != 0 {
		err = nil
	}
	if err != nil {
		return nil, false, winErr("create", o.ownerName(), o.global, err)
	}
	return &sysFile{path: path, o: o, kind: kindMutex, mtx: h, mode: mode}, created, nil
}

func (f *sysFile) close() {
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	holds := f.holds
	f.holds = nil
	f.mu.Unlock()
	for _, hd := range holds {
		hd.release()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.mutexes {
		windows.CloseHandle(h)
	}
	for _, h := range f.sems {
		windows.CloseHandle(h)
	}
	f.mutexes, f.sems = nil, nil
	if f.sec != 0 {
		windows.CloseHandle(f.sec)
		f.sec = 0
	}
	if f.mtx != 0 {
		windows.CloseHandle(f.mtx)
		f.mtx = 0
	}
	f.idx.close()
	if f.tmp {
		pending.Lock()
		if pending.m[f.path] == f {
			delete(pending.m, f.path)
		}
		pending.Unlock()
	}
}

func (f *sysFile) id() fileID {
	if f.kind == kindMutex {
		return fileID{f.o.scope, 0}
	}
	return fileID{f.o.scope, f.gen}
}

func (f *sysFile) stat() (size int64, id fileID, uid uint32, mode fs.FileMode, err error) {
	if f.kind == kindMutex {
		return 0, f.id(), 0, f.mode.Perm(), nil
	}
	if f.sec == 0 {
		return 0, f.id(), 0, f.mode.Perm(), nil
	}
	var sbi sectionBasicInfo
	if st := ntQuerySection(f.sec, 0, &sbi, sizeofSectionBasicInfo, nil); st != nil {
		return 0, fileID{}, 0, 0, winErr("stat", f.o.genName(f.gen), f.o.global, st)
	}
	return sbi.MaximumSize, f.id(), 0, f.mode.Perm(), nil
}

func (f *sysFile) size() (int64, error) {
	s, _, _, _, err := f.stat()
	return s, err
}

// preadFull reads len(b) bytes at off through a temporary view, or fewer at
// the end of the mapping.
func (f *sysFile) preadFull(b []byte, off int64) (int, error) {
	if f.kind != kindSection || f.sec == 0 || off < 0 {
		return 0, nil
	}
	size, err := f.size()
	if err != nil {
		return 0, err
	}
	if off >= size || len(b) == 0 {
		return 0, nil
	}
	n := min(int64(len(b)), size-off)
	base := off &^ (allocationGranularity - 1)
	v, err := mapView(f.sec, uint64(base), uint64(off-base+n), false)
	if err != nil {
		return 0, winErr("read", f.o.genName(f.gen), f.o.global, err)
	}
	copy(b, v[off-base:])
	unmapView(v)
	return int(n), nil
}

const allocationGranularity = 65536

// mapRegion maps [off, off+n) of the generation, writable or read-only.
// Offsets are multiples of 65536, Windows's allocation granularity, as the
// layout guarantees (payload_offset).
func (f *sysFile) mapRegion(off, n uint64, write bool) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if f.kind != kindSection || f.sec == 0 {
		return nil, fmt.Errorf("%w: %s is not mapped", ErrUnsafePath, f.path)
	}
	if off > 1<<62 || n > 1<<62 || int(n) < 0 || off%allocationGranularity != 0 {
		return nil, fmt.Errorf("%w: mapping of %d bytes at %d is out of range", ErrCorrupt, n, off)
	}
	b, err := mapView(f.sec, off, n, write)
	if err != nil {
		return nil, winErr("mmap", f.o.genName(f.gen), f.o.global, err)
	}
	registerView(b, off, f)
	return b, nil
}

// header reads where the consumer table is (once per generation).
func (f *sysFile) table() (off uint64, capacity uint32, ok bool) {
	f.mu.Lock()
	if f.hdrOK {
		defer f.mu.Unlock()
		return f.ctOff, f.ctCap, true
	}
	f.mu.Unlock()
	var b [HeaderSize]byte
	n, _ := f.preadFull(b[:], 0)
	size, _ := f.size()
	h, err := validateSegment(b[:n], size)
	if err != nil {
		return 0, 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctOff, f.ctCap, f.hdrOK = h.ConsumerTableOffset, h.ConsumerCapacity, true
	return f.ctOff, f.ctCap, true
}

// entryIndex turns a lock range or a word offset into a consumer entry index.
func (f *sysFile) entryIndex(off uint64, field uint64) (int, bool) {
	ct, capacity, ok := f.table()
	if !ok || off < ct+field {
		return 0, false
	}
	d := off - ct - field
	if d%ConsumerEntrySize != 0 || d/ConsumerEntrySize >= uint64(capacity) {
		return 0, false
	}
	return int(d / ConsumerEntrySize), true
}

// freeSpace is what the system can still commit: a generation's mapping is
// pagefile-backed committed memory.
func freeSpace(dir string) (uint64, error) {
	ms := memoryStatusEx{Length: uint32(sizeofMemoryStatusEx)}
	if err := globalMemoryStatusEx(&ms); err != nil {
		return 0, &os.PathError{Op: "GlobalMemoryStatusEx", Path: dir, Err: err}
	}
	return ms.AvailPageFile, nil
}

func getpid() uint32 { return uint32(os.Getpid()) }

// geteuid is 0 on Windows: ownership is the objects' DACL, which lets only
// allowed users open them at all, so every bus that opens is "ours".
func geteuid() int { return 0 }

// pidNamespace is 0: Windows has no PID namespaces (amendment 8).
func pidNamespace() uint64 { return 0 }

// holdCreation and releaseCreation have nothing to do on Windows: a
// generation being built has no name until the index names it (amendment
// 8's temporary files do not exist here).
func (f *sysFile) holdCreation(path string) (bool, error) { return true, nil }
func (f *sysFile) releaseCreation()                       {}
