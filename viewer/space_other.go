//go:build !unix

package viewer

// freeSpace is unknown here: the recorder relies on write errors alone.
func freeSpace(dir string) (uint64, bool) { return 0, false }
