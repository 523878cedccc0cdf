package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/viewer"

	"github.com/rs/zerolog"
)

var recordCmd = &cli.Command{
	Name:    "record",
	Args:    "NAME --out FILE [--lossless] [--duration D] [--fps N] [--timeout D] [--dir DIR]",
	Summary: "write a bus to a file: lossless (Matroska, replayable) or MJPEG (.avi)",
	Description: `Joins the bus NAME as a consumer and writes its frames to FILE.

With --lossless (give it a .mkv name) every frame is kept byte for byte in
the bus's own format, with its sequence number, capture, commit and read
times, generation, drops and user metadata, in a Matroska file that
ffmpeg, ffprobe and GStreamer read as raw video (each format of the bus is
a video track of its own). 'framebus capture --source replay:FILE' publishes it again
at its pace. It needs no OpenCV. The file streams to disk: memory stays
bounded however long the recording.

Without it, FILE is an MJPEG video (OpenCV's VideoWriter; give it a .avi
name), at the bus's frame rate (or --fps; 30 when the bus does not say).
The file has the size of the first frame; frames of a later generation of
another size are scaled to it. It needs a build with OpenCV (make build);
without it the command says so (exit 2).

Either way the recording is written to FILE's directory as
NAME.partial-PID.EXT and renamed to FILE once it ended cleanly: when the
producer closes the stream, after --duration, or on SIGINT, SIGTERM or
SIGHUP (exit 0). It never leaves FILE half written. A recording that ends
with an error (a full disk, exit 1) keeps the partial file, playable up to
its last whole frame, and the error says where it is; so does a recorder
that is killed.

It waits up to --timeout for a producer that has not started or is gone,
and follows a new generation by itself. At the end it prints the frames
written and the frames dropped (the bus had them but they were not
written: the writer was slower than the camera).`,
	Examples: `framebus record cam0 --out cam0.mkv --lossless --duration 10s
		framebus capture --name again --source replay:cam0.mkv
		framebus record cam0 --out cam0.avi --duration 10s
		framebus record cam0 --out /tmp/clip.avi --fps 25`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &recordOpts{}
		fs.StringVar(&o.out, "out", "", "the `FILE` (.mkv with --lossless, else .avi)")
		fs.BoolVar(&o.lossless, "lossless", false, "keep every frame byte for byte with its metadata (Matroska, replayable with capture --source replay:FILE)")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: until the stream ends)")
		fs.Float64Var(&o.fps, "fps", 0, "MJPEG: frame rate `N` of the file (0: the bus's)")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for the producer to create the bus, or to come back when it is gone")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		fs.Var(&o.spin, "spin", spinUsage)
		return o.run
	},
}

type recordOpts struct {
	out, dir          string
	fps               float64
	lossless          bool
	duration, timeout time.Duration
	spin              cli.Spin
}

func (o *recordOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
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
	sum, err := viewer.Record(ctx, name, viewer.RecordOptions{Dir: o.dir, Timeout: o.timeout, Out: o.out, FPS: o.fps, Lossless: o.lossless, Spin: o.spin.D, Log: cli.Slog(log)})
	switch {
	case sum.Frames > 0 && sum.Lossless:
		fmt.Fprintf(stdout, "recorded %d frames (%d dropped) to %s: lossless %s, %s", sum.Frames, sum.Dropped, sum.Path, sum.Format, cli.Bytes(uint64(sum.Bytes)))
		if sum.Formats > 1 {
			fmt.Fprintf(stdout, ", %d formats", sum.Formats)
		}
		fmt.Fprintln(stdout)
	case sum.Frames > 0:
		fmt.Fprintf(stdout, "recorded %d frames (%d dropped) to %s: %dx%d MJPEG at %g fps\n", sum.Frames, sum.Dropped, sum.Path, sum.Width, sum.Height, sum.FPS)
	case err == nil:
		fmt.Fprintf(stdout, "recorded no frame; %s not written\n", o.out)
	}
	var we *viewer.WriteError
	if errors.As(err, &we) {
		return err
	}
	return consumerError(name, o.dir, err)
}
