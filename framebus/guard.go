package framebus

import (
	"fmt"
	"runtime/debug"
)

// A bus file can be truncated or replaced under a process that maps it (by
// the producer's user, or by systemd's RemoveIPC and a new file); touching
// the part of a mapping past the file's new end raises SIGBUS. The Go
// runtime turns such a fault into a panic only on a goroutine that asked for
// it (debug.SetPanicOnFault), and only in Go code: a fault inside C code
// (cgo) kills the process whatever the goroutine asked. So the transport
// guards every access it makes itself, Producer.Fill and Frame.Use guard
// the caller's, and code that hands frames to C copies them first
// (Consumer.ReadInto).

// FaultError is a memory fault on a bus mapping, turned into an error: the
// bus file was truncated or replaced under this process. It wraps
// ErrCorrupt.
type FaultError struct {
	Addr uintptr // the faulting address
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("%v: memory fault at %#x: the bus file was truncated under this process", ErrCorrupt, e.Addr)
}
func (e *FaultError) Unwrap() error { return ErrCorrupt }

// Guard runs fn with memory faults turned into a *FaultError (wrapping
// ErrCorrupt): a read or write of a bus mapping whose file was truncated
// under it ends fn early with that error instead of killing the process with
// SIGBUS. Any other panic goes on as a panic. fn runs on the calling
// goroutine; faults of goroutines it starts and of C code it calls are not
// covered. Guard allocates nothing when fn does not fault.
func Guard(fn func()) error { return guard(fn) }

func guard(fn func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			f, ok := r.(interface{ Addr() uintptr })
			if !ok {
				panic(r)
			}
			err = &FaultError{Addr: f.Addr()}
		}
	}()
	fn()
	return nil
}
