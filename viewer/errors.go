package viewer

import (
	"errors"
	"fmt"

	"github.com/framebus/framebus/framebus"
)

// Sentinels, tested with errors.Is.
var (
	// ErrNotInBuild: the build lacks OpenCV (gocv), which the window, the
	// web preview, analyze and record need.
	ErrNotInBuild = errors.New("this build lacks OpenCV")
	// ErrFormat: a pixel format or plane layout the viewer cannot convert.
	ErrFormat = errors.New("unsupported frame format")
	// ErrFrame: a frame that cannot be converted (too short, not a JPEG).
	ErrFrame = errors.New("bad frame")
	// ErrBadOptions: options that make no sense (a detector that does not
	// exist, a missing cascade file, an output file that cannot be made).
	ErrBadOptions = errors.New("bad options")
)

// NotInBuildError says what a build needs for a feature.
type NotInBuildError struct{ Feature string }

func (e *NotInBuildError) Error() string {
	return fmt.Sprintf("this build lacks OpenCV (gocv), which %s needs: build with -tags framebus_opencv (make build)", e.Feature)
}
func (e *NotInBuildError) Unwrap() error { return ErrNotInBuild }

// FormatError names a format the viewer cannot convert.
type FormatError struct {
	Format framebus.Format
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("cannot show %dx%d %v frames: %s", e.Format.Width, e.Format.Height, e.Format.PixelFormat, e.Reason)
}
func (e *FormatError) Unwrap() error { return ErrFormat }

// FrameError says why one frame could not be converted.
type FrameError struct {
	Format framebus.Format
	Reason string
}

func (e *FrameError) Error() string { return "bad frame: " + e.Reason }
func (e *FrameError) Unwrap() error { return ErrFrame }

// OptionError explains bad options.
type OptionError struct{ Reason string }

func (e *OptionError) Error() string { return e.Reason }
func (e *OptionError) Unwrap() error { return ErrBadOptions }

// PushError is why a push gave up.
type PushError struct {
	Err  error
	Hint string
}

func (e *PushError) Error() string { return e.Err.Error() + " (" + e.Hint + ")" }
func (e *PushError) Unwrap() error { return e.Err }
