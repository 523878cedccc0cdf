package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

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

// DefaultSpin is the spin budget of a bare --spin: the longest a consumer
// spins for one frame around the moment it is due (a few hundred
// microseconds suit a camera's pacing; see framebus.ConsumerOptions.Spin).
const DefaultSpin = 400 * time.Microsecond

// Spin is the value of a --spin flag: off by default, DefaultSpin as a bare
// --spin, or --spin=D for another budget (--spin=0 turns it off).
type Spin struct{ D time.Duration }

func (s *Spin) String() string {
	if s == nil || s.D == 0 {
		return "off"
	}
	return s.D.String()
}

// Set takes "true" (a bare --spin), "false", or a duration up to 100ms.
func (s *Spin) Set(v string) error {
	switch v {
	case "true":
		s.D = DefaultSpin
		return nil
	case "false":
		s.D = 0
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > 100*time.Millisecond {
		return fmt.Errorf("want a duration from 0 to 100ms (e.g. --spin=300us), or --spin alone for %v", DefaultSpin)
	}
	s.D = d
	return nil
}

// IsBoolFlag lets --spin stand alone.
func (s *Spin) IsBoolFlag() bool { return true }
