//go:build !framebus_opencv

package capture

import (
	"errors"
	"testing"
)

func TestFileNeedsOpenCV(t *testing.T) {
	for _, spec := range []string{"file:clip.mp4", "file", "file:"} {
		_, err := Open(spec, Config{Width: 64, Height: 48})
		const want = "source file: needs a build with OpenCV (-tags framebus_opencv, make build)"
		if !errors.Is(err, ErrNotInBuild) || err.Error() != want {
			t.Errorf("Open(%q) = %v, want %q", spec, err, want)
		}
	}
}
