package viewer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/recording"
	"github.com/framebus/framebus/internal/report"
)

// Lossless recording queues frames for a writer goroutine, so that a disk
// that stalls for a moment (writeback) costs no frame: at most queueBytes of
// frames (2 to maxQueue of them) wait for it; when the queue is full the
// newest frame is dropped, and counted, as a slow consumer drops them.
const (
	queueBytes = 64 << 20
	maxQueue   = 16
)

// queued is a frame copied out of the bus, waiting for the disk.
type queued struct {
	rf   recording.Frame
	buf  []byte
	meta [framebus.UserMetaMax]byte
}

// recordLossless writes every frame as it is, with its record, to tmp.
//
// Each frame is written from a hold (Frame.Hold, PROTOCOL.md amendment 10:
// zero-copy, the producer leaves the slot alone until the write is done)
// when the writer is idle, which it is whenever the disk keeps up; else,
// and when the bus refuses the hold (a 2-slot bus, whose cap is 0, or a
// producer that does not know holds), it is copied into the queue as
// before. A held frame is written and released on the feed's goroutine,
// before the next Next: Hold.Valid and Release are the consumer's, and the
// feed closes the consumer (unmapping its frames) when the stream ends,
// which a hold still queued would not survive. So one frame at most is held.
func recordLossless(ctx context.Context, name string, o RecordOptions, tmp string, sum *RecordSummary, log *slog.Logger) error {
	// Zero-copy: the copy into the queue is the frame's one copy, made in
	// Go (framebus.Guard) and checked (Keep) before it is queued.
	// No held wait: a recording needs no microseconds, its writer does
	// need the Ps.
	in := feed.New(name, feed.Options{Dir: o.Dir, Timeout: o.Timeout, Spin: o.Spin, Hold: -1, Log: log})
	defer in.Close()
	r := &lossless{name: name, o: o, tmp: tmp, sum: sum, log: log, in: in, first: true, last: time.Now()}
	end, err := in.Run(ctx, r.frame)
	sum.StreamClosed = end.EndOfStream
	if r.w == nil {
		return err
	}
	return r.finish(ctx, end, err)
}

// lossless is the state of one recordLossless.
type lossless struct {
	name string
	o    RecordOptions
	tmp  string
	sum  *RecordSummary
	log  *slog.Logger
	in   *feed.Feed

	f       *os.File
	w       *recording.Writer
	q, free chan *queued
	wdone   chan struct{}
	werr    error // the writer's, read after wdone or through failed
	herr    error // a held frame's write error (the feed's goroutine)
	failed  atomic.Bool
	pending atomic.Int32 // frames queued and not yet written
	skipped uint64       // frames dropped here since the last one queued
	first   bool

	held, copied, lostHeld uint64 // frames written from a hold, queued as a copy; held frames not written (a fault, taken back)
	last                   time.Time
	lastFrames             uint64
	lastBytes              int64
}

// frame is the feed's function: each frame written from a hold, or
// queued as a copy, or dropped (counted).
func (r *lossless) frame(fr *framebus.Frame) error {
	if r.failed.Load() {
		return feed.ErrStop // the writer's error is the recording's
	}
	if r.w == nil {
		if err := r.open(fr); err != nil {
			return err
		}
	}
	if r.first || fr.GenerationChanged {
		r.log.Info("recording losslessly", "bus", r.name, "generation", fr.Generation, "format", report.FormatString(fr.Format), "out", r.o.Out, "writing", r.tmp)
	}
	if r.pending.Load() == 0 && r.w.Continues(fr.Format) {
		// The writer is idle: this frame is written from a hold, now.
		// (The first frame of a format, which adds a track to the file's
		// header, is copied: undoing writeHeld is then only cutting the
		// file and the writer's own offsets back.)
		if done, err := r.fromHold(fr); done {
			return err
		}
		// Refused (the cap, an older producer): copied, below.
	}
	r.queueCopy(fr)
	return nil
}

// open creates the file at the first frame and starts the writer.
func (r *lossless) open(fr *framebus.Frame) error {
	var err error
	if r.f, err = os.OpenFile(r.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666); err != nil {
		return &OptionError{Reason: fmt.Sprintf("--out %s: %v", r.o.Out, err)}
	}
	r.w = recording.NewWriter(r.f, r.name, "framebus record --lossless")
	r.sum.Width, r.sum.Height = int(fr.Format.Width), int(fr.Format.Height)
	r.sum.Format = report.FormatString(fr.Format)
	if fr.Format.FPSNum != 0 {
		r.sum.FPS = float64(fr.Format.FPSNum) / float64(fr.Format.FPSDen)
	}
	depth := min(max(queueBytes/max(int(fr.Format.FrameSize), 1), 2), maxQueue)
	r.q, r.free, r.wdone = make(chan *queued, depth), make(chan *queued, depth), make(chan struct{})
	for range depth {
		r.free <- &queued{}
	}
	go r.writer()
	return nil
}

// written counts a frame in the file and logs the progress: on the
// writer's goroutine, or on the feed's while the writer is idle (pending
// is 0), never on both at once.
func (r *lossless) written(rf *recording.Frame) {
	r.sum.Frames++
	r.sum.Dropped += rf.Dropped
	if now := time.Now(); now.Sub(r.last) >= recordProgress {
		d := now.Sub(r.last).Seconds()
		r.log.Info("recording", "frames", r.sum.Frames, "dropped", r.sum.Dropped, "size", cli.Bytes(uint64(r.w.Size())),
			"fps", fmt.Sprintf("%.1f", float64(r.sum.Frames-r.lastFrames)/d), "rate", cli.Bytes(uint64(float64(r.w.Size()-r.lastBytes)/d))+"/s", "queued", len(r.q))
		r.last, r.lastFrames, r.lastBytes = now, r.sum.Frames, r.w.Size()
	}
}

// writer writes the queued frames, on a goroutine of its own.
func (r *lossless) writer() {
	defer close(r.wdone)
	for j := range r.q {
		if r.werr == nil {
			if r.werr = r.w.WriteFrame(&j.rf); r.werr != nil {
				r.failed.Store(true)
			} else {
				r.written(&j.rf)
			}
		}
		r.free <- j
		r.pending.Add(-1)
	}
}

// record is fr's record with data and meta.
func (r *lossless) record(fr *framebus.Frame, data, meta []byte) recording.Frame {
	rf := recording.Frame{Format: fr.Format, Seq: fr.Seq, CaptureNS: fr.CaptureNS, CommitNS: fr.CommitNS, ReadNS: fr.WakeNS,
		Generation: fr.Generation, NewGeneration: fr.GenerationChanged, Dropped: fr.Dropped + r.skipped, TornRetries: fr.TornRetries,
		UserMeta: meta, Data: data}
	if r.first {
		rf.Dropped = 0 // frames before the recorder joined are not the recording's
	}
	return rf
}

// fromHold writes fr from a hold; done says whether fr was dealt with
// (written, or lost, or the recording ends: the error), else the hold was
// refused and fr is to be copied.
func (r *lossless) fromHold(fr *framebus.Frame) (done bool, err error) {
	h, err := fr.Hold()
	switch {
	case err == nil:
		ok := r.writeHeld(fr, h)
		_ = h.Release() // (nil, or the consumer's Close: nothing to release then)
		switch {
		case r.herr != nil:
			return true, feed.ErrStop
		case ok:
			r.held++
			r.first, r.skipped = false, 0
		default:
			r.lostHeld++
			r.skipped += 1 + fr.Dropped
		}
		return true, nil
	case !errors.Is(err, framebus.ErrNoHold):
		// The bus file truncated under the grant: the frame is lost, the
		// feed follows the next generation.
		r.skipped += 1 + fr.Dropped
		return true, nil
	}
	return false, nil
}

// writeHeld writes a held frame from the bus's memory, on the feed's
// goroutine (the writer is idle). The record's CRC is computed by
// WriteFrame from the held bytes under framebus.Guard before anything is
// written; a fault there (the bus file truncated), write(2) returning
// EFAULT (the same, while the kernel copied the bytes), or a hold taken
// back meanwhile (a producer's lease: the bytes written may be torn) undoes
// the frame (recording.Writer.Undo): it is dropped, never a corrupt record.
// It says whether the frame was written; a write error of the disk is herr.
func (r *lossless) writeHeld(fr *framebus.Frame, h framebus.Hold) bool {
	mark := r.w.Mark()
	rf := r.record(fr, h.Data(), fr.UserMeta)
	var err error
	gerr := framebus.Guard(func() { err = r.w.WriteFrame(&rf) })
	if gerr == nil && err == nil && h.Valid() {
		r.written(&rf)
		return true
	}
	if gerr == nil && err != nil && !errors.Is(err, syscall.EFAULT) {
		r.herr = err // the disk's (full, ...): the recording ends, as from the writer
		return false
	}
	if uerr := r.w.Undo(mark); uerr != nil {
		r.herr = uerr
	}
	return false
}

// queueCopy copies fr into a free buffer and queues it for the writer, or
// drops it (the disk behind by a whole queue, the frame overwritten or
// faulted while copied).
func (r *lossless) queueCopy(fr *framebus.Frame) {
	var j *queued
	select {
	case j = <-r.free:
	default: // the disk is behind by a whole queue: this frame is lost
		r.skipped += 1 + fr.Dropped
		return
	}
	if cap(j.buf) < len(fr.Data) {
		j.buf = make([]byte, len(fr.Data)) // the first frame, or larger frames of a new generation
	}
	j.buf = j.buf[:len(fr.Data)]
	gerr := framebus.Guard(func() { copy(j.buf, fr.Data) })
	if !r.in.Keep(fr) { // overwritten while copied: the feed counts it in the next frame's drops
		r.free <- j
		return
	}
	if gerr != nil {
		r.free <- j
		r.skipped += 1 + fr.Dropped
		return
	}
	n := copy(j.meta[:], fr.UserMeta)
	j.rf = r.record(fr, j.buf, j.meta[:n])
	r.first, r.skipped = false, 0
	r.copied++
	r.pending.Add(1)
	r.q <- j // never blocks: a free buffer means room in the queue
}

// finish waits for the writer, closes the file with its end and logs how
// the frames were written.
func (r *lossless) finish(ctx context.Context, end feed.End, err error) error {
	close(r.q)
	<-r.wdone // every queued frame written (or the writer's error)
	if r.werr != nil {
		err = r.werr
	}
	if r.herr != nil {
		err = r.herr
	}
	if err == nil {
		dropped := end.Dropped + r.skipped
		r.sum.Dropped += dropped
		err = r.w.Close(recording.End{EndOfStream: end.EndOfStream, Dropped: dropped, Why: endWhy(ctx, end.EndOfStream)})
	}
	r.sum.Formats = r.w.Formats()
	if cerr := r.f.Close(); cerr != nil && err == nil {
		err = cerr
	}
	r.f = nil
	perFrame := 0.0
	if r.held+r.copied > 0 {
		perFrame = float64(r.copied) / float64(r.held+r.copied)
	}
	r.log.Info("recorded: frames written from a hold (zero-copy) or from a copy", "frames", r.sum.Frames, "held", r.held, "copied", r.copied,
		"held_lost", r.lostHeld, "copies_per_frame", fmt.Sprintf("%.2f", perFrame))
	return err
}
