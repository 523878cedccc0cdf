//go:build linux

package framebus_test

// Chaos tests (docs/RELIABILITY.md): repeated faults across real processes, under a
// 1080p RGBA load, with every consumer verifying every frame it is given
// (the CRC-32C of the bus, checked by framebus inside the sequence-lock
// window, and fbproc's position-dependent pattern, checked by the consumer).
//
// `make chaos` runs them in full (FRAMEBUS_CHAOS=full); `make test` runs a
// shorter version (fewer producer kills). -short skips them, as it skips
// every multi-process test. The random choices come from a seed that is
// logged; FRAMEBUS_CHAOS_SEED=N replays a run.
//
// Figures (the worst kill-to-first-frame time, reclaim latencies) are logged,
// not asserted: a loaded 2-core machine decides them. What is asserted are
// counts: frames published, delivered, dropped, torn, entries reclaimed.

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// chaosFull reports whether the full chaos run was asked for (make chaos).
func chaosFull() bool { return os.Getenv("FRAMEBUS_CHAOS") == "full" }

// procStateOf returns the state letter of /proc/<pid>/stat ('T' when stopped).
func procStateOf(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// waitStopped waits until the process is in the stopped state.
func waitStopped(t *testing.T, p *child) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for procStateOf(p.pid) != 'T' {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) not stopped 5s after SIGSTOP (state %q)", p.label, p.pid, procStateOf(p.pid))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestChaosKillProducer: a producer publishing 1080p RGBA frames with CRC-32C
// as fast as it can is killed with SIGKILL at a random moment, and a new one
// takes the name over, 100 times (make chaos; fewer in make test). Three
// consumer processes live through all of it. Every consumer follows every
// generation by itself, is never handed a torn or corrupt frame (CRC-32C and
// pattern), keeps a strictly increasing sequence and accounts for every frame
// number. The worst time from a kill to the first frame of the next
// producer at a consumer is logged.
func TestChaosKillProducer(t *testing.T) {
	kills := 12
	if chaosFull() {
		kills = 100
	}
	rng := chaosRand(t)
	dir, name := framebus.ShmDir(t), busName(t)
	const hb = 50 * time.Millisecond
	var cons []*child
	for i := 0; i < 3; i++ {
		cons = append(cons, startChild(t, fmt.Sprintf("consumer%d", i), childOpts{}, "consumer",
			busArgs(dir, name, "-wait", "30s", "-timeout", "60m")...))
	}
	var (
		killNS      int64
		firstFrame  []int64 // kill -> first frame of the next generation at the slowest consumer
		deathSteps  = map[string]int{}
		lastPath    string
		oldLastSeqs []uint64
	)
	for cycle := 0; cycle <= kills; cycle++ {
		gen := uint64(cycle + 1)
		final := cycle == kills
		args := busArgs(dir, name, append(slices.Clone(chaos1080p), "-heartbeat", hb.String(), "-wait-consumers", "3")...)
		if final {
			args = append(args, "-frames", "30")
		} else {
			args = append(args, "-frames", "0")
		}
		p := startChild(t, fmt.Sprintf("producer%d", gen), childOpts{}, "producer", args...)
		ready := p.waitEvent("ready", procStartTimeout)
		lastPath = ready.str("path")
		if g := ready.u("generation"); g != gen {
			t.Fatalf("producer %d: generation %d, want %d", cycle+1, g, gen)
		}
		p.waitEvent("consumers", procStartTimeout)
		// Every consumer follows the new generation by itself: its first
		// frame of it arrives flagged GenerationChanged.
		if gen > 1 {
			var worst int64
			for _, c := range cons {
				e := c.waitMatch(fmt.Sprintf("first frame of generation %d", gen), procRunTimeout, func(e event) bool {
					return e.Kind == "generation" && e.u("generation") == gen
				})
				if e.u("seq") <= oldLastSeqs[len(oldLastSeqs)-1] {
					t.Errorf("%s: first frame of generation %d is %d, not after the dead producer's last_seq %d",
						c.label, gen, e.u("seq"), oldLastSeqs[len(oldLastSeqs)-1])
				}
				worst = max(worst, e.NS-killNS)
			}
			firstFrame = append(firstFrame, worst)
		}
		if final {
			done := p.waitEvent("done", procRunTimeout)
			p.waitEvent("closed", 10*time.Second)
			if done.u("published") != 30 || done.u("frames_published") != 30 {
				t.Errorf("last producer: %s, want 30 frames published", done.Line)
			}
			break
		}
		// A random moment: 0-120 ms into the run (at 1080p, up to a few
		// dozen frames), most likely inside a commit (the fill and the CRC
		// take most of a frame's time).
		time.Sleep(time.Duration(rng.Int64N(int64(120 * time.Millisecond))))
		killNS = framebus.Now()
		if _, err := p.kill(); !killedBy(err, syscall.SIGKILL) {
			t.Fatalf("producer %d: exit %v, want SIGKILL\n%s", gen, err, p.describe())
		}
		// What it left: the active slot holds a committed frame (even lock),
		// the last one, or the one before it when the kill fell between the
		// last_seq store and the flip (step 5).
		seg, err := readSegment(lastPath)
		if err != nil {
			t.Fatal(err)
		}
		last := seg.LastSeq
		active := int(seg.Active)
		al, as := seg.slot(active)
		bl, bs := seg.slot(1 - active)
		if al&1 != 0 || (as != last && as+1 != last) {
			t.Errorf("cycle %d: active slot %d has lock %d, frame %d; last_seq %d", cycle, active, al, as, last)
		}
		switch {
		case bl&1 == 1:
			deathSteps["back slot odd (mid-write)"]++
		case as+1 == last:
			deathSteps["committed, not flipped"]++
		case bs > last:
			deathSteps["descriptor written"]++
		default:
			deathSteps["between commits"]++
		}
		oldLastSeqs = append(oldLastSeqs, last)
	}

	var totalDel, totalDrop, totalTorn uint64
	for _, c := range cons {
		j := c.waitEvent("joined", time.Second)
		s := c.summary(procRunTimeout)
		c.noEvents("bad", "order", "error", "corrupt")
		procCheckClosed(t, c, s)
		want := make([]uint64, kills+1)
		for i := range want {
			want[i] = uint64(i + 1)
		}
		if g := s.uints("generations"); !slices.Equal(g, want) {
			t.Errorf("%s: generations %v, want 1..%d, each followed", c.label, g, kills+1)
		}
		procCheckCallerAccounting(t, c.label, s, j.u("last_seq"))
		totalDel += s.u("delivered")
		totalDrop += s.u("dropped")
		totalTorn += s.u("torn_retries")
		t.Logf("%s: delivered %d, dropped %d, torn retries %d (discarded, never delivered), last %d",
			c.label, s.u("delivered"), s.u("dropped"), s.u("torn_retries"), s.u("last_seq"))
	}
	t.Logf("%d producer kills (1080p RGBA, CRC-32C, 3 consumers): where the kills fell: %v", kills, deathSteps)
	t.Logf("kill -> first frame of the next producer at the slowest consumer (new process start, 16.7 MB segment built and pre-faulted, takeover, follow): "+
		"median %s, p90 %s, worst %s", procMS(percentile(firstFrame, 0.5)), procMS(percentile(firstFrame, 0.9)), procMS(slices.Max(firstFrame)))
	t.Logf("consumers in total: delivered %d, dropped %d, torn retries %d, torn or corrupt delivered 0", totalDel, totalDrop, totalTorn)
}

// TestChaosKillConsumers: 80 consumer processes join a 32-entry table (3
// live consumers in it all along, up to 24 victims at once) and are killed
// with SIGKILL at random moments while they read. The producer takes every
// dead entry back (consumers_reclaimed counts exactly 80), no consumer is
// ever refused for a full table (80 + 3 > 32: it would fill without
// reclaiming), the live consumers keep their entries, and the producer
// publishes every frame it is given.
func TestChaosKillConsumers(t *testing.T) {
	const (
		victims    = 80
		concurrent = 24
		hb         = 20 * time.Millisecond
	)
	rng := chaosRand(t)
	dir, name := framebus.ShmDir(t), busName(t)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-format", "rgba", "-width", "320", "-height", "240", "-checksum", "-consumers", "32",
		"-frames", "0", "-interval", "2ms", "-heartbeat", hb.String())...)
	path := prod.waitEvent("ready", procStartTimeout).str("path")
	var live []*child
	for i := 0; i < 3; i++ {
		live = append(live, startChild(t, fmt.Sprintf("live%d", i), childOpts{}, "consumer", busArgs(dir, name, "-timeout", "10m")...))
	}
	liveJoin := make([]uint64, len(live))
	for i, c := range live {
		liveJoin[i] = c.waitEvent("joined", procStartTimeout).u("last_seq")
	}
	reclaimed := func() uint64 {
		s, err := readSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		return s.ConsumersReclaimed
	}

	var (
		alive      []*child
		started    int
		killed     uint64
		latencies  []int64
		maxEntry   uint64
		maxAlive   int
		inOneBeat  int
		tableFulls int
	)
	kill := func() {
		i := rng.IntN(len(alive))
		v := alive[i]
		alive = slices.Delete(alive, i, i+1)
		time.Sleep(time.Duration(rng.Int64N(int64(10 * time.Millisecond))))
		reapNS, err := v.kill()
		if !killedBy(err, syscall.SIGKILL) {
			t.Fatalf("%s: exit %v, want SIGKILL\n%s", v.label, err, v.describe())
		}
		killed++
		deadline := time.Now().Add(10 * time.Second)
		for reclaimed() < killed {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reclaimed 10s after its death (consumers_reclaimed %d, %d killed)", v.label, reclaimed(), killed)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat := framebus.Now() - reapNS
		latencies = append(latencies, lat)
		if lat <= int64(hb) {
			inOneBeat++
		}
	}
	for started < victims || len(alive) > 0 {
		if started < victims && (len(alive) < concurrent && rng.IntN(3) != 0 || len(alive) == 0) {
			v := startChild(t, fmt.Sprintf("victim%d", started), childOpts{}, "consumer", busArgs(dir, name, "-timeout", "5m")...)
			started++
			e := v.waitMatch("joined or error", procStartTimeout, func(e event) bool { return e.Kind == "joined" || e.Kind == "error" })
			if e.Kind == "error" {
				if strings.Contains(e.str("error"), "table full") {
					tableFulls++
				}
				t.Fatalf("%s could not join: %s", v.label, e.str("error"))
			}
			maxEntry = max(maxEntry, e.u("entry"))
			alive = append(alive, v)
			maxAlive = max(maxAlive, len(alive))
			continue
		}
		kill()
	}
	time.Sleep(5 * hb) // nothing more may be reclaimed: the live consumers keep their entries
	if r := reclaimed(); r != victims {
		t.Errorf("consumers_reclaimed %d, want %d", r, victims)
	}
	prod.signal(syscall.SIGTERM)
	done := prod.waitEvent("done", 10*time.Second)
	prod.waitEvent("closed", 10*time.Second)
	if pub, fp, ls := done.u("published"), done.u("frames_published"), done.u("last_seq"); pub != fp || fp != ls || pub == 0 {
		t.Errorf("producer: published %d, frames_published %d, last_seq %d: want equal (every frame given was published)", pub, fp, ls)
	}
	if done.u("consumers_reclaimed") != victims {
		t.Errorf("producer: consumers_reclaimed %d, want %d", done.u("consumers_reclaimed"), victims)
	}
	for i, c := range live {
		s := c.summary(procRunTimeout)
		c.noEvents("bad", "order", "error", "gone", "corrupt")
		procCheckClosed(t, c, s)
		// Had its entry been taken, it would have re-joined with zeroed
		// counters: these hold over the whole run only if it never was.
		procCheckEntryCounters(t, c.label, s, liveJoin[i])
		procCheckCallerAccounting(t, c.label, s, liveJoin[i])
	}
	t.Logf("%d victims killed at random (up to %d alive at once, highest entry index %d of 32, table-full refusals %d); producer published %d frames, all it was given",
		victims, maxAlive, maxEntry, tableFulls, done.u("published"))
	t.Logf("reclaim latency (victim reaped -> consumers_reclaimed counts it; heartbeat %v): median %s, p90 %s, worst %s; %d of %d within one heartbeat interval",
		hb, procMS(percentile(latencies, 0.5)), procMS(percentile(latencies, 0.9)), procMS(slices.Max(latencies)), inOneBeat, len(latencies))
}

// TestChaosStopProducer: a producer of 1080p RGBA at 60 fps is stopped with
// SIGSTOP for 2 s and continued. Each of its three consumers reports it
// stalled (heartbeat stale) while it is stopped, never gone, then carries on
// in the same generation with the same table entry (no re-attach), and
// delivers the last frame committed before the stop: nothing committed is
// lost.
func TestChaosStopProducer(t *testing.T) {
	const hb = 50 * time.Millisecond
	dir, name := framebus.ShmDir(t), busName(t)
	var cons []*child
	for i := 0; i < 3; i++ {
		cons = append(cons, startChild(t, fmt.Sprintf("consumer%d", i), childOpts{}, "consumer",
			busArgs(dir, name, "-log-seqs", "-timeout", "5m")...))
	}
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name, append(slices.Clone(chaos1080p),
		"-frames", "0", "-interval", "16667us", "-wait-consumers", "3", "-heartbeat", hb.String())...)...)
	path := prod.waitEvent("ready", procStartTimeout).str("path")
	joins := make([]uint64, len(cons))
	for i, c := range cons {
		joins[i] = c.waitEvent("joined", procStartTimeout).u("last_seq")
		c.waitFrames(30)
	}
	prod.signal(syscall.SIGSTOP)
	waitStopped(t, prod)
	stopNS := framebus.Now()
	seg, err := readSegment(path)
	if err != nil {
		t.Fatal(err)
	}
	lastCommitted := seg.LastSeq
	for _, c := range cons {
		c.waitMatch("stalled", 5*time.Second, func(e event) bool { return e.Kind == "stalled" && e.NS > stopNS })
	}
	time.Sleep(2*time.Second - time.Duration(framebus.Now()-stopNS))
	contNS := framebus.Now()
	prod.signal(syscall.SIGCONT)
	for _, c := range cons {
		c.waitMatch(fmt.Sprintf("frame %d (the last committed before the stop)", lastCommitted), 5*time.Second,
			func(e event) bool { return e.Kind == "frame" && e.u("seq") == lastCommitted })
		c.waitMatch("a frame after SIGCONT", 5*time.Second, func(e event) bool { return e.Kind == "frame" && e.NS > contNS })
	}
	time.Sleep(200 * time.Millisecond)
	prod.signal(syscall.SIGTERM)
	done := prod.waitEvent("done", 10*time.Second)
	prod.waitEvent("closed", 10*time.Second)
	if pub, fp, ls := done.u("published"), done.u("frames_published"), done.u("last_seq"); pub != fp || fp != ls {
		t.Errorf("producer: published %d, frames_published %d, last_seq %d: want equal", pub, fp, ls)
	}
	for i, c := range cons {
		s := c.summary(procRunTimeout)
		c.noEvents("bad", "order", "error", "gone", "generation", "corrupt")
		procCheckClosed(t, c, s)
		if g := s.uints("generations"); !slices.Equal(g, []uint64{1}) {
			t.Errorf("%s: generations %v, want [1] (no re-attach)", c.label, g)
		}
		var stalledIn, frameIn int
		var lat int64
		for _, e := range c.snapshot() {
			switch {
			case e.Kind == "stalled" && e.NS > stopNS && e.NS < contNS:
				if stalledIn == 0 {
					lat = e.NS - stopNS
				}
				stalledIn++
			case e.Kind == "frame" && e.NS > stopNS+int64(hb) && e.NS < contNS && e.u("seq") > lastCommitted:
				frameIn++
			}
		}
		if stalledIn != 1 {
			t.Errorf("%s: %d stalled reports during the 2 s stop, want 1 (once per episode)", c.label, stalledIn)
		}
		if frameIn != 0 {
			t.Errorf("%s: %d frames newer than %d delivered while the producer was stopped", c.label, frameIn, lastCommitted)
		}
		// Same entry all along (its counters cover the whole run) and every
		// frame number accounted for.
		procCheckEntryCounters(t, c.label, s, joins[i])
		procCheckCallerAccounting(t, c.label, s, joins[i])
		procPerFrameDropped(t, c, s)
		t.Logf("%s: stalled reported %s after the stop (heartbeat %v); delivered %d, dropped %d, torn retries %d",
			c.label, procMS(lat), hb, s.u("delivered"), s.u("dropped"), s.u("torn_retries"))
	}
	t.Logf("producer stopped %s at frame %d; published %d frames in all", procMS(contNS-stopNS), lastCommitted, done.u("published"))
}
