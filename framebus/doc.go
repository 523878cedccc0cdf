// Package framebus moves live video frames between processes on one machine
// through shared memory, implementing the wire contract of docs/PROTOCOL.md
// (version 1, with the amendments of its section 7).
//
// A producer owns a bus: a segment file in the bus directory (/dev/shm, or
// $FRAMEBUS_DIR) holding a control block and 2-8 frame slots. It writes each
// frame into the back slot under a sequence lock, flips the active index and
// wakes the consumers: with one FUTEX_WAKE on the bus's shared wake word
// (amendment 7, the shared wake word), which every consumer of this package sleeps on, and through
// the futex semaphore in each consumer's own table entry for readers that
// do not know that word. Consumers sleep (never polling), read the newest
// frame, and validate it with the sequence lock, so a torn frame is never
// delivered; a slow consumer loses frames (counted), it never slows the
// producer or the other consumers.
//
//	p, _ := framebus.Create("cam0", framebus.ProducerOptions{Format: framebus.Format{Width: 1280, Height: 720}})
//	p.Fill(func(slot []byte) (int, framebus.Meta, error) { // the back slot, zero-copy
//		return fill(slot), framebus.Meta{CaptureNS: framebus.Now()}, nil
//	})
//
//	c, _ := framebus.Open("cam0", framebus.ConsumerOptions{Wait: 10 * time.Second})
//	f, err := c.Next(ctx)                        // sleeps until the commit wakes it
//	err = f.Use(func(data []byte) { use(data) }) // a read-only view into the slot
//
// Begin and Commit are the unguarded halves of Fill; Publish is the copying
// form; ReadInto the copying form of Next. Package framebus/feed is the
// consumer loop every command shares: it waits for a producer, rides out
// restarts and transient errors, and copies frames for consumers that hand
// them to C code.
//
// # Holds
//
// A zero-copy frame of Next lives until the producer comes back to its slot,
// slot_count - 1 frames later: an analysis slower than the camera finds its
// frames overwritten (Frame.Valid, Frame.Use say so). Frame.Hold keeps a
// frame (PROTOCOL.md amendment 10, holds), in the manner of iceoryx2's loans: the
// producer writes around the held slot, never waits, and the Hold's Data
// stays an intact view across later calls to Next until Release.
//
//	h, err := f.Hold()              // f from Next, before the next Next
//	if err != nil {                 // errors.Is(err, ErrNoHold): ErrHoldCap, ErrOverwritten,
//		copy(mine, f.Data)          // ErrHoldUnsupported or ErrHoldCopy; copy instead
//	} else {
//		go analyse(h)               // h.Data() stays intact; h.Release() when done
//	}
//
// At most slot_count - 2 slots of a bus are held at once, by all its
// consumers together (the cap: a 2-slot bus holds none), so the producer
// always has a slot to write and the stream goes on for every consumer; a
// hold past the cap is refused at once, never waited for. Holds of one frame
// share its slot; a consumer's holds end with its Close or its death (the
// producer reclaims its entry). ProducerOptions.HoldMax, a lease, lets the
// producer take back holds older than it (Hold.Valid turns false); there is
// none by default. Hold and Release allocate nothing. Not to be confused with
// ConsumerOptions.Hold, the held wait, which is about how a consumer sleeps.
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
// ErrStalled, ErrRetired, ErrEndOfStream, ErrTableFull, ErrSlotHeld,
// ErrNoHold, ErrHoldReleased, ...) and, where there is more to say, a detail
// type (*VersionError, *LayoutError, *BusyError, *PermissionError,
// *SpaceError, *TableFullError, *FaultError, *HoldError). A context deadline gives an error wrapping
// os.ErrDeadlineExceeded. Misuse (a second Begin, Commit without Begin,
// anything after Close) is an error, never a deadlock.
//
// # Memory and safety
//
// Publishing and reading allocate nothing per frame. Every value read from a
// segment is loaded once and checked against the mapped length before use;
// a hostile or corrupt segment yields a typed error, never a panic. A bus
// file truncated under a process makes its mapping fault: every access
// framebus makes is guarded (a *FaultError instead of SIGBUS), and so are
// the caller's writes inside Fill and reads inside Frame.Use and Guard; C
// code handed a view is not, so it must be given a copy. Consumers map the
// frame data read-only. Segments are created 0600 (0660 with a group as an
// option), never world-writable, and every path is opened with O_NOFOLLOW.
// unsafe is confined to *_unsafe.go files; the sequence-lock fences per
// architecture are in fence_*.go.
//
// The package is pure Go (CGO_ENABLED=0) over golang.org/x/sys. It runs on
// Linux (files in /dev/shm, OFD locks, futexes) and Windows (named file
// mappings, mutexes and semaphores: PROTOCOL.md section 1's Windows column,
// without the shared wake word); on other systems every entry point returns
// an error wrapping errors.ErrUnsupported. docs/DESIGN.md section 7 walks
// through the files.
package framebus
