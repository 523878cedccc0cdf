//go:build !framebus_opencv

package capture

// Without OpenCV the file source is known but not built: asking for it says
// what the build needs.
func init() {
	Register("file", func(Config) (Source, error) {
		return nil, &NotInBuildError{Source: "file", Needs: "OpenCV (-tags framebus_opencv, make build)"}
	})
}
