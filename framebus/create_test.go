//go:build linux

package framebus_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// writeLock takes an OFD write lock on byte 0 of path (as a creator does on
// its temporary file, PROTOCOL.md amendment 8, creation and liveness across PID namespaces) and returns its release.
func writeLock(t *testing.T, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// gc decides about temporary files by their creator's lock, never by the
// pid in their name: a file whose lock is held stays, whatever the pid
// (here 1, which kill(1, 0) finds alive in every namespace, and a pid that
// does not exist); a file whose lock is free goes, pid 1 or our own.
func TestGCTempFilesByLock(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	abandoned1 := mk("framebus.a.tmp-1")
	abandonedOurs := mk("framebus.b.tmp-" + strconv.Itoa(os.Getpid()))
	live1 := mk("framebus.c.tmp-1")
	liveGone := mk("framebus.d.tmp-999999999")
	release1, releaseGone := writeLock(t, live1), writeLock(t, liveGone)

	removed, err := framebus.GC(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{abandoned1, abandonedOurs}; !slices.Equal(removed, want) {
		t.Fatalf("gc removed %q, want %q (the unlocked ones)", removed, want)
	}
	for _, p := range []string{live1, liveGone} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("gc removed %s, whose creator holds its lock", p)
		}
	}
	release1()
	releaseGone()
	if removed, _ := framebus.GC(dir); len(removed) != 2 {
		t.Fatalf("after the creators died gc removed %q, want both", removed)
	}
}

// A producer removes the abandoned temporary files of its own bus before
// it checks the free space (a creator killed before it may have been pid 1
// of a container, whose file no pid test removes), and leaves a live
// creator's and other buses' alone.
func TestCreateCollectsItsAbandonedTemps(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "framebus.cam.tmp-1")
	other := filepath.Join(dir, "framebus.other.tmp-1")
	held := filepath.Join(dir, "framebus.cam.tmp-2")
	for _, p := range []string{mine, other, held} {
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release := writeLock(t, held)
	defer release()
	p, err := framebus.Create("cam", framebus.ProducerOptions{Dir: dir,
		Format: framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("the abandoned %s is still there (%v)", mine, err)
	}
	for _, p := range []string{other, held} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	// The segment records our PID namespace; an entry, the consumer's.
	c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := framebus.Inspect("cam", dir)
	if err != nil {
		t.Fatal(err)
	}
	ns := framebus.PIDNamespace()
	if ns == 0 || s.Header.ProducerPIDNS != ns || s.PIDNS != ns || len(s.Consumers) != 1 || s.Consumers[0].PIDNS != ns {
		t.Fatalf("PID namespaces: ours %d, producer %d, inspector %d, consumers %+v", ns, s.Header.ProducerPIDNS, s.PIDNS, s.Consumers)
	}
}
