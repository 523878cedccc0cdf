//go:build framebus_media && !(cgo && linux)

package capture

// With -tags framebus_media but without cgo (CGO_ENABLED=0, no gcc), or not
// on Linux, the screen and camera sources are not built either.
func init() {
	for _, name := range []string{"screen", "camera"} {
		Register(name, func(Config) (Source, error) {
			return nil, &NotInBuildError{Source: name, Needs: "cgo on Linux (CGO_ENABLED=1 and gcc) as well as -tags framebus_media"}
		})
	}
}
