//go:build !windows

package framebus

// DefaultDir is the bus directory used when none is given and FRAMEBUS_DIR is
// not set.
const DefaultDir = "/dev/shm"
