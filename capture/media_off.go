//go:build !framebus_media

package capture

// Without -tags framebus_media the screen and camera sources (cgo) are known
// but not built: asking for one says what the build needs.
func init() {
	for _, name := range []string{"screen", "camera"} {
		Register(name, func(Config) (Source, error) {
			return nil, &NotInBuildError{Source: name, Needs: "-tags framebus_media (make build)"}
		})
	}
}
