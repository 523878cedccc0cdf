//go:build !framebus_media

package capture

import (
	"errors"
	"testing"
)

func TestMediaNeedsTag(t *testing.T) {
	for _, spec := range []string{"screen", "camera", "camera:/dev/video1"} {
		_, err := Open(spec, Config{Width: 64, Height: 48})
		name := spec[:6]
		want := "source " + name + ": needs a build with -tags framebus_media (make build)"
		if !errors.Is(err, ErrNotInBuild) || err.Error() != want {
			t.Errorf("Open(%q) = %v, want %q", spec, err, want)
		}
	}
}
