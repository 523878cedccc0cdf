//go:build linux

package framebus_test

// Holds (PROTOCOL.md amendment 10) across processes: holders that keep every
// frame they can for longer than the producer takes to lap the bus never
// see a held frame overwritten, while a plain reader (one that ignores
// holds) still gets every frame intact; a holder killed with SIGKILL gives
// its slots back within a heartbeat or two; a stopped holder stops nobody.
// The harness is process_helpers_test.go; the holder is fbproc's consumer
// with -hold-for.

import (
	"context"
	"errors"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// procHoldSummary checks a holder's summary: holds granted, none overwritten
// or taken back, no error.
func procHoldSummary(t *testing.T, c *child, s event) {
	t.Helper()
	t.Logf("%s: delivered %d, holds %d (refused: cap %d, overwritten %d, other %d), bad %d, taken back %d, longest held %s",
		c.label, s.u("delivered"), s.u("holds"), s.u("hold_refused_cap"), s.u("hold_refused_overwritten"), s.u("hold_refused_other"),
		s.u("hold_bad"), s.u("hold_taken_back"), procMS(int64(s.u("hold_max_ns"))))
	if s.u("holds") < 10 {
		t.Errorf("%s: only %d holds granted", c.label, s.u("holds"))
	}
	if s.u("hold_bad") != 0 || s.u("hold_taken_back") != 0 || s.u("hold_refused_other") != 0 {
		t.Errorf("%s: %d held frames overwritten, %d taken back, %d other refusals", c.label, s.u("hold_bad"), s.u("hold_taken_back"), s.u("hold_refused_other"))
	}
	if s.u("entry_holds_granted") != s.u("holds") || s.u("entry_holds_taken_back") != 0 {
		t.Errorf("%s: the entry counts %d granted, %d taken back; the holder %d", c.label, s.u("entry_holds_granted"), s.u("entry_holds_taken_back"), s.u("holds"))
	}
	c.noEvents("bad", "order", "error", "holdbad", "takenback", "holderror")
}

// (a) and (j): a producer at 1 ms per frame and holders that keep each
// frame 25 ms (more than 2 and 3 frame periods: without holds every held
// frame would be overwritten): 0 held frames overwritten, on 3 slots with
// one holder and on 4 slots with two, and a plain reader beside them gets
// every frame it reads intact.
func TestProcessHoldersNeverOverwritten(t *testing.T) {
	for _, tc := range []struct{ slots, holders int }{{3, 1}, {4, 2}} {
		t.Run(strconv.Itoa(tc.slots)+"slots", func(t *testing.T) {
			const frames = 1500
			dir, name := framebus.ShmDir(t), busName(t)
			var hs []*child
			for i := 0; i < tc.holders; i++ {
				hs = append(hs, startChild(t, "holder"+strconv.Itoa(i), childOpts{}, "consumer", busArgs(dir, name, "-hold-for", "25ms")...))
			}
			plain := startChild(t, "plain", childOpts{}, "consumer", busArgs(dir, name)...)
			prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
				"-frames", strconv.Itoa(frames), "-interval", "1ms", "-slots", strconv.Itoa(tc.slots),
				"-wait-consumers", strconv.Itoa(tc.holders+1))...)
			done := prod.waitEvent("done", procRunTimeout)
			prod.waitEvent("closed", 10*time.Second)
			for _, h := range hs {
				procHoldSummary(t, h, h.summary(procRunTimeout))
			}
			ps := plain.summary(procRunTimeout)
			plain.noEvents("bad", "order", "error")
			if ps.u("delivered") < frames/4 {
				t.Errorf("the plain reader got %d of %d frames", ps.u("delivered"), frames)
			}
			t.Logf("producer: %d frames, holds granted %d, refused %d, taken back %d; plain reader: %d delivered, %d dropped",
				done.u("frames_published"), done.u("holds_granted"), done.u("holds_refused"), done.u("holds_taken_back"), ps.u("delivered"), ps.u("dropped"))
			if done.u("holds_taken_back") != 0 {
				t.Errorf("the producer took back %d holds without a lease", done.u("holds_taken_back"))
			}
		})
	}
}

// waitHeld waits until the bus has n slots held (Inspect), failing after
// timeout.
func waitHeld(t *testing.T, dir, name string, n int, timeout time.Duration) {
	t.Helper()
	var s *framebus.Snapshot
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var err error
		if s, err = framebus.Inspect(name, dir); err == nil && s.Held == n {
			return
		}
	}
	held := -1
	if s != nil {
		held = s.Held
	}
	t.Fatalf("bus %s: %d slots held after %v, want %d", name, held, timeout, n)
}

// (c): a holder killed with SIGKILL gives its slots back within a heartbeat
// interval or two (the producer reclaims its entry and clears its mask), and
// another consumer can hold then.
func TestProcessHolderKilled(t *testing.T) {
	const hb = 50 * time.Millisecond
	dir, name := framebus.ShmDir(t), busName(t)
	h := startChild(t, "holder", childOpts{}, "consumer", busArgs(dir, name, "-hold-for", "1h", "-log-holds")...)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", "0", "-interval", "2ms", "-slots", "3", "-heartbeat", hb.String(), "-wait-consumers", "1")...)
	prod.waitEvent("ready", procStartTimeout)
	h.waitEvent("hold", procRunTimeout)
	waitHeld(t, dir, name, 1, 5*time.Second)

	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Hold(); !errors.Is(err, framebus.ErrHoldCap) {
		t.Fatalf("a hold beside the holder on 3 slots: %v, want ErrHoldCap", err)
	}
	killNS, _ := h.kill()
	waitHeld(t, dir, name, 0, 10*time.Second)
	back := framebus.Now() - killNS
	t.Logf("the killed holder's slot came back %s after its death (heartbeat %v)", procMS(back), hb)
	if back > int64(4*hb) {
		t.Errorf("the slot came back %s after the kill, want within a heartbeat or two (%v)", procMS(back), hb)
	}
	for i := 0; ; i++ {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hd, err := f.Hold()
		if err == nil {
			hd.Release()
			break
		}
		if i == 10 || !errors.Is(err, framebus.ErrOverwritten) {
			t.Fatalf("hold after the holder's death: %v", err)
		}
	}
	prod.signal(syscall.SIGTERM)
	prod.waitEvent("done", 10*time.Second)
}

// (d): a holder stopped with SIGSTOP keeps its hold (the cap's worth), and
// the producer keeps publishing at full rate while a plain reader keeps
// reading.
func TestProcessHolderStopped(t *testing.T) {
	dir, name := framebus.ShmDir(t), busName(t)
	h := startChild(t, "holder", childOpts{}, "consumer", busArgs(dir, name, "-hold-for", "1h", "-log-holds")...)
	plain := startChild(t, "plain", childOpts{}, "consumer", busArgs(dir, name, "-log-seqs")...)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", "0", "-interval", "1ms", "-slots", "3", "-wait-consumers", "2")...)
	path := prod.waitEvent("ready", procStartTimeout).str("path")
	h.waitEvent("hold", procRunTimeout)
	waitHeld(t, dir, name, 1, 5*time.Second)
	h.signal(syscall.SIGSTOP)
	defer h.signal(syscall.SIGCONT)
	s1, err := readSegment(path)
	if err != nil {
		t.Fatal(err)
	}
	before := len(plain.all("frame"))
	start := time.Now()
	time.Sleep(time.Second)
	s2, err := readSegment(path)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	read := len(plain.all("frame")) - before
	snap, _ := framebus.Inspect(name, dir)
	t.Logf("while the holder was stopped (%v): %d frames published, the plain reader read %d; %d slot held", el, s2.LastSeq-s1.LastSeq, read, snap.Held)
	if s2.LastSeq-s1.LastSeq < 300 {
		t.Errorf("the producer published %d frames in %v at 1 ms per frame: held back", s2.LastSeq-s1.LastSeq, el)
	}
	if read < 100 {
		t.Errorf("the plain reader read %d frames in %v", read, el)
	}
	if snap.Held != 1 {
		t.Errorf("%d slots held while the holder is stopped, want 1 (it keeps its hold)", snap.Held)
	}
	plain.noEvents("bad", "order", "error")
	h.signal(syscall.SIGCONT)
	prod.signal(syscall.SIGTERM)
	prod.waitEvent("done", 10*time.Second)
}
