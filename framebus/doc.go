// Package framebus moves live video frames between processes on one machine
// through shared memory, implementing the wire contract of docs/PROTOCOL.md
// (version 1).
//
// A producer owns a bus: a segment file in the bus directory (/dev/shm, or
// $FRAMEBUS_DIR) holding a control block and 2-8 frame slots. It writes each
// frame into the back slot under a sequence lock, flips the active index and
// wakes every consumer through a futex semaphore in the consumer's own table
// entry. Consumers sleep on that semaphore (never polling), read the newest
// frame, and validate it with the sequence lock, so a torn frame is never
// delivered; a slow consumer loses frames (counted), it never slows the
// producer or the other consumers.
//
//	p, _ := framebus.Create("cam0", framebus.ProducerOptions{Format: framebus.Format{Width: 1280, Height: 720}})
//	buf, _ := p.Begin()                               // the back slot, zero-copy
//	n := fill(buf)
//	p.Commit(n, framebus.Meta{CaptureNS: framebus.Now()})
//
//	c, _ := framebus.Open("cam0", framebus.ConsumerOptions{Wait: 10 * time.Second})
//	f, err := c.Next(ctx)                             // sleeps on the semaphore
//	use(f.Data); ok := f.Valid()                      // a read-only view into the slot
//
// # Liveness and recovery
//
// The producer holds an open-file-description lock on byte 0 of
// framebus.NAME.lock for its whole life; the kernel drops it when the process
// dies, kill -9 included, and consumers test it (F_OFD_GETLK) on every wait
// timeout (one heartbeat interval). A heartbeat word catches a producer that
// is alive but stuck. Each consumer holds a shared lock on its own table
// entry; the producer reclaims only entries it can lock exclusively. A
// producer restart or a format change is a new generation: a complete file
// renamed over the name, which consumers follow by themselves
// (Frame.GenerationChanged). Close ends the stream with an end-of-stream
// frame, so consumers return ErrEndOfStream at once.
//
// # Errors
//
// Every error is an *Error{Op, Name, Err} whose Err wraps a sentinel tested
// with errors.Is (ErrBadName, ErrBadMagic, ErrVersionMismatch, ErrCorrupt,
// ErrBusy, ErrPermission, ErrNoSpace, ErrNotFound, ErrProducerGone,
// ErrStalled, ErrRetired, ErrEndOfStream, ErrTableFull, ...) and, where there is
// more to say, a detail type (*VersionError, *LayoutError, *BusyError,
// *PermissionError, *SpaceError, *TableFullError). A context deadline gives
// an error wrapping os.ErrDeadlineExceeded.
//
// # Memory and safety
//
// Publishing and reading allocate nothing per frame. Every value read from a
// segment is loaded once and checked against the mapped length before use;
// a hostile or corrupt segment yields a typed error, never a panic. Consumers
// map the frame data read-only. Segments are created 0600 (0660 with a group
// as an option), never world-writable, and every path is opened with
// O_NOFOLLOW. unsafe is confined to *_unsafe.go files; the sequence-lock
// fences per architecture are in fence_*.go.
//
// The package is pure Go (CGO_ENABLED=0) over golang.org/x/sys/unix. On
// systems other than Linux every entry point returns an error wrapping
// errors.ErrUnsupported.
package framebus
