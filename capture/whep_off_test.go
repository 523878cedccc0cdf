//go:build !(framebus_webrtc && cgo)

package capture

import (
	"errors"
	"testing"
)

func TestWHEPNeedsTag(t *testing.T) {
	_, err := Open("whep:http://127.0.0.1:8080/whep", Config{})
	want := "source whep: needs a build with the WebRTC codec (libvpx): cgo and -tags framebus_webrtc (make build)"
	if !errors.Is(err, ErrNotInBuild) || err.Error() != want {
		t.Errorf("Open(whep:...) = %v, want %q", err, want)
	}
}
