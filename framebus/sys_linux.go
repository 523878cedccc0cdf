package framebus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The Linux side of PROTOCOL.md section 1: files in the bus directory,
// open-file-description locks, shared mappings and statfs.

type fileID struct{ dev, ino uint64 }

// sysFile is an open segment or lock file.
type sysFile struct {
	fd   int
	path string
}

func pathErr(op, path string, err error) error {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		pe := &PermissionError{Path: path, Err: err}
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil {
			pe.Mode = fs.FileMode(st.Mode & 0o7777)
			pe.UID = st.Uid
		}
		return pe
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %s is a symbolic link", ErrUnsafePath, path)
	case errors.Is(err, unix.EISDIR):
		return fmt.Errorf("%w: %s is a directory", ErrUnsafePath, path)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: a component of %s is not a directory", ErrNotFound, path)
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, path, err)
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

const openFlags = unix.O_NOFOLLOW | unix.O_CLOEXEC

// openExisting opens an existing segment or lock file without following
// symbolic links. It refuses anything but a regular file.
func openExisting(path string, write bool) (*sysFile, error) {
	flags := openFlags | unix.O_RDONLY
	if write {
		flags = openFlags | unix.O_RDWR
	}
	fd, err := unix.Open(path, flags|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	f := &sysFile{fd: fd, path: path}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.close()
		return nil, pathErr("stat", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrUnsafePath, path)
	}
	return f, nil
}

// createExcl creates a new file that must not exist yet, with exactly mode
// (the umask is overridden by fchmod) and, if gid >= 0, group gid.
func createExcl(path string, mode fs.FileMode, gid int) (*sysFile, error) {
	fd, err := unix.Open(path, openFlags|unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, uint32(mode.Perm()))
	if err != nil {
		return nil, pathErr("create", path, err)
	}
	f := &sysFile{fd: fd, path: path}
	if err := f.setMode(mode, gid); err != nil {
		f.close()
		unix.Unlink(path)
		return nil, err
	}
	return f, nil
}

func (f *sysFile) setMode(mode fs.FileMode, gid int) error {
	if gid >= 0 {
		if err := unix.Fchown(f.fd, -1, gid); err != nil {
			return pathErr("chown", f.path, err)
		}
	}
	if err := unix.Fchmod(f.fd, uint32(mode.Perm())); err != nil {
		return pathErr("chmod", f.path, err)
	}
	return nil
}

// openLockFile opens (creating if needed) the producer's lock file.
func openLockFile(path string, mode fs.FileMode, gid int) (*sysFile, bool, error) {
	fd, err := unix.Open(path, openFlags|unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, uint32(mode.Perm()))
	created := err == nil
	if errors.Is(err, unix.EEXIST) {
		fd, err = unix.Open(path, openFlags|unix.O_RDWR, 0)
	}
	if err != nil {
		return nil, false, pathErr("open", path, err)
	}
	f := &sysFile{fd: fd, path: path}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.close()
		return nil, false, pathErr("stat", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.close()
		return nil, false, fmt.Errorf("%w: %s is not a regular file", ErrUnsafePath, path)
	}
	if created {
		if err := f.setMode(mode, gid); err != nil {
			f.close()
			return nil, false, err
		}
	} else if st.Uid != uint32(os.Geteuid()) {
		// Even for root: the owner of a lock file can unlink it (in a sticky
		// /dev/shm too) and so make a live producer look gone.
		f.close()
		return nil, false, &PermissionError{Path: path, Mode: fs.FileMode(st.Mode & 0o7777), UID: st.Uid, Err: errors.New("lock file belongs to another user")}
	}
	return f, created, nil
}

func (f *sysFile) close() {
	if f != nil && f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}

func (f *sysFile) stat() (size int64, id fileID, uid uint32, mode fs.FileMode, err error) {
	var st unix.Stat_t
	if err = unix.Fstat(f.fd, &st); err != nil {
		return 0, fileID{}, 0, 0, pathErr("stat", f.path, err)
	}
	return st.Size, fileID{uint64(st.Dev), st.Ino}, st.Uid, fs.FileMode(st.Mode & 0o7777), nil
}

func (f *sysFile) size() (int64, error) {
	s, _, _, _, err := f.stat()
	return s, err
}

// preadFull reads len(b) bytes at off, or fewer at end of file.
func (f *sysFile) preadFull(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(f.fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, pathErr("read", f.path, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// allocate gives the file its size and reserves its blocks, so that a full
// tmpfs fails here with ENOSPC instead of with SIGBUS at first write.
func (f *sysFile) allocate(size int64) error {
	err := unix.Fallocate(f.fd, 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = unix.Ftruncate(f.fd, size)
	}
	if err != nil {
		return pathErr("allocate", f.path, err)
	}
	return nil
}

// mapRegion maps [off, off+n) of the file shared, writable or read-only,
// with its pages pre-faulted.
func (f *sysFile) mapRegion(off, n uint64, write bool) ([]byte, error) {
	prot := unix.PROT_READ
	if write {
		prot |= unix.PROT_WRITE
	}
	if n == 0 {
		return nil, nil
	}
	if off > 1<<62 || n > 1<<62 || int(n) < 0 {
		return nil, fmt.Errorf("%w: mapping of %d bytes at %d is out of range", ErrCorrupt, n, off)
	}
	b, err := unix.Mmap(f.fd, int64(off), int(n), prot, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, pathErr("mmap", f.path, err)
	}
	return b, nil
}

func unmap(b []byte) {
	if b != nil {
		unix.Munmap(b)
	}
}

func (f *sysFile) lockOp(cmd int, typ int16, start, n uint64) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(start), Len: int64(n)}
	for {
		err := unix.FcntlFlock(uintptr(f.fd), cmd, &lk)
		if err != unix.EINTR {
			return err
		}
	}
}

// tryLock takes an OFD lock on [start, start+n) without blocking; it reports
// false when another open file description holds a conflicting lock.
func (f *sysFile) tryLock(start, n uint64, exclusive bool) (bool, error) {
	typ := int16(unix.F_RDLCK)
	if exclusive {
		typ = unix.F_WRLCK
	}
	err := f.lockOp(unix.F_OFD_SETLK, typ, start, n)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return false, nil
	}
	if err != nil {
		return false, pathErr("lock", f.path, err)
	}
	return true, nil
}

func (f *sysFile) unlock(start, n uint64) {
	f.lockOp(unix.F_OFD_SETLK, unix.F_UNLCK, start, n)
}

// conflictingLock is the type of a lock another open file description holds
// on [start, start+n) (F_UNLCK: none), by F_OFD_GETLK, which takes nothing.
func (f *sysFile) conflictingLock(start, n uint64) (int16, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(start), Len: int64(n)}
	for {
		err := unix.FcntlFlock(uintptr(f.fd), unix.F_OFD_GETLK, &lk)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return unix.F_UNLCK, pathErr("lock", f.path, err)
		}
		return lk.Type, nil
	}
}

// The protocol's locks (PROTOCOL.md section 2), as OFD locks.

// lockOwner takes the producer's write lock on byte 0 of the lock file.
func (f *sysFile) lockOwner() (bool, error) { return f.tryLock(0, 1, true) }

// unlockOwner releases it.
func (f *sysFile) unlockOwner() { f.unlock(0, 1) }

// ownerHeld reports whether another open file description holds a write
// lock on byte 0: the producer's lock. A read lock there is not a producer:
// anybody who can read the lock file can take one.
func (f *sysFile) ownerHeld() (bool, error) {
	typ, err := f.conflictingLock(0, 1)
	return typ == unix.F_WRLCK, err
}

// lockEntry takes entry i's liveness lock (its 128 bytes at off): shared
// for the consumer that joins it, exclusive for the producer that reclaims
// it.
func (f *sysFile) lockEntry(i int, off uint64, exclusive bool) (bool, error) {
	return f.tryLock(off, ConsumerEntrySize, exclusive)
}

// unlockEntry releases it.
func (f *sysFile) unlockEntry(i int, off uint64) { f.unlock(off, ConsumerEntrySize) }

// entryHeld reports whether another open file description holds entry i's
// lock (a live consumer), taking nothing.
func (f *sysFile) entryHeld(i int, off uint64) (bool, error) {
	typ, err := f.conflictingLock(off, ConsumerEntrySize)
	return typ != unix.F_UNLCK, err
}

// holdCreation takes the creator's write lock on byte 0 of a temporary file
// and checks that path still names it (PROTOCOL.md amendment 8, creation and liveness across PID namespaces): false
// when a collector holds the lock or removed the file meanwhile.
func (f *sysFile) holdCreation(path string) (bool, error) {
	ok, err := f.tryLock(0, 1, true)
	if err != nil || !ok {
		return false, err
	}
	if same, err := f.isAt(path); err != nil || !same {
		f.unlock(0, 1)
		return false, err
	}
	return true, nil
}

// releaseCreation releases it, once the file is renamed (or given up).
func (f *sysFile) releaseCreation() { f.unlock(0, 1) }

// isAt reports whether the file at path is still this open file (the same
// inode): a lock file or segment that was not unlinked or replaced.
func (f *sysFile) isAt(path string) (bool, error) {
	_, id, _, _, err := f.stat()
	if err != nil {
		return false, err
	}
	info, err := lstatPath(path)
	if err != nil {
		return false, err
	}
	return info.exists && info.regular && info.id == id, nil
}

func lstatPath(path string) (pathInfo, error) {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		return pathInfo{}, nil
	}
	if err != nil {
		return pathInfo{}, pathErr("stat", path, err)
	}
	return pathInfo{
		exists:  true,
		symlink: st.Mode&unix.S_IFMT == unix.S_IFLNK,
		regular: st.Mode&unix.S_IFMT == unix.S_IFREG,
		id:      fileID{uint64(st.Dev), st.Ino},
		uid:     st.Uid,
		mode:    fs.FileMode(st.Mode & 0o7777),
		size:    st.Size,
	}, nil
}

func renameFile(from, to string) error {
	err := unix.Rename(from, to)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %s was removed before it could be renamed to %s", errTempVanished, from, to)
	}
	if err != nil {
		return pathErr("rename", to, err)
	}
	return nil
}

func unlinkFile(path string) error {
	if err := unix.Unlink(path); err != nil {
		return pathErr("remove", path, err)
	}
	return nil
}

// freeSpace returns the bytes available to an unprivileged writer in dir.
func freeSpace(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, pathErr("statfs", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func tmpName(path string) string { return path + ".tmp-" + strconv.Itoa(os.Getpid()) }

func getpid() uint32 { return uint32(os.Getpid()) }

// groupID resolves a group name or number; "" means none (-1).
func groupID(g string) (int, error) {
	if g == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(g); err == nil {
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return -1, fmt.Errorf("%w: unknown group %q", ErrBadOptions, g)
	}
	return strconv.Atoi(gr.Gid)
}

func geteuid() int { return os.Geteuid() }

// pidNamespace is the identity of this process's PID namespace (the inode
// number of /proc/self/ns/pid, PROTOCOL.md amendment 8), 0 when unknown.
var pidNamespace = sync.OnceValue(func() uint64 {
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/pid", &st) != nil {
		return 0
	}
	return st.Ino
})
