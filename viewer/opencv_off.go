//go:build !framebus_opencv

package viewer

import (
	"context"
	"log/slog"
	"net"
)

// HasOpenCV says whether this build has the OpenCV parts of the package.
const HasOpenCV = false

// ServeHTTP needs OpenCV (JPEG encoding of every bus format); this build
// lacks it.
func ServeHTTP(ctx context.Context, name string, ln net.Listener, o HTTPOptions) error {
	return &NotInBuildError{Feature: "the web preview (view --http)"}
}

// RunWindow needs OpenCV's highgui; this build lacks it.
func RunWindow(ctx context.Context, name string, o WindowOptions) error {
	return &NotInBuildError{Feature: "the preview window (view)"}
}

// Analyze needs OpenCV; this build lacks it.
func Analyze(ctx context.Context, name string, o AnalyzeOptions) (AnalyzeSummary, error) {
	return AnalyzeSummary{}, &NotInBuildError{Feature: "analyze"}
}

// recordMJPEG needs OpenCV's VideoWriter; this build lacks it (Record
// says so before it gets here; record --lossless needs no OpenCV).
func recordMJPEG(ctx context.Context, name string, o RecordOptions, tmp string, sum *RecordSummary, log *slog.Logger) error {
	return &NotInBuildError{Feature: "record (MJPEG; record --lossless needs no OpenCV)"}
}
