//go:build linux

package framebus_test

// Multi-process failure tests: producers and consumers are separate fbproc
// processes (internal/fbproc, built with -tags framebus_faults) sharing a bus
// in a directory of their own under /dev/shm. This file: torn frames and a
// producer killed at each step of the commit; process_stop_test.go: stopped
// processes; process_owner_test.go: entries, names and files. See
// process_helpers_test.go for the harness and helpers_ext_test.go for the
// summary checks. Timestamps ("ns") are CLOCK_MONOTONIC, comparable across
// processes and with framebus.Now().

import (
	"fmt"
	"slices"
	"strconv"
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
				// frame (PROTOCOL.md section 2 and section 7 amendment 1, gap accounting across a generation change).
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
