//go:build linux

package framebus_test

// Multi-process tests of stopped processes (SIGSTOP): a stopped consumer
// holds nobody back and is told what it missed, also across the producer's
// close; a stopped producer is stalled, never gone. The harness is
// process_helpers_test.go, the summary checks helpers_ext_test.go.

import (
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Test 3: a consumer stopped with SIGSTOP (2 s at least) does not hold the
// producer back, and afterwards reports as dropped exactly the frames it
// missed.
func TestProcessStoppedConsumer(t *testing.T) {
	const frames = 3000
	dir, name := framebus.ShmDir(t), busName(t)
	c := startChild(t, "consumer", childOpts{}, "consumer", busArgs(dir, name, "-log-seqs")...)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", strconv.Itoa(frames), "-interval", "1ms", "-wait-consumers", "1")...)
	path := prod.waitEvent("ready", procStartTimeout).str("path")
	j := c.waitEvent("joined", procStartTimeout)
	c.waitFrames(100)
	c.signal(syscall.SIGSTOP)
	stopNS := framebus.Now()
	seg, err := os.Open(path) // kept: the producer may close (and unlink) before the stop ends
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	s1, err := readSegmentFrom(seg)
	if err != nil {
		t.Fatal(err)
	}
	// At least 2 s, and until the producer has published 1000 frames past
	// the stop: a producer that is not held back by the stopped consumer
	// gets there however slow the machine; one that is held back never
	// does, and the bound below fails it.
	time.Sleep(2 * time.Second)
	var s2 *segSnapshot
	for deadline := time.Now().Add(procRunTimeout); ; time.Sleep(20 * time.Millisecond) {
		if s2, err = readSegmentFrom(seg); err != nil {
			t.Fatal(err)
		}
		if s2.LastSeq-s1.LastSeq >= 1000 || time.Now().After(deadline) {
			break
		}
	}
	if ev := prod.all("done"); len(ev) > 0 {
		t.Logf("the producer finished during the 2 s stop (an overloaded machine delayed the stop): %s", ev[0].Line)
	}
	contNS := framebus.Now() // before the signal: the consumer may run before Signal returns
	c.signal(syscall.SIGCONT)
	a, b := s1.LastSeq, s2.LastSeq
	t.Logf("while the consumer was stopped (%s) the producer went from frame %d to %d", procMS(contNS-stopNS), a, b)
	if b-a < 1000 {
		t.Errorf("producer published only %d frames in the %s the consumer was stopped: it was held back", b-a, procMS(contNS-stopNS))
	}

	done := prod.waitEvent("done", procRunTimeout)
	prod.waitEvent("closed", 10*time.Second)
	if got := done.u("frames_published"); got != frames {
		t.Errorf("producer frames_published %d, want %d", got, frames)
	}
	s := c.summary(procRunTimeout)
	// A "stalled" report would only mean the producer's own heartbeat was
	// late (a 20 ms interval on an overloaded machine): it is logged, not failed.
	c.noEvents("bad", "order", "error", "gone")
	procLogStalled(t, c)
	closed := procCheckClosed(t, c, s)
	var seqs []uint64
	var perFrame uint64
	maxGap, gapAt := uint64(0), uint64(0)
	for _, e := range c.all("frame") {
		sq := e.u("seq")
		if len(seqs) > 0 {
			prev := seqs[len(seqs)-1]
			if sq <= prev {
				t.Errorf("frame %d delivered after %d", sq, prev)
			} else if sq-prev-1 > maxGap {
				maxGap, gapAt = sq-prev-1, prev
			}
		}
		if w := e.NS; w > stopNS+int64(50*time.Millisecond) && w < contNS {
			t.Errorf("frame %d delivered at %s into the SIGSTOP", sq, procMS(w-stopNS))
		}
		seqs = append(seqs, sq)
		perFrame += e.u("dropped")
	}
	if len(seqs) == 0 {
		t.Fatal("no frame delivered")
	}
	first, last := seqs[0], seqs[len(seqs)-1]
	missing := (last - first + 1) - uint64(len(seqs))
	before := first - j.u("last_seq") - 1 // frames published between the join and the first delivery
	dropped := s.u("dropped")
	// The summary's dropped also holds the frames missed between the last
	// delivered frame and the end of stream (*EndOfStreamError.Dropped).
	sum, atEOS := procPerFrameDropped(t, c, s)
	t.Logf("consumer: delivered %d (%d..%d), dropped %d (%d before the first frame, %d between, %d before the end of stream), largest gap %d frames after %d, torn retries %d",
		len(seqs), first, last, dropped, before, missing, atEOS, maxGap, gapAt, s.u("torn_retries"))
	if sum != missing+before {
		t.Errorf("per-frame dropped values sum to %d, but %d sequence numbers between %d and %d were not delivered (+ %d before the first)",
			sum, missing, first, last, before)
	}
	if perFrame != sum {
		t.Errorf("per-frame sums disagree: %d, %d", perFrame, sum)
	}
	if dropped != missing+before+atEOS {
		t.Errorf("dropped %d, want %d missing between %d and %d + %d before the first + %d before the end of stream",
			dropped, missing, first, last, before, atEOS)
	}
	if dropped == 0 {
		t.Error("dropped = 0 after a 2 s stop")
	}
	if maxGap+2 < b-a {
		t.Errorf("largest gap %d frames, but %d frames were published while the consumer was stopped", maxGap, b-a)
	}
	procCheckCallerAccounting(t, "consumer", s, j.u("last_seq"))
	procCheckEntryCounters(t, "consumer", s, j.u("last_seq"))
	if closed {
		procCheckEntryMatchesCaller(t, "consumer", s, s.u("delivered"), dropped)
	}
}

// procStopConsumerAcrossClose runs a producer of 1000 frames at 1 ms with the
// given heartbeat and a consumer that is stopped (SIGSTOP) while asleep
// waiting for a frame, after its 5th frame, and continued (SIGCONT) only
// once the producer has published every frame, closed the stream and
// exited, plus pause; then checks that the consumer saw a clean end of stream
// and was told of every frame it missed.
func procStopConsumerAcrossClose(t *testing.T, hb string, pause time.Duration) {
	t.Helper()
	const frames = 1000
	dir, name := framebus.ShmDir(t), busName(t)
	c := startChild(t, "consumer", childOpts{}, "consumer", busArgs(dir, name, "-log-seqs")...)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", strconv.Itoa(frames), "-interval", "1ms", "-wait-consumers", "1", "-heartbeat", hb)...)
	j := c.waitEvent("joined", procStartTimeout)
	c.waitFrames(5)
	// Hold the producer for 10 ms (far less than 3 heartbeats), so that the
	// consumer is asleep on its semaphore when it is stopped.
	prod.signal(syscall.SIGSTOP)
	time.Sleep(10 * time.Millisecond)
	c.signal(syscall.SIGSTOP)
	stopNS := framebus.Now()
	prod.signal(syscall.SIGCONT)
	closed := prod.waitEvent("closed", procRunTimeout)
	if _, err := prod.waitExit(10 * time.Second); err != nil {
		t.Errorf("producer exited with %v", err)
	}
	time.Sleep(pause)
	c.signal(syscall.SIGCONT)
	t.Logf("consumer stopped %s, the producer closed %s after the stop", procMS(framebus.Now()-stopNS), procMS(closed.NS-stopNS))
	s := c.summary(procRunTimeout)
	c.noEvents("bad", "order", "gone")
	procLogStalled(t, c)
	t.Logf("consumer summary: %s", s.Line)
	if s.u("last_seq") >= frames {
		t.Fatalf("the stopped consumer delivered frame %d: the scenario did not happen", s.u("last_seq"))
	}
	if !procCheckClosed(t, c, s) {
		return
	}
	c.noEvents("error")
	if eos := s.u("entry_last_seq"); eos != frames+1 {
		t.Errorf("entry_last_seq %d, want %d (the end-of-stream frame)", eos, frames+1)
	}
	// Every frame from the last delivered one to 1000 was missed: the
	// caller must learn it (*EndOfStreamError.Dropped), not only the entry.
	_, atEOS := procPerFrameDropped(t, c, s)
	if want := frames - s.u("last_seq"); atEOS != want {
		t.Errorf("%d frames reported dropped at the end of stream, want %d (%d..%d)", atEOS, want, s.u("last_seq")+1, frames)
	}
	procCheckCallerAccounting(t, c.label, s, j.u("last_seq"))
	procCheckEntryCounters(t, c.label, s, j.u("last_seq"))
	procCheckEntryMatchesCaller(t, c.label, s, s.u("delivered"), s.u("dropped"))
}

// A consumer stopped across the producer's clean close, for longer than a
// heartbeat interval (a consumer descheduled on a loaded machine, a process
// under a debugger): when it runs again its sleep has outlasted a heartbeat,
// the name is gone, the segment RETIRED, the owner dead, and the
// end-of-stream frame in the active slot. It must report "closed"
// (PROTOCOL.md sections 2 and 6: no file and an end-of-stream frame: the
// producer closed), not ErrRetired, with every missed frame accounted for.
// (Before commit 3a73acf, wait() ran check() before looking for a pending
// frame and the consumer got "segment retired".)
func TestProcessStoppedAcrossClose(t *testing.T) {
	procStopConsumerAcrossClose(t, "20ms", 100*time.Millisecond)
}

// The same with a 5 s heartbeat, so that the consumer wakes into the
// end-of-stream frame through its semaphore, not through a timeout: the
// frames it missed just before the end of stream are in its entry's dropped
// and must reach the caller too (*EndOfStreamError.Dropped; before commit
// 3a73acf, Next returned a bare ErrEndOfStream and only Stats().Dropped had them).
func TestProcessDropsBeforeEndOfStream(t *testing.T) {
	procStopConsumerAcrossClose(t, "5s", 0)
}

// A producer stopped with SIGSTOP is alive (it holds its lock) but stuck:
// its consumers report ErrStalled once, within about 3 heartbeat intervals,
// never "gone", and get frames again, in the same generation, once it is
// continued (docs/DESIGN.md section 5).
func TestProcessStoppedProducer(t *testing.T) {
	const hb = 20 * time.Millisecond
	dir, name := framebus.ShmDir(t), busName(t)
	c := startChild(t, "consumer", childOpts{}, "consumer", busArgs(dir, name, "-log-seqs")...)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", "0", "-interval", "2ms", "-wait-consumers", "1", "-heartbeat", hb.String())...)
	j := c.waitEvent("joined", procStartTimeout)
	c.waitFrames(20)
	prod.signal(syscall.SIGSTOP)
	stopNS := framebus.Now()
	stalled := c.waitEvent("stalled", 5*time.Second)
	lat := stalled.NS - stopNS
	t.Logf("consumer reported stalled %s after the producer was stopped (heartbeat %v)", procMS(lat), hb)
	// Stale means older than 3 intervals; the consumer looks once per
	// interval; the rest is scheduling, which a loaded 2-vCPU machine
	// stretched to 240 ms once (with 80 ms allowed): 500 ms allowed, still
	// far below the 5 s that would mean the heartbeat was not looked at.
	if bound := 4*hb + 500*time.Millisecond; lat > int64(bound) {
		t.Errorf("stalled reported %s after the stop, want <= 4 heartbeat intervals + 500ms (%v)", procMS(lat), bound)
	}
	time.Sleep(300 * time.Millisecond) // 15 intervals: still one report for the episode
	contNS := framebus.Now()
	prod.signal(syscall.SIGCONT)
	after := c.waitMatch("a frame after SIGCONT", 5*time.Second, func(e event) bool { return e.Kind == "frame" && e.NS > contNS })
	t.Logf("first frame after SIGCONT: %d, %s after it", after.u("seq"), procMS(after.NS-contNS))
	time.Sleep(100 * time.Millisecond)
	prod.signal(syscall.SIGTERM)
	done := prod.waitEvent("done", 10*time.Second)
	prod.waitEvent("closed", 10*time.Second)
	s := c.summary(procRunTimeout)
	c.noEvents("bad", "order", "error", "gone", "generation")
	n := 0
	for _, e := range c.all("stalled") {
		if e.NS < contNS {
			n++
		} else {
			t.Logf("a later stalled report (the machine is loaded): %s", e.Line)
		}
	}
	if n != 1 {
		t.Errorf("%d stalled events while the producer was stopped for 15 intervals, want 1 (once per episode)", n)
	}
	closed := procCheckClosed(t, c, s)
	if g := s.uints("generations"); !slices.Equal(g, []uint64{1}) {
		t.Errorf("generations %v, want [1]", g)
	}
	procCheckEntryCounters(t, "consumer", s, j.u("last_seq"))
	procCheckCallerAccounting(t, "consumer", s, j.u("last_seq"))
	procPerFrameDropped(t, c, s)
	if closed {
		if eos := s.u("entry_last_seq"); eos != done.u("last_seq")+1 {
			t.Errorf("entry_last_seq %d, want %d", eos, done.u("last_seq")+1)
		}
		procCheckEntryMatchesCaller(t, "consumer", s, s.u("delivered"), s.u("dropped"))
	}
}
