//go:build linux

package framebus_test

// The soak (docs/RELIABILITY.md): `make soak` (FRAMEBUS_SOAK=10m; any duration, e.g.
// FRAMEBUS_SOAK=2m make soak). Not part of make test.

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// procRSSAndFDs returns a process's resident set (VmRSS, bytes), the part
// of it that is its own memory (RssAnon: Go heap, stacks) and its number of
// open descriptors. The rest of the resident set is mostly the shared
// segment (RssShmem), the same pages in every process.
func procRSSAndFDs(pid int) (rss, anon int64, fds int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	kb := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return n << 10
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss = kb(v)
		}
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			anon = kb(v)
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	return rss, anon, len(ents), nil
}

// TestSoak: 1080p RGBA with CRC-32C at 60 fps for FRAMEBUS_SOAK (make soak:
// 10 minutes), to four consumer processes, one of them deliberately slow
// (it holds each frame 50 ms, so it can take about one frame in three).
// Every 5 s it samples each process's resident set and descriptors. It
// asserts: resident sets flat within 5% of their value after the warm-up
// (the first tenth of the run, at least 10 s), no descriptor growth, no torn
// or corrupt frame delivered, the three fast consumers drop nothing, and the
// slow one's drops account exactly for every frame number it did not get.
func TestSoak(t *testing.T) {
	v := os.Getenv("FRAMEBUS_SOAK")
	if v == "" {
		t.Skip("the soak runs with make soak (FRAMEBUS_SOAK=10m, or another duration)")
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 20*time.Second {
		t.Fatalf("FRAMEBUS_SOAK=%q: want a duration of at least 20s (%v)", v, err)
	}
	const (
		fps  = 60
		hold = 50 * time.Millisecond
	)
	frames := int(dur.Seconds() * fps)
	dir, name := framebus.ShmDir(t), busName(t)
	limit := (dur + 5*time.Minute).String()
	var cons []*child
	for i := 0; i < 4; i++ {
		args := busArgs(dir, name, "-timeout", limit, "-memstats", "30s")
		label := fmt.Sprintf("fast%d", i)
		if i == 3 {
			args = append(args, "-hold", hold.String())
			label = "slow"
		} else {
			args = append(args, "-log-drops") // a line per gap: none, or a few (the slow one has one per frame)
		}
		cons = append(cons, startChild(t, label, childOpts{}, "consumer", args...))
	}
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name, append(slices.Clone(chaos1080p),
		"-frames", strconv.Itoa(frames), "-interval", "16667us", "-wait-consumers", "4",
		"-heartbeat", "100ms", "-memstats", "30s", "-catchup=false")...)...)
	prod.waitEvent("ready", procStartTimeout)
	prod.waitEvent("consumers", procStartTimeout)
	joins := make([]uint64, len(cons))
	for i, c := range cons {
		joins[i] = c.waitEvent("joined", time.Second).u("last_seq")
	}
	procs := append([]*child{prod}, cons...)
	type sample struct {
		at   time.Duration
		rss  []int64
		anon []int64
		fds  []int
	}
	var samples []sample
	start := time.Now()
	warm := max(dur/10, 10*time.Second)
	for {
		if _, ok := prod.tryWaitMatch(5*time.Second, func(e event) bool { return e.Kind == "done" }); ok {
			break
		}
		if time.Since(start) > dur+2*time.Minute {
			t.Fatalf("the producer has not finished %d frames after %v", frames, time.Since(start))
		}
		s := sample{at: time.Since(start)}
		for _, p := range procs {
			rss, anon, fds, err := procRSSAndFDs(p.pid)
			if err != nil {
				t.Fatalf("%s: %v", p.label, err)
			}
			s.rss, s.anon, s.fds = append(s.rss, rss), append(s.anon, anon), append(s.fds, fds)
		}
		samples = append(samples, s)
	}
	elapsed := time.Since(start)
	done := prod.waitEvent("done", time.Second)
	prod.waitEvent("closed", 10*time.Second)
	if pub, fp, ls := done.u("published"), done.u("frames_published"), done.u("last_seq"); pub != uint64(frames) || fp != pub || ls != pub {
		t.Errorf("producer: published %d, frames_published %d, last_seq %d; want %d", pub, fp, ls, frames)
	}
	t.Logf("%d frames of 1080p RGBA (8,294,400 B, CRC-32C) in %v: %.2f fps", frames, elapsed.Round(time.Millisecond), float64(frames)/elapsed.Seconds())

	// Resident sets and descriptors after the warm-up.
	for i, p := range procs {
		var base sample
		var baseSet bool
		var lo, hi, aLo, aHi int64
		var fdLo, fdHi int
		for _, s := range samples {
			if s.at < warm {
				continue
			}
			if !baseSet {
				base, baseSet = s, true
				lo, hi, fdLo, fdHi = s.rss[i], s.rss[i], s.fds[i], s.fds[i]
				aLo, aHi = s.anon[i], s.anon[i]
			}
			lo, hi = min(lo, s.rss[i]), max(hi, s.rss[i])
			aLo, aHi = min(aLo, s.anon[i]), max(aHi, s.anon[i])
			fdLo, fdHi = min(fdLo, s.fds[i]), max(fdHi, s.fds[i])
		}
		if !baseSet {
			t.Fatalf("no sample after the warm-up of %v", warm)
		}
		b := base.rss[i]
		t.Logf("%s: RSS after %v %.1f MiB, then min %.1f max %.1f MiB (%+.2f%% .. %+.2f%%), of which its own (RssAnon) %.1f..%.1f MiB; descriptors %d..%d",
			p.label, base.at.Round(time.Second), mib(b), mib(lo), mib(hi), pct(lo, b), pct(hi, b), mib(aLo), mib(aHi), fdLo, fdHi)
		if float64(hi) > float64(b)*1.05 || float64(lo) < float64(b)*0.95 {
			t.Errorf("%s: RSS moved outside 5%% of %.1f MiB: %.1f..%.1f MiB", p.label, mib(b), mib(lo), mib(hi))
		}
		if fdHi > base.fds[i] {
			t.Errorf("%s: descriptors grew from %d to %d", p.label, base.fds[i], fdHi)
		}
	}

	// Each process's Go heap: live bytes growing across collections would be
	// a leak; garbage between two collections is the collector's slack.
	for _, p := range procs {
		if ms := p.all("memstats"); len(ms) > 1 {
			a, b := ms[0], ms[len(ms)-1]
			t.Logf("%s: Go heap %.2f -> %.2f MiB allocated, in use %.2f -> %.2f MiB (%d -> %d collections, next goal %.1f MiB), %.1f mallocs per second",
				p.label, mib(int64(a.u("heap_alloc"))), mib(int64(b.u("heap_alloc"))), mib(int64(a.u("heap_inuse"))), mib(int64(b.u("heap_inuse"))),
				a.u("num_gc"), b.u("num_gc"), mib(int64(b.u("next_gc"))), float64(b.u("mallocs")-a.u("mallocs"))/(float64(b.NS-a.NS)/1e9))
		}
	}
	for i, c := range cons {
		s := c.summary(procRunTimeout)
		c.noEvents("bad", "order", "error", "gone", "corrupt", "generation")
		procLogStalled(t, c)
		procCheckClosed(t, c, s)
		procCheckCallerAccounting(t, c.label, s, joins[i])
		procCheckEntryCounters(t, c.label, s, joins[i])
		del, drop := s.u("delivered"), s.u("dropped")
		t.Logf("%s: delivered %d, dropped %d, torn retries %d (discarded, never delivered), torn or corrupt delivered %d",
			c.label, del, drop, s.u("torn_retries"), s.u("bad"))
		if c.label == "slow" {
			if drop == 0 {
				t.Errorf("slow consumer dropped nothing: it was not slow")
			}
			continue
		}
		if drop != 0 {
			// Each gap: how late the consumer read the frame after it (a
			// consumer not scheduled for a frame period drops a frame).
			var lags []int64
			for _, e := range c.all("drop") {
				w, _ := e.num("wake_ns")
				cm, _ := e.num("commit_ns")
				lags = append(lags, w-cm)
			}
			t.Errorf("%s: dropped %d frames in %d gaps, want 0 (a fast consumer); wake-up lag of the frame after a gap: median %s, worst %s",
				c.label, drop, len(lags), procMS(percentile(lags, 0.5)), procMS(slices.Max(append(lags, 0))))
		}
	}
}

func mib(b int64) float64       { return float64(b) / (1 << 20) }
func pct(v, base int64) float64 { return 100 * (float64(v) - float64(base)) / float64(base) }
