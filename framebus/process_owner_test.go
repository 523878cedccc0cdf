//go:build linux

package framebus_test

// Multi-process tests of ownership (process_test.go has the failure tests of
// the commit and the read): a dead consumer's entry taken back, a live
// producer's name refused and a dead one's taken over, files between users.
// The harness is process_helpers_test.go, the summary checks helpers_ext_test.go.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Test 4: 100 consumers join and are killed with SIGKILL, 10 at a time, on a
// 32-entry table: the producer takes every dead entry back (none fails with
// a full table), counts exactly 100, and never touches a live consumer.
func TestProcessReclaimDeadConsumers(t *testing.T) {
	const (
		waves   = 10
		perWave = 10
		total   = waves * perWave
	)
	dir, name := framebus.ShmDir(t), busName(t)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-consumers", "32", "-frames", "0", "-interval", "2ms", "-heartbeat", "20ms", "-close")...)
	path := prod.waitEvent("ready", procStartTimeout).str("path")
	live := startChild(t, "live", childOpts{}, "consumer", busArgs(dir, name)...)
	lj := live.waitEvent("joined", procStartTimeout)

	reclaimed := func() uint64 {
		s, err := readSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		return s.ConsumersReclaimed
	}
	entries := map[uint64]int{}
	var lastKill int64
	for w := 0; w < waves; w++ {
		before := reclaimed()
		var ps []*child
		for i := 0; i < perWave; i++ {
			ps = append(ps, startChild(t, fmt.Sprintf("victim%d", w*perWave+i), childOpts{}, "consumer",
				busArgs(dir, name, "-timeout", "30s")...))
		}
		for _, p := range ps {
			e := p.waitMatch("joined or error", procStartTimeout, func(e event) bool { return e.Kind == "joined" || e.Kind == "error" })
			if e.Kind == "error" {
				t.Errorf("%s could not join: %s", p.label, e.str("error"))
				continue
			}
			entries[e.u("entry")]++
			p.cmd.Process.Kill()
		}
		for _, p := range ps {
			ns, err := p.waitExit(10 * time.Second)
			if !killedBy(err, syscall.SIGKILL) && len(p.all("error")) == 0 {
				t.Errorf("%s: exit %v, want SIGKILL", p.label, err)
			}
			lastKill = max(lastKill, ns)
		}
		t.Logf("wave %d: consumers_reclaimed %d before it", w, before)
	}
	if t.Failed() {
		t.FailNow()
	}
	deadline := time.Now().Add(5 * time.Second)
	var r uint64
	for r = reclaimed(); r < total && time.Now().Before(deadline); r = reclaimed() {
		time.Sleep(time.Millisecond)
	}
	t.Logf("all %d reclaimed %s after the last victim was reaped (heartbeat 20ms); entries used: %d distinct of 32",
		r, procMS(framebus.Now()-lastKill), len(entries))
	time.Sleep(100 * time.Millisecond) // 5 more heartbeats: nothing else may be reclaimed
	if r = reclaimed(); r != total {
		t.Errorf("consumers_reclaimed in the segment: %d, want %d", r, total)
	}
	prod.signal(syscall.SIGTERM)
	done := prod.waitEvent("done", 10*time.Second)
	prod.waitEvent("closed", 10*time.Second)
	if got := done.u("consumers_reclaimed"); got != total {
		t.Errorf("producer done: consumers_reclaimed %d, want %d", got, total)
	}
	t.Logf("producer: %d frames, consumers_reclaimed %d", done.u("frames_published"), done.u("consumers_reclaimed"))

	s := live.summary(procRunTimeout)
	live.noEvents("bad", "order", "error", "gone")
	procLogStalled(t, live)
	closed := procCheckClosed(t, live, s)
	// Had its entry been taken from it, it would have re-joined with zeroed
	// counters: the entry counters cover the whole run only if it never was.
	procCheckEntryCounters(t, "live consumer", s, lj.u("last_seq"))
	procCheckCallerAccounting(t, "live consumer", s, lj.u("last_seq"))
	if closed {
		if eos := s.u("entry_last_seq"); eos != done.u("last_seq")+1 {
			t.Errorf("live consumer: entry_last_seq %d, want %d (the end-of-stream frame)", eos, done.u("last_seq")+1)
		}
		procCheckEntryMatchesCaller(t, "live consumer", s, s.u("delivered"), s.u("dropped"))
	}
	t.Logf("live consumer: delivered %d, dropped %d, entry %d/%d",
		s.u("delivered"), s.u("dropped"), s.u("entry_delivered"), s.u("entry_dropped"))
}

// Test 5: ownership of a name: busy while the owner lives, taken over (with
// the old generation retired and the frame numbers continued) once it died,
// and a clean close seen by every consumer at once.
func TestProcessBusyAndTakeover(t *testing.T) {
	t.Run("busy", func(t *testing.T) {
		dir, name := framebus.ShmDir(t), busName(t)
		p1 := startChild(t, "producer1", childOpts{}, "producer", busArgs(dir, name, "-frames", "0", "-interval", "5ms")...)
		p1.waitEvent("ready", procStartTimeout)
		pid := strconv.Itoa(p1.pid)

		p2 := startChild(t, "producer2", childOpts{}, "producer", busArgs(dir, name, "-frames", "10")...)
		e := p2.waitEvent("error", procStartTimeout)
		if _, err := p2.waitExit(10 * time.Second); err == nil {
			t.Error("second producer exited 0")
		}
		msg := e.str("error")
		t.Logf("second producer: %s", msg)
		if !strings.Contains(msg, "live producer") && !strings.Contains(msg, "busy") {
			t.Errorf("second producer's error %q does not say busy / live producer", msg)
		}
		if !strings.Contains(msg, pid) {
			t.Errorf("second producer's error %q does not name the owner's pid %s", msg, pid)
		}
		if len(p2.all("ready")) != 0 {
			t.Error("second producer reported ready")
		}

		for i := 0; i < 2; i++ { // twice: the first refusal must not have dropped the owner's lock
			p, err := framebus.Create(name, framebus.ProducerOptions{
				Format: framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey}, Dir: dir})
			if err == nil {
				p.Close()
				t.Fatal("in-process Create on a live name succeeded")
			}
			if !errors.Is(err, framebus.ErrBusy) {
				t.Errorf("Create: %v: not ErrBusy", err)
			}
			var be *framebus.BusyError
			if !errors.As(err, &be) {
				t.Errorf("Create: %v: not a *BusyError", err)
			} else if be.PID != uint32(p1.pid) {
				t.Errorf("BusyError.PID = %d, want the owner's pid %d", be.PID, p1.pid)
			}
			if i == 0 {
				t.Logf("in-process Create: %v", err)
			}
		}
		// The owner is unaffected: a consumer still joins it and it closes cleanly.
		c := startChild(t, "consumer", childOpts{}, "consumer", busArgs(dir, name, "-count", "5")...)
		if s := c.summary(procStartTimeout); s.str("result") != "count" || s.u("bad") != 0 {
			t.Errorf("consumer of the original owner: %s", s.Line)
		}
		p1.signal(syscall.SIGTERM)
		p1.waitEvent("closed", 10*time.Second)
		if g := p1.waitEvent("done", time.Second).u("generation"); g != 1 {
			t.Errorf("owner's generation %d, want 1", g)
		}
	})

	t.Run("takeover", func(t *testing.T) {
		dir, name := framebus.ShmDir(t), busName(t)
		c := startChild(t, "consumer", childOpts{}, "consumer", busArgs(dir, name, "-log-seqs")...)
		p1 := startChild(t, "producer1", childOpts{}, "producer", busArgs(dir, name,
			"-close=false", "-frames", "100", "-interval", "1ms", "-wait-consumers", "1", "-heartbeat", "100ms")...)
		path := p1.waitEvent("ready", procStartTimeout).str("path")
		if d := p1.waitEvent("done", procRunTimeout); d.u("last_seq") != 100 {
			t.Fatalf("producer1 done: %s, want last_seq 100", d.Line)
		}
		c.waitMatch("frame 100", 5*time.Second, func(e event) bool { return e.Kind == "frame" && e.u("seq") == 100 })
		if _, err := p1.kill(); !killedBy(err, syscall.SIGKILL) {
			t.Fatalf("producer1: exit %v, want SIGKILL", err)
		}
		c.waitEvent("gone", 5*time.Second)

		old, err := os.Open(path) // the old generation, kept across the takeover
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		p2 := startChild(t, "producer2", childOpts{}, "producer", busArgs(dir, name,
			"-frames", "50", "-interval", "2ms", "-wait-consumers", "1", "-heartbeat", "100ms")...)
		if g := p2.waitEvent("ready", procStartTimeout).u("generation"); g != 2 {
			t.Errorf("producer2: generation %d, want 2", g)
		}
		newSeg, err := readSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		oldSeg, err := readSegmentFrom(old)
		if err != nil {
			t.Fatal(err)
		}
		if st := oldSeg.State; st != framebus.StateRetired {
			t.Errorf("old generation state %d, want %d (RETIRED)", st, framebus.StateRetired)
		}
		if g, ls, pid := oldSeg.Generation, oldSeg.LastSeq, oldSeg.ProducerPID; g != 1 || ls != 100 || pid != uint32(p1.pid) {
			t.Errorf("old generation: generation %d, last_seq %d, producer_pid %d; want 1, 100, %d", g, ls, pid, p1.pid)
		}
		if g, st, pid := newSeg.Generation, newSeg.State, newSeg.ProducerPID; g != 2 || st != framebus.StateReady || pid != uint32(p2.pid) {
			t.Errorf("new generation: generation %d, state %d, producer_pid %d; want 2, READY, %d", g, st, pid, p2.pid)
		}
		done := p2.waitEvent("done", procRunTimeout)
		if ls, fp := done.u("last_seq"), done.u("frames_published"); ls != 150 || fp != 50 {
			t.Errorf("producer2: last_seq %d, frames_published %d; want 150, 50", ls, fp)
		}
		p2.waitEvent("closed", 10*time.Second)

		s := c.summary(procRunTimeout)
		c.noEvents("bad", "order", "error")
		closed := procCheckClosed(t, c, s)
		if g := s.uints("generations"); !slices.Equal(g, []uint64{1, 2}) {
			t.Errorf("consumer: generations %v, want [1 2]", g)
		}
		ge := c.waitEvent("generation", time.Second)
		t.Logf("consumer: first frame of generation %d: %d", ge.u("generation"), ge.u("seq"))
		if ge.u("generation") != 2 || ge.u("seq") < 101 || ge.u("seq") > 150 {
			t.Errorf("consumer: %s, want generation 2 starting at 101..150", ge.Line)
		}
		gen := 1
		var n2 int
		var drop2 uint64
		for _, e := range c.snapshot() {
			switch {
			case e.Kind == "generation":
				gen = 2
			case e.Kind == "frame" && gen == 1 && e.u("seq") > 100:
				t.Errorf("consumer: generation 1 frame %d > 100", e.u("seq"))
			case e.Kind == "frame" && gen == 2:
				if sq := e.u("seq"); sq <= 100 || sq > 150 {
					t.Errorf("consumer: generation 2 frame %d, want 101..150", sq)
				}
				n2++
				drop2 += e.u("dropped")
			}
		}
		// The new entry counts from the consumer's own last_seq, 100 (section 7 amendment 1, gap accounting across a generation change).
		procCheckEntryCounters(t, "consumer", s, 100)
		procCheckCallerAccounting(t, "consumer", s, c.waitEvent("joined", time.Second).u("last_seq"))
		_, atEOS := procPerFrameDropped(t, c, s)
		if closed {
			if eos := s.u("entry_last_seq"); eos != 151 {
				t.Errorf("consumer: entry_last_seq %d, want 151", eos)
			}
			procCheckEntryMatchesCaller(t, "consumer", s, uint64(n2), drop2+atEOS)
		}
	})

	t.Run("close-wakes-all", func(t *testing.T) {
		dir, name := framebus.ShmDir(t), busName(t)
		var cons []*child
		for i := 0; i < 3; i++ {
			cons = append(cons, startChild(t, fmt.Sprintf("consumer%d", i), childOpts{}, "consumer", busArgs(dir, name)...))
		}
		p := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
			"-heartbeat", "5s", "-frames", "50", "-wait-consumers", "3")...)
		p.waitEvent("ready", procStartTimeout)
		closed := p.waitEvent("closed", procRunTimeout)
		for _, c := range cons {
			s := c.summary(procRunTimeout)
			c.noEvents("bad", "order", "error", "gone", "stalled")
			d := s.NS - closed.NS
			t.Logf("%s: result %s %s after the producer's closed event (heartbeat 5s), delivered %d, dropped %d",
				c.label, s.str("result"), procMS(d), s.u("delivered"), s.u("dropped"))
			if d > int64(time.Second) {
				t.Errorf("%s: saw the close %s after it, want < 1s (a timeout would take >= 5s)", c.label, procMS(d))
			}
			join := c.waitEvent("joined", time.Second).u("last_seq")
			procCheckEntryCounters(t, c.label, s, join)
			procCheckCallerAccounting(t, c.label, s, join)
			if procCheckClosed(t, c, s) {
				if eos := s.u("entry_last_seq"); eos != 51 {
					t.Errorf("%s: entry_last_seq %d, want 51", c.label, eos)
				}
				procCheckEntryMatchesCaller(t, c.label, s, s.u("delivered"), s.u("dropped"))
			}
		}
		if _, err := os.Lstat(filepath.Join(dir, "framebus."+name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("segment name still present after close: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "framebus."+name+".lock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lock file still present after close: %v", err)
		}
	})
}

// Test 6: file permissions between users. A consumer running as uid/gid
// 65534 is refused a default (0600) bus with a permission error naming the
// file, and reads a 0660 bus of group 65534.
func TestProcessOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a consumer as another user")
	}
	bin := fbprocBinary(t)
	for d := filepath.Dir(bin); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not traversable by other users (%v): uid 65534 cannot run fbproc", d, err)
		}
		if d == "/" {
			break
		}
	}
	dir := framebus.ShmDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := busName(t)
	nobody := childOpts{user: &childUser{uid: 65534, gid: 65534}}

	// Default mode 0600: refused.
	p1 := startChild(t, "producer-0600", childOpts{}, "producer", busArgs(dir, name, "-frames", "0", "-interval", "5ms")...)
	path := p1.waitEvent("ready", procStartTimeout).str("path")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("segment %s: %v, %v; want mode 0600", path, fi.Mode(), err)
	}
	c1 := startChild(t, "consumer-nobody", nobody, "consumer", busArgs(dir, name, "-wait", "2s")...)
	e := c1.waitEvent("error", procStartTimeout)
	if _, err := c1.waitExit(10 * time.Second); err == nil {
		t.Error("refused consumer exited 0")
	}
	msg := e.str("error")
	t.Logf("uid 65534 on a 0600 bus: %s", msg)
	if !strings.Contains(msg, "permission denied") || !strings.Contains(msg, path) {
		t.Errorf("error %q does not say permission denied and name the segment %s", msg, path)
	}
	if len(c1.all("joined")) != 0 {
		t.Error("uid 65534 joined a 0600 bus")
	}
	p1.signal(syscall.SIGTERM)
	p1.waitEvent("closed", 10*time.Second)

	// Mode 0660, group 65534: joined.
	p2 := startChild(t, "producer-0660", childOpts{}, "producer", busArgs(dir, name,
		"-mode", strconv.Itoa(0o660), "-group", "65534", "-frames", "200", "-interval", "2ms", "-wait-consumers", "1")...)
	path = p2.waitEvent("ready", procStartTimeout).str("path")
	for _, f := range []string{path, path + ".lock"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o660 || st.Gid != 65534 {
			t.Errorf("%s: mode %v gid %d, want 0660 and gid 65534", f, fi.Mode().Perm(), st.Gid)
		}
	}
	c2 := startChild(t, "consumer-nobody-2", nobody, "consumer", busArgs(dir, name)...)
	c2.waitEvent("joined", procStartTimeout)
	p2.waitEvent("closed", procRunTimeout)
	s := c2.summary(procRunTimeout)
	c2.noEvents("bad", "order", "error")
	t.Logf("uid 65534 on a 0660 group-65534 bus: %s, delivered %d, dropped %d", s.str("result"), s.u("delivered"), s.u("dropped"))
	if s.u("delivered") == 0 {
		t.Error("consumer as uid 65534 delivered no frame")
	}
	join := c2.waitEvent("joined", time.Second).u("last_seq")
	procCheckEntryCounters(t, "consumer-nobody", s, join)
	procCheckCallerAccounting(t, "consumer-nobody", s, join)
	if procCheckClosed(t, c2, s) {
		procCheckEntryMatchesCaller(t, "consumer-nobody", s, s.u("delivered"), s.u("dropped"))
	}
}
