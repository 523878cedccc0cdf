package framebus

import (
	"errors"
	"fmt"
	"os"
)

// Error is the error type of every framebus operation: the operation, the bus
// name and the underlying cause, which wraps one of the sentinels below.
type Error struct {
	Op   string // "create", "open", "next", "read", "inspect", "remove", ...
	Name string // the bus name (may be empty for List)
	Err  error
}

func (e *Error) Error() string {
	if e.Name == "" {
		return "framebus " + e.Op + ": " + e.Err.Error()
	}
	return "framebus " + e.Op + " " + e.Name + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Sentinels, tested with errors.Is.
var (
	ErrBadName         = errors.New("bad bus name")
	ErrBadMagic        = errors.New("not a framebus segment (bad magic)")
	ErrVersionMismatch = errors.New("abi version mismatch")
	ErrCorrupt         = errors.New("corrupt segment layout")
	ErrBusy            = errors.New("bus is owned by a live producer")
	ErrPermission      = errors.New("permission denied")
	ErrNoSpace         = errors.New("not enough space in the bus directory")
	ErrNotFound        = errors.New("no such bus")
	ErrProducerGone    = errors.New("producer gone")
	ErrStalled         = errors.New("producer stalled (heartbeat stale)")
	ErrRetired         = errors.New("segment retired")
	ErrEndOfStream     = errors.New("producer closed the stream")
	ErrTableFull       = errors.New("consumer table full")
	ErrChecksum        = errors.New("frame checksum mismatch")
	ErrShortBuffer     = errors.New("destination buffer too small")
	ErrBadOptions      = errors.New("bad options")
	ErrUnsafePath      = errors.New("unsafe file at bus path")
	ErrConsumerClosed  = errors.New("consumer closed")
	ErrProducerClosed  = errors.New("producer already closed")
	ErrSlotNotHeld     = errors.New("no slot held: call Begin first")
	ErrSlotHeld        = errors.New("a slot is held already: Commit or Abort it first")
	ErrOverwritten     = errors.New("frame overwritten while in use")

	// Holds (Frame.Hold, PROTOCOL.md amendment 10). A refused hold is an
	// error matching ErrNoHold and one reason: ErrHoldCap, ErrOverwritten
	// (the frame was overwritten before the grant), ErrHoldUnsupported or
	// ErrHoldCopy (a *HoldError).
	ErrNoHold          = errors.New("frame not held")
	ErrHoldCap         = errors.New("hold cap reached (slot_count - 2 slots held on the bus)")
	ErrHoldUnsupported = errors.New("the producer does not honour holds (an older producer)")
	ErrHoldCopy        = errors.New("frame is a copy (ReadInto): there is nothing to hold")
	ErrHoldReleased    = errors.New("hold already released")
)

// HoldError is a refused hold: Reason is ErrHoldCap, ErrOverwritten,
// ErrHoldUnsupported or ErrHoldCopy. It matches ErrNoHold and its reason.
type HoldError struct{ Reason error }

func (e *HoldError) Error() string { return "hold refused: " + e.Reason.Error() }
func (e *HoldError) Unwrap() error { return e.Reason }

// Is makes every HoldError match ErrNoHold (without allocating, as an
// Unwrap() []error would on each errors.Is).
func (e *HoldError) Is(target error) bool { return target == ErrNoHold }

// ErrDeadlineExceeded is what Next and ReadInto return when the context's
// deadline passes (it is os.ErrDeadlineExceeded, wrapped in *Error).
var ErrDeadlineExceeded = os.ErrDeadlineExceeded

// VersionError details an abi_version refusal.
type VersionError struct{ Got, Want uint16 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("abi version mismatch: segment has abi_version %d, this reader speaks %d", e.Got, e.Want)
}
func (e *VersionError) Unwrap() error { return ErrVersionMismatch }

// LayoutError names the field of a corrupt segment and its value.
type LayoutError struct {
	Field  string
	Value  uint64
	Reason string
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("corrupt segment layout: %s = %d: %s", e.Field, e.Value, e.Reason)
}
func (e *LayoutError) Unwrap() error { return ErrCorrupt }

// BusyError names the live owner of a bus: its pid and, when it runs in
// another PID namespace than this process, that namespace (then the pid
// names no process here).
type BusyError struct {
	PID   uint32
	PIDNS uint64 // the owner's PID namespace, 0 when unknown or ours
}

func (e *BusyError) Error() string {
	switch {
	case e.PID == 0:
		return "bus is owned by a live producer"
	case e.PIDNS != 0:
		return fmt.Sprintf("bus is owned by a live producer (pid %d in another PID namespace, %d)", e.PID, e.PIDNS)
	}
	return fmt.Sprintf("bus is owned by a live producer (pid %d)", e.PID)
}
func (e *BusyError) Unwrap() error { return ErrBusy }

// PermissionError names the file and its mode.
type PermissionError struct {
	Path string
	Mode os.FileMode
	UID  uint32
	Err  error
}

func (e *PermissionError) Error() string {
	if e.Mode == 0 && e.UID == 0 {
		return fmt.Sprintf("permission denied: %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("permission denied: %s (mode %04o, owner uid %d): %v", e.Path, e.Mode.Perm(), e.UID, e.Err)
}
func (e *PermissionError) Unwrap() []error { return []error{ErrPermission, os.ErrPermission} }

// SpaceError names the bytes a segment needs and the bytes available.
type SpaceError struct {
	Dir               string
	Needed, Available uint64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough space in %s: segment needs %d bytes, %d available (in Docker, raise --shm-size)", e.Dir, e.Needed, e.Available)
}
func (e *SpaceError) Unwrap() error { return ErrNoSpace }

// TableFullError names the capacity of a full consumer table.
type TableFullError struct{ Capacity uint32 }

func (e *TableFullError) Error() string {
	return fmt.Sprintf("consumer table full (capacity %d)", e.Capacity)
}
func (e *TableFullError) Unwrap() error { return ErrTableFull }

// EndOfStreamError is how ErrEndOfStream arrives from Next and ReadInto: the
// sequence number of the end-of-stream frame, and the frames missed between
// the last delivered frame and it (they are in no Frame.Dropped).
type EndOfStreamError struct {
	Seq     uint64
	Dropped uint64
}

func (e *EndOfStreamError) Error() string {
	if e.Dropped == 0 {
		return ErrEndOfStream.Error()
	}
	return fmt.Sprintf("%v (%d frames dropped before the end of stream)", ErrEndOfStream, e.Dropped)
}
func (e *EndOfStreamError) Unwrap() error { return ErrEndOfStream }

// NameError explains why a bus name was refused.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string { return fmt.Sprintf("bad bus name %q: %s", e.Name, e.Reason) }
func (e *NameError) Unwrap() error { return ErrBadName }

func wrap(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	return &Error{Op: op, Name: name, Err: err}
}
