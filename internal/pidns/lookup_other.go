//go:build !linux

package pidns

func lookup(pid uint32, ns uint64) uint32 { return 0 }
