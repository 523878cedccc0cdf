//go:build !(framebus_webrtc && cgo)

package capture

import (
	"errors"
	"testing"
)

func TestWHEPNeedsTag(t *testing.T) {
	for _, spec := range []string{"whep:http://127.0.0.1:8080/whep", "whip:8090"} {
		_, err := Open(spec, Config{})
		want := "source " + spec[:4] + ": needs a build with the WebRTC codec (libvpx): cgo and -tags framebus_webrtc (make build)"
		if !errors.Is(err, ErrNotInBuild) || err.Error() != want {
			t.Errorf("Open(%s) = %v, want %q", spec, err, want)
		}
	}
}
