//go:build linux

package framebus_test

// Multi-process failure tests: producers and consumers are separate fbproc
// processes (internal/fbproc, built with -tags framebus_faults) sharing a bus
// in a directory of their own under /dev/shm. See process_helpers_test.go for
// the harness. Timestamps ("ns") are CLOCK_MONOTONIC, comparable across
// processes and with framebus.Now().

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

// Test 1: one producer, four consumer processes (one of them copying with
// ReadInto), 10,000 checksummed 256x256 frames as fast as the producer can:
// no consumer is ever handed a torn frame, and every consumer's counters
// account for every frame.
func TestProcessFourConsumersNoTornFrames(t *testing.T) {
	start := time.Now()
	dir, name := framebus.ShmDir(t), busName(t)
	const frames = 10000
	var cons []*child
	for i := 0; i < 4; i++ {
		args := busArgs(dir, name)
		label := fmt.Sprintf("consumer%d", i)
		if i == 3 {
			args = append(args, "-copy")
			label += "(ReadInto)"
		}
		cons = append(cons, startChild(t, label, childOpts{}, "consumer", args...))
	}
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", strconv.Itoa(frames), "-checksum", "-wait-consumers", "4", "-width", "256", "-height", "256")...)
	prod.waitEvent("ready", procStartTimeout)
	if a := prod.waitEvent("consumers", procStartTimeout).u("active"); a != 4 {
		t.Errorf("producer started publishing with %d active consumers, want 4", a)
	}
	done := prod.waitEvent("done", procRunTimeout)
	prod.waitEvent("closed", 10*time.Second)
	if _, err := prod.waitExit(10 * time.Second); err != nil {
		t.Errorf("producer exited with %v", err)
	}
	if got := done.u("frames_published"); got != frames {
		t.Errorf("producer frames_published = %d, want %d", got, frames)
	}
	if got := done.u("last_seq"); got != frames {
		t.Errorf("producer last_seq = %d, want %d", got, frames)
	}
	for _, c := range cons {
		j := c.waitEvent("joined", procStartTimeout)
		s := c.summary(procRunTimeout)
		c.noEvents("bad", "order", "error")
		closed := procCheckClosed(t, c, s)
		join := j.u("last_seq")
		del, drop, last := s.u("delivered"), s.u("dropped"), s.u("last_seq")
		procCheckCallerAccounting(t, c.label, s, join)
		if del == 0 {
			t.Errorf("%s: delivered no frame", c.label)
		}
		if g := s.uints("generations"); !slices.Equal(g, []uint64{1}) {
			t.Errorf("%s: generations %v, want [1]", c.label, g)
		}
		procCheckEntryCounters(t, c.label, s, join)
		if closed {
			if eos := s.u("entry_last_seq"); eos != frames+1 {
				t.Errorf("%s: entry_last_seq %d, want %d (the end-of-stream frame)", c.label, eos, frames+1)
			}
			procCheckEntryMatchesCaller(t, c.label, s, del, drop)
		}
		t.Logf("%s: joined at %d, delivered %d, dropped %d, torn retries %d, last %d, entry %d/%d",
			c.label, join, del, drop, s.u("torn_retries"), last, s.u("entry_delivered"), s.u("entry_dropped"))
	}
	t.Logf("10000 frames of 64 KiB, 4 consumers: %v", time.Since(start).Round(time.Millisecond))
}

// Test 2: the producer is killed (SIGKILL) at each step of the commit of its
// 50th frame. Consumers report it gone within 3 heartbeat intervals, never
// deliver the frame that was being written or not yet flipped, and follow a
// new producer on the same name into generation 2 with the frame numbers
// continued.
func TestProcessKillProducerAtEachStep(t *testing.T) {
	const (
		n        = 50
		hb       = 100 * time.Millisecond
		restartN = 200
	)
	for _, step := range []string{"before-odd", "mid-data", "before-even", "before-flip", "before-wake"} {
		t.Run(step, func(t *testing.T) {
			if !slices.Contains(framebus.FaultSteps[:], step) {
				t.Fatalf("%q is not in framebus.FaultSteps %v", step, framebus.FaultSteps)
			}
			dir, name := framebus.ShmDir(t), busName(t)
			var cons []*child
			for i := 0; i < 2; i++ {
				cons = append(cons, startChild(t, fmt.Sprintf("consumer%d", i), childOpts{}, "consumer",
					busArgs(dir, name, "-log-seqs")...))
			}
			pargs := busArgs(dir, name, "-heartbeat", hb.String(), "-interval", "2ms", "-frames", "1000", "-wait-consumers", "2")
			if step == "mid-data" {
				pargs = append(pargs, "-zerocopy=false") // the mid-data point is on the copying path only
			}
			prod := startChild(t, "producer", childOpts{fault: fmt.Sprintf("%s:%d", step, n)}, "producer", pargs...)
			path := prod.waitEvent("ready", procStartTimeout).str("path")
			deathNS, err := prod.waitExit(procRunTimeout)
			if !killedBy(err, syscall.SIGKILL) {
				t.Fatalf("producer: exit %v, want death by SIGKILL at %s of frame %d\n%s", err, step, n, prod.describe())
			}
			if ev := prod.all("done"); len(ev) > 0 {
				t.Fatalf("producer finished instead of dying at %s:%d: %s", step, n, ev[0].Line)
			}

			// What the dead producer left in the segment.
			seg, err := readSegment(path)
			if err != nil {
				t.Fatal(err)
			}
			oldLast := seg.LastSeq
			wantLast := uint64(n - 1)
			if step == "before-wake" {
				wantLast = n // flipped, just not woken
			}
			if oldLast != wantLast {
				t.Errorf("segment last_seq %d after death at %s of frame %d, want %d", oldLast, step, n, wantLast)
			}
			active := int(seg.Active)
			al, as := seg.slot(active)
			bl, bs := seg.slot(1 - active)
			t.Logf("segment after death: last_seq %d, active slot %d (lock %d, frame %d), back slot (lock %d, frame %d)",
				oldLast, active, al, as, bl, bs)
			if al&1 != 0 || as != oldLast {
				t.Errorf("active slot %d: lock %d, frame_seq %d; want an even lock and the last committed frame %d", active, al, as, oldLast)
			}
			// The back slot, where frame n was (being) written over frame n-2.
			backOdd, backSeq := map[string]bool{"mid-data": true, "before-even": true}[step], uint64(n-2)
			switch step {
			case "before-even", "before-flip":
				backSeq = n // descriptor written (step 3)
			case "before-wake":
				backSeq = n - 1 // flipped: the back slot is frame n-1's
			}
			if (bl&1 == 1) != backOdd || bs != backSeq {
				t.Errorf("back slot: lock %d, frame_seq %d; want an odd lock %v and frame_seq %d after death at %s of frame %d",
					bl, bs, backOdd, backSeq, step, n)
			}

			// Every consumer reports the producer gone within 3 heartbeats,
			// and ends up with the last committed frame.
			for _, c := range cons {
				gone := c.waitEvent("gone", 5*time.Second)
				lat := gone.NS - deathNS
				// How late the consumer ran around the death: the wake-up lag
				// (wake_ns - commit_ns) of the last frames it got before it. A
				// large lag means the machine did not let it run, not that it
				// missed the death.
				var lag int64
				for _, e := range c.all("frame") {
					if e.NS < gone.NS {
						if l, _ := e.num("wake_ns"); l > 0 {
							cm, _ := e.num("commit_ns")
							lag = l - cm
						}
					}
				}
				t.Logf("%s: %s: gone %s after the producer was reaped (heartbeat %v; its last frame before that woke it %s after the commit)",
					step, c.label, procMS(lat), hb, procMS(lag))
				if lat > int64(3*hb) {
					t.Errorf("%s: producer-gone reported %s after the death, want <= 3 heartbeats (%v); wake-up lag of its last frame %s",
						c.label, procMS(lat), 3*hb, procMS(lag))
				}
				c.waitMatch(fmt.Sprintf("frame %d (the last committed one)", oldLast), 5*time.Second,
					func(e event) bool { return e.Kind == "frame" && e.u("seq") == oldLast })
			}

			// A fresh producer takes the name over.
			prod2 := startChild(t, "producer2", childOpts{}, "producer", busArgs(dir, name,
				"-heartbeat", hb.String(), "-interval", "2ms", "-frames", strconv.Itoa(restartN), "-wait-consumers", "2")...)
			ready2 := prod2.waitEvent("ready", procStartTimeout)
			if g := ready2.u("generation"); g != 2 {
				t.Errorf("restarted producer: generation %d, want 2", g)
			}
			followed := prod2.waitEvent("consumers", procStartTimeout)
			t.Logf("%s: both consumers followed generation 2 %s after the new producer was ready", step, procMS(followed.NS-ready2.NS))
			done2 := prod2.waitEvent("done", procRunTimeout)
			if got, want := done2.u("last_seq"), oldLast+restartN; got != want {
				t.Errorf("restarted producer: last_seq %d, want %d (continuing from %d)", got, want, oldLast)
			}
			prod2.waitEvent("closed", 10*time.Second)

			for _, c := range cons {
				s := c.summary(procRunTimeout)
				c.noEvents("bad", "order", "error")
				if gone := c.all("gone"); len(gone) != 1 {
					t.Errorf("%s: %d gone events, want 1", c.label, len(gone))
				}
				closed := procCheckClosed(t, c, s)
				if g := s.uints("generations"); !slices.Equal(g, []uint64{1, 2}) {
					t.Errorf("%s: generations %v, want [1 2]", c.label, g)
				}
				// Split the delivered frames by generation.
				gen := uint64(1)
				var seqs [3][]uint64
				var gen2Dropped uint64
				for _, e := range c.snapshot() {
					switch e.Kind {
					case "generation":
						gen = e.u("generation")
						if gen != 2 {
							t.Errorf("%s: generation event %s, want generation 2", c.label, e.Line)
						} else if sq := e.u("seq"); sq <= oldLast || sq > oldLast+restartN {
							t.Errorf("%s: first frame of generation 2 is %d, want %d..%d", c.label, sq, oldLast+1, oldLast+restartN)
						} else {
							t.Logf("%s: first frame of generation 2: %d (old last_seq %d)", c.label, sq, oldLast)
						}
					case "frame":
						if gen < 3 {
							seqs[gen] = append(seqs[gen], e.u("seq"))
						}
						if gen == 2 {
							gen2Dropped += e.u("dropped")
						}
					}
				}
				for _, sq := range seqs[1] {
					if sq > oldLast {
						t.Errorf("%s: delivered frame %d of generation 1, beyond the last committed frame %d (killed at %s of frame %d)",
							c.label, sq, oldLast, step, n)
					}
				}
				if len(seqs[2]) == 0 {
					t.Errorf("%s: no frame delivered in generation 2", c.label)
				}
				for _, sq := range seqs[2] {
					if sq <= oldLast || sq > oldLast+restartN {
						t.Errorf("%s: generation 2 frame %d, want %d..%d", c.label, sq, oldLast+1, oldLast+restartN)
					}
				}
				// Across both generations the consumer keeps counting.
				procCheckCallerAccounting(t, c.label, s, c.waitEvent("joined", time.Second).u("last_seq"))
				_, atEOS := procPerFrameDropped(t, c, s)
				// The generation-2 entry counts from the consumer's own
				// last_seq, which is the old generation's last committed
				// frame (PROTOCOL.md section 2 and section 7 amendment 1).
				procCheckEntryCounters(t, c.label, s, oldLast)
				if closed {
					if eos := s.u("entry_last_seq"); eos != oldLast+restartN+1 {
						t.Errorf("%s: entry_last_seq %d, want %d", c.label, eos, oldLast+restartN+1)
					}
					procCheckEntryMatchesCaller(t, c.label, s, uint64(len(seqs[2])), gen2Dropped+atEOS)
				}
			}
		})
	}
}

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
	// interval; 80 ms of scheduling slack for a loaded machine.
	if bound := 4*hb + 80*time.Millisecond; lat > int64(bound) {
		t.Errorf("stalled reported %s after the stop, want <= 4 heartbeat intervals + 80ms (%v)", procMS(lat), bound)
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
		// The new entry counts from the consumer's own last_seq, 100 (section 7 amendment 1).
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
