//go:build !framebus_opencv

package viewer

import (
	"context"
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

// Record needs OpenCV's VideoWriter; this build lacks it.
func Record(ctx context.Context, name string, o RecordOptions) (RecordSummary, error) {
	return RecordSummary{}, &NotInBuildError{Feature: "record"}
}
