package framebus

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/windows"
)

// The Windows side of PROTOCOL.md section 1 (its Windows column). The shared
// code (producer.go, consumer.go, inspect.go) speaks of paths, files, byte
// range locks and futex words; this file gives each of them its Windows
// object:
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
//	byte-range lock on entry i  the mutex <ns>framebus.<name>.g<G>.c<i>
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

// Index mapping layout (docs/PORTABILITY.md, "The index mapping").
const (
	indexMapSize    = 4096
	indexVersion    = 1
	indexHeaderSize = 64
	idxMagic        = 0  // u32 Magic
	idxVersion      = 4  // u16 index version (1)
	idxSize         = 6  // u16 bytes of the index header (64)
	idxGeneration   = 8  // u64 atomic: generation named now, 0 = none
	idxLastGen      = 16 // u64 atomic: highest generation ever created under this index
)

const sectionQuery = 0x0001 // SECTION_QUERY

type fileID struct{ dev, ino uint64 }

type fileKind uint8

const (
	kindSection fileKind = iota // a generation's mapping (opened, or built under a tmp path)
	kindMutex                   // the owner mutex (the lock file)
)

// objPath is a bus path taken apart.
type objPath struct {
	path   string
	base   string // <ns>framebus.<name> or <Local\framebus-<hash>.<name>
	scope  uint64 // hash of base, for file identities
	global bool
}

func (o objPath) indexName() string       { return o.base }
func (o objPath) ownerName() string       { return o.base + ".owner" }
func (o objPath) genName(g uint64) string { return o.base + ".g" + strconv.FormatUint(g, 10) }
func (o objPath) entryName(g uint64, i int) string {
	return o.genName(g) + ".c" + strconv.Itoa(i)
}
func (o objPath) semName(g uint64, i int) string { return o.genName(g) + ".s" + strconv.Itoa(i) }

type pathKind uint8

const (
	pathSegment pathKind = iota
	pathLock
	pathTmp
)

// namespacePrefix turns a bus directory into an object name prefix.
func namespacePrefix(dir string) (prefix string, global bool) {
	d := strings.TrimRight(dir, `\/`)
	switch strings.ToLower(d) {
	case "local", "":
		return `Local\` + filePrefix, false
	case "global":
		return `Global\` + filePrefix, true
	}
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(filepath.Clean(dir))))
	return fmt.Sprintf(`Local\framebus-%016x.`, h.Sum64()), false
}

func parsePath(path string) (objPath, pathKind, error) {
	dir, file := filepath.Dir(path), filepath.Base(path)
	rest, ok := strings.CutPrefix(file, filePrefix)
	if !ok {
		return objPath{}, 0, fmt.Errorf("%w: %s is not a framebus name", ErrUnsafePath, path)
	}
	kind := pathSegment
	if n, ok := strings.CutSuffix(rest, ".lock"); ok {
		rest, kind = n, pathLock
	} else if i := strings.Index(rest, ".tmp-"); i > 0 {
		rest, kind = rest[:i], pathTmp
	}
	if err := ValidateName(rest); err != nil {
		return objPath{}, 0, err
	}
	prefix, global := namespacePrefix(dir)
	o := objPath{path: path, base: prefix + rest, global: global}
	h := fnv.New64a()
	h.Write([]byte(o.base))
	o.scope = h.Sum64()
	return o, kind, nil
}

// winErr maps a Windows error on object name to framebus's typed errors.
func winErr(op, name string, global bool, err error) error {
	var errno windows.Errno
	if !errors.As(err, &errno) {
		return &os.PathError{Op: op, Path: name, Err: err}
	}
	switch errno {
	case windows.ERROR_FILE_NOT_FOUND, windows.ERROR_PATH_NOT_FOUND:
		return fmt.Errorf("%w: %s does not exist", ErrNotFound, name)
	case windows.ERROR_ACCESS_DENIED, windows.ERROR_PRIVILEGE_NOT_HELD:
		if global && op == "create" && !hasGlobalPrivilege() {
			return &PrivilegeError{Privilege: "SeCreateGlobalPrivilege", Object: name, Err: err}
		}
		return &PermissionError{Path: name, Err: err}
	case windows.ERROR_INVALID_HANDLE:
		// The name exists as another kind of object.
		return fmt.Errorf("%w: %s exists and is not a framebus object", ErrUnsafePath, name)
	case windows.ERROR_COMMITMENT_LIMIT, windows.ERROR_NOT_ENOUGH_MEMORY, windows.ERROR_OUTOFMEMORY, windows.ERROR_DISK_FULL:
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, name, err)
	}
	return &os.PathError{Op: op, Path: name, Err: err}
}

// hasGlobalPrivilege reports whether the process token holds
// SeCreateGlobalPrivilege, enabled: creating a file mapping in Global\ from
// an ordinary session needs it.
func hasGlobalPrivilege() bool {
	var luid windows.LUID
	if err := windows.LookupPrivilegeValue(nil, windows.StringToUTF16Ptr("SeCreateGlobalPrivilege"), &luid); err != nil {
		return false
	}
	var tok windows.Token
	if err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_QUERY, &tok); err != nil {
		return false
	}
	defer tok.Close()
	ps := privilegeSet{PrivilegeCount: 1, Control: 1 /* PRIVILEGE_SET_ALL_NECESSARY */}
	ps.Privilege[0] = luidAndAttributes{LowPart: luid.LowPart, HighPart: luid.HighPart}
	var ok int32
	if err := privilegeCheck(tok, &ps, &ok); err != nil {
		return false
	}
	return ok != 0
}

// ---- security descriptors ----

var sdCache struct {
	sync.Mutex
	m map[[2]int]*windows.SecurityAttributes
}

var groupSIDs struct {
	sync.Mutex
	list []string // gid n (from groupID) is list[n]
}

// securityFor builds the security descriptor of mode: the owner gets full
// access; group bits grant the group gid (from groupID; -1: the token's
// primary group) full (rw) or read access; an other-read bit grants Everyone
// read. The default 0600 is owner-only. Never world-writable (refused by the
// option check before).
func securityFor(mode fs.FileMode, gid int) (*windows.SecurityAttributes, error) {
	key := [2]int{int(mode.Perm()), gid}
	sdCache.Lock()
	defer sdCache.Unlock()
	if sa := sdCache.m[key]; sa != nil {
		return sa, nil
	}
	tok := windows.GetCurrentProcessToken()
	user, err := tok.GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("framebus: reading the process token: %w", err)
	}
	sddl := "D:P(A;;GA;;;" + user.User.Sid.String() + ")"
	if g := mode.Perm() & 0o070; g != 0 {
		var gs string
		if gid >= 0 {
			groupSIDs.Lock()
			if gid < len(groupSIDs.list) {
				gs = groupSIDs.list[gid]
			}
			groupSIDs.Unlock()
		}
		if gs == "" {
			pg, err := tok.GetTokenPrimaryGroup()
			if err != nil {
				return nil, fmt.Errorf("framebus: reading the process token: %w", err)
			}
			gs = pg.PrimaryGroup.String()
		}
		access := "GR"
		if g&0o020 != 0 {
			access = "GA"
		}
		sddl += "(A;;" + access + ";;;" + gs + ")"
	}
	if mode.Perm()&0o004 != 0 {
		sddl += "(A;;GR;;;WD)"
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("framebus: security descriptor %q: %w", sddl, err)
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(sizeofSecurityAttributes)
	if sdCache.m == nil {
		sdCache.m = map[[2]int]*windows.SecurityAttributes{}
	}
	sdCache.m[key] = sa
	return sa, nil
}

// groupID resolves a group name or SID string ("S-1-5-...") to a handle for
// securityFor; "" means none (-1).
func groupID(g string) (int, error) {
	if g == "" {
		return -1, nil
	}
	var sid *windows.SID
	var err error
	if strings.HasPrefix(strings.ToUpper(g), "S-") {
		sid, err = windows.StringToSid(g)
	} else {
		sid, _, _, err = windows.LookupSID("", g)
	}
	if err != nil {
		return -1, fmt.Errorf("%w: unknown group %q: %v", ErrBadOptions, g, err)
	}
	groupSIDs.Lock()
	defer groupSIDs.Unlock()
	groupSIDs.list = append(groupSIDs.list, sid.String())
	return len(groupSIDs.list) - 1, nil
}

// ---- the index mapping ----

type winIndex struct {
	h         windows.Handle
	mem       []byte
	gen, last *atomic.Uint64
}

// openIndex opens the index mapping of o; with sa != nil it creates it when
// missing.
func openIndex(o objPath, sa *windows.SecurityAttributes) (*winIndex, error) {
	name, err := windows.UTF16PtrFromString(o.indexName())
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrBadName, o.indexName())
	}
	var h windows.Handle
	created := false
	if sa != nil {
		h, err = windows.CreateFileMapping(windows.InvalidHandle, sa, windows.PAGE_READWRITE, 0, indexMapSize, name)
		if err == nil {
			created = true
		} else if errors.Is(err, windows.ERROR_ALREADY_EXISTS) && h != 0 {
			err = nil
		}
	} else {
		h, err = openFileMapping(windows.FILE_MAP_READ|windows.FILE_MAP_WRITE, false, name)
	}
	if err != nil {
		op := "open"
		if sa != nil {
			op = "create"
		}
		return nil, winErr(op, o.indexName(), o.global, err)
	}
	mem, err := mapView(h, 0, indexMapSize, true)
	if err != nil {
		windows.CloseHandle(h)
		return nil, winErr("mmap", o.indexName(), o.global, err)
	}
	x := &winIndex{h: h, mem: mem, gen: u64At(mem, idxGeneration), last: u64At(mem, idxLastGen)}
	if created {
		le32(mem[idxVersion:], indexVersion|indexHeaderSize<<16)
		u32At(mem, idxMagic).Store(Magic)
	} else if m := u32At(mem, idxMagic).Load(); m != Magic {
		x.close()
		if m == 0 && sa != nil {
			// Created by a process that has not written the magic yet, or
			// died before: take it over.
			return openIndexRetry(o, sa)
		}
		return nil, fmt.Errorf("%w: %s holds magic %#x", ErrBadMagic, o.indexName(), m)
	}
	return x, nil
}

func openIndexRetry(o objPath, sa *windows.SecurityAttributes) (*winIndex, error) {
	for i := 0; i < 100; i++ {
		time.Sleep(time.Millisecond)
		x, err := openIndex(o, nil)
		if err != nil {
			return nil, err
		}
		if u32At(x.mem, idxMagic).Load() == Magic {
			return x, nil
		}
		if i == 99 {
			u32At(x.mem, idxMagic).Store(Magic)
			return x, nil
		}
		x.close()
	}
	return nil, fmt.Errorf("%w: %s", ErrBadMagic, o.indexName())
}

func le32(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }

func (x *winIndex) close() {
	if x == nil || x.h == 0 {
		return
	}
	unmapView(x.mem)
	windows.CloseHandle(x.h)
	x.h, x.mem = 0, nil
}

// ---- sysFile ----

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

// inheritedSecurity gives the objects a consumer creates for a generation
// (its entry mutex, its semaphore) the generation mapping's own DACL, so that
// a producer of another user allowed on the bus can open them.
func inheritedSecurity(h windows.Handle) *windows.SecurityAttributes {
	sd, err := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		sa, _ := securityFor(0o600, -1)
		return sa
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(sizeofSecurityAttributes)
	return sa
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

// mutexFor returns the mutex of a lock range: the owner mutex, or entry i's
// (created when create is set, else opened; 0 when it does not exist).
func (f *sysFile) mutexFor(start, n uint64, create bool) (int, windows.Handle, error) {
	if f.kind == kindMutex {
		if start != 0 || n != 1 {
			return 0, 0, fmt.Errorf("%w: lock range %d+%d of %s", ErrBadOptions, start, n, f.path)
		}
		return -1, f.mtx, nil
	}
	i, ok := f.entryIndex(start, 0)
	if !ok || n != ConsumerEntrySize {
		return 0, 0, fmt.Errorf("%w: lock range %d+%d of %s is no consumer entry", ErrCorrupt, start, n, f.path)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return i, 0, fmt.Errorf("%w: %s is closed", ErrUnsafePath, f.path)
	}
	if h, ok := f.mutexes[i]; ok {
		return i, h, nil
	}
	name := f.o.entryName(f.gen, i)
	p, _ := windows.UTF16PtrFromString(name)
	var h windows.Handle
	var err error
	if create {
		h, err = windows.CreateMutex(f.sa, false, p)
		if errors.Is(err, windows.ERROR_ALREADY_EXISTS) && h != 0 {
			err = nil
		}
	} else {
		h, err = windows.OpenMutex(windows.SYNCHRONIZE|windows.MUTANT_QUERY_STATE, false, p)
		if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
			return i, 0, nil
		}
	}
	if err != nil {
		return i, 0, winErr("lock", name, f.o.global, err)
	}
	if f.mutexes == nil {
		f.mutexes = map[int]windows.Handle{}
	}
	f.mutexes[i] = h
	return i, h, nil
}

// tryLock takes the mutex of a lock range without waiting (shared and
// exclusive are the same on Windows: the consumer table's join order makes an
// exclusive entry lock right). WAIT_ABANDONED, a holder that died, counts as
// taken.
func (f *sysFile) tryLock(start, n uint64, exclusive bool) (bool, error) {
	i, h, err := f.mutexFor(start, n, true)
	if err != nil {
		return false, err
	}
	// A mutex held by a live process (this one included) is not worth a
	// thread: ask first.
	if held, err := mutexHeld(h); err == nil && held {
		return false, nil
	}
	hd, ok, err := holdMutex(h)
	if err != nil {
		return false, winErr("lock", f.path, f.o.global, err)
	}
	if !ok {
		return false, nil
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		hd.release()
		return false, fmt.Errorf("%w: %s is closed", ErrUnsafePath, f.path)
	}
	if f.holds == nil {
		f.holds = map[int]*mutexHold{}
	}
	if old := f.holds[i]; old != nil { // cannot happen: one holder per range
		old.release()
	}
	f.holds[i] = hd
	f.mu.Unlock()
	return true, nil
}

func (f *sysFile) unlock(start, n uint64) {
	i := -1
	if f.kind == kindSection {
		var ok bool
		if i, ok = f.entryIndex(start, 0); !ok {
			return
		}
	}
	f.mu.Lock()
	hd := f.holds[i]
	delete(f.holds, i)
	f.mu.Unlock()
	if hd != nil {
		hd.release()
	}
}

// lockHeld reports whether a live thread (of any process, this one included)
// holds the mutex of a lock range, taking nothing.
func (f *sysFile) lockHeld(start, n uint64) (bool, error) {
	_, h, err := f.mutexFor(start, n, false)
	if err != nil || h == 0 {
		return false, err
	}
	return mutexHeld(h)
}

// mutexHeld asks NtQueryMutant whether a mutex is owned (an abandoned mutex
// is free). Without NtQueryMutant it takes and releases the mutex on a
// locked thread, which a racing taker may see as busy for a moment.
func mutexHeld(h windows.Handle) (bool, error) {
	var mbi mutantBasicInfo
	if st := ntQueryMutant(h, 0, &mbi, sizeofMutantBasicInfo, nil); st == nil {
		return mbi.CurrentCount <= 0, nil
	}
	hd, ok, err := holdMutex(h)
	if err != nil {
		return false, err
	}
	if ok {
		hd.release()
		return false, nil
	}
	return true, nil
}

// mutexHold is a mutex taken by a goroutine locked to its OS thread, which
// keeps it until release.
type mutexHold struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (hd *mutexHold) release() {
	hd.once.Do(func() {
		close(hd.stop)
		<-hd.done
	})
}

// holdMutex takes h without waiting on a dedicated, locked OS thread. ok is
// false when another thread holds it.
func holdMutex(h windows.Handle) (hd *mutexHold, ok bool, err error) {
	type result struct {
		ok  bool
		err error
	}
	res := make(chan result, 1)
	hd = &mutexHold{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		ev, err := windows.WaitForSingleObject(h, 0)
		if err != nil || (ev != windows.WAIT_OBJECT_0 && ev != windows.WAIT_ABANDONED) {
			runtime.UnlockOSThread()
			res <- result{false, err}
			close(hd.done)
			return
		}
		res <- result{true, nil}
		<-hd.stop
		if windows.ReleaseMutex(h) == nil {
			runtime.UnlockOSThread()
		}
		// If the release failed the thread still owns the mutex: the
		// goroutine exits locked, the runtime ends the thread, and the
		// mutex is abandoned, which every other party reads as released.
		close(hd.done)
	}()
	r := <-res
	if !r.ok {
		return nil, false, r.err
	}
	return hd, true, nil
}

// ---- the wake semaphores (PROTOCOL.md section 5 on Windows) ----

// semFor returns entry i's semaphore of this generation, created on first use
// (by whichever side comes first: the producer waking or the consumer
// sleeping). Its maximum count is 1: a pending wake is a wake, more would be
// spurious wakes.
func (f *sysFile) semFor(i int) windows.Handle {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0
	}
	if h, ok := f.sems[i]; ok {
		return h
	}
	name, _ := windows.UTF16PtrFromString(f.o.semName(f.gen, i))
	h, err := createSemaphore(f.sa, 0, 1, name)
	if errors.Is(err, windows.ERROR_ALREADY_EXISTS) && h != 0 {
		err = nil
	}
	if err != nil {
		return 0
	}
	if f.sems == nil {
		f.sems = map[int]windows.Handle{}
	}
	f.sems[i] = h
	return h
}

// semAt finds the semaphore behind the sem word at addr.
func semAt(addr uintptr) windows.Handle {
	f, off, ok := lookupView(addr)
	if !ok {
		return 0
	}
	i, ok := f.entryIndex(off, entSem)
	if !ok {
		return 0
	}
	return f.semFor(i)
}

// futexWakeOn is the wake of step 6 on Windows: the caller has done
// sem += 1 and seen waiters != 0; the entry's semaphore is released.
func futexWakeOn(w *atomic.Uint32, n int) { futexWakeAddr(futexAddr(w), n) }

// futexWakeAddr wakes the sleeper on the sem word at addr (a context's
// AfterFunc; an address no longer mapped wakes nobody).
func futexWakeAddr(addr uintptr, n int) {
	if addr == 0 {
		return
	}
	viewsMu.RLock()
	defer viewsMu.RUnlock()
	if h := semAt(addr); h != 0 {
		releaseSemaphore(h, 1, nil) // ERROR_TOO_MANY_POSTS: a wake is pending already
	}
}

// sleep is the wait of PROTOCOL.md section 5 on Windows. The caller has done
// waiters += 1; a semaphore does not compare the word the way FUTEX_WAIT
// does, so *w is checked here, after waiters += 1 and before sleeping. With
// the producer's sem += 1 before its read of waiters (both sequentially
// consistent), either the producer sees waiters != 0 and releases the
// semaphore, or this load sees its increment: no wake is lost.
func sleep(w *atomic.Uint32, d time.Duration) error {
	if w.Load() != 0 {
		return nil
	}
	viewsMu.RLock()
	h := semAt(futexAddr(w))
	viewsMu.RUnlock()
	if h == 0 {
		time.Sleep(min(d, 10*time.Millisecond))
		return errTimedOut
	}
	ms := uint32((d + time.Millisecond - 1) / time.Millisecond)
	if d > 0 && ms == 0 {
		ms = 1
	}
	ev, err := windows.WaitForSingleObject(h, ms)
	if err == nil && ev == uint32(windows.WAIT_TIMEOUT) {
		return errTimedOut
	}
	return nil
}

// ---- names ----

// lstatPath reports whether the index names a generation (a segment path),
// or whether the owner mutex exists (a lock path). Tmp paths never exist:
// a generation being built has no name yet.
func lstatPath(path string) (pathInfo, error) {
	o, kind, err := parsePath(path)
	if err != nil {
		return pathInfo{}, nil
	}
	switch kind {
	case pathTmp:
		return pathInfo{}, nil
	case pathLock:
		name, _ := windows.UTF16PtrFromString(o.ownerName())
		h, err := windows.OpenMutex(windows.SYNCHRONIZE, false, name)
		if err != nil {
			if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
				return pathInfo{}, nil
			}
			return pathInfo{}, winErr("stat", o.ownerName(), o.global, err)
		}
		windows.CloseHandle(h)
		return pathInfo{exists: true, regular: true, id: fileID{o.scope, 0}, mode: 0o600}, nil
	}
	idx, err := openIndex(o, nil)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return pathInfo{}, nil
		}
		return pathInfo{}, err
	}
	defer idx.close()
	g := idx.gen.Load()
	if g == 0 {
		return pathInfo{}, nil
	}
	return pathInfo{exists: true, regular: true, id: fileID{o.scope, g}, mode: 0o600}, nil
}

// renameFile publishes the generation built under from: the index names it.
func renameFile(from, to string) error {
	pending.Lock()
	f := pending.m[from]
	delete(pending.m, from)
	pending.Unlock()
	if f == nil || f.sec == 0 {
		return fmt.Errorf("%w: %s is not a generation being built", ErrNotFound, from)
	}
	if o, _, err := parsePath(to); err != nil || o.base != f.o.base {
		return fmt.Errorf("%w: %s cannot be published as %s", ErrUnsafePath, from, to)
	}
	f.tmp = false
	f.idx.gen.Store(f.gen)
	return nil
}

// unlinkFile removes a bus's name: the index names no generation any more.
// Objects cannot be deleted on Windows; they go when their last handle
// closes. The owner mutex and tmp paths have nothing to remove.
func unlinkFile(path string) error {
	o, kind, err := parsePath(path)
	if err != nil {
		return err
	}
	if kind != pathSegment {
		return nil
	}
	idx, err := openIndex(o, nil)
	if err != nil {
		return err
	}
	defer idx.close()
	if idx.gen.Swap(0) == 0 {
		return fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
	}
	return nil
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

func tmpName(path string) string { return path + ".tmp-" + strconv.Itoa(os.Getpid()) }

func getpid() uint32 { return uint32(os.Getpid()) }

// geteuid is 0 on Windows: ownership is the objects' DACL, which lets only
// allowed users open them at all, so every bus that opens is "ours".
func geteuid() int { return 0 }

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return errors.Is(err, windows.ERROR_ACCESS_DENIED)
	}
	defer windows.CloseHandle(h)
	var code uint32
	if windows.GetExitCodeProcess(h, &code) != nil {
		return true
	}
	return code == 259 // STILL_ACTIVE
}
