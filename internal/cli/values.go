package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/framebus/framebus/framebus"
)

// ParseSize parses WIDTHxHEIGHT (1280x720) within framebus.MaxDimension.
// The error says what is wrong, not which flag it was.
func ParseSize(s string) (w, h uint32, err error) {
	ws, hs, ok := strings.Cut(strings.ToLower(s), "x")
	bad := func(why string) (uint32, uint32, error) {
		return 0, 0, errors.New(why)
	}
	if !ok || ws == "" || hs == "" {
		return bad("want WIDTHxHEIGHT, e.g. 1280x720")
	}
	wv, err1 := strconv.ParseUint(ws, 10, 32)
	hv, err2 := strconv.ParseUint(hs, 10, 32)
	switch {
	case err1 != nil || err2 != nil:
		return bad("want WIDTHxHEIGHT in pixels, e.g. 1280x720")
	case wv == 0 || hv == 0:
		return bad("width and height must be at least 1")
	case wv > framebus.MaxDimension || hv > framebus.MaxDimension:
		return bad(fmt.Sprintf("larger than %dx%d", framebus.MaxDimension, framebus.MaxDimension))
	}
	return uint32(wv), uint32(hv), nil
}

// ParseMode parses an octal file mode (0600, 660) that is not world-writable
// and leaves the owner read and write.
func ParseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	switch {
	case err != nil || v > 0o777:
		return 0, errors.New("want an octal permission mode such as 0600 or 0660")
	case v&0o002 != 0:
		return 0, errors.New("a bus must not be world-writable")
	case v&0o600 != 0o600:
		return 0, errors.New("the owner needs read and write (0600)")
	}
	return fs.FileMode(v), nil
}

// Bytes formats a byte count for people: 1228800 -> "1.2 MiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
