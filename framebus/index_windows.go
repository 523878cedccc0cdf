//go:build windows

package framebus

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/windows"
	"sync/atomic"
)

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
