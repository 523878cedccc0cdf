package feed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Sentinels of Next, tested with errors.Is.
var (
	// ErrWaiting: there is no producer right now (not started yet, gone,
	// stalled, or it closed the stream and the feed waits for the next one).
	// The error is a *WaitingError; call Next again.
	ErrWaiting = errors.New("waiting for producer")
	// ErrIdle: no new frame within Options.Poll; call Next again.
	ErrIdle = errors.New("no new frame yet")
	// ErrNoProducer: the wait for a producer (Options.Timeout) ran out.
	ErrNoProducer = errors.New("no producer")
	// ErrStop ends Run without an error when fn returns it.
	ErrStop = errors.New("stop")
)

// WaitingError says why a Feed has no frame to give and since when.
type WaitingError struct {
	Name   string
	Since  time.Time
	Reason string // "not started", "gone", "stalled", "closed the stream", or a transient bus error
}

func (e *WaitingError) Error() string {
	return fmt.Sprintf("waiting for producer of %s (%s, %v)", e.Name, e.Reason, time.Since(e.Since).Round(100*time.Millisecond))
}

func (e *WaitingError) Unwrap() error { return ErrWaiting }

// NoProducerError is the end of a bounded wait for a producer.
type NoProducerError struct {
	Name, Dir string
	Waited    time.Duration
	Gone      bool // the producer was there and left; else it never came
}

func (e *NoProducerError) Error() string {
	if e.Gone {
		return fmt.Sprintf("bus %s: the producer is gone and did not come back within %v", e.Name, e.Waited)
	}
	return fmt.Sprintf("no bus %q in %s after waiting %v for a producer ('framebus ls' lists the buses)", e.Name, framebus.Dir(e.Dir), e.Waited)
}

func (e *NoProducerError) Unwrap() error { return ErrNoProducer }

// Kind is what an error of framebus.Consumer's Next or ReadInto means to a
// consumer loop. Every loop over a bus decides by it: Feed does, and so does
// a loop that must see each event (a test's instrumented consumer).
type Kind int

const (
	// Fatal: give up (a permission error, a bad name, a closed consumer,
	// a buffer too small).
	Fatal Kind = iota
	// Waiting: no producer now, it is gone or stalled (reported once per
	// episode); calling Next again waits for it to come back.
	Waiting
	// EndOfStream: the producer closed the stream (ErrEndOfStream, or the
	// segment RETIRED with nobody to replace it).
	EndOfStream
	// Transient: a bus error that passes by itself while the producer
	// lives: a segment truncated or replaced under us (the producer
	// publishes a new generation), a frame that failed its checksum (it is
	// consumed; the next is read), a new generation not readable yet.
	Transient
	// Deadline: the context's deadline passed or it was cancelled.
	Deadline
)

// Classify says what kind of error err is.
func Classify(err error) Kind {
	switch {
	case errors.Is(err, framebus.ErrEndOfStream), errors.Is(err, framebus.ErrRetired):
		return EndOfStream
	case errors.Is(err, framebus.ErrProducerGone), errors.Is(err, framebus.ErrStalled):
		return Waiting
	case errors.Is(err, framebus.ErrDeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Deadline
	case errors.Is(err, framebus.ErrCorrupt), errors.Is(err, framebus.ErrChecksum),
		errors.Is(err, framebus.ErrBadMagic), errors.Is(err, framebus.ErrVersionMismatch):
		return Transient
	}
	return Fatal
}
