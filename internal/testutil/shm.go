package testutil

import (
	"os"
	"testing"
)

// ShmDir is a bus directory of the test's own under /dev/shm (tmpfs, what
// framebus uses in production, and shared with the namespaces some tests
// make), else t.TempDir(); removed when the test ends.
func ShmDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "framebus-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
