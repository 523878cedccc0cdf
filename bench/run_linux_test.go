//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// testConfig runs this test binary as the children, briefly.
func testConfig(t *testing.T, sc ...Scenario) Config {
	return Config{Scenarios: sc, Duration: 150 * time.Millisecond, Warmup: 50 * time.Millisecond, Rounds: 1,
		MinPacedFrames: 10, Dir: t.TempDir(), ExeArgs: []string{"-test.run=^$"}, GstLaunch: "/nonexistent/gst-launch-1.0"}
}

// checkRow is the smoke test's check: every field there, latencies positive
// and ordered, frames moving.
func checkRow(t *testing.T, r Result) {
	t.Helper()
	name := r.ScenarioName() + " " + rowName(&r)
	if r.Skipped {
		t.Errorf("%s: skipped: %s", name, r.Reason)
		return
	}
	for what, p := range map[string]*Percentiles{"latency": r.Latency, "read": r.Read, "publish": r.Publish} {
		if p == nil {
			t.Errorf("%s: no %s", name, what)
			continue
		}
		if !(p.P50 > 0 && p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.P999 && p.P999 <= p.Max) {
			t.Errorf("%s: %s percentiles %+v", name, what, p)
		}
	}
	if r.Read != nil && r.Latency != nil && r.Read.P50 < r.Latency.P50 {
		t.Errorf("%s: read p50 %v before the wake %v", name, r.Read.P50, r.Latency.P50)
	}
	if r.FPS <= 0 || r.GBps <= 0 || r.Samples < 2 || r.CPUSeconds <= 0 || r.CPU.ProcessS <= 0 || len(r.Rounds) == 0 {
		t.Errorf("%s: fps %v gbps %v samples %d cpu %v %+v", name, r.FPS, r.GBps, r.Samples, r.CPUSeconds, r.CPU)
	}
	if r.Transport != string(Memcpy) && r.Dropped != 0 && r.Rate == 0 {
		t.Errorf("%s: %d frames dropped in lockstep", name, r.Dropped)
	}
}

// TestRun runs every transport once at a small size, the C legs included
// (where gcc is installed; make test requires it): as fast as possible with
// one consumer, and paced with two consumers on one CPU.
func TestBenchRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	small := Size{Width: 160, Height: 120, Format: framebus.FormatGrey}
	placement := Split
	if cpus, _ := allowedCPUs(); len(cpus) < 2 {
		placement = Free
	}
	all := []Variant{{Framebus, Plain, Pair{}}, {Framebus, Copy, Pair{}}, {Framebus, Spin, Pair{}}, {Futex, "", Pair{}}, {Memcpy, "", Pair{}}, {UDS, "", Pair{}}, {Pipe, "", Pair{}}, {GStreamer, "", Pair{}},
		fbl(Plain, GoC), fbl(Plain, CGo), fbl(Plain, CC), fbl(Spin, CC), fbl(Spin, GoC), cFutex}
	paced := []Variant{{Framebus, Plain, Pair{}}, {Futex, "", Pair{}}, {UDS, "", Pair{}}, fbl(Plain, CC), fbl(Plain, CGo), fbl(Spin, GoC), cFutex}
	cfg := testConfig(t,
		Scenario{Size: small, Consumers: 1, Placement: placement, Variants: all},
		Scenario{Size: Size{Width: 64, Height: 64, Format: framebus.FormatNV12}, Consumers: 2, Rate: 200, Placement: Shared, Checksum: true,
			Variants: paced},
	)
	_, gccErr := exec.LookPath("gcc")
	noC := gccErr != nil && os.Getenv("FRAMEBUS_REQUIRE_GCC") != "1"
	var prog testProgress
	cfg.Progress = &prog
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("%d runs failed:\n%s", rep.Failed, b.String())
	}
	if len(rep.Results) != len(all)+len(paced) {
		t.Fatalf("%d rows", len(rep.Results))
	}
	cRows := 0
	for _, r := range rep.Results {
		c := r.Producer == "c" || r.Consumer == "c"
		if r.Transport == string(GStreamer) {
			c = false
		}
		if c {
			cRows++
		}
		switch {
		case c && noC:
			if !r.Skipped || !strings.Contains(r.Reason, "gcc is not installed") {
				t.Errorf("%s without gcc: skipped %v %q", rowName(&r), r.Skipped, r.Reason)
			}
		case r.Transport == string(GStreamer):
			if !r.Skipped || !strings.Contains(r.Reason, "gst-launch-1.0 is not installed") {
				t.Errorf("gstreamer row: skipped %v %q", r.Skipped, r.Reason)
			}
		default:
			checkRow(t, r)
		}
		if r.Rate == 200 && !r.Skipped && (r.FPS < 40 || r.FPS > 300) { // paced: late on a loaded machine, never early
			t.Errorf("%s: %v fps at 200 fps", rowName(&r), r.FPS)
		}
	}
	if cRows != 10 {
		t.Errorf("%d rows with a C side, want 10", cRows)
	}
	for _, r := range rep.Results {
		if r.Transport == string(CFramebus) && (r.Producer != "c" || r.Consumer != "c") ||
			r.Transport == string(Framebus) && r.Producer == "c" && r.Consumer == "c" {
			t.Errorf("%s: producer %q consumer %q", rowName(&r), r.Producer, r.Consumer)
		}
		if (r.Transport == string(Framebus) || r.Transport == string(CFramebus)) && !r.Skipped && r.Commit == nil {
			t.Errorf("%s: no commit-to-wake", rowName(&r))
		}
		if r.Rate == 200 && !r.Checksum || r.Rate == 0 && r.Checksum {
			t.Errorf("%s: checksum %v", rowName(&r), r.Checksum)
		}
	}
	want := 20 // 7 + 6 C runs as fast as possible (gstreamer skipped), 3 + 4 paced
	if noC {
		want -= 10
	}
	if prog.total != prog.steps || prog.total != want || !prog.finished {
		t.Errorf("progress: %+v", prog)
	}
	if rep.Machine.CPUs < 1 || rep.Machine.Kernel == "" || !strings.Contains(rep.Machine.GStreamer, "absent") {
		t.Errorf("machine %+v", rep.Machine)
	}
	// Nothing left behind.
	ents, _ := os.ReadDir(cfg.Dir)
	if len(ents) != 0 {
		t.Errorf("left in %s: %v", cfg.Dir, ents)
	}
	if kids := children(t); len(kids) != 0 {
		t.Errorf("children still running: %v", kids)
	}
}

type testProgress struct {
	total, steps int
	finished     bool
}

func (p *testProgress) Start(n int)    { p.total = n }
func (p *testProgress) Step(string)    { p.steps++ }
func (p *testProgress) Finish()        { p.finished = true }
func (p *testProgress) String() string { return strconv.Itoa(p.steps) }

// children lists the processes whose parent is this one.
func children(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == me {
				kids = append(kids, pid)
			}
		}
	}
	return kids
}

// TestRunCancel: the benchmark ends promptly when its context does, kills
// its children and removes its files.
func TestBenchRunCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	cfg := testConfig(t, Scenario{Size: VGAGrey, Consumers: 2, Rate: 30, Placement: Free,
		Variants: []Variant{{Framebus, Plain, Pair{}}, {Futex, "", Pair{}}, {UDS, "", Pair{}}}})
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run() = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run took %v after its context ended", d)
	}
	if rep == nil || len(rep.Results) != 3 {
		t.Fatalf("report %+v", rep)
	}
	if kids := children(t); len(kids) != 0 {
		t.Errorf("children still running: %v", kids)
	}
	if ents, _ := os.ReadDir(cfg.Dir); len(ents) != 0 {
		t.Errorf("left in %s: %v", cfg.Dir, ents)
	}
}

// TestChildWatchdog: a child whose job cannot end (a consumer of a bus that
// never comes) exits by itself at its deadline.
func TestBenchChildWatchdog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	spec, _ := json.Marshal(childSpec{Role: roleFBConsumer, Width: 64, Height: 64, Format: framebus.FormatGrey,
		Consumers: 1, Rate: 30, Dir: dir, Bus: "never", Deadline: 500 * time.Millisecond})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.Stdin = bytes.NewReader(spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("child exited with %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("child took %v", d)
		}
		if !strings.Contains(stderr.String(), "still running after") && !strings.Contains(stderr.String(), "deadline") {
			t.Errorf("stderr: %s", stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("the child outlived its deadline by 20 s")
	}
}

// TestChildBadJob: a child with a job it cannot do says so and fails.
func TestBenchChildBadJob(t *testing.T) {
	for _, in := range []string{"", "{", `{"role":"juggler","deadline":1000000000}`} {
		var out bytes.Buffer
		if err := Child(context.Background(), strings.NewReader(in), &out); err == nil || out.Len() != 0 {
			t.Errorf("Child(%q) = %v, wrote %q", in, err, out.String())
		}
	}
}

func TestBenchRemoveShmPipes(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	pid := 4000000 + os.Getpid()%100000 // beyond pid_max: nobody's
	name := filepath.Join("/dev/shm", "shmpipe."+strconv.Itoa(pid)+".    0")
	other := filepath.Join("/dev/shm", "shmpipe."+strconv.Itoa(pid+1)+".    0")
	for _, n := range []string{name, other} {
		if err := os.WriteFile(n, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	defer os.Remove(other)
	removeShmPipes(pid)
	if _, err := os.Stat(name); err == nil {
		t.Error("not removed")
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("another process's area removed")
	}
}

// TestBenchRunHold runs the slow consumer with and without holds, on 4
// slots and on 2: with holds on 4 slots it copies nothing and every frame
// it takes stays intact for the whole analysis; without holds it copies
// every frame, and the zero-copy views it did not use were overwritten; on
// 2 slots (cap 0) every hold is refused and it copies every frame.
func TestBenchRunHold(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	small := Size{Width: 320, Height: 240, Format: framebus.FormatRGBA}
	vs := []Variant{fb(Plain), fb(Slow), fb(Hold)}
	cfg := testConfig(t,
		Scenario{Size: small, Consumers: 1, Rate: 200, Placement: Free, Slots: 4, Variants: vs},
		Scenario{Size: small, Consumers: 1, Rate: 200, Placement: Free, Slots: 2, Variants: []Variant{fb(Hold)}},
		Scenario{Size: small, Consumers: 1, Placement: Free, Variants: []Variant{fb(Hold)}}, // lockstep: skipped
	)
	cfg.Duration, cfg.HoldFor = 400*time.Millisecond, 30*time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteTable(&b)
	if rep.Failed != 0 || len(rep.Results) != 5 {
		t.Fatalf("%d runs failed, %d rows:\n%s", rep.Failed, len(rep.Results), b.String())
	}
	for _, r := range rep.Results {
		name := r.ScenarioName() + " " + rowName(&r)
		if r.Rate == 0 {
			if !r.Skipped || !strings.Contains(r.Reason, "fixed rate") {
				t.Errorf("%s: skipped %v %q", name, r.Skipped, r.Reason)
			}
			continue
		}
		checkRow(t, r)
		if r.Begin == nil {
			t.Errorf("%s: no Begin timing", name)
		}
		a := r.Analysis
		if r.Mode == string(Plain) {
			if a != nil {
				t.Errorf("%s: analysis %+v", name, a)
			}
			continue
		}
		if a == nil || a.Taken < 3 || a.HoldForMS != 30 {
			t.Errorf("%s: analysis %+v", name, a)
			continue
		}
		switch {
		case r.Mode == string(Slow):
			// 200 fps on 4 slots: the producer is back after 15 ms.
			if a.Copies != a.Taken || a.Held != 0 || a.ViewOverwritten < a.Taken-1 || a.CopiesPerFrame != 1 {
				t.Errorf("%s: %+v", name, a)
			}
		case r.Slots == 4:
			if a.Copies != 0 || a.Held != a.Taken || a.HeldIntact != a.Taken || a.Refused != 0 || a.HeldCorrupt != 0 {
				t.Errorf("%s: %+v", name, a)
			}
		default: // 2 slots: no holds
			if a.Copies != a.Taken || a.Held != 0 || a.Refused != a.Taken {
				t.Errorf("%s: %+v", name, a)
			}
		}
	}
	status := map[string]string{}
	for _, tg := range rep.Targets {
		status[tg.Name+" | "+tg.Scenario] = tg.Status
	}
	sc4 := "320x240 RGBA, 1 consumer, 200 fps, free, 4 slots"
	sc2 := "320x240 RGBA, 1 consumer, 200 fps, free, 2 slots"
	for k, want := range map[string]string{
		"slow consumer: copies per frame, holds vs copies | " + sc4: Met,
		"frames kept intact by a 30.0 ms analysis, holds | " + sc4:  Met,
		"slow consumer: copies per frame, holds vs copies | " + sc2: Missed,
		"frames kept intact by a 30.0 ms analysis, holds | " + sc2:  Skipped,
		"producer Commit with holders vs without | " + sc2:          Skipped,
	} {
		if status[k] != want {
			t.Errorf("%s: %q, want %q\n%s", k, status[k], want, b.String())
		}
	}
	if _, ok := status["producer Commit with holders vs without | "+sc4]; !ok {
		t.Errorf("no Commit target:\n%s", b.String())
	}
	for _, s := range []string{"framebus/hold analysis (30.0 ms a frame)", "0.00 copies per frame", "framebus/slow producer: Commit p50"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
}
