package viewer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/recording"
	"github.com/framebus/framebus/internal/report"
)

// Record writes the frames of bus name to o.Out until ctx ends or the
// producer closes the stream: with o.Lossless, every frame byte for byte
// in a Matroska file (internal/recording; pure Go); else an MJPEG video
// through OpenCV (needs a build with it).
//
// The recording is written to a temporary file beside o.Out,
// NAME.partial-PID.EXT, and renamed to o.Out once it ended cleanly (the
// end of the stream, or ctx: --duration, a signal): o.Out is never half
// written. A recording that ends with an error (a full disk, a bus
// error) keeps that file, playable up to its last whole frame, and the
// error (a *WriteError) names it; so does a recorder that is killed. A
// recording that got no frame leaves nothing.
func Record(ctx context.Context, name string, o RecordOptions) (RecordSummary, error) {
	sum := RecordSummary{Path: o.Out, Lossless: o.Lossless}
	log := logx.Or(o.Log)
	if o.Out == "" {
		return sum, &OptionError{Reason: "--out FILE is required"}
	}
	if o.FPS < 0 {
		return sum, &OptionError{Reason: "--fps must not be negative"}
	}
	if o.Lossless && o.FPS != 0 {
		return sum, &OptionError{Reason: "--fps is for MJPEG files: a lossless recording keeps every frame's own times"}
	}
	if fi, err := os.Stat(filepath.Dir(o.Out)); err != nil || !fi.IsDir() {
		return sum, &OptionError{Reason: fmt.Sprintf("--out %s: no directory %s", o.Out, filepath.Dir(o.Out))}
	}
	if fi, err := os.Stat(o.Out); err == nil && fi.IsDir() {
		return sum, &OptionError{Reason: fmt.Sprintf("--out %s is a directory", o.Out)}
	}
	if !o.Lossless && !HasOpenCV {
		return sum, &NotInBuildError{Feature: "record (MJPEG; record --lossless needs no OpenCV)"}
	}
	tmp := PartialPath(o.Out)
	var err error
	if o.Lossless {
		err = recordLossless(ctx, name, o, tmp, &sum, log)
	} else {
		err = recordMJPEG(ctx, name, o, tmp, &sum, log)
	}
	if sum.Frames == 0 {
		os.Remove(tmp) // (an empty file at most)
		return sum, err
	}
	if fi, serr := os.Stat(tmp); serr == nil {
		sum.Bytes = fi.Size()
	}
	if err == nil {
		err = commit(tmp, o.Out)
	}
	if err != nil {
		sum.Path, sum.Partial = tmp, tmp
		var we *WriteError
		if !errors.As(err, &we) {
			err = &WriteError{Out: o.Out, Partial: tmp, Frames: sum.Frames, Err: err}
		}
		return sum, err
	}
	return sum, nil
}

// PartialPath is the temporary file of a recording to out: NAME.partial-PID.EXT
// beside it (the extension kept, so that players and OpenCV know the
// container).
func PartialPath(out string) string {
	ext := filepath.Ext(out)
	return strings.TrimSuffix(out, ext) + ".partial-" + strconv.Itoa(os.Getpid()) + ext
}

// commit makes the finished recording tmp durable and renames it to out.
func commit(tmp, out string) error {
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		d.Sync() // the rename itself
		d.Close()
	}
	return nil
}

// WriteError is a recording that ended with an error after frames were
// written: they are kept in Partial.
type WriteError struct {
	Out, Partial string
	Frames       uint64
	Err          error
}

func (e *WriteError) Error() string {
	why := e.Err.Error()
	if errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, ErrDiskFull) {
		why = "the disk is full (" + strings.TrimPrefix(why, "recording: ") + ")"
	}
	return fmt.Sprintf("--out %s: %s; the %d frames recorded are in %s, playable up to the last whole frame", e.Out, why, e.Frames, e.Partial)
}
func (e *WriteError) Unwrap() error { return e.Err }

// ErrDiskFull: the recording's disk has too little room left to go on.
var ErrDiskFull = errors.New("no space left for the recording")

// recordProgress is how often Record logs its progress.
const recordProgress = 5 * time.Second

// endWhy says why a recording ended without an error.
func endWhy(ctx context.Context, eos bool) string {
	switch {
	case eos:
		return "end of stream"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "--duration reached"
	case ctx.Err() != nil:
		return "interrupted"
	}
	return "stopped"
}

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
	var (
		f       *os.File
		w       *recording.Writer
		q, free chan *queued
		wdone   chan struct{}
		werr    error // the writer's, read after wdone or through failed
		herr    error // a held frame's write error (the feed's goroutine)
		failed  atomic.Bool
		pending atomic.Int32 // frames queued and not yet written
		skipped uint64       // frames dropped here since the last one queued
		first   = true

		held, copied, lostHeld uint64 // frames written from a hold, queued as a copy; held frames not written (a fault, taken back)
		last                   = time.Now()
		lastFrames             uint64
		lastBytes              int64
	)
	// written counts a frame in the file and logs the progress: on the
	// writer's goroutine, or on the feed's while the writer is idle
	// (pending is 0), never on both at once.
	written := func(rf *recording.Frame) {
		sum.Frames++
		sum.Dropped += rf.Dropped
		if now := time.Now(); now.Sub(last) >= recordProgress {
			d := now.Sub(last).Seconds()
			log.Info("recording", "frames", sum.Frames, "dropped", sum.Dropped, "size", cli.Bytes(uint64(w.Size())), "fps", fmt.Sprintf("%.1f", float64(sum.Frames-lastFrames)/d), "rate", cli.Bytes(uint64(float64(w.Size()-lastBytes)/d))+"/s", "queued", len(q))
			last, lastFrames, lastBytes = now, sum.Frames, w.Size()
		}
	}
	writer := func() {
		defer close(wdone)
		for j := range q {
			if werr == nil {
				if werr = w.WriteFrame(&j.rf); werr != nil {
					failed.Store(true)
				} else {
					written(&j.rf)
				}
			}
			free <- j
			pending.Add(-1)
		}
	}
	record := func(fr *framebus.Frame, data, meta []byte) recording.Frame {
		rf := recording.Frame{Format: fr.Format, Seq: fr.Seq, CaptureNS: fr.CaptureNS, CommitNS: fr.CommitNS, ReadNS: fr.WakeNS,
			Generation: fr.Generation, NewGeneration: fr.GenerationChanged, Dropped: fr.Dropped + skipped, TornRetries: fr.TornRetries,
			UserMeta: meta, Data: data}
		if first {
			rf.Dropped = 0 // frames before the recorder joined are not the recording's
		}
		return rf
	}
	// writeHeld writes a held frame from the bus's memory, on the feed's
	// goroutine (the writer is idle). The record's CRC is computed by
	// WriteFrame from the held bytes under framebus.Guard before anything
	// is written; a fault there (the bus file truncated), write(2)
	// returning EFAULT (the same, while the kernel copied the bytes), or a
	// hold taken back meanwhile (a producer's lease: the bytes written may
	// be torn) cuts the file back to the previous record's end and puts
	// the writer back as it was: the frame is dropped, never a corrupt
	// record. It says whether the frame was written; a write error of the
	// disk is herr.
	writeHeld := func(fr *framebus.Frame, h framebus.Hold) bool {
		start, saved := w.Size(), *w
		rf := record(fr, h.Data(), fr.UserMeta)
		var err error
		gerr := framebus.Guard(func() { err = w.WriteFrame(&rf) })
		if gerr == nil && err == nil && h.Valid() {
			written(&rf)
			return true
		}
		if gerr == nil && err != nil && !errors.Is(err, syscall.EFAULT) {
			herr = err // the disk's (full, ...): the recording ends, as from the writer
			return false
		}
		// (The writer cut the file back already on EFAULT; not on a fault
		// in Go, nor after a whole write of a frame taken back.)
		if terr := f.Truncate(start); terr != nil {
			herr = terr
			return false
		}
		if _, serr := f.Seek(start, io.SeekStart); serr != nil {
			herr = serr
			return false
		}
		*w = saved
		return false
	}
	end, err := in.Run(ctx, func(fr *framebus.Frame) error {
		if failed.Load() {
			return feed.ErrStop // the writer's error is the recording's
		}
		if w == nil {
			var err error
			if f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666); err != nil {
				return &OptionError{Reason: fmt.Sprintf("--out %s: %v", o.Out, err)}
			}
			w = recording.NewWriter(f, name, "framebus record --lossless")
			sum.Width, sum.Height = int(fr.Format.Width), int(fr.Format.Height)
			sum.Format = report.FormatString(fr.Format)
			if fr.Format.FPSNum != 0 {
				sum.FPS = float64(fr.Format.FPSNum) / float64(fr.Format.FPSDen)
			}
			depth := min(max(queueBytes/max(int(fr.Format.FrameSize), 1), 2), maxQueue)
			q, free, wdone = make(chan *queued, depth), make(chan *queued, depth), make(chan struct{})
			for range depth {
				free <- &queued{}
			}
			go writer()
		}
		if first || fr.GenerationChanged {
			log.Info("recording losslessly", "bus", name, "generation", fr.Generation, "format", report.FormatString(fr.Format), "out", o.Out, "writing", tmp)
		}
		if pending.Load() == 0 && w.Continues(fr.Format) {
			// The writer is idle: this frame is written from a hold, now.
			// (The first frame of a format, which adds a track to the
			// file's header, is copied: undoing writeHeld is then only
			// cutting the file and the writer's own offsets back.)
			h, err := fr.Hold()
			switch {
			case err == nil:
				ok := writeHeld(fr, h)
				_ = h.Release() // (nil, or the consumer's Close: nothing to release then)
				switch {
				case herr != nil:
					return feed.ErrStop
				case ok:
					held++
					first, skipped = false, 0
				default:
					lostHeld++
					skipped += 1 + fr.Dropped
				}
				return nil
			case !errors.Is(err, framebus.ErrNoHold):
				// The bus file truncated under the grant: the frame is
				// lost, the feed follows the next generation.
				skipped += 1 + fr.Dropped
				return nil
			}
			// Refused (the cap, an older producer): copied, below.
		}
		var j *queued
		select {
		case j = <-free:
		default: // the disk is behind by a whole queue: this frame is lost
			skipped += 1 + fr.Dropped
			return nil
		}
		if cap(j.buf) < len(fr.Data) {
			j.buf = make([]byte, len(fr.Data)) // the first frame, or larger frames of a new generation
		}
		j.buf = j.buf[:len(fr.Data)]
		gerr := framebus.Guard(func() { copy(j.buf, fr.Data) })
		if !in.Keep(fr) { // overwritten while copied: the feed counts it in the next frame's drops
			free <- j
			return nil
		}
		if gerr != nil {
			free <- j
			skipped += 1 + fr.Dropped
			return nil
		}
		n := copy(j.meta[:], fr.UserMeta)
		j.rf = record(fr, j.buf, j.meta[:n])
		first, skipped = false, 0
		copied++
		pending.Add(1)
		q <- j // never blocks: a free buffer means room in the queue
		return nil
	})
	sum.StreamClosed = end.EndOfStream
	if w == nil {
		return err
	}
	close(q)
	<-wdone // every queued frame written (or the writer's error)
	if werr != nil {
		err = werr
	}
	if herr != nil {
		err = herr
	}
	if err == nil {
		dropped := end.Dropped + skipped
		sum.Dropped += dropped
		err = w.Close(recording.End{EndOfStream: end.EndOfStream, Dropped: dropped, Why: endWhy(ctx, end.EndOfStream)})
	}
	sum.Formats = w.Formats()
	if cerr := f.Close(); cerr != nil && err == nil {
		err = cerr
	}
	f = nil
	perFrame := 0.0
	if held+copied > 0 {
		perFrame = float64(copied) / float64(held+copied)
	}
	log.Info("recorded: frames written from a hold (zero-copy) or from a copy", "frames", sum.Frames, "held", held, "copied", copied, "held_lost", lostHeld, "copies_per_frame", fmt.Sprintf("%.2f", perFrame))
	return err
}
