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
