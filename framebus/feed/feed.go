// Package feed is the consumer loop that every framebus command shares: it
// joins a bus, waiting (bounded) for a producer that has not started, reads
// the newest frame each time, follows new generations, rides out a producer
// that is gone or stalled for a while, and, for previews, rejoins after the
// stream was closed. It is pure Go, like the transport, and never logs by
// itself: what it notices goes to Options.Log.
//
//	f := feed.New("cam0", feed.Options{Timeout: 10 * time.Second, Log: logger})
//	defer f.Close()
//	end, err := f.Run(ctx, func(fr *framebus.Frame) error {
//		use(fr.Data)
//		return nil
//	})
//
// Zero-copy frames are views into shared memory. Code that reads them is
// guarded against a bus file truncated under it only where it runs inside
// the transport, Frame.Use or framebus.Guard; C code (cgo) never is, so a
// consumer that hands frames to C sets Options.Copy and gets frames copied
// into a buffer of its own.
package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/logx"
)

// Options configures a Feed. The zero value reads the bus in the default
// directory, gives up at once when there is no producer, and is silent.
type Options struct {
	Dir string // bus directory ("" for $FRAMEBUS_DIR or /dev/shm)

	// Timeout bounds the wait for a producer that has not created the bus
	// yet and, without Persist, for a gone producer to come back. 0 fails at
	// once.
	Timeout time.Duration

	// Persist keeps the feed alive after it has joined a bus: when the
	// producer leaves or closes the stream it waits for the next one for as
	// long as it takes (a preview window). Without it the end of the stream
	// ends the feed (framebus.ErrEndOfStream), as for tail. A persistent
	// feed also delivers the frame already on the bus when it joins
	// (framebus.ConsumerOptions.Newest), so a paused producer's picture
	// shows at once.
	Persist bool

	// Poll, when > 0, bounds each Next call: with no new frame within Poll
	// it returns ErrIdle (a window redraws and reads its keys meanwhile).
	// It costs a timer per call; 0 (the default) blocks and allocates
	// nothing per frame.
	Poll time.Duration

	// Copy reads every frame with ReadInto into a buffer the feed owns
	// (reused; grown only when a generation brings larger frames) instead
	// of handing out views into shared memory. Consumers that pass frames
	// to C code need it: a bus file truncated under a view makes reads of
	// it fault, which Go code can recover from and C code cannot.
	Copy bool

	// HoldFrames holds each zero-copy frame Next delivers (Frame.Hold,
	// PROTOCOL.md amendment 10, holds) until the next call to Next or Close: the
	// producer leaves its slot alone meanwhile, so a caller slower than the
	// producer's lap uses an intact frame (Keep says true) instead of one
	// the producer overwrote. A refused hold (the bus's cap of slot_count -
	// 2 held slots reached, a 2-slot bus, an older producer, the frame
	// overwritten already) is counted (Stats.HoldsRefused) and the frame is
	// delivered as without HoldFrames. Not ConsumerOptions.Hold (Hold below).
	HoldFrames bool

	// Spin is framebus.ConsumerOptions.Spin: the low-latency wait.
	Spin time.Duration
	// Hold is framebus.ConsumerOptions.Hold: the held wait's bound (0 the
	// default, negative off).
	Hold time.Duration

	// Log receives what the feed notices: waits for a producer and
	// transient bus errors it rides out (Warn, each said once, a transient
	// error again every 10 s while it goes on), the producer back (Info).
	// nil: silent.
	Log *slog.Logger
}

// Stats are a Feed's counters since it was made.
type Stats struct {
	Frames    uint64 // frames delivered by Next
	Dropped   uint64 // frames the bus had that the feed never saw (skipped to the newest)
	Discarded uint64 // zero-copy frames overwritten while in use (Keep said false)
	Copied    uint64 // frames read with ReadInto (Options.Copy, or copy mode after a discard)
	Joins     uint64 // buses joined (1 + producers followed after a close)
	Transient uint64 // bus errors ridden out (a corrupt or truncated segment, a checksum mismatch)
	Refused   uint64 // reads refused for forged or torn words (framebus.ConsumerStats.Refused)
	Resyncs   uint64 // re-synchronisations after a forged sequence number (ConsumerStats.Resyncs)

	// Options.HoldFrames: frames held until the next Next, and holds
	// refused (those frames were delivered unheld).
	Held, HoldsRefused uint64
}

// Feed is a consumer that reads the newest frame of a bus and keeps doing
// so across producer restarts: it waits (bounded) for a producer that has
// not started, follows new generations (the framebus consumer does that
// itself) and, with Persist, rejoins after the stream was closed.
//
// Frames are zero-copy views into the bus unless Options.Copy: use a frame,
// then call Keep, which says whether it stayed intact. When one did not (a
// reader slower than the producer's slot reuse), the feed reads the next
// frames with ReadInto into a buffer it reuses (copy mode) and returns to
// zero-copy after a while. Next and Keep allocate nothing per frame (Poll
// aside).
//
// A Feed is not safe for concurrent use.
type Feed struct {
	name string
	o    Options

	c        *framebus.Consumer
	started  time.Time // when the feed started waiting for its first producer
	joined   bool      // a bus was joined at least once
	wait     *WaitingError
	said     logx.Repeats // the reason of the wait (or the transient error) last logged
	buf      []byte       // copy mode buffer
	copyLeft int          // frames still to read in copy mode
	copied   bool         // the last frame came from ReadInto
	discard  uint64       // discarded frames not yet reported in a Frame's drops
	st       Stats

	lastStats framebus.ConsumerStats // of the consumer that left

	refused, resyncs uint64 // the current consumer's, as last seen
	refusals         logx.Repeats

	hold    framebus.Hold // Options.HoldFrames: the last frame delivered, held
	holding bool
}

// copyFrames is how many frames the feed reads in copy mode after a
// zero-copy frame was overwritten in use.
const copyFrames = 64

// New makes a feed of the bus name. It joins nothing until Next.
func New(name string, o Options) *Feed {
	o.Log = logx.Or(o.Log)
	return &Feed{name: name, o: o}
}

// Name is the bus name.
func (f *Feed) Name() string { return f.name }

// Stats returns the counters.
func (f *Feed) Stats() Stats { return f.st }

// Consumer is the current framebus consumer (nil while none is joined).
func (f *Feed) Consumer() *framebus.Consumer { return f.c }

// Waiting is the current wait (nil while frames flow).
func (f *Feed) Waiting() *WaitingError { return f.wait }

// ConsumerStats are the counters of the current consumer, or of the last
// one once it has left (at the end of a stream).
func (f *Feed) ConsumerStats() framebus.ConsumerStats {
	if f.c != nil {
		return f.c.Stats()
	}
	return f.lastStats
}

// Join joins the bus now instead of at the first Next, waiting for a
// producer as Next does (the same errors). A feed that is joined already
// returns nil.
func (f *Feed) Join(ctx context.Context) error {
	for f.c == nil {
		if err := f.join(ctx); err != nil && !errors.Is(err, ErrWaiting) {
			return err
		}
	}
	return nil
}

// Close leaves the bus.
func (f *Feed) Close() error { return f.closeConsumer() }

func (f *Feed) closeConsumer() error {
	f.release()
	if f.c == nil {
		return nil
	}
	f.lastStats = f.c.Stats()
	f.refused, f.resyncs = 0, 0 // the next consumer counts from 0
	err := f.c.Close()
	f.c = nil
	return err
}

// Next returns the newest frame not yet delivered (a feed that has just
// joined a bus waits for the next frame published, or, with Persist, gives
// the one on the bus). Its Dropped counts every frame skipped since the
// previous one (frames the bus had meanwhile, and frames discarded by Keep).
// Errors: *WaitingError (call again), ErrIdle (with Poll; call again),
// *NoProducerError, framebus.ErrEndOfStream (the stream ended, without
// Persist), the context's error, or an error of the bus that is not
// transient (a permission error, a bad name).
func (f *Feed) Next(ctx context.Context) (*framebus.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // (a consumer with a frame ready would not look)
	}
	f.release() // the previous frame's hold
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
	if f.o.Copy || f.copyLeft > 0 {
		fr, err = f.readCopy(rctx)
	} else {
		fr, err = f.c.Next(rctx)
		f.copied = false
	}
	if cancel != nil {
		cancel()
	}
	f.noteRefusals()
	if err == nil {
		if f.wait != nil || f.said.Said() != "" {
			f.o.Log.Info(fmt.Sprintf("bus %s: frames again (generation %d)", f.name, fr.Generation))
			f.said.Reset()
		}
		f.wait = nil
		if f.o.HoldFrames && !f.copied {
			if h, err := fr.Hold(); err == nil {
				f.hold, f.holding = h, true
				f.st.Held++
			} else {
				f.st.HoldsRefused++
			}
		}
		f.st.Frames++
		f.st.Dropped += fr.Dropped
		fr.Dropped += f.discard
		f.discard = 0
		return fr, nil
	}
	return nil, f.failed(ctx, err)
}

// failed turns an error of the consumer into Next's result.
func (f *Feed) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded // the caller's (framebus may see it first)
	}
	switch Classify(err) {
	case EndOfStream:
		var eos *framebus.EndOfStreamError
		if errors.As(err, &eos) {
			f.st.Dropped += eos.Dropped
		}
		f.closeConsumer()
		if !f.o.Persist {
			return err
		}
		f.setWait("closed the stream")
		return f.wait
	case Waiting:
		reason := "gone"
		if errors.Is(err, framebus.ErrStalled) {
			reason = "stalled"
		}
		f.setWait(reason)
		return f.wait
	case Deadline:
		if f.wait != nil {
			if !f.o.Persist && !time.Now().Before(f.wait.Since.Add(f.o.Timeout)) {
				return &NoProducerError{Name: f.name, Dir: f.o.Dir, Waited: f.o.Timeout, Gone: true}
			}
			return f.wait
		}
		return ErrIdle
	case Transient:
		return f.rideOut(ctx, err)
	}
	return err
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
			if f.copyLeft > 0 {
				f.copyLeft--
			}
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
	if f.holding && f.hold.Seq() == fr.Seq {
		if f.hold.Valid() {
			return true
		}
		// taken back by the producer's lease: as overwritten
	} else if f.copied || fr.Valid() {
		return true
	}
	f.st.Discarded++
	// The next frame's gap must cover this one and the gap before it,
	// which this frame's Dropped carried (discards before it included).
	f.discard += 1 + fr.Dropped
	f.copyLeft = copyFrames
	return false
}

// release ends the hold of the last frame delivered (Options.HoldFrames).
func (f *Feed) release() {
	if f.holding {
		f.hold.Release() // an error only says the consumer closed, which released it
		f.holding = false
	}
}

// End says how Run ended without an error.
type End struct {
	// EndOfStream: the producer closed the stream; Dropped are the frames
	// it reported missed just before the end-of-stream frame (they are in
	// no Frame.Dropped).
	EndOfStream bool
	Dropped     uint64
	// Stopped: fn returned ErrStop. Otherwise the context ended.
	Stopped bool
}

// Run calls fn with every frame Next gives until the stream ends, ctx ends
// or fn returns ErrStop (all three a nil error and the End that says which),
// fn returns another error (returned as is), or the feed gives up (a
// *NoProducerError, or a bus error that is not transient). Waits for a
// producer are ridden out (and reported through Options.Log).
func (f *Feed) Run(ctx context.Context, fn func(*framebus.Frame) error) (End, error) {
	for {
		fr, err := f.Next(ctx)
		if err == nil {
			if err := fn(fr); err != nil {
				if errors.Is(err, ErrStop) {
					return End{Stopped: true}, nil
				}
				return End{}, err
			}
			continue
		}
		switch {
		case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			return End{}, nil // (Next reports ctx's deadline a moment before ctx.Err does)
		case errors.Is(err, ErrWaiting), errors.Is(err, ErrIdle):
			continue
		case errors.Is(err, framebus.ErrEndOfStream):
			end := End{EndOfStream: true}
			var eos *framebus.EndOfStreamError
			if errors.As(err, &eos) {
				end.Dropped = eos.Dropped
			}
			return end, nil
		}
		return End{}, err
	}
}
