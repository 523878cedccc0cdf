package framebus

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxNameLen is the longest bus name.
const MaxNameLen = 64

// ValidateName checks a bus name against PROTOCOL.md section 1: 1-64
// characters of [A-Za-z0-9._-], not starting with '.', not ending in ".lock",
// not containing ".tmp-". It makes no system call.
func ValidateName(name string) error {
	switch {
	case name == "":
		return &NameError{name, "empty"}
	case len(name) > MaxNameLen:
		return &NameError{name, "longer than 64 characters"}
	case name[0] == '.':
		return &NameError{name, "starts with '.'"}
	case strings.HasSuffix(name, ".lock"):
		return &NameError{name, "ends in .lock"}
	case strings.Contains(name, ".tmp-"):
		return &NameError{name, "contains .tmp-"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return &NameError{name, "only [A-Za-z0-9._-] are allowed"}
		}
	}
	return nil
}

// Dir resolves a bus directory: dir if non-empty, else $FRAMEBUS_DIR, else
// DefaultDir (/dev/shm; Local\ on Windows, see dir_windows.go).
func Dir(dir string) string {
	if dir != "" {
		return dir
	}
	if d := os.Getenv("FRAMEBUS_DIR"); d != "" {
		return d
	}
	return DefaultDir
}

const filePrefix = "framebus."

// SegmentPath is the path of the segment file of name in dir.
func SegmentPath(dir, name string) string {
	return filepath.Join(Dir(dir), filePrefix+name)
}

// LockPath is the path of the producer's lock file of name in dir.
func LockPath(dir, name string) string { return SegmentPath(dir, name) + ".lock" }

// pathInfo describes what is at a path, as lstatPath sees it (on Linux
// without following a symbolic link; on Windows, whether the index or the
// owner mutex names it). id is the OS's own identity of the file.
type pathInfo struct {
	exists, symlink, regular bool
	id                       fileID
	uid                      uint32
	mode                     fs.FileMode
	size                     int64
}
