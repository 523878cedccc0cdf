package viewer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Sentinels of Feed.Next, tested with errors.Is.
var (
	// ErrWaiting: there is no producer right now (not started yet, gone,
	// stalled, or it closed the stream and the feed waits for the next one).
	// The error is a *WaitingError; call Next again.
	ErrWaiting = errors.New("waiting for producer")
	// ErrIdle: no new frame within FeedOptions.Poll; call Next again.
	ErrIdle = errors.New("no new frame yet")
	// ErrNoProducer: the wait for a producer (FeedOptions.Timeout) ran out.
	ErrNoProducer = errors.New("no producer")
)

// WaitingError says why a Feed has no frame to give and since when.
type WaitingError struct {
	Name   string
	Since  time.Time
	Reason string // "not started", "gone", "stalled", "closed the stream"
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

// FeedOptions configures a Feed.
type FeedOptions struct {
	Dir string // bus directory ("" for $FRAMEBUS_DIR or /dev/shm)

	// Timeout bounds the wait for a producer that has not created the bus
	// yet and, without Persist, for a gone producer to come back. 0 fails at
	// once.
	Timeout time.Duration

	// Persist keeps the feed alive after it has joined a bus: when the
	// producer leaves or closes the stream it waits for the next one for as
	// long as it takes (a preview window). Without it the end of the stream
	// ends the feed (framebus.ErrEndOfStream), as for tail.
	Persist bool

	// Poll, when > 0, bounds each Next call: with no new frame within Poll
	// it returns ErrIdle (a window redraws and reads its keys meanwhile).
	// It costs a timer per call; 0 (the default) blocks and allocates
	// nothing per frame.
	Poll time.Duration
}

// FeedStats are a Feed's counters since it was made.
type FeedStats struct {
	Frames    uint64 // frames delivered by Next
	Dropped   uint64 // frames the bus had that the feed never saw (skipped to the newest)
	Discarded uint64 // zero-copy frames overwritten while in use (Keep said false)
	Copied    uint64 // frames read with ReadInto (copy mode)
	Joins     uint64 // buses joined (1 + producers followed after a close)
}

// Feed is a consumer that reads the newest frame of a bus and keeps doing
// so across producer restarts: it waits (bounded) for a producer that has not
// started, follows new generations (the framebus consumer does that itself)
// and, with Persist, rejoins after the stream was closed.
//
// Frames are zero-copy views into the bus: use a frame, then call Keep,
// which says whether it stayed intact. When one did not (a reader slower
// than the producer's slot reuse), the feed reads the next frames with
// ReadInto into a buffer it reuses (copy mode) and returns to zero-copy
// after a while. Next and Keep allocate nothing per frame (Poll aside).
//
// A Feed is not safe for concurrent use.
type Feed struct {
	name string
	o    FeedOptions

	c        *framebus.Consumer
	started  time.Time // when the feed started waiting for its first producer
	joined   bool      // a bus was joined at least once
	wait     *WaitingError
	lastWait time.Time // when Next last returned the WaitingError

	buf      []byte // copy mode buffer
	copyLeft int    // frames still to read in copy mode
	copied   bool   // the last frame came from ReadInto
	discard  uint64 // discarded frames not yet reported in a Frame's drops
	st       FeedStats
}

// copyFrames is how many frames the feed reads in copy mode after a
// zero-copy frame was overwritten in use.
const copyFrames = 64

// NewFeed makes a feed of the bus name. It joins nothing until Next.
func NewFeed(name string, o FeedOptions) *Feed {
	return &Feed{name: name, o: o}
}

// Name is the bus name.
func (f *Feed) Name() string { return f.name }

// Stats returns the counters.
func (f *Feed) Stats() FeedStats { return f.st }

// Consumer is the current framebus consumer (nil while none is joined).
func (f *Feed) Consumer() *framebus.Consumer { return f.c }

// Waiting is the current wait (nil while frames flow).
func (f *Feed) Waiting() *WaitingError { return f.wait }

// Close leaves the bus.
func (f *Feed) Close() error {
	if f.c == nil {
		return nil
	}
	err := f.c.Close()
	f.c = nil
	return err
}

// pollWait is how often Next reports a wait that goes on.
const pollWait = 250 * time.Millisecond

// Next returns the newest frame not yet delivered (a feed that has just
// joined a bus waits for the next frame published). Its Dropped counts every
// frame skipped since the previous one (frames the bus had meanwhile, and
// frames discarded by Keep). Errors: *WaitingError (call again), ErrIdle
// (with Poll; call again), *NoProducerError, framebus.ErrEndOfStream (the stream
// ended, without Persist), the context's error, or the bus's own errors.
func (f *Feed) Next(ctx context.Context) (*framebus.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // (a consumer with a frame ready would not look)
	}
	if f.c == nil {
		if err := f.join(ctx); err != nil {
			return nil, err
		}
	}
	rctx, cancel := ctx, context.CancelFunc(nil)
	switch {
	case f.wait != nil && !f.o.Persist:
		rctx, cancel = context.WithDeadline(ctx, f.wait.Since.Add(f.o.Timeout))
	case f.wait != nil:
		rctx, cancel = context.WithTimeout(ctx, pollWait)
	case f.o.Poll > 0:
		rctx, cancel = context.WithTimeout(ctx, f.o.Poll)
	}
	var fr *framebus.Frame
	var err error
	if f.copyLeft > 0 {
		fr, err = f.readCopy(rctx)
	} else {
		fr, err = f.c.Next(rctx)
		f.copied = false
	}
	if cancel != nil {
		cancel()
	}
	if err == nil {
		f.wait = nil
		f.st.Frames++
		f.st.Dropped += fr.Dropped
		fr.Dropped += f.discard
		f.discard = 0
		return fr, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return nil, context.DeadlineExceeded // the caller's (framebus may see it first)
	}
	var eos *framebus.EndOfStreamError
	if errors.As(err, &eos) {
		f.st.Dropped += eos.Dropped
	}
	switch {
	case errors.Is(err, framebus.ErrEndOfStream), errors.Is(err, framebus.ErrRetired):
		f.c.Close()
		f.c = nil
		if !f.o.Persist {
			return nil, err
		}
		f.setWait("closed the stream")
		f.lastWait = time.Now()
		return nil, f.wait
	case errors.Is(err, framebus.ErrProducerGone), errors.Is(err, framebus.ErrStalled):
		reason := "gone"
		if errors.Is(err, framebus.ErrStalled) {
			reason = "stalled"
		}
		f.setWait(reason)
		f.lastWait = time.Now()
		return nil, f.wait
	case errors.Is(err, framebus.ErrDeadlineExceeded):
		if f.wait != nil {
			if !f.o.Persist && !time.Now().Before(f.wait.Since.Add(f.o.Timeout)) {
				return nil, &NoProducerError{Name: f.name, Dir: f.o.Dir, Waited: f.o.Timeout, Gone: true}
			}
			f.lastWait = time.Now()
			return nil, f.wait
		}
		return nil, ErrIdle
	}
	return nil, err
}

// setWait starts (or goes on with) a wait for a producer.
func (f *Feed) setWait(reason string) {
	if f.wait == nil {
		f.wait = &WaitingError{Name: f.name, Since: time.Now(), Reason: reason}
		return
	}
	f.wait.Reason = reason
}

// join opens the bus, waiting for its producer: bounded by Timeout before the
// first join (and without Persist), for ever after with Persist. It returns a
// *WaitingError every pollWait (or Poll) while it waits.
func (f *Feed) join(ctx context.Context) error {
	if f.started.IsZero() {
		f.started = time.Now()
	}
	bounded := !f.joined || !f.o.Persist
	var deadline time.Time
	if bounded {
		since := f.started
		if f.wait != nil {
			since = f.wait.Since
		}
		deadline = since.Add(f.o.Timeout)
	}
	step := pollWait
	if f.o.Poll > 0 && f.o.Poll < step {
		step = f.o.Poll
	}
	wait := step
	if bounded {
		wait = min(step, max(0, time.Until(deadline)))
	}
	// A preview (Persist) shows the picture already on the bus at once, even
	// of a paused producer; analysis and recording start at the next frame.
	c, err := framebus.OpenContext(ctx, f.name, framebus.ConsumerOptions{Dir: f.o.Dir, Wait: wait, Newest: f.o.Persist})
	if err == nil {
		f.c = c
		f.joined = true
		f.st.Joins++
		f.wait = nil
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !errors.Is(err, framebus.ErrNotFound) && !errors.Is(err, framebus.ErrProducerGone) {
		return err
	}
	if bounded && !time.Now().Before(deadline) {
		return &NoProducerError{Name: f.name, Dir: f.o.Dir, Waited: f.o.Timeout, Gone: f.joined}
	}
	if f.wait == nil {
		f.wait = &WaitingError{Name: f.name, Since: f.started, Reason: "not started"}
		if f.joined {
			f.wait.Since = time.Now()
		}
	}
	return f.wait
}

// readCopy reads the next frame with ReadInto into the feed's buffer,
// growing it (only) when a generation brings larger frames.
func (f *Feed) readCopy(ctx context.Context) (*framebus.Frame, error) {
	if need := int(f.c.Format().FrameSize); len(f.buf) < need {
		f.buf = make([]byte, need)
	}
	for {
		fr, err := f.c.ReadInto(ctx, f.buf)
		if errors.Is(err, framebus.ErrShortBuffer) {
			f.buf = make([]byte, max(2*len(f.buf), int(f.c.Format().FrameSize)))
			continue
		}
		if err == nil {
			f.copyLeft--
			f.copied = true
			f.st.Copied++
		}
		return fr, err
	}
}

// Keep reports whether fr, the frame Next returned, stayed intact while it
// was used (zero-copy frames: the producer did not come back to its slot;
// copied frames always did). A frame that did not is counted as dropped in
// the next frame, and the feed switches to copy mode for a while.
func (f *Feed) Keep(fr *framebus.Frame) bool {
	if f.copied || fr.Valid() {
		return true
	}
	f.st.Discarded++
	// The next frame's gap must cover this one and the gap before it,
	// which this frame's Dropped carried (discards before it included).
	f.discard += 1 + fr.Dropped
	f.copyLeft = copyFrames
	return false
}

// streamEnd says how a consumer that ends with the stream (analyze, record)
// ended: the producer closed it (with the frames the end-of-stream frame
// reports dropped), or the context ended (closed false).
type streamEnd struct {
	closed  bool
	dropped uint64
}

// nextOrEnd is feed.Next for such a consumer: a frame, or the end, or an
// error. While it waits for a producer it says so once per wait (*waitLogged
// tells the caller it did) and keeps waiting.
func nextOrEnd(ctx context.Context, feed *Feed, log loggerT, timeout time.Duration, waitLogged *bool) (*framebus.Frame, *streamEnd, error) {
	for {
		fr, err := feed.Next(ctx)
		if err == nil {
			return fr, nil, nil
		}
		var we *WaitingError
		switch {
		case ctx.Err() != nil:
			return nil, &streamEnd{}, nil
		case errors.As(err, &we):
			if !*waitLogged {
				log.Warn().Str("bus", feed.Name()).Str("why", we.Reason).Str("timeout", timeout.String()).Msg("waiting for producer")
				*waitLogged = true
			}
			continue
		case errors.Is(err, framebus.ErrEndOfStream):
			end := &streamEnd{closed: true}
			var eos *framebus.EndOfStreamError
			if errors.As(err, &eos) {
				end.dropped = eos.Dropped
			}
			return nil, end, nil
		}
		return nil, nil, err
	}
}
