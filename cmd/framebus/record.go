package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/viewer"
)

var recordCmd = &cli.Command{
	Name:    "record",
	Args:    "NAME --out FILE [--duration D] [--fps N] [--timeout D] [--dir DIR]",
	Summary: "write a bus to a video file (MJPEG .avi)",
	Description: `Joins the bus NAME as a consumer and writes its frames to FILE, an MJPEG
video (OpenCV's VideoWriter; give it a .avi name), at the bus's frame rate
(or --fps; 30 when the bus does not say). The file has the size of the
first frame; frames of a later generation of another size are scaled to it.

It waits up to --timeout for a producer that has not started or is gone,
follows a new generation by itself, and ends when the producer closes the
stream, after --duration or on SIGINT/SIGTERM (exit 0). Then it prints the
frames written and the frames dropped (the bus had them but they were not
written: the writer was slower than the camera; the file does not repeat
frames for them). Needs a build with OpenCV (make build); without it the
command says so (exit 2).`,
	Examples: `framebus record cam0 --out cam0.avi --duration 10s
		framebus record cam0 --out /tmp/clip.avi --fps 25`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &recordOpts{}
		fs.StringVar(&o.out, "out", "", "the video `FILE` (.avi)")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: until the stream ends)")
		fs.Float64Var(&o.fps, "fps", 0, "frame rate `N` of the file (0: the bus's)")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for the producer to create the bus, or to come back when it is gone")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		fs.Var(&o.spin, "spin", spinUsage)
		return o.run
	},
}

type recordOpts struct {
	out, dir          string
	fps               float64
	duration, timeout time.Duration
	spin              cli.Spin
}

func (o *recordOpts) run(ctx context.Context, args []string) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if o.out == "" {
		return cli.Usagef("--out FILE is required")
	}
	if o.duration < 0 || o.timeout < 0 || o.fps < 0 {
		return cli.Usagef("--duration, --timeout and --fps must not be negative")
	}
	ctx, stop := runContext(ctx, o.duration)
	defer stop()
	sum, err := viewer.Record(ctx, name, viewer.RecordOptions{Dir: o.dir, Timeout: o.timeout, Out: o.out, FPS: o.fps, Spin: o.spin.D, Log: &log})
	if sum.Frames > 0 {
		fmt.Fprintf(stdout, "recorded %d frames (%d dropped) to %s: %dx%d MJPEG at %g fps\n", sum.Frames, sum.Dropped, sum.Path, sum.Width, sum.Height, sum.FPS)
	} else if err == nil {
		fmt.Fprintf(stdout, "recorded no frame; %s not written\n", o.out)
	}
	return consumerError(name, o.dir, err)
}
