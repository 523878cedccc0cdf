//go:build !(framebus_webrtc && framebus_opencv && cgo)

package viewer

import (
	"context"
	"log/slog"
)

// HasWebRTC says whether this build has the WHEP endpoint.
const HasWebRTC = false

// WebRTCMissing is why this build has no WebRTC.
const WebRTCMissing = "this build lacks the WebRTC codec: build with cgo and -tags framebus_webrtc,framebus_opencv (make build)"

func newWebRTC(ctx context.Context, name string, o HTTPOptions, log *slog.Logger) (webrtcEndpoint, func(), error) {
	return nil, func() {}, nil
}

// HasPush says whether this build has Push (framebus push).
const HasPush = false

// Push needs WebRTC: this build says what it lacks.
func Push(ctx context.Context, name string, o PushOptions) error { return pushNotInBuild{} }

type pushNotInBuild struct{}

func (pushNotInBuild) Error() string { return "framebus push: " + WebRTCMissing }
func (pushNotInBuild) Unwrap() error { return ErrNotInBuild }
