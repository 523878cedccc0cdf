package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/pidns"
	"github.com/framebus/framebus/internal/report"
	"github.com/framebus/framebus/internal/sdnotify"
	"github.com/rs/zerolog"
)

var dirUsage = "bus `DIR`ectory (default $FRAMEBUS_DIR, else " + framebus.DefaultDir + ")"

var captureCmd = &cli.Command{
	Name:    "capture",
	Args:    "--name NAME [--source SOURCE] [--size WxH] [--format FORMAT] [--fps N] [--loop] [--slots N] [--hold-max D] [--checksum] [--duration D] [--mode MODE [--allow-world]] [--group G] [--dir DIR]",
	Summary: "publish the frames of a source on a bus",
	Description: `Creates the bus NAME (or takes it over from a producer that died) and
publishes the source's frames on it, written straight into the bus's back
slot. It runs until the source ends, --duration passes, or SIGINT/SIGTERM;
then it closes the bus, and its consumers see the end of the stream.

--slots N sets how many frames the bus keeps: consumers may hold N-2 of
them at once (zero-copy, never overwritten while held, the producer never
waiting: a slow analysis's frames); 2 slots allow no holds. --hold-max D is
a lease: a hold on a frame older than D may be taken back when its slot is
needed (the holder's view then reports itself invalid); without it a hold
lasts until released, and a stopped holder keeps at most that many.

Sources: pattern (a synthetic moving test pattern, the default); videotest
(pion/mediadevices' fake camera: 640x480 colour bars and noise); screen (the
X display of $DISPLAY, whole: run under xvfb-run on a server);
camera[:/dev/videoN] (a V4L2 camera, /dev/video0 by default); file:PATH (a
video file, through OpenCV); whep:URL (a WebRTC stream pulled over WHEP from
another framebus view --http, or any WHEP server that sends VP8: the bus
takes the stream's size, its rate unless --fps is given, and the sender's
capture times, so tail on this bus measures capture to wake across both
hosts; a session that ends is made again, 0.5 s to 5 s apart, the bus and
its consumers kept); whip:LISTEN (a WHIP server on LISTEN that a browser or any WHIP
client sending VP8 pushes a camera to, one publisher at a time; its page at
/ publishes the browser's camera at --size and --fps). screen and camera
need a build with -tags
framebus_media, file one with -tags framebus_opencv, whep one with -tags
framebus_webrtc (make build has them all).
videotest, screen and camera have sizes of their own: --size picks among a
camera's modes, and the log warns when the frames are not the size asked.

stdin and fd:N read frames from a pipe: raw frames of --size, --format and
--fps, one after another (ffmpeg -f rawvideo, GStreamer fdsink), or a
YUV4MPEG2 stream, which says its own size and rate (ffmpeg -f
yuv4mpegpipe, GStreamer y4menc; 4:2:0 becomes I420, mono GREY). A raw
stream that ends inside a frame is an error (exit 1). Frames go out at the
rate (the pipe holds a faster writer back; --fps 0: as they come).

rtsp://HOST[:PORT]/PATH is an RTSP camera, decoded by an ffmpeg child
process (ffmpeg must be installed): the camera's own size and rate unless
--size/--fps ask for others, any --format but MJPEG. When the camera drops
it reconnects (the bus stays, its consumers wait for frames); a camera that
cannot be reached at the start is an error (exit 1).

replay:FILE publishes a lossless recording (framebus record --lossless) again,
every frame byte for byte with its user metadata, at the pace it was
recorded (--fps N: at N fps, --fps 0: as fast as possible; --loop: again
and again), following its format changes.

Formats: RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG, or a V4L2 fourcc
such as AB24 or YU12 (the pattern, videotest, screen and camera make all of
them but MJPEG).

A bad flag, a size or format the source cannot make, or a bus directory too
small for the frames is a usage error (exit 2), found before anything is
created.`,
	Examples: `framebus capture --name cam0 --source pattern
		ffmpeg -i clip.mp4 -f yuv4mpegpipe - | framebus capture --name clip --source stdin
		gst-launch-1.0 -q videotestsrc ! video/x-raw,format=I420,width=640,height=480 ! fdsink | framebus capture --name gst --source stdin --size 640x480 --format I420
		framebus capture --name door --source rtsp://192.168.1.20:554/stream1
		framebus capture --name again --source replay:cam0.mkv --loop
		framebus capture --name demo --source pattern --size 640x480 --fps 30 --duration 20s
		framebus capture --name hd --size 1920x1080 --format NV12 --fps 60 --checksum
		framebus capture --name cam0 --size 1920x1080 --slots 4   # slow analyses may hold 2 frames at once
		framebus capture --name fast --size 640x480 --fps 0 --duration 10s   # as fast as possible
		framebus capture --name cam0 --mode 0660 --group video --dir /dev/shm
		framebus capture --name cam0 --source camera:/dev/video2 --format YUYV
		xvfb-run framebus capture --name desk --source screen --fps 60
		framebus capture --name far --source whep:http://camera-box:8080/whep --format I420
		framebus capture --name phone --source whip:0.0.0.0:8090 --size 1280x720   # open http://HOST:8090/ on the phone`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &captureOpts{flags: fs}
		fs.StringVar(&o.name, "name", "", "bus `NAME` (also accepted as the argument)")
		fs.StringVar(&o.source, "source", "pattern", "frame `SOURCE`: pattern, videotest, screen, camera[:/dev/videoN], file:PATH, stdin, fd:N, rtsp://HOST/PATH, replay:FILE, whep:URL or whip:LISTEN")
		fs.StringVar(&o.size, "size", "1280x720", "frame size, `WxH` (without it a video file or camera keeps its own; videotest and screen always do)")
		fs.StringVar(&o.format, "format", "RGBA", "pixel `FORMAT`: RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG or a fourcc")
		fs.Float64Var(&o.fps, "fps", 30, "frames per second, `N` (0: as fast as possible; without it a video file plays at its own rate)")
		fs.IntVar(&o.slots, "slots", framebus.MinSlots, fmt.Sprintf("frame slots, `N` (%d-%d); consumers may hold N-2 frames at once", framebus.MinSlots, framebus.MaxSlots))
		fs.DurationVar(&o.holdMax, "hold-max", 0, "the lease: a frame held longer than `D` may be taken back when its slot is needed (0: holds last until released)")
		fs.BoolVar(&o.checksum, "checksum", false, "carry a CRC-32C of every frame")
		fs.BoolVar(&o.loop, "loop", false, "replay:FILE: start again at the end")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (e.g. 20s; 0: until interrupted)")
		fs.StringVar(&o.mode, "mode", "0600", "file `MODE` of the bus (0660 to share with a group; never world-writable; world-readable only with --allow-world)")
		fs.BoolVar(&o.allowWorld, "allow-world", false, "allow a --mode that lets every user of the machine read the frames (such as 0644), with a warning")
		fs.StringVar(&o.group, "group", "", "`GROUP` (name or id) of the bus files")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		return o.run
	},
}

type captureOpts struct {
	flags                      *flag.FlagSet
	name, source, size, format string
	fps                        float64
	slots                      int
	checksum, loop, allowWorld bool
	duration, holdMax          time.Duration
	mode, group, dir           string

	log *zerolog.Logger // of the command's context
}

// progressEvery is how often capture logs its rate.
const progressEvery = 5 * time.Second

func (o *captureOpts) run(ctx context.Context, args []string) error {
	o.log = zerolog.Ctx(ctx)
	// Everything the user can get wrong is checked before anything is created.
	if len(args) > 1 || (len(args) == 1 && o.name != "" && o.name != args[0]) {
		return cli.Usagef("one bus name expected, got --name %q and %q", o.name, args)
	}
	if len(args) == 1 {
		o.name = args[0]
	}
	if o.name == "" {
		return cli.Usagef("--name is required")
	}
	if err := framebus.ValidateName(o.name); err != nil {
		return cli.Usage(err)
	}
	w, h, err := cli.ParseSize(o.size)
	if err != nil {
		return cli.Usagef("--size %q: %v", o.size, err)
	}
	pf, err := framebus.ParseFourCC(o.format)
	if err != nil {
		return cli.Usagef("--format %q: want RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG or a fourcc such as AB24", o.format)
	}
	if math.IsNaN(o.fps) || math.IsInf(o.fps, 0) || o.fps < 0 {
		return cli.Usagef("--fps %v: want a number >= 0 (0: as fast as possible)", o.fps)
	}
	if o.slots < framebus.MinSlots || o.slots > framebus.MaxSlots {
		return cli.Usagef("--slots %d: want %d to %d", o.slots, framebus.MinSlots, framebus.MaxSlots)
	}
	mode, err := cli.ParseMode(o.mode)
	if err != nil {
		return cli.Usagef("--mode %q: %v", o.mode, err)
	}
	if mode&0o007 != 0 {
		// Every user of the machine could read the frames (a camera's
		// picture); ParseMode refused world-writable already, always.
		if !o.allowWorld {
			return cli.Usagef("--mode %q gives every user of the machine access to the frames: use 0600, or 0660 with --group to share them with a group; --allow-world if that is really meant", o.mode)
		}
		o.log.Warn().Str("mode", fmt.Sprintf("%04o", mode)).Msg("--allow-world: every user of the machine can read this bus's frames")
	}
	if o.duration < 0 {
		return cli.Usagef("--duration %v: must not be negative", o.duration)
	}
	if o.holdMax < 0 {
		return cli.Usagef("--hold-max %v: must not be negative", o.holdMax)
	}
	// The signals are ours from here on, before anything is created: a
	// signal while a large bus is being built removes what was made.
	sigCtx, stop := runContext(ctx, 0)
	defer stop()
	src, err := capture.OpenContext(sigCtx, o.source, capture.Config{Width: w, Height: h, PixelFormat: pf, FPS: o.fps,
		DefaultSize: !o.given("size"), DefaultFPS: !o.given("fps"), Loop: o.loop, Log: cli.Slog(o.log)})
	if err != nil {
		if sigCtx.Err() != nil {
			o.log.Info().Str("source", capture.Redact(o.source)).Msg("interrupted while opening the source; nothing created")
			return nil
		}
		if errors.Is(err, capture.ErrUnknownSource) || errors.Is(err, capture.ErrNotInBuild) || errors.Is(err, capture.ErrBadConfig) {
			return cli.Usage(err)
		}
		return err
	}
	defer src.Close()
	o.warnIfNotAsked(src.Format(), w, h)

	p, err := o.create(sigCtx, src.Format(), mode)
	if err != nil {
		if sigCtx.Err() != nil {
			o.log.Info().Str("bus", o.name).Msg("interrupted while creating the bus; nothing left behind")
			return nil
		}
		return err
	}
	return o.publish(sigCtx, stop, src, p)
}

// warnIfNotAsked logs when the source's own size or rate wins over the
// --size or --fps given (videotest and screen have one size; a camera the
// nearest of its modes).
func (o *captureOpts) warnIfNotAsked(f framebus.Format, w, h uint32) {
	if o.given("size") && (f.Width != w || f.Height != h) {
		o.log.Warn().Str("source", capture.Redact(o.source)).Str("size", fmt.Sprintf("%dx%d", f.Width, f.Height)).
			Msgf("the source makes %dx%d frames, not the --size %s asked: publishing those", f.Width, f.Height, o.size)
	}
	if o.given("fps") && f.FPSNum != 0 && o.fps != 0 {
		if got := float64(f.FPSNum) / float64(f.FPSDen); math.Abs(got-o.fps) > 0.005*o.fps {
			o.log.Warn().Str("source", capture.Redact(o.source)).Float64("fps", got).Msgf("the source runs at %g fps, not the --fps %g asked", got, o.fps)
		}
	}
}

// given says whether the flag name was on the command line.
func (o *captureOpts) given(name string) (set bool) {
	o.flags.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// create makes the bus, turning framebus's errors into messages.
func (o *captureOpts) create(ctx context.Context, f framebus.Format, mode os.FileMode) (*framebus.Producer, error) {
	p, err := framebus.CreateContext(ctx, o.name, framebus.ProducerOptions{
		Format: f, Slots: o.slots, Checksum: o.checksum, Mode: mode, Group: o.group, Dir: o.dir, HoldMax: o.holdMax,
	})
	if err == nil {
		return p, nil
	}
	var se *framebus.SpaceError
	var be *framebus.BusyError
	switch {
	case errors.As(err, &se):
		return nil, cli.Usagef("bus %s needs %d bytes (%s) in %s, only %d (%s) are free: use a smaller --size, fewer --slots or another --dir; in Docker, raise --shm-size (e.g. docker run --shm-size=1g)",
			o.name, se.Needed, cli.Bytes(se.Needed), se.Dir, se.Available, cli.Bytes(se.Available))
	case errors.As(err, &be):
		return nil, fmt.Errorf("bus %s is published by a live producer (%s): stop it or choose another --name", o.name, pidns.Resolve(be.PID, be.PIDNS))
	case errors.Is(err, framebus.ErrBadOptions), errors.Is(err, framebus.ErrBadName):
		return nil, cli.Usagef("%s", strings.TrimPrefix(report.Cause(err).Error(), framebus.ErrBadOptions.Error()+": "))
	}
	return nil, fmt.Errorf("bus %s: %v", o.name, report.Cause(err))
}

// publish runs capture.Publish, the loop, between the command's wiring:
// --duration, the service manager (READY, WATCHDOG, STOPPING), the first
// and last log lines and the bus's Close. sigCtx ends on a stop signal;
// stop releases the signals.
func (o *captureOpts) publish(sigCtx context.Context, stop context.CancelFunc, src capture.Source, p *framebus.Producer) error {
	ctx := sigCtx
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	f := p.Format()
	o.log.Info().Str("bus", o.name).Str("path", p.Path()).Uint64("generation", p.Generation()).
		Str("source", capture.Redact(o.source)).Str("format", report.FormatString(f)).Uint64("frame_bytes", f.FrameSize).
		Int("slots", o.slots).Int("holds", o.slots-2).Bool("checksum", o.checksum).Int("pid", os.Getpid()).Msg("publishing")

	// A service manager (systemd Type=notify) learns that the bus is READY.
	if sent, err := sdnotify.Notify(fmt.Sprintf("READY=1\nSTATUS=publishing bus %s (%s)\nMAINPID=%d", o.name, report.FormatString(f), os.Getpid())); err != nil {
		o.log.Warn().Err(err).Msg("cannot notify the service manager ($NOTIFY_SOCKET)")
	} else if sent {
		o.log.Debug().Msg("told the service manager: READY=1")
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { watchdog(p, done) })

	_, runErr := capture.Publish(ctx, src, p, capture.PublishOptions{Log: cli.Slog(o.log), Progress: progressEvery, Source: o.source})
	why := "the source ended"
	switch {
	case sigCtx.Err() != nil:
		why = "interrupted"
	case ctx.Err() != nil:
		why = "--duration reached"
	case runErr != nil:
		why = "error"
	}
	stop() // a second Ctrl-C now kills at once
	sdnotify.Notify("STOPPING=1\nSTATUS=closing bus " + o.name + " (" + why + ")")
	close(done)
	wg.Wait()
	st := p.Stats()
	if err := p.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("bus %s: close: %v", o.name, report.Cause(err))
	}
	o.log.Info().Str("bus", o.name).Str("why", why).Uint64("frames", st.FramesPublished).Uint64("last_seq", st.LastSeq).
		Uint64("generation", st.Generation).Msg("closed the bus")
	return runErr
}

// watchdog tells a service manager that asks for one (systemd WatchdogSec=)
// WATCHDOG=1 at each of its intervals in which a frame was published,
// until done closes: a source that stalls (a camera that does not come
// back) gets the service restarted.
func watchdog(p *framebus.Producer, done <-chan struct{}) {
	d := sdnotify.WatchdogInterval()
	if d <= 0 {
		return
	}
	wd := time.NewTicker(d)
	defer wd.Stop()
	last := p.Stats()
	for {
		select {
		case <-done:
			return
		case <-wd.C:
			st := p.Stats()
			if st.Generation != last.Generation || st.FramesPublished != last.FramesPublished {
				sdnotify.Notify("WATCHDOG=1")
			}
			last = st
		}
	}
}
