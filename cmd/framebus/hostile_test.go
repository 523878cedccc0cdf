package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// inode of the file at path (0 when there is none).
func inode(path string) uint64 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0
	}
	return st.Ino
}

// TestTruncationUnderBenchChildren truncates the bus of a running framebus
// bench (a paced go->go run, whose producer and consumer are the bench's
// child processes) at random moments and to random lengths: neither child
// dies of it (a producer writing its pattern into the slot did, SIGBUS, and
// the row failed), the run completes with its row measured, and the row's
// note counts the frames lost.
func TestTruncationUnderBenchChildren(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench.json")
	b := start(t, "bench", "--dir", dir, "--transports", "framebus", "--modes", "plain", "--sizes", "640x480:GREY",
		"--rates", "60", "--placements", "free", "--rounds", "1", "--duration", "4s", "--paced-frames", "200", "--json", out)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	cuts := 0
	for end := time.Now().Add(60 * time.Second); cuts < 4 && b.Running() && time.Now().Before(end); {
		segs, _ := filepath.Glob(filepath.Join(dir, "framebus-bench-*", "run*", "framebus.bench"))
		if len(segs) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		time.Sleep(time.Duration(300+rng.IntN(400)) * time.Millisecond)
		st, err := os.Stat(segs[0])
		if err != nil {
			continue // between generations
		}
		size := []int64{0, 4096, st.Size() / 2, st.Size() - 4096}[rng.IntN(4)]
		if os.Truncate(segs[0], size) == nil {
			cuts++
			t.Logf("cut %d: truncated to %d bytes", cuts, size)
		}
	}
	if code := b.Wait(t, 90*time.Second); code != 0 {
		t.Fatalf("bench: exit %d:\n%s\n%s", code, b.Stderr.String(), b.Stdout.String())
	}
	if cuts < 2 {
		t.Fatalf("only %d truncations before the run ended", cuts)
	}
	var rep struct {
		Failed  int
		Results []struct {
			Skipped bool
			Reason  string
			Note    string
			Fps     float64
		}
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || len(rep.Results) != 1 || rep.Results[0].Skipped || rep.Results[0].Fps <= 0 {
		t.Fatalf("the run: %s", raw)
	}
	if n := rep.Results[0].Note; !strings.Contains(n, "truncated under the") {
		t.Errorf("the row's note says nothing of the truncations: %q", n)
	}
}

// The bus file truncated, at random moments and to random lengths, under
// every command that maps it: capture (the pattern and a video file), tail,
// stat --watch, view --http, analyze, record and the view window (under a
// private Xvfb). No process dies of a signal (SIGBUS included); the producer
// publishes a new generation each time, the consumers follow it, and all end
// cleanly on SIGTERM.
func TestTruncationUnderEveryCommand(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	t.Logf("seed: the run's own; truncations logged below")
	type bus struct {
		name string
		capt *proc
	}
	buses := []bus{{name: "pat", capt: start(t, "capture", "--name", "pat", "--size", "640x480", "--fps", "60", "--dir", dir)}}
	if hasOpenCV {
		buses = append(buses, bus{name: "vid", capt: start(t, "capture", "--name", "vid", "--source", "file:"+testClip, "--fps", "60", "--dir", dir)})
	}
	for _, b := range buses {
		testutil.WaitFor(t, 15*time.Second, "the bus "+b.name, func() bool { return exists(segment(dir, b.name)) })
	}
	consumers := map[string]*proc{}
	for _, b := range buses {
		consumers["tail "+b.name] = start(t, "tail", b.name, "--json", "--dir", dir, "--timeout", "30s")
	}
	consumers["stat --watch"] = start(t, "stat", "pat", "--watch", "--dir", dir)
	if hasOpenCV {
		v, _ := startViewHTTP(t, dir, "pat")
		consumers["view --http"] = v
		consumers["analyze"] = start(t, "analyze", "pat", "--detect", "motion", "--dir", dir, "--timeout", "30s")
		consumers["record"] = start(t, "record", "pat", "--out", dir+"/rec.avi", "--dir", dir, "--timeout", "30s")
		if _, err := exec.LookPath("Xvfb"); err == nil {
			display := startXvfb(t, 800, 600)
			consumers["view window"] = startEnv(t, []string{"DISPLAY=" + display}, "view", "pat", "--dir", dir)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "tail's first frames", func() bool {
		return strings.Contains(consumers["tail pat"].Stdout.String(), `"seq"`)
	})
	alive := func(when string) {
		t.Helper()
		for what, p := range consumers {
			if !p.Running() {
				t.Fatalf("%s: %s ended (exit %d):\n%s\nstdout:\n%s", when, what, p.Code, p.Stderr.String(), p.Stdout.String())
			}
		}
		for _, b := range buses {
			if !b.capt.Running() {
				t.Fatalf("%s: capture of %s ended (exit %d):\n%s", when, b.name, b.capt.Code, b.capt.Stderr.String())
			}
		}
	}
	rounds := 6
	for i := 0; i < rounds; i++ {
		b := buses[i%len(buses)]
		path := segment(dir, b.name)
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		before := inode(path)
		size := int64(0)
		if st, err := os.Stat(path); err == nil {
			size = []int64{0, 4096, st.Size() / 2, st.Size() - 4096}[rng.IntN(4)]
		}
		t.Logf("round %d: %s truncated to %d bytes", i, b.name, size)
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "the new generation of "+b.name, func() bool {
			ino := inode(path)
			return ino != 0 && ino != before
		})
		alive(fmt.Sprintf("after round %d", i))
	}
	// The consumers follow the last generation: every tail prints frames
	// again.
	printed := map[string]int{}
	for _, b := range buses {
		printed[b.name] = len(consumers["tail "+b.name].Stdout.String())
	}
	testutil.WaitFor(t, 10*time.Second, "frames at every tail after the last round", func() bool {
		for _, b := range buses {
			if !strings.Contains(consumers["tail "+b.name].Stdout.String()[printed[b.name]:], `"seq"`) {
				return false
			}
		}
		return true
	})
	alive("at the end")
	for what, p := range consumers {
		p.Signal(t, syscall.SIGTERM)
		if code := p.Wait(t, 20*time.Second); code != 0 {
			t.Errorf("%s: exit %d:\n%s", what, code, p.Stderr.String())
		}
	}
	for _, b := range buses {
		if strings.Count(consumers["tail "+b.name].Stdout.String(), `"new_generation":true`) == 0 {
			t.Errorf("tail of %s followed no new generation:\n%s", b.name, consumers["tail "+b.name].Stderr.String())
		}
		b.capt.Signal(t, syscall.SIGTERM)
		if code := b.capt.Wait(t, 20*time.Second); code != 0 {
			t.Errorf("capture of %s: exit %d:\n%s", b.name, code, b.capt.Stderr.String())
		}
	}
}

// A hostile writer forges, for bursts of 100 ms, a slot's frame_seq far
// ahead, the header's last_seq far ahead, the active index out of range and
// a slot's bytes past its capacity, under tail and view --http: both go on,
// say what they refused, and deliver frames again within 3 heartbeat
// intervals of the end of each burst (PROTOCOL.md amendment 9, forged words refused).
func TestForgedWordsUnderTailAndView(t *testing.T) {
	dir := t.TempDir()
	capt := startCapture(t, dir, "forge")
	tail := start(t, "tail", "forge", "--json", "--dir", dir)
	var url string
	if hasOpenCV {
		_, url = startViewHTTP(t, dir, "forge")
	}
	testutil.WaitFor(t, 10*time.Second, "tail's frames", func() bool { return strings.Contains(tail.Stdout.String(), `"seq"`) })
	s, err := framebus.Inspect("forge", dir)
	if err != nil {
		t.Fatal(err)
	}
	hb := time.Duration(s.Header.HeartbeatIntervalMS) * time.Millisecond
	f, err := os.OpenFile(segment(dir, "forge"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	put := func(off uint64, v uint64, n int) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		f.WriteAt(b[:n], int64(off))
	}
	slot := func(i, field uint64) uint64 { return s.Header.SlotTableOffset + i*framebus.SlotDescSize + field }
	forgeries := []struct {
		what  string
		forge func()
	}{
		{"frame_seq far ahead", func() { put(slot(0, 8), 1<<62, 8); put(slot(1, 8), 1<<62, 8) }},
		{"last_seq far ahead", func() { put(264, 1<<62, 8) }},
		{"active out of range", func() { put(256, 7, 4) }},
		{"bytes past the capacity", func() { put(slot(0, 32), 1<<40, 8); put(slot(1, 32), 1<<40, 8) }},
		{"frame_seq and last_seq far ahead together", func() { put(264, 1<<62, 8); put(slot(0, 8), 1<<62, 8); put(slot(1, 8), 1<<62, 8) }},
	}
	framesRead := func() uint64 {
		if url == "" {
			return 0
		}
		return viewerJSON(t, url).FramesRead
	}
	for _, fg := range forgeries {
		end := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(end) {
			fg.forge()
			time.Sleep(500 * time.Microsecond)
		}
		lines, read := strings.Count(tail.Stdout.String(), "\n"), framesRead()
		deadline := time.Now().Add(3 * hb)
		for strings.Count(tail.Stdout.String(), "\n") <= lines || (url != "" && framesRead() <= read) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: tail or view --http delivered no frame within 3 heartbeat intervals (%v) of the burst's end\ntail:\n%s", fg.what, 3*hb, tail.Stderr.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	if !strings.Contains(tail.Stderr.String(), "refused") {
		t.Errorf("tail did not say what it refused:\n%s", tail.Stderr.String())
	}
	capt.Signal(t, syscall.SIGTERM)
	capt.Wait(t, 15*time.Second)
	if code := tail.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("tail: exit %d:\n%s", code, tail.Stderr.String())
	}
}
