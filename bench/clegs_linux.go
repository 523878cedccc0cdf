//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/framebus/framebus/framebus"
)

// The C legs: the producer, consumer and futex ping of framebus/testdata/c
// (the first two over libframebus; embedded, csrc.go), built with gcc into the run's directory once per
// benchmark, started pinned exactly as the Go children are, each writing its
// measurements to a file at the end (no pipe read at frame rate to disturb
// the run), which the parent replays through the same sampler. CLOCK_MONOTONIC
// is the same clock in both languages, so a Go producer's hand-off time in a
// frame's metadata times a C consumer's wake, and the other way round.

// cBins are the built programs.
type cBins struct {
	producer, consumer, ping string
	cc                       string // the compiler, for the notes
}

// cFlags are the flags of every C leg: what framebus.h asks for.
var cFlags = []string{"-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror"}

// buildC writes the sources into dir and compiles the three programs, the
// producer and the consumer each with libframebus's sources. The
// error says why the C legs cannot run here.
func buildC(ctx context.Context, cc, dir string) (*cBins, error) {
	if cc == "" {
		cc = "gcc"
	}
	path, err := exec.LookPath(cc)
	if err != nil {
		return nil, fmt.Errorf("%s is not installed (Debian: gcc): the C legs are built from framebus/testdata/c with it", cc)
	}
	src := filepath.Join(dir, "csrc")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return nil, err
	}
	var lib []string // libframebus's sources, compiled into the producer and the consumer
	for name := range cSourceFiles {
		b, err := cSources.ReadFile("csrc/" + name)
		if err != nil {
			return nil, err
		}
		dst := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return nil, err
		}
		if strings.HasPrefix(name, "lib/") && strings.HasSuffix(name, ".c") {
			lib = append(lib, dst)
		}
	}
	sort.Strings(lib)
	bins := &cBins{producer: filepath.Join(dir, "c-producer"), consumer: filepath.Join(dir, "c-consumer"),
		ping: filepath.Join(dir, "c-ping"), cc: path}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, job := range [][2]string{{"producer.c", bins.producer}, {"consumer.c", bins.consumer}, {"ping.c", bins.ping}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append(append([]string{}, cFlags...), "-I", src, "-o", job[1])
			if job[0] != "ping.c" { // the protocol is libframebus's: one gcc run, its sources and the program
				args = append(append(args, "-pthread"), lib...)
			}
			args = append(args, filepath.Join(src, job[0]))
			out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("%s %s: %v: %s", cc, job[0], err, firstLines(string(out), 3))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("building the C legs failed: %w", err)
	}
	return bins, nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " / ")
}

// startC starts a C leg as a member of the group, pinned to cpus; its
// result is read from out once it has exited.
func (r *runner) startC(g *group, name, bin string, args []string, cpus []int, out string) (*proc, error) {
	p, err := g.start(name, exec.Command(bin, args...), cpus)
	if err != nil {
		return nil, err
	}
	p.out = out
	return p, nil
}

func ns(d time.Duration) string { return strconv.FormatInt(int64(d), 10) }

// cProducerArgs are the C producer's arguments for a framebus run.
func cProducerArgs(sc Scenario, spec *childSpec, out string) []string {
	a := []string{"--dir", spec.Dir, "--size", sc.Size.Dims(), "--format", sc.Size.FormatName(),
		"--fps", strconv.FormatFloat(sc.Rate, 'g', -1, 64), "--consumers", strconv.Itoa(max(8, sc.Consumers)),
		"--wait-consumers", strconv.Itoa(sc.Consumers), "--bench", out,
		"--warmup-ns", ns(spec.Warmup), "--measure-ns", ns(spec.Measure)}
	if sc.Checksum {
		a = append(a, "--checksum")
	}
	if sc.Slots != 0 {
		a = append(a, "--slots", strconv.Itoa(sc.Slots))
	}
	if spec.lockstep() {
		a = append(a, "--ctl", spec.Ctl)
	}
	return append(a, spec.Bus)
}

// cConsumerArgs are the C consumer's arguments for consumer i: the shared
// wake word when the producer keeps one (as framebus's Go consumer does),
// the bus waited for, frames read as zero-copy views like Next.
func cConsumerArgs(sc Scenario, spec *childSpec, i int, out string) []string {
	a := []string{"--wake", "auto", "--wait-bus", "--bench", out}
	if spec.Mode == Spin {
		a = append(a, "--spin", strconv.FormatInt(int64(spec.Spin/time.Microsecond), 10))
	}
	if spec.lockstep() {
		a = append(a, "--ctl", spec.Ctl, "--index", strconv.Itoa(i), "--consumers", strconv.Itoa(sc.Consumers))
	}
	return append(a, framebus.SegmentPath(spec.Dir, spec.Bus), framebus.LockPath(spec.Dir, spec.Bus),
		strconv.FormatInt(1<<62, 10), "15000")
}

// pingArgs are the C futex baseline's arguments (role waker or waiter).
func pingArgs(role string, sc Scenario, spec *childSpec, frame uint64, i int, out string) []string {
	a := []string{role, "--ctl", spec.Ctl, "--slots", filepath.Join(spec.Dir, slotsFile),
		"--frame-bytes", strconv.FormatUint(frame, 10), "--consumers", strconv.Itoa(sc.Consumers),
		"--fps", strconv.FormatFloat(sc.Rate, 'g', -1, 64), "--bench", out}
	if role == "waker" {
		return append(a, "--warmup-ns", ns(spec.Warmup), "--measure-ns", ns(spec.Measure))
	}
	return append(a, "--index", strconv.Itoa(i))
}

// readCResult reads the measurements a C leg wrote (producer.c's, consumer.c's
// and ping.c's bench modes):
//
//	framebus-bench-c 1
//	role producer|consumer
//	KEY VALUE                    frames, window_ns, cpu_ns, awake (producer);
//	                             cpu0, cpu1, torn, overwritten (consumer)
//	spin HITS MISSES             a spinning consumer
//	pub NS                       one per measured frame (producer)
//	s TCALL T0 T1 T2 COMMIT DROPPED BYTES   one per measured frame (consumer)
//
// A consumer's samples go through newSampler as a Go consumer's do, with the
// CPU times the C process read where the Go sampler reads its own.
func readCResult(path string) (*childResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the C leg wrote no measurements: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 1<<20)
	if !sc.Scan() || sc.Text() != "framebus-bench-c 1" {
		return nil, fmt.Errorf("%s: not a framebus-bench-c 1 file", path)
	}
	vals := map[string]int64{}
	var role string
	var pubs []int64
	var samples [][7]int64
	var hits, misses int64
	spin := false
	for line := 2; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		nums := make([]int64, len(f)-1)
		for i, x := range f[1:] {
			if f[0] == "role" {
				break
			}
			if nums[i], err = strconv.ParseInt(x, 10, 64); err != nil {
				return nil, fmt.Errorf("%s:%d: %q: %v", path, line, sc.Text(), err)
			}
		}
		switch {
		case f[0] == "role" && len(f) == 2:
			role = f[1]
		case f[0] == "pub" && len(nums) == 1:
			pubs = append(pubs, nums[0])
		case f[0] == "s" && len(nums) == 7:
			samples = append(samples, [7]int64(nums))
		case f[0] == "spin" && len(nums) == 2:
			spin, hits, misses = true, nums[0], nums[1]
		case len(nums) == 1:
			vals[f[0]] = nums[0]
		default:
			return nil, fmt.Errorf("%s:%d: unexpected %q", path, line, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch role {
	case "producer":
		h := newHist()
		for _, d := range pubs {
			record(h, d)
		}
		res := &childResult{Frames: vals["frames"], WindowNS: vals["window_ns"], CPUNS: vals["cpu_ns"], Waiting: -1,
			Note: awakeNote(vals["awake"])}
		if int64(len(pubs)) != res.Frames {
			return nil, fmt.Errorf("%s: %d publish samples for %d frames", path, len(pubs), res.Frames)
		}
		res.Publish, err = encodeHist(h)
		return res, err
	case "consumer":
		sm := newSampler(false)
		sm.cpuNow = func() int64 { return vals["cpu0"] }
		for _, s := range samples {
			if s[5] < 0 || s[6] < 0 {
				return nil, fmt.Errorf("%s: negative count in sample %v", path, s)
			}
			sm.add(s[0], s[1], s[2], s[3], s[4], uint64(s[5]), int(s[6]))
		}
		sm.cpuNow = func() int64 { return vals["cpu1"] }
		sm.res.Torn, sm.res.Overwritten = uint64(max(vals["torn"], 0)), uint64(max(vals["overwritten"], 0))
		if spin {
			sm.res.Note = fmt.Sprintf("spin: %d frames caught spinning, %d spins missed (the consumer slept for those)", hits, misses)
		}
		return sm.finish()
	}
	return nil, fmt.Errorf("%s: role %q", path, role)
}

// runC is the C side's summary for the notes.
func (r *runner) cNote() string {
	if r.cbins == nil {
		return ""
	}
	return fmt.Sprintf("c: framebus/testdata/c's producer.c, consumer.c and ping.c built with %s %s; the C producer renders by copying a fixed background frame into the slot (the Go pattern copies its background and draws a box and text), the C consumer sleeps on the shared wake word (amendment 7) and reads zero-copy views like Next, then copies the frame out",
		r.cbins.cc, strings.Join(cFlags, " "))
}
