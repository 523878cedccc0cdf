//go:build !(framebus_webrtc && cgo)

package capture

// Without -tags framebus_webrtc (and cgo) the whep: source is known but
// not built: asking for it says what the build needs.
func init() {
	Register("whep", func(Config) (Source, error) {
		return nil, &NotInBuildError{Source: "whep", Needs: "the WebRTC codec (libvpx): cgo and -tags framebus_webrtc (make build)"}
	})
}
