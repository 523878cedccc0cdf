package viewer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/framebus/framebus/internal/logx"
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
