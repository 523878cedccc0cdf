//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// runner is one benchmark in progress.
type runner struct {
	cfg      Config
	dir      string // the run's private directory
	allowed  []int  // the CPUs we may use
	split    [2]int // producer CPU, consumer CPU of the split placement
	gst      string // gst-launch-1.0, "" if absent
	gstWhy   string // why it is absent
	runs     int
	sockNote string
	pipeNote string
	gstRan   bool
	cbins    *cBins // the C legs, nil when they cannot run
	cWhy     string // why not
}

// Run runs the benchmark and returns its report. A run that fails is
// reported in its row (skipped, with the reason) and counted in
// Report.Failed; Run's error is for what stops the whole benchmark (a bad
// configuration, no directory, the context's end, in which case the rows
// measured so far come with it).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	r, err := newRunner(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.dir)

	rep := &Report{Machine: machineInfo(r.allowed, r.gst, r.gstWhy), Results: []Result{}, Targets: []Target{}}
	rep.Config = RunConfig{Command: cfg.Command, DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		Rounds: cfg.Rounds, MinPacedFrames: cfg.MinPacedFrames, SpinUS: float64(cfg.Spin) / 1e3, SplitCPUs: r.split}
	plan, total := r.plan()
	r.logEstimate(ctx)
	if cfg.Progress != nil {
		cfg.Progress.Start(total)
		defer cfg.Progress.Finish()
	}
	stopErr := r.execute(ctx, plan)
	for _, rows := range plan {
		for _, rw := range rows {
			res, failed := rw.result(cfg.Rounds)
			rep.Failed += failed
			rep.Results = append(rep.Results, res)
		}
	}
	rep.Targets = evaluateTargets(rep.Results)
	rep.Notes = r.notes()
	rep.Elapsed = round3(time.Since(start).Seconds())
	return rep, stopErr
}

// logEstimate says how many runs the plan makes and about how long they
// take: the figure docs/BENCHMARKS.md gives for the full set is this one,
// with every row run (TestFullSetEstimateInDocs). Said with the progress bar
// (a terminal, or --progress); stderr stays quiet otherwise.
func (r *runner) logEstimate(ctx context.Context) {
	runs, est := r.cfg.Estimate(func(sc Scenario, v Variant) bool { return r.skipReason(sc, v) != "" })
	lvl := slog.LevelDebug
	if r.cfg.Progress != nil {
		lvl = slog.LevelInfo
	}
	r.cfg.Log.Log(ctx, lvl, "benchmark plan", "scenarios", len(r.cfg.Scenarios), "runs", runs, "estimate", About(est))
}

// newRunner finds the executable, the CPUs, gst-launch and the C legs
// (built into the run's directory, which the caller removes), completing
// cfg.Exe.
func newRunner(ctx context.Context, cfg *Config) (*runner, error) {
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("the benchmark re-executes itself: %w", err)
		}
		cfg.Exe = exe
	}
	r := &runner{cfg: *cfg}
	var err error
	if r.allowed, err = allowedCPUs(); err != nil || len(r.allowed) == 0 {
		return nil, fmt.Errorf("sched_getaffinity: %v", err)
	}
	r.split = [2]int{r.allowed[0], r.allowed[0]}
	if len(r.allowed) > 1 {
		r.split[1] = r.allowed[1]
	}
	r.gst, r.gstWhy = findGstLaunch(cfg.GstLaunch)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if r.dir, err = os.MkdirTemp(cfg.Dir, "framebus-bench-"); err != nil {
		return nil, err
	}
	if needsC(cfg.Scenarios) {
		if r.cbins, err = buildC(ctx, cfg.CC, r.dir); err != nil {
			if ctx.Err() != nil {
				os.RemoveAll(r.dir)
				return nil, ctx.Err()
			}
			r.cWhy = err.Error()
			cfg.Log.Debug("the C legs are skipped", "error", err)
		}
	}
	return r, nil
}

// cpus gives the CPU masks of the producer side and the consumer side.
func (r *runner) cpus(p Placement) (prod, cons []int) {
	switch p {
	case Split:
		return []int{r.split[0]}, []int{r.split[1]}
	case Shared:
		return []int{r.split[0]}, []int{r.split[0]}
	}
	return r.allowed, r.allowed
}

// runOnce runs one variant once, in a directory of its own.
func (r *runner) runOnce(ctx context.Context, sc Scenario, v Variant) (*runResult, error) {
	r.runs++
	dir := filepath.Join(r.dir, fmt.Sprintf("run%04d", r.runs))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	measure := r.cfg.measureTime(sc)
	spec := childSpec{
		Mode: v.Mode, Width: sc.Size.Width, Height: sc.Size.Height, Format: sc.Size.Format,
		Consumers: sc.Consumers, Rate: sc.Rate, Warmup: r.cfg.Warmup, Measure: measure,
		Deadline: r.cfg.Warmup + measure + 40*time.Second, Dir: dir, Spin: r.cfg.Spin, Checksum: sc.Checksum,
		Slots: sc.Slots,
	}
	if v.Mode.analyses() {
		spec.HoldFor = r.cfg.HoldFor
		spec.Deadline += r.cfg.HoldFor
	}
	limit := spec.Deadline + 10*time.Second
	r.cfg.Log.Debug("run", "scenario", sc.String(), "transport", v.String(), "measure", measure)
	switch v.Transport {
	case Framebus, CFramebus:
		return r.runFramebus(ctx, sc, v.Sides(), spec, limit)
	case Futex:
		return r.runFutex(ctx, sc, v.Sides(), spec, limit)
	case UDS, Pipe:
		return r.runStream(ctx, sc, v.Transport, spec, limit)
	case Memcpy:
		return r.runMemcpy(ctx, sc, spec, limit)
	case GStreamer:
		r.gstRan = true
		return r.runGStreamer(ctx, sc, spec, limit)
	}
	return nil, fmt.Errorf("unknown transport %q", v.Transport)
}

func (r *runner) runFramebus(ctx context.Context, sc Scenario, sides Pair, spec childSpec, limit time.Duration) (*runResult, error) {
	spec.Bus = "bench"
	spec.Ctl = filepath.Join(spec.Dir, "ctl")
	if err := createCtl(spec.Ctl); err != nil {
		return nil, err
	}
	prodCPU, consCPU := r.cpus(sc.Placement)
	g := newGroup()
	defer g.killAll()
	var prod *proc
	var err error
	if sides.Producer == LangC {
		out := filepath.Join(spec.Dir, "producer.out")
		prod, err = r.startC(g, "c producer", r.cbins.producer, cProducerArgs(sc, &spec, out), prodCPU, out)
	} else {
		ps := spec
		ps.Role = roleFBProducer
		prod, err = r.startChild(g, "framebus producer", &ps, prodCPU, nil)
	}
	if err != nil {
		return nil, err
	}
	cons := make([]*proc, sc.Consumers)
	for i := range cons {
		if sides.Consumer == LangC {
			out := filepath.Join(spec.Dir, fmt.Sprintf("consumer%d.out", i))
			cons[i], err = r.startC(g, fmt.Sprintf("c consumer %d", i), r.cbins.consumer, cConsumerArgs(sc, &spec, i, out), consCPU, out)
		} else {
			cs := spec
			cs.Role, cs.Index = roleFBConsumer, i
			cons[i], err = r.startChild(g, fmt.Sprintf("framebus consumer %d", i), &cs, consCPU, nil)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := g.wait(ctx, limit); err != nil {
		return nil, err
	}
	return collect(prod, cons)
}

func (r *runner) runFutex(ctx context.Context, sc Scenario, sides Pair, spec childSpec, limit time.Duration) (*runResult, error) {
	spec.Ctl = filepath.Join(spec.Dir, "ctl")
	if err := createCtl(spec.Ctl); err != nil {
		return nil, err
	}
	frame, err := sc.Size.FrameBytes()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(spec.Dir, slotsFile), nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(filepath.Join(spec.Dir, slotsFile), int64(2*slotStride(int(frame)))); err != nil {
		return nil, err
	}
	prodCPU, consCPU := r.cpus(sc.Placement)
	g := newGroup()
	defer g.killAll()
	cons := make([]*proc, sc.Consumers)
	for i := range cons {
		if sides.Consumer == LangC {
			out := filepath.Join(spec.Dir, fmt.Sprintf("waiter%d.out", i))
			cons[i], err = r.startC(g, fmt.Sprintf("c futex waiter %d", i), r.cbins.ping, pingArgs("waiter", sc, &spec, frame, i, out), consCPU, out)
		} else {
			cs := spec
			cs.Role, cs.Index = roleFutexWaiter, i
			cons[i], err = r.startChild(g, fmt.Sprintf("futex waiter %d", i), &cs, consCPU, nil)
		}
		if err != nil {
			return nil, err
		}
	}
	var prod *proc
	if sides.Producer == LangC {
		out := filepath.Join(spec.Dir, "waker.out")
		prod, err = r.startC(g, "c futex waker", r.cbins.ping, pingArgs("waker", sc, &spec, frame, 0, out), prodCPU, out)
	} else {
		ps := spec
		ps.Role = roleFutexWaker
		prod, err = r.startChild(g, "futex waker", &ps, prodCPU, nil)
	}
	if err != nil {
		return nil, err
	}
	if err := g.wait(ctx, limit); err != nil {
		return nil, err
	}
	return collect(prod, cons)
}

// Buffer sizes of the stream baselines, as a user tuning them would set them.
const (
	sockBuf = 4 << 20
	pipeBuf = 1 << 20
)

func (r *runner) runStream(ctx context.Context, sc Scenario, t Transport, spec childSpec, limit time.Duration) (*runResult, error) {
	prodCPU, consCPU := r.cpus(sc.Placement)
	var senders, receivers []*os.File
	defer func() {
		for _, f := range append(senders, receivers...) {
			f.Close()
		}
	}()
	for i := 0; i < sc.Consumers; i++ {
		s, rcv, note, err := streamPair(t)
		if err != nil {
			return nil, err
		}
		senders, receivers = append(senders, s), append(receivers, rcv)
		if t == UDS {
			r.sockNote = note
		} else {
			r.pipeNote = note
		}
	}
	g := newGroup()
	defer g.killAll()
	cons := make([]*proc, sc.Consumers)
	var err error
	for i := range cons {
		cs := spec
		cs.Role, cs.Index, cs.FDs = roleReceiver, i, 1
		if cons[i], err = r.startChild(g, fmt.Sprintf("%s receiver %d", t, i), &cs, consCPU, []*os.File{receivers[i]}); err != nil {
			return nil, err
		}
	}
	ps := spec
	ps.Role, ps.FDs = roleSender, len(senders)
	prod, err := r.startChild(g, string(t)+" sender", &ps, prodCPU, senders)
	if err != nil {
		return nil, err
	}
	// Only the children hold the ends now: the receivers see the end of the
	// stream when the sender closes its ends.
	for _, f := range append(senders, receivers...) {
		f.Close()
	}
	senders, receivers = nil, nil
	if err := g.wait(ctx, limit); err != nil {
		return nil, err
	}
	return collect(prod, cons)
}

// streamPair makes the two ends of one sender-receiver connection.
func streamPair(t Transport) (send, recv *os.File, note string, err error) {
	if t == Pipe {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, nil, "", fmt.Errorf("pipe2: %w", err)
		}
		size, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeBuf)
		if err != nil {
			size, _ = unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0)
		}
		note = fmt.Sprintf("pipe: F_SETPIPE_SZ %d KiB asked, %d KiB granted (pipe-max-size)", pipeBuf>>10, size>>10)
		return os.NewFile(uintptr(p[1]), "pipe-w"), os.NewFile(uintptr(p[0]), "pipe-r"), note, nil
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
	}
	snd, _ := unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF)
	rcv, _ := unix.GetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_RCVBUF)
	note = fmt.Sprintf("uds: SOCK_STREAM socketpair, SO_SNDBUF and SO_RCVBUF set to %d MiB (the kernel reports %d and %d KiB; it doubles what is asked, up to net.core.wmem_max/rmem_max)",
		sockBuf>>20, snd>>10, rcv>>10)
	return os.NewFile(uintptr(fds[0]), "uds-send"), os.NewFile(uintptr(fds[1]), "uds-recv"), note, nil
}

func (r *runner) runMemcpy(ctx context.Context, sc Scenario, spec childSpec, limit time.Duration) (*runResult, error) {
	prodCPU, _ := r.cpus(sc.Placement)
	g := newGroup()
	defer g.killAll()
	spec.Role = roleMemcpy
	p, err := r.startChild(g, "memcpy", &spec, prodCPU, nil)
	if err != nil {
		return nil, err
	}
	if err := g.wait(ctx, limit); err != nil {
		return nil, err
	}
	res, err := p.result()
	if err != nil {
		return nil, err
	}
	if res.Frames < 2 || res.WindowNS <= 0 {
		return nil, fmt.Errorf("memcpy measured %d copies", res.Frames)
	}
	rr := &runResult{waiting: -1, samples: res.Frames, processCPU: p.cpu(), windowCPU: time.Duration(res.CPUNS)}
	if rr.lat, err = decodeHist(res.Latency); err != nil {
		return nil, err
	}
	rr.read, rr.pub = rr.lat, rr.lat
	rr.fps = float64(res.Frames-1) / (float64(res.WindowNS) / 1e9)
	rr.producerFPS = rr.fps
	rr.prodUSPerFrame = float64(res.CPUNS) / float64(res.Frames) / 1e3
	rr.prodPct = 100 * float64(res.CPUNS) / float64(res.WindowNS)
	rr.note = "latency and read are the copy of one frame; fps the copies per second"
	return rr, nil
}

// collect adds up the results of a producer-side child and its consumers.
func collect(prod *proc, cons []*proc) (*runResult, error) {
	pr, err := prod.result()
	if err != nil {
		return nil, err
	}
	if pr.Frames < 2 || pr.WindowNS <= 0 {
		return nil, fmt.Errorf("%s measured %d frames", prod.name, pr.Frames)
	}
	rr := &runResult{processCPU: prod.cpu(), windowCPU: time.Duration(pr.CPUNS), note: pr.Note}
	if rr.pub, err = decodeHist(pr.Publish); err != nil {
		return nil, err
	}
	if rr.begin, err = decodeHist(pr.Begin); err != nil {
		return nil, err
	}
	rr.producerFPS = float64(pr.Frames-1) / (float64(pr.WindowNS) / 1e9)
	rr.prodUSPerFrame = float64(pr.CPUNS) / float64(pr.Frames) / 1e3
	rr.prodPct = 100 * float64(pr.CPUNS) / float64(pr.WindowNS)
	var fps, cus, cpct []float64
	for _, c := range cons {
		cr, err := c.result()
		if err != nil {
			return nil, err
		}
		if cr.Frames < 2 || cr.WindowNS <= 0 {
			return nil, fmt.Errorf("%s measured %d frames", c.name, cr.Frames)
		}
		lat, err := decodeHist(cr.Latency)
		if err != nil {
			return nil, err
		}
		read, err := decodeHist(cr.Read)
		if err != nil {
			return nil, err
		}
		commit, err := decodeHist(cr.Commit)
		if err != nil {
			return nil, err
		}
		rr.lat, rr.read, rr.commit = merge(rr.lat, lat), merge(rr.read, read), merge(rr.commit, commit)
		if cr.Note != "" {
			rr.note = joinNote(rr.note, c.name+": "+cr.Note)
		}
		rr.samples += cr.Frames
		rr.dropped += cr.Dropped
		rr.torn += cr.Torn
		rr.overwrite += cr.Overwritten
		if cr.Analysis != nil {
			if rr.analysis == nil {
				rr.analysis = &Analysis{}
			}
			rr.analysis.add(cr.Analysis)
		}
		if cr.Waiting < 0 || rr.waiting < 0 {
			rr.waiting = -1
		} else {
			rr.waiting += cr.Waiting
		}
		rr.processCPU += c.cpu()
		rr.windowCPU += time.Duration(cr.CPUNS)
		fps = append(fps, float64(cr.Frames-1)/(float64(cr.WindowNS)/1e9))
		cus = append(cus, float64(cr.CPUNS)/float64(cr.Frames)/1e3)
		cpct = append(cpct, 100*float64(cr.CPUNS)/float64(cr.WindowNS))
	}
	rr.fps, rr.consUSPerFrame, rr.consPct = mean(fps), mean(cus), mean(cpct)
	return rr, nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// notes are what a reader of the table needs to know about this run.
func (r *runner) notes() []string {
	n := []string{
		"latency_us: publish-to-wake, from just before the hand-off (Commit, Publish, the futex store and wake, the first byte written) to the consumer's return from its wait (sockets, pipes: the whole frame received), CLOCK_MONOTONIC in both processes",
		"read_us: to the end of the consumer's read; framebus consumers copy the whole frame out of the slot and check Frame.Valid",
		"rate 0: framebus and futex in lockstep (the next frame once every consumer is done with the previous one; the ack is not timed), uds and pipe held back by their kernel buffers",
		fmt.Sprintf("split: producer side on CPU %d, consumer side on CPU %d; shared: all on CPU %d; free: not pinned", r.split[0], r.split[1], r.split[0]),
	}
	if r.sockNote != "" {
		n = append(n, r.sockNote)
	}
	if r.pipeNote != "" {
		n = append(n, r.pipeNote)
	}
	if c := r.cNote(); c != "" {
		n = append(n, c)
	}
	if r.gstRan {
		n = append(n, "gstreamer: videotestsrc pattern=black ! identity drop-allocation=true ! shmsink (4 frames of shm) -> shmsrc ! fakesink, through "+r.gst+
			"; fps is frames over gst-launch's execution time; no per-frame latency; its consumer does not read the pixels (ours copy every frame out), which favours it; the source renders into private memory and shmsink copies (its zero-copy allocation stalls when shm fills)")
	}
	return n
}

var errNoGst = errors.New("gst-launch-1.0 is not installed (Debian: gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; the Makefile's bench target installs them)")

func shortRate(r float64) string {
	if r == 0 {
		return "max"
	}
	return rateName(r)
}
