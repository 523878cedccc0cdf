//go:build framebus_media && !(cgo && linux)

package capture

import (
	"errors"
	"testing"
)

func TestMediaNeedsCgo(t *testing.T) {
	for _, spec := range []string{"screen", "camera"} {
		_, err := Open(spec, Config{Width: 64, Height: 48})
		want := "source " + spec + ": needs a build with cgo on Linux (CGO_ENABLED=1 and gcc) as well as -tags framebus_media"
		if !errors.Is(err, ErrNotInBuild) || err.Error() != want {
			t.Errorf("Open(%q) = %v, want %q", spec, err, want)
		}
	}
}
