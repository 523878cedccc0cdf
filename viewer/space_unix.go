//go:build unix

package viewer

import "golang.org/x/sys/unix"

// freeSpace is the bytes an unprivileged writer may still use in dir.
func freeSpace(dir string) (uint64, bool) {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
