package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/viewer"

	"github.com/rs/zerolog"
)

var analyzeCmd = &cli.Command{
	Name:    "analyze",
	Args:    "NAME --detect motion|faces [--duration D] [--frames N] [--threshold N] [--min-area N] [--cascade FILE] [--timeout D] [--dir DIR]",
	Summary: "run a detector (motion, faces) on the newest frames, one JSON line each",
	Description: `Joins the bus NAME as a consumer and runs a detector on its frames, one
after the other, with OpenCV:

  motion  what changed since the previous analysed frame: frame
          differencing of the blurred frames (a pixel changed when the grey
          level of its colour difference is over --threshold), dilated into
          regions; each region of at least --min-area pixels is a box
  faces   frontal faces, with Debian's Haar cascade (opencv-data:
          ` + viewer.DefaultCascade + `) or --cascade FILE

Frames wider than 640 pixels are analysed scaled down to 640; boxes are in
the frame's own pixels. When the analysis is slower than the camera it
takes the newest frame each time and counts the frames it skipped; it never
queues.

It prints one JSON object per analysed frame: seq, generation, capture_ns,
commit_ns and result_ns (CLOCK_MONOTONIC), width, height, detect, boxes
([{"x","y","w","h"}]), latency_capture_us and latency_commit_us (from
capture and from commit to the result) and dropped (frames skipped since
the previous line). A summary (frames, fps, latency) is logged at the end.

It waits up to --timeout for a producer that has not started or is gone,
follows a new generation by itself, and ends when the producer closes the
stream, after --duration, after --frames analysed frames or on
SIGINT/SIGTERM (exit 0). Needs a build with OpenCV (make build); without
it the command says so (exit 2).`,
	Examples: `framebus analyze cam0 --detect motion
		framebus analyze cam0 --detect faces --duration 10s | jq -c '.boxes'
		framebus analyze cam0 --detect faces --frames 1   # one result, then exit
		framebus analyze cam0 --detect motion --threshold 40 --min-area 2000`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &analyzeOpts{}
		fs.StringVar(&o.detect, "detect", "", "the detector: `motion` or faces")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: until the stream ends)")
		fs.Uint64Var(&o.frames, "frames", 0, "stop after `N` analysed frames (0: no limit)")
		fs.IntVar(&o.threshold, "threshold", 25, "motion: colour difference `N` (1-254, as a grey level) that counts")
		fs.IntVar(&o.minArea, "min-area", 0, "motion: smallest box in frame pixels, `N` (0: 1/2000 of the frame)")
		fs.StringVar(&o.cascade, "cascade", viewer.DefaultCascade, "faces: the Haar cascade `FILE`")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for the producer to create the bus, or to come back when it is gone")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		fs.Var(&o.spin, "spin", spinUsage)
		return o.run
	},
}

type analyzeOpts struct {
	detect, cascade, dir string
	duration, timeout    time.Duration
	frames               uint64
	threshold, minArea   int
	spin                 cli.Spin
}

func (o *analyzeOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if o.detect == "" {
		return cli.Usagef("--detect motion or --detect faces is required")
	}
	if o.duration < 0 || o.timeout < 0 {
		return cli.Usagef("--duration and --timeout must not be negative")
	}
	if o.threshold < 1 || o.threshold > 254 {
		return cli.Usagef("--threshold %d: want 1 to 254", o.threshold)
	}
	ctx, stop := runContext(ctx, o.duration)
	defer stop()
	out := bufio.NewWriterSize(stdout, 64<<10)
	w := &lineFlusher{w: out}
	sum, err := viewer.Analyze(ctx, name, viewer.AnalyzeOptions{Dir: o.dir, Timeout: o.timeout, Detect: o.detect,
		Threshold: o.threshold, MinArea: o.minArea, Cascade: o.cascade, Frames: o.frames, Spin: o.spin.D, Out: w, Log: cli.Slog(log)})
	out.Flush()
	if sum.Frames > 0 {
		log.Info().Str("bus", name).Str("detect", o.detect).Uint64("frames", sum.Frames).Uint64("with_boxes", sum.WithBoxes).
			Uint64("dropped", sum.Dropped).Str("fps", f1(sum.FPS())).Str("latency_capture_mean", sum.LatencyMean.String()).
			Str("latency_capture_max", sum.LatencyMax.String()).Bool("stream_closed", sum.StreamClosed).Msg("analyze summary")
	}
	return consumerError(name, o.dir, err)
}

// lineFlusher writes each line through at once: a reader of the pipe sees
// every result when it is made.
type lineFlusher struct{ w *bufio.Writer }

func (l *lineFlusher) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err == nil {
		err = l.w.Flush()
	}
	return n, err
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
