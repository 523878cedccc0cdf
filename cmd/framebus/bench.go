package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/framebus/framebus/bench"
	"github.com/framebus/framebus/internal/cli"

	"github.com/rs/zerolog"
)

var benchCmd = &cli.Command{
	Name:    "bench",
	Args:    "[--quick] [--plan] [--json FILE] [--plot FILE.png] [--duration D] [--rounds N] [--sizes LIST] [--consumers LIST] [--rates LIST] [--placements LIST] [--transports LIST] [--modes LIST] [--pairs LIST] [--checksums LIST] [--slots N] [--hold-for D]",
	Summary: "measure framebus against its own C reference, a raw futex, memcpy, Unix sockets, pipes and GStreamer",
	Description: `Measures, on this machine and in one run, what it costs to move frames from
a producer process to consumer processes through framebus, against the
limits (a raw shared futex wake between two processes, a copy into shared
memory) and what a user would pick instead (the same frames over a Unix
socket, a pipe, and GStreamer's shmsink/shmsrc when gst-launch-1.0 is
installed). Every process is this binary, re-executed.

The C legs: framebus's producer and consumer written in C from the protocol
(framebus/testdata/c, built with gcc when it is installed, else reported as
skipped) run against the Go ones in every combination, go->go, go->c, c->go
and c->c (the transport "c"), with a raw futex wake in C as the floor of
c->c, all measured by the same clock and sampler.

It prints one block per scenario (size, consumers, rate, placement), one row
per transport: publish-to-wake latency percentiles in microseconds, the
read (to the whole frame read), commit-to-wake, the producer's call,
frames/s, GB/s, drops, torn retries, CPU, and the ratios to the futex,
c->c and socket rows; then the issue's targets, met or missed, and notes on
the method. See docs/BENCHMARKS.md for what the numbers mean.

Without flags it runs the full set (how long: --plan prints the runs and
their estimated time, which a run with its progress bar logs when it starts
and docs/BENCHMARKS.md gives): first the
camera scenarios (1080p RGBA and NV12 at 60 and 30 fps, free and split,
checksums off and on, every language pair, the spinning consumer at 60 fps),
then every other dimension. --quick runs the camera scenario 1080p RGBA at
60 fps, free placement, then 1080p RGBA and 640x480 GREY as fast as
possible, split, framebus against futex, memcpy, uds and pipe (under 2
minutes). Any of the list flags runs their whole product instead.

Rates: 0 is as fast as the consumers take the frames. Placements: split
(producer and consumers on two CPUs), shared (one CPU), free (unpinned).
Modes: plain (zero-copy Begin/Commit), copy (Publish), spin (a consumer
that spins before the next frame is due, framebus.ConsumerOptions.Spin),
park (plain with a Go consumer that never holds its thread for the last
stretch before a frame, ConsumerOptions.Hold < 0: the consumer before the
held wait), slow and hold (a slow consumer: an analysis of --hold-for on
each frame it takes; slow copies the frame to keep it, hold holds it,
Frame.Hold, PROTOCOL.md amendment 10; both go->go at a fixed rate; hold
brings the plain and slow rows it is judged against, on a bus of 4 slots
unless --slots says otherwise). The hold scenario of the full run is 1080p
RGBA at 60 fps, free, 4 slots.
Pairs: producer->consumer languages, go->go (the default), go->c, c->go,
c->c; they apply to framebus and futex. Checksums: off (the default), on.`,
	Examples: `framebus bench --quick
		framebus bench --plan
		framebus bench --quick --json /tmp/q.json --plot /tmp/q.png
		framebus bench --json bench.json --plot bench.png
		framebus bench --sizes 1920x1080:RGBA,640x480:GREY --consumers 1,4 --rates 0,30 --placements split,shared
		framebus bench --transports framebus,futex --modes plain --rates 60 --duration 10s
		framebus bench --sizes 1920x1080:RGBA --rates 60 --placements free --modes plain,hold --transports framebus --rounds 3
		framebus bench --sizes 1920x1080:NV12 --rates 60 --placements free --pairs go->go,go->c,c->go,c->c --modes plain,spin --rounds 3`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &benchOpts{flags: fs}
		fs.BoolVar(&o.quick, "quick", false, "the quick subset (under 2 minutes)")
		fs.StringVar(&o.json, "json", "", "write the results as JSON to `FILE`")
		fs.StringVar(&o.plot, "plot", "", "draw the latency distributions to `FILE.png`")
		fs.DurationVar(&o.duration, "duration", 0, "measured time of each run, `D` (default 3s, --quick 1s; paced runs measure at least --paced-frames)")
		fs.DurationVar(&o.warmup, "warmup", 0, "discarded start of each run, `D` (default 300ms)")
		fs.IntVar(&o.rounds, "rounds", 0, "runs of every transport, alternating, `N` (default 2)")
		fs.IntVar(&o.pacedFrames, "paced-frames", 0, "least frames measured by a run at a fixed rate, `N` (default 300)")
		fs.StringVar(&o.sizes, "sizes", "", "frame sizes, `LIST` of WxH[:FORMAT] (e.g. 1920x1080:RGBA,640x480:GREY,3840x2160:I420)")
		fs.StringVar(&o.consumers, "consumers", "", "consumer counts, `LIST` (e.g. 1,4)")
		fs.StringVar(&o.rates, "rates", "", "frame rates in fps, `LIST` (0: as fast as possible)")
		fs.StringVar(&o.placements, "placements", "", "CPU placements, `LIST` of split, shared, free")
		fs.StringVar(&o.transports, "transports", "", "`LIST` of framebus, futex, memcpy, uds, pipe, gstreamer")
		fs.StringVar(&o.modes, "modes", "", "framebus modes, `LIST` of plain, copy, spin, park, slow, hold")
		fs.IntVar(&o.slots, "slots", 0, "the buses' slots, `N` (2-8; default 2, 4 in scenarios with hold rows)")
		fs.DurationVar(&o.holdFor, "hold-for", 0, "the slow and hold modes' analysis of each frame, `D` (default 150ms)")
		fs.StringVar(&o.pairs, "pairs", "", "producer->consumer languages, `LIST` of go->go, go->c, c->go, c->c (default go->go)")
		fs.StringVar(&o.checksums, "checksums", "", "`LIST` of off, on: buses with CRC-32C checksums or not (default off)")
		fs.StringVar(&o.cc, "cc", "", "the C compiler of the C legs, `PATH` (default: gcc in PATH)")
		fs.DurationVar(&o.spin, "spin", 0, "the spin mode's maximum spin window, `D` (default 400us)")
		fs.BoolVar(&o.progress, "progress", false, "draw the progress bar on stderr even when it is not a terminal")
		fs.BoolVar(&o.plan, "plan", false, "print the scenarios, the runs and about how long they take, and run nothing")
		fs.StringVar(&o.dir, "dir", "", "`DIR` for the benchmark's buses and files (default /dev/shm)")
		fs.StringVar(&o.gst, "gst-launch", "", "the gst-launch-1.0 `PATH` (default: found in PATH)")
		return o.run
	},
}

type benchOpts struct {
	flags                                                  *flag.FlagSet
	quick, progress, plan                                  bool
	json, plot, dir, gst                                   string
	duration, warmup, spin, holdFor                        time.Duration
	rounds, pacedFrames, slots                             int
	sizes, consumers, rates, placements, transports, modes string
	pairs, checksums, cc                                   string
}

func (o *benchOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	if bench.IsChild() {
		// One of the benchmark's own processes: its job is on stdin.
		return bench.Child(ctx, os.Stdin, os.Stdout)
	}
	if err := noArgs(args); err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return cli.Usage(err)
	}
	if err := cfg.Validate(); err != nil {
		return cli.Usage(err)
	}
	if o.plan {
		runs, d := cfg.Estimate(nil)
		for _, sc := range cfg.Scenarios {
			fmt.Fprintf(stdout, "%s: %d rows\n", sc, len(sc.Variants))
		}
		fmt.Fprintf(stdout, "%d scenarios, %d runs: %s (%v) when every row runs; rows this machine cannot run take no time\n",
			len(cfg.Scenarios), runs, bench.About(d), d.Round(time.Second))
		return nil
	}
	sigCtx, stop := runContext(ctx, 0)
	defer stop()
	if o.progress || cli.IsTerminal(os.Stderr) {
		cfg.Progress = bench.NewProgressBar(os.Stderr)
	}
	cfg.Log = cli.Slog(log)
	rep, err := bench.Run(sigCtx, cfg)
	if rep == nil {
		return err
	}
	rep.WriteTable(stdout)
	if o.json != "" {
		if werr := rep.WriteJSONFile(o.json); werr != nil {
			return fmt.Errorf("--json: %w", werr)
		}
	}
	if o.plot != "" {
		if perr := rep.WritePlotFile(o.plot); perr != nil {
			return fmt.Errorf("--plot: %w", perr)
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted: the rows above are what was measured")
	case err != nil:
		return err
	case rep.Failed > 0:
		return fmt.Errorf("%d runs failed (their rows say why)", rep.Failed)
	}
	return nil
}

// config turns the flags into a benchmark configuration: the scenarios,
// with --slots on every bus.
func (o *benchOpts) config() (bench.Config, error) {
	cfg, err := o.scenarios()
	if err == nil && o.slots != 0 {
		for i := range cfg.Scenarios {
			cfg.Scenarios[i].Slots = o.slots
		}
	}
	return cfg, err
}

// scenarios is the configuration of every flag but --slots.
func (o *benchOpts) scenarios() (bench.Config, error) {
	cfg := bench.Config{Duration: o.duration, Warmup: o.warmup, Rounds: o.rounds, MinPacedFrames: o.pacedFrames,
		Spin: o.spin, HoldFor: o.holdFor, Dir: o.dir, GstLaunch: o.gst, CC: o.cc, Command: strings.Join(append([]string{"framebus"}, os.Args[1:]...), " ")}
	if o.duration < 0 || o.warmup < 0 || o.spin < 0 || o.rounds < 0 || o.pacedFrames < 0 || o.holdFor < 0 || o.slots < 0 {
		return cfg, errors.New("--duration, --warmup, --spin, --rounds, --paced-frames, --hold-for and --slots must not be negative")
	}

	matrix := o.sizes != "" || o.consumers != "" || o.rates != "" || o.placements != "" || o.transports != "" || o.modes != "" ||
		o.pairs != "" || o.checksums != ""
	switch {
	case o.quick && matrix:
		return cfg, errors.New("--quick picks its own scenarios: give either --quick or the list flags")
	case o.quick:
		cfg.Scenarios = bench.QuickScenarios()
		if cfg.Duration == 0 {
			cfg.Duration = time.Second
		}
		if cfg.MinPacedFrames == 0 {
			cfg.MinPacedFrames = bench.QuickPacedFrames
		}
		return cfg, nil
	case !matrix:
		cfg.Scenarios = bench.FullScenarios()
		return cfg, nil
	}
	sizes, err := splitList(o.sizes, "1920x1080:RGBA", "--sizes", bench.ParseSize)
	if err != nil {
		return cfg, err
	}
	consumers, err := splitList(o.consumers, "1", "--consumers", strconv.Atoi)
	if err != nil {
		return cfg, err
	}
	rates, err := splitList(o.rates, "0", "--rates", func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
	if err != nil {
		return cfg, err
	}
	placements, err := splitList(o.placements, "split", "--placements", oneOf(bench.Placements))
	if err != nil {
		return cfg, err
	}
	transports, err := splitList(o.transports, "framebus,c,futex,memcpy,uds,pipe,gstreamer", "--transports", oneOf(bench.Transports))
	if err != nil {
		return cfg, err
	}
	modes, err := splitList(o.modes, "plain,copy", "--modes", oneOf(bench.Modes))
	if err != nil {
		return cfg, err
	}
	pairs, err := splitList(o.pairs, "go->go", "--pairs", bench.ParsePair)
	if err != nil {
		return cfg, err
	}
	checksums, err := splitList(o.checksums, "off", "--checksums", parseOnOff)
	if err != nil {
		return cfg, err
	}
	cfg.Scenarios = bench.Matrix(sizes, consumers, rates, placements, transports, modes, pairs, checksums)
	return cfg, nil
}

func parseOnOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, errors.New("want on or off")
}

// splitList parses a comma-separated flag value (def when empty).
func splitList[T any](s, def, flagName string, parse func(string) (T, error)) ([]T, error) {
	if s == "" {
		s = def
	}
	var out []T
	for _, f := range strings.Split(s, ",") {
		v, err := parse(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %v", flagName, f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// oneOf parses one of the names of a string type.
func oneOf[T ~string](all []T) func(string) (T, error) {
	return func(s string) (T, error) {
		for _, v := range all {
			if strings.EqualFold(s, string(v)) {
				return v, nil
			}
		}
		names := make([]string, len(all))
		for i, v := range all {
			names[i] = string(v)
		}
		return "", fmt.Errorf("want one of %s", strings.Join(names, ", "))
	}
}
