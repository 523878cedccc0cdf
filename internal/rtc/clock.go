package rtc

import (
	"time"

	"github.com/framebus/framebus/framebus"
)

// ntpEpochOffset is the seconds from 1900 (NTP's epoch) to 1970 (Unix's).
const ntpEpochOffset = 2208988800

// WallNS converts a time on framebus.Now's monotonic clock to Unix
// nanoseconds of the wall clock, as of now.
func WallNS(monoNS int64) int64 {
	wall, mono := time.Now().UnixNano(), framebus.Now()
	return wall - (mono - monoNS)
}

// MonoNS converts Unix nanoseconds of the wall clock to framebus.Now's
// clock, as of now.
func MonoNS(wallNS int64) int64 {
	wall, mono := time.Now().UnixNano(), framebus.Now()
	return mono - (wall - wallNS)
}

// NTP is Unix nanoseconds as a 64-bit NTP timestamp (32.32 fixed point
// seconds since 1900).
func NTP(unixNS int64) uint64 {
	s := uint64(unixNS/1e9) + ntpEpochOffset
	f := uint64(unixNS%1e9) << 32 / 1e9
	return s<<32 | f
}

// UnixNS is a 64-bit NTP timestamp as Unix nanoseconds.
func UnixNS(ntp uint64) int64 {
	s := int64(ntp>>32) - ntpEpochOffset
	f := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return s*1e9 + f
}

// RTPTime is a time on framebus.Now's clock on the 90 kHz RTP clock.
func RTPTime(monoNS int64) uint32 {
	return uint32(uint64(monoNS) * 9 / 100000) // wraps, as RTP timestamps do
}
