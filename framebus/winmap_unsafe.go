//go:build windows

package framebus

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Mapped views on Windows, and the registry that finds the generation (and
// so the semaphore) behind a sem word's address: futexWakeOn, sleep and
// futexWakeAddr get only the word.

const (
	sizeofSecurityAttributes = unsafe.Sizeof(windows.SecurityAttributes{})
	sizeofSectionBasicInfo   = unsafe.Sizeof(sectionBasicInfo{})
	sizeofMutantBasicInfo    = uint32(unsafe.Sizeof(mutantBasicInfo{}))
	sizeofMemoryStatusEx     = unsafe.Sizeof(memoryStatusEx{})
)

// mapView maps n bytes at off of a section (off a multiple of 65536).
func mapView(h windows.Handle, off, n uint64, write bool) ([]byte, error) {
	access := uint32(windows.FILE_MAP_READ)
	if write {
		access = windows.FILE_MAP_WRITE // read and write
	}
	addr, err := windows.MapViewOfFile(h, access, uint32(off>>32), uint32(off), uintptr(n))
	if err != nil {
		return nil, err
	}
	// The view is memory outside Go's heap: reinterpreting the address
	// through a variable keeps vet's uintptr check quiet, rightly here.
	p := *(*unsafe.Pointer)(unsafe.Pointer(&addr))
	return unsafe.Slice((*byte)(p), int(n)), nil
}

// unmapView unmaps a view that is not in the registry.
func unmapView(b []byte) {
	if len(b) > 0 {
		windows.UnmapViewOfFile(uintptr(unsafe.Pointer(&b[0])))
	}
}

type view struct {
	base, n uintptr
	off     uint64 // offset of the view in its section
	f       *sysFile
}

var (
	viewsMu sync.RWMutex
	views   []view
)

func registerView(b []byte, off uint64, f *sysFile) {
	viewsMu.Lock()
	views = append(views, view{base: uintptr(unsafe.Pointer(&b[0])), n: uintptr(len(b)), off: off, f: f})
	viewsMu.Unlock()
}

// unmap unmaps a view of mapRegion.
func unmap(b []byte) {
	if len(b) == 0 {
		return
	}
	base := uintptr(unsafe.Pointer(&b[0]))
	viewsMu.Lock()
	for i := range views {
		if views[i].base == base {
			views[i] = views[len(views)-1]
			views = views[:len(views)-1]
			break
		}
	}
	windows.UnmapViewOfFile(base)
	viewsMu.Unlock()
}

// lookupView finds the mapped view holding addr: its generation and the
// offset of addr in the section. Called with viewsMu held.
func lookupView(addr uintptr) (*sysFile, uint64, bool) {
	for i := range views {
		v := &views[i]
		if addr >= v.base && addr-v.base < v.n {
			return v.f, v.off + uint64(addr-v.base), true
		}
	}
	return nil, 0, false
}
