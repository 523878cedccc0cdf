//go:build !(framebus_webrtc && cgo)

package capture

// Without -tags framebus_webrtc (and cgo) the whip: source is known but not
// built.
func init() {
	Register("whip", func(Config) (Source, error) {
		return nil, &NotInBuildError{Source: "whip", Needs: "the WebRTC codec (libvpx): cgo and -tags framebus_webrtc (make build)"}
	})
}
