//go:build !linux && !windows

package framebus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// framebus runs on Linux (sys_linux.go) and Windows (sys_windows.go).
// On every other system (darwin, the BSDs, ...) every entry point fails with an
// error that wraps errors.ErrUnsupported.

var errUnsupported = fmt.Errorf("framebus is not implemented on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)

type fileID struct{ dev, ino uint64 }

type sysFile struct {
	fd   int
	path string
}

func openExisting(path string, write bool) (*sysFile, error) { return nil, errUnsupported }
func createExcl(path string, mode fs.FileMode, gid int) (*sysFile, error) {
	return nil, errUnsupported
}
func openLockFile(path string, mode fs.FileMode, gid int) (*sysFile, bool, error) {
	return nil, false, errUnsupported
}
func (f *sysFile) close() {}
func (f *sysFile) stat() (int64, fileID, uint32, fs.FileMode, error) {
	return 0, fileID{}, 0, 0, errUnsupported
}
func (f *sysFile) size() (int64, error)                            { return 0, errUnsupported }
func (f *sysFile) preadFull(b []byte, off int64) (int, error)      { return 0, errUnsupported }
func (f *sysFile) allocate(size int64) error                       { return errUnsupported }
func (f *sysFile) mapRegion(off, n uint64, w bool) ([]byte, error) { return nil, errUnsupported }
func (f *sysFile) lockOwner() (bool, error)                        { return false, errUnsupported }
func (f *sysFile) unlockOwner()                                    {}
func (f *sysFile) ownerHeld() (bool, error)                        { return false, errUnsupported }
func (f *sysFile) lockEntry(i int, off uint64, x bool) (bool, error) {
	return false, errUnsupported
}
func (f *sysFile) unlockEntry(i int, off uint64)             {}
func (f *sysFile) entryHeld(i int, off uint64) (bool, error) { return false, errUnsupported }
func (f *sysFile) isAt(path string) (bool, error)            { return false, errUnsupported }
func unmap(b []byte)                                         {}
func lstatPath(path string) (pathInfo, error)                { return pathInfo{}, errUnsupported }
func renameFile(from, to string) error                       { return errUnsupported }
func unlinkFile(path string) error                           { return errUnsupported }
func freeSpace(dir string) (uint64, error)                   { return 0, errUnsupported }
func tmpName(path string) string                             { return path + ".tmp" }
func getpid() uint32                                         { return uint32(os.Getpid()) }
func geteuid() int                                           { return os.Geteuid() }
func groupID(g string) (int, error)                          { return -1, nil }
func futexWakeOn(w *atomic.Uint32, n int)                    {}
func futexWakeAddr(addr uintptr, n int)                      {}
func sleep(w *atomic.Uint32, d time.Duration) error          { time.Sleep(d); return errTimedOut }

func pidNamespace() uint64                                { return 0 }
func (f *sysFile) holdCreation(path string) (bool, error) { return false, errUnsupported }
func (f *sysFile) releaseCreation()                       {}
