package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/report"
	"github.com/framebus/framebus/internal/y4m"
)

var catCmd = &cli.Command{
	Name:    "cat",
	Args:    "NAME (--raw | --y4m) [--frames N] [--duration D] [--timeout D] [--fps N] [--dir DIR]",
	Summary: "write a bus's frames to stdout, raw or YUV4MPEG2, for ffmpeg and GStreamer",
	Description: `Joins the bus NAME as a consumer and writes its frames to stdout, one after
another, until the producer closes the stream (then stdout is closed and
the reader sees the end), --frames or --duration, SIGINT/SIGTERM/SIGHUP,
or the reader closing the pipe (all exit 0).

--raw writes each frame's bytes as the bus holds them (the bus's format:
ffmpeg -f rawvideo, GStreamer rawvideoparse; MJPEG buses give a stream of
JPEGs, ffmpeg -f mjpeg). --y4m writes a YUV4MPEG2 stream, which says its
own size and rate (ffmpeg -f yuv4mpegpipe, GStreamer y4mdec): I420 and
NV12 buses as C420jpeg, GREY as Cmono, YUYV as C422 (the planes taken
apart, byte for byte); RGB and MJPEG buses cannot be carried (use --raw).
The log on stderr says how to read the stream with ffmpeg and gst-launch.

It writes the newest frame each time: a reader slower than the bus gets
fewer frames, never late ones, and the frames it skipped are counted
(dropped, on stderr at the end). Neither stream can change its format: a
new generation of another size or format ends cat with an error (exit 1)
after the last frame of the old one.`,
	Examples: `framebus cat cam0 --y4m | ffmpeg -f yuv4mpegpipe -i - -c:v libx264 cam0.mp4
		framebus cat cam0 --raw | ffmpeg -f rawvideo -pix_fmt rgba -video_size 1280x720 -framerate 30 -i - out.mkv
		framebus cat cam0 --raw | gst-launch-1.0 fdsrc ! rawvideoparse width=1280 height=720 format=rgba framerate=30/1 ! videoconvert ! autovideosink
		framebus cat cam0 --y4m --frames 300 > clip.y4m`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &catOpts{}
		fs.BoolVar(&o.raw, "raw", false, "write the frames' bytes as the bus holds them")
		fs.BoolVar(&o.y4m, "y4m", false, "write a YUV4MPEG2 stream (I420, NV12, GREY and YUYV buses)")
		fs.Uint64Var(&o.frames, "frames", 0, "stop after `N` frames (0: no limit)")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: until the stream ends)")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for the producer to create the bus, or to come back when it is gone")
		fs.Float64Var(&o.fps, "fps", 0, "y4m: the rate `N` the header says when the bus does not say one (default 30)")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		fs.Var(&o.spin, "spin", spinUsage)
		return o.run
	},
}

type catOpts struct {
	raw, y4m          bool
	frames            uint64
	duration, timeout time.Duration
	fps               float64
	dir               string
	spin              cli.Spin
}

// check checks the flags (name is the bus's, for the message).
func (o *catOpts) check(name string) error {
	if o.raw == o.y4m {
		return cli.Usagef("give one of --raw and --y4m")
	}
	if o.duration < 0 || o.timeout < 0 || o.fps < 0 {
		return cli.Usagef("--duration, --timeout and --fps must not be negative")
	}
	if o.fps > 100000 || math.IsNaN(o.fps) {
		return cli.Usagef("--fps %v: at most 100000", o.fps)
	}
	if stdout == os.Stdout && term.IsTerminal(int(os.Stdout.Fd())) {
		return cli.Usagef("stdout is a terminal: pipe it into a program, e.g. framebus cat %s --y4m | ffmpeg -f yuv4mpegpipe -i - out.mp4", name)
	}
	return nil
}

// header is the y4m stream's header for frames of f (with --y4m; the zero
// header with --raw): the bus's rate, else --fps, else 30 fps (said).
func (o *catOpts) header(log *zerolog.Logger, name string, f framebus.Format) (y4m.Header, error) {
	if !o.y4m {
		return y4m.Header{}, nil
	}
	hdr, err := y4m.ForFormat(f)
	if err != nil {
		return hdr, fmt.Errorf("bus %s is %s: %v (framebus cat %s --raw)", name, report.FormatString(f), err, name)
	}
	if hdr.FPSNum == 0 {
		fps := o.fps
		if fps == 0 {
			fps = 30
			log.Warn().Str("bus", name).Msg("the bus does not say its rate: the y4m header says 30 fps (--fps sets another)")
		}
		if fps == math.Trunc(fps) {
			hdr.FPSNum, hdr.FPSDen = uint32(fps), 1
		} else {
			hdr.FPSNum, hdr.FPSDen = uint32(fps*1000+0.5), 1000
		}
	}
	return hdr, nil
}

// catWhy says why cat's loop ended; the reader closing the pipe is no
// error.
func catWhy(ctx context.Context, end feed.End, err error) (string, error) {
	switch {
	case errors.Is(err, catStopped):
		return "the reader closed the pipe", nil
	case err != nil:
		return "error", err
	case end.EndOfStream:
		return "end of stream", nil
	case end.Stopped:
		return "--frames reached", nil
	case ctx.Err() != nil:
		return "interrupted or --duration reached", nil
	}
	return "stopped", nil
}

// catStopped ends cat's loop when the reader closed the pipe.
var catStopped = errors.New("the reader closed the pipe")

func (o *catOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if err := o.check(name); err != nil {
		return err
	}
	// A reader that goes away makes writes fail (EPIPE) instead of killing
	// the process, so that cat leaves the bus through its clean path.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := runContext(ctx, o.duration)
	defer stop()
	in := feed.New(name, feed.Options{Dir: o.dir, Timeout: o.timeout, Copy: true, Spin: o.spin.D, Log: cli.Slog(log)})
	defer in.Close()
	if err := in.Join(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, feed.ErrNoProducer) {
			return err
		}
		return busError(name, o.dir, err)
	}
	f := in.Consumer().Format()
	hdr, err := o.header(log, name, f)
	if err != nil {
		return err
	}
	o.hint(log, name, f, hdr)

	out := bufio.NewWriterSize(stdout, 1<<16)
	var planes []byte
	if o.y4m {
		if _, err := fmt.Fprintln(out, hdr.String()); err != nil {
			return o.writeErr(err)
		}
		planes = make([]byte, y4m.FrameSize(f))
	}
	cw := &catWriter{o: o, name: name, f: f, out: out, planes: planes}
	end, err := in.Run(ctx, cw.frame)
	written, dropped := cw.written, cw.dropped
	if end.EndOfStream && err == nil {
		dropped += end.Dropped
	}
	why, err := catWhy(ctx, end, err)
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = o.writeErr(ferr)
	}
	log.Info().Str("bus", name).Uint64("frames", written).Uint64("dropped", dropped).Str("why", why).Msg("cat ended")
	var fe *formatChangeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe), errors.Is(err, feed.ErrNoProducer), ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	}
	return busError(name, o.dir, err)
}

// catWriter writes the frames of one format to stdout, raw or as y4m.
type catWriter struct {
	o                *catOpts
	name             string
	f                framebus.Format
	out              *bufio.Writer
	planes           []byte // the y4m frame's planes
	written, dropped uint64
}

// frame is the feed's function: it writes fr.
func (c *catWriter) frame(fr *framebus.Frame) error {
	if fr.Format != c.f {
		kind := "raw"
		if c.o.y4m {
			kind = "y4m"
		}
		return &formatChangeError{fmt.Sprintf("bus %s changed format from %s to %s at frame %d: a %s stream cannot change its format (run cat again for the new one)",
			c.name, report.FormatString(c.f), report.FormatString(fr.Format), fr.Seq, kind)}
	}
	data := fr.Data
	if c.o.y4m {
		p, err := y4m.Planar(c.planes, fr.Data, c.f)
		if err != nil {
			return err
		}
		if _, err := c.out.WriteString(y4m.FrameMagic + "\n"); err != nil {
			return catStopped
		}
		data = p
	}
	if _, err := c.out.Write(data); err != nil {
		return catStopped
	}
	if err := c.out.Flush(); err != nil {
		return catStopped
	}
	if c.written > 0 {
		c.dropped += fr.Dropped
	}
	c.written++
	if c.o.frames > 0 && c.written >= c.o.frames {
		return feed.ErrStop
	}
	return nil
}

// formatChangeError ends cat at a change of the bus's format.
type formatChangeError struct{ msg string }

func (e *formatChangeError) Error() string { return e.msg }

func (o *catOpts) writeErr(err error) error {
	if errors.Is(err, syscall.EPIPE) {
		return nil
	}
	return fmt.Errorf("stdout: %v", err)
}

// gstFormat is GStreamer's rawvideoparse name of each raw bus format.
var gstFormat = map[framebus.FourCC]string{
	framebus.FormatRGBA: "rgba", framebus.FormatRGB24: "rgb", framebus.FormatBGR24: "bgr", framebus.FormatGrey: "gray8",
	framebus.FormatYUYV: "yuy2", framebus.FormatNV12: "nv12", framebus.FormatI420: "i420",
}

// hint logs how ffmpeg and gst-launch read the stream.
func (o *catOpts) hint(log *zerolog.Logger, name string, f framebus.Format, h y4m.Header) {
	var ff, gst string
	rate := "30"
	grate := "30/1"
	if f.FPSNum != 0 {
		rate = fmt.Sprintf("%d/%d", f.FPSNum, f.FPSDen)
		grate = rate
	}
	switch {
	case o.y4m:
		ff = "ffmpeg -f yuv4mpegpipe -i -"
		gst = "gst-launch-1.0 fdsrc ! y4mdec ! ..."
	case f.PixelFormat == framebus.FormatMJPEG:
		ff = "ffmpeg -f mjpeg -framerate " + rate + " -i -"
		gst = "gst-launch-1.0 fdsrc ! jpegparse ! jpegdec ! ..."
	default:
		ff = fmt.Sprintf("ffmpeg -f rawvideo -pix_fmt %s -video_size %dx%d -framerate %s -i -", capture.FFmpegPixFmt(f.PixelFormat), f.Width, f.Height, rate)
		gst = fmt.Sprintf("gst-launch-1.0 fdsrc ! rawvideoparse width=%d height=%d format=%s framerate=%s ! ...", f.Width, f.Height, gstFormat[f.PixelFormat], grate)
		if f.PlaneStride != defaultStrides(f) {
			ff += " (planes padded: the bytes include the stride padding)"
		}
	}
	log.Info().Str("bus", name).Str("format", report.FormatString(f)).Str("ffmpeg", ff).Str("gstreamer", gst).Msg("writing frames to stdout")
}

// defaultStrides are the plane strides of f's size and format, tightly
// packed.
func defaultStrides(f framebus.Format) [framebus.MaxPlanes]uint32 {
	c, err := framebus.Format{Width: f.Width, Height: f.Height, PixelFormat: f.PixelFormat}.Complete()
	if err != nil {
		return f.PlaneStride
	}
	return c.PlaneStride
}
