//go:build !linux

package framebus

// ownerHeld reports whether the producer's ownership is held by another
// party. Without OFD read locks anybody could take, that is lockHeld.
func (f *sysFile) ownerHeld() (bool, error) { return f.lockHeld(0, 1) }
