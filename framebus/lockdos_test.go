//go:build linux

package framebus_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// A read lock on the lock file's byte 0, which anybody who can read the file
// can take after the producer died, neither passes for a live producer nor
// blocks the next one (docs/SECURITY.md): the next producer gives that lock
// file up and makes a new one, and consumers join it.
func TestReadLockDoesNotHoldTheName(t *testing.T) {
	dir, name := framebus.ShmDir(t), busName(t)
	p1 := startChild(t, "producer1", childOpts{}, "producer", busArgs(dir, name,
		"-close=false", "-frames", "10", "-interval", "1ms", "-heartbeat", "100ms")...)
	p1.waitEvent("ready", procStartTimeout)
	p1.waitEvent("done", procRunTimeout)
	if _, err := p1.kill(); !killedBy(err, syscall.SIGKILL) {
		t.Fatalf("producer1: exit %v, want SIGKILL", err)
	}

	// The squatter: a read lock on byte 0 of the dead producer's lock file.
	lf, err := os.Open(framebus.LockPath(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	lk := unix.Flock_t{Type: unix.F_RDLCK, Start: 0, Len: 1}
	if err := unix.FcntlFlock(lf.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatalf("taking the read lock: %v", err)
	}

	if s, err := framebus.Inspect(name, dir); err != nil || s.OwnerAlive {
		t.Fatalf("Inspect with only a read lock on byte 0: owner alive %v, err %v; want not alive", s != nil && s.OwnerAlive, err)
	}
	f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey}.Complete()
	p2, err := framebus.Create(name, framebus.ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatalf("the next producer is blocked by a read lock: %v", err)
	}
	defer p2.Close()
	if g := p2.Generation(); g != 2 {
		t.Errorf("generation %d, want 2 (a takeover)", g)
	}
	if s, err := framebus.Inspect(name, dir); err != nil || !s.OwnerAlive {
		t.Fatalf("Inspect after the takeover: %v, %v; want the new owner alive", s, err)
	}
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := p2.Publish(make([]byte, f.FrameSize), framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if fr, err := c.Next(ctx); err != nil || fr.Seq != 11 {
		t.Fatalf("consumer of the new producer: %v, %v; want frame 11", fr, err)
	}
}

// A segment file truncated and grown back to its size under a live producer
// reads zeros where its header was; the producer notices at its next
// heartbeat and publishes a new generation, which new consumers join.
func TestTruncatedAndGrownBack(t *testing.T) {
	dir, name := t.TempDir(), "regrown"
	f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey}.Complete()
	p, err := framebus.Create(name, framebus.ProducerOptions{Format: f, Dir: dir, Heartbeat: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	path := framebus.SegmentPath(dir, name)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Generation() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no new generation within 10 s of the header being zeroed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatalf("a new consumer after the new generation: %v", err)
	}
	defer c.Close()
	if _, err := p.Publish(make([]byte, f.FrameSize), framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Next(ctx); err != nil {
		t.Fatal(err)
	}
}
