package framebus

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// What GC proves before it removes a file of the bus directory: that
// framebus made it. A name alone proves nothing (anybody can name a file
// framebus.notes), and a file nobody locks is not therefore a bus.

// provenLock: the file at path is a lock file (PROTOCOL.md section 2): a
// regular file of 0 bytes (framebus never writes into one).
func provenLock(path string) bool {
	info, err := lstatPath(path)
	return err == nil && info.exists && info.regular && !info.symlink && info.size == 0
}

// provenSegment: the file at path is a segment: it starts with framebus's
// magic (whatever else is corrupt in it), or it is empty (a segment
// truncated to 0 bytes) and lockProven says its lock file is one.
func provenSegment(path string, lockProven bool) bool {
	f, err := openExisting(path, false)
	if err != nil {
		return false
	}
	defer f.close()
	size, err := f.size()
	if err != nil {
		return false
	}
	if size == 0 {
		return lockProven
	}
	var b [4]byte
	n, err := f.preadFull(b[:], 0)
	return err == nil && n == 4 && binary.LittleEndian.Uint32(b[:]) == Magic
}

// provenTemp: the file at path, named as tempBus says, is what a creation
// leaves (generation.go): its name ends in ".tmp-" and a pid (".tmp" where
// there are no pids), and it is empty, or a whole number of pages that
// start with zeros (not written yet) or with the magic (the header is
// written last). Its creator's lock is what collectTemp tests then.
func provenTemp(path string) bool {
	suffix := path[strings.LastIndex(path, ".tmp")+len(".tmp"):]
	if suffix != "" {
		pid, ok := strings.CutPrefix(suffix, "-")
		if _, err := strconv.ParseUint(pid, 10, 32); !ok || err != nil {
			return false
		}
	}
	f, err := openExisting(path, false)
	if err != nil {
		return false
	}
	defer f.close()
	size, err := f.size()
	if err != nil || size%4096 != 0 {
		return false
	}
	if size == 0 {
		return true
	}
	var b [4]byte
	n, err := f.preadFull(b[:], 0)
	w := binary.LittleEndian.Uint32(b[:])
	return err == nil && n == 4 && (w == 0 || w == Magic)
}

// gcBus removes what it proves of the bus name in dir when its producer is
// gone: the segment, the lock file or both. It returns the paths removed.
func gcBus(dir, name string) []string {
	path, lockPath := SegmentPath(dir, name), LockPath(dir, name)
	if ownerAlive(lockPath) {
		return nil
	}
	lockOK := provenLock(lockPath)
	segOK := provenSegment(path, lockOK)
	if !segOK && !lockOK {
		return nil
	}
	segInfo, _ := lstatPath(path)
	lockInfo, _ := lstatPath(lockPath)
	if (segOK || !segInfo.exists) && (lockOK || !lockInfo.exists) {
		// Both files are framebus's (or absent): Remove, under the lock.
		if err := Remove(name, dir, false); err != nil {
			return nil
		}
		var removed []string
		if segInfo.exists {
			removed = append(removed, path)
		}
		if lockInfo.exists {
			removed = append(removed, lockPath)
		}
		return removed
	}
	// One of the two is not framebus's: leave it, remove the other.
	if segOK {
		retireFile(path)
		if unlinkFile(path) == nil {
			return []string{path}
		}
		return nil
	}
	lf, err := openExisting(lockPath, true)
	if err != nil {
		return nil
	}
	defer lf.close()
	if ok, err := lf.lockOwner(); err != nil || !ok {
		return nil
	}
	defer lf.unlockOwner()
	if same, _ := lf.isAt(lockPath); same && unlinkFile(lockPath) == nil {
		return []string{lockPath}
	}
	return nil
}
