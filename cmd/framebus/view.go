package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/viewer"

	"github.com/rs/zerolog"
)

var viewCmd = &cli.Command{
	Name:    "view",
	Args:    "NAME [--http ADDR] [--timeout D] [--duration D] [--snapshot-dir DIR] [--dir DIR]",
	Summary: "show a bus live: a desktop window, or a web preview with --http",
	Description: `Joins the bus NAME as a consumer and shows its newest frames, whatever
their pixel format (RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG).

Without --http it opens a window (OpenCV's highgui; needs $DISPLAY, e.g.
xvfb-run on a server) with an overlay: the frame's sequence number, the
displayed fps, the latency from commit and from capture to display, and the
frames dropped. Keys: q or Esc quits, space pauses, s saves the frame
shown as a PNG (in --snapshot-dir).

With --http ADDR it opens no window and needs no display: it serves a web
preview on ADDR (a bare port or :PORT binds 127.0.0.1; give a host, e.g.
0.0.0.0:8080, to be reachable from elsewhere):
  /             a page with the live picture and live stats
  /stream.mjpg  the picture as a multipart MJPEG stream (each client gets
                the newest frame when it is ready for one: a slow client
                skips frames, it never lags behind)
  /frame.jpg    the newest frame as a JPEG, at the bus's size
  /stats        the bus's status, the JSON of 'framebus stat NAME --json',
                and the WebRTC viewers ("webrtc")
  /viewer.json  the preview's own counters (fps, latency, drops, connections)
  /whep         WHEP (WebRTC-HTTP egress): POST an SDP offer, get the answer
                and a session URL (DELETE it to end); a VP8 stream, one
                encoder for all viewers, its bitrate that of the weakest
                link's congestion control; the page plays it and falls back
                to MJPEG where WebRTC fails (--webrtc=false: MJPEG only)
It holds at most --http-max-conns connections at a time (one more is
answered 503 and closed), closes keep-alive connections idle for
--http-idle and connections that send no request within 10 s, and drops a
stream client that takes longer than 10 s to accept a picture.
Frames are converted and encoded (one encoder for all clients) only while
somebody is looking. The URL is printed on stdout.

Both wait up to --timeout for a producer that has not started (then exit 1).
Once frames have come they never give up: when the producer is gone or
closes the stream they show "waiting for producer" and go on when a new one
comes; they follow a new generation (another size or format) by
themselves. They end on q, after --duration, or on SIGINT/SIGTERM (exit 0).

Needs a build with OpenCV (make build); without it the command says so
(exit 2).`,
	Examples: `framebus view cam0
		xvfb-run framebus view cam0
		framebus view cam0 --http :8080
		framebus view cam0 --http 0.0.0.0:8080 --timeout 1m
		framebus view cam0 --http 0.0.0.0:8080 --webrtc-max-bitrate 2M --ice-server stun:stun.example.net:3478`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &viewOpts{}
		fs.StringVar(&o.http, "http", "", "serve a web preview on `ADDR` (PORT, :PORT or HOST:PORT; host default 127.0.0.1) instead of opening a window")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for a producer that has not started")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: until q or interrupted)")
		fs.StringVar(&o.snapDir, "snapshot-dir", ".", "`DIR`ectory of the PNGs the s key saves")
		fs.IntVar(&o.maxConns, "http-max-conns", viewer.DefaultMaxConns, "web preview: at most `N` connections at a time")
		fs.DurationVar(&o.idle, "http-idle", viewer.DefaultIdleTimeout, "web preview: close keep-alive connections idle for `D`")
		fs.IntVar(&o.quality, "quality", 80, "JPEG quality `N` (1-100) of the web preview")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		fs.Var(&o.spin, "spin", spinUsage)
		o.rtc.register(fs) // view_webrtc.go
		return o.run
	},
}

type viewOpts struct {
	http, snapDir, dir string
	timeout, duration  time.Duration
	quality, maxConns  int
	idle               time.Duration
	spin               cli.Spin
	rtc                webrtcFlags
}

func (o *viewOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if o.duration < 0 || o.timeout < 0 {
		return cli.Usagef("--duration and --timeout must not be negative")
	}
	if o.quality < 1 || o.quality > 100 {
		return cli.Usagef("--quality %d: want 1 to 100", o.quality)
	}
	if o.maxConns < 1 || o.idle < time.Millisecond {
		return cli.Usagef("--http-max-conns must be at least 1 and --http-idle at least 1ms")
	}
	rtcOpts, err := o.rtc.options()
	if err != nil {
		return cli.Usage(err)
	}
	ctx, stop := runContext(ctx, o.duration)
	defer stop()
	if o.http == "" {
		err = viewer.RunWindow(ctx, name, viewer.WindowOptions{Dir: o.dir, Timeout: o.timeout, SnapshotDir: o.snapDir, Spin: o.spin.D, Log: cli.Slog(log)})
		return consumerError(name, o.dir, err)
	}
	addr, err := viewer.ListenAddr(o.http)
	if err != nil {
		return cli.Usage(err)
	}
	if !viewer.HasOpenCV {
		return consumerError(name, o.dir, &viewer.NotInBuildError{Feature: "the web preview (view --http)"})
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http %s: %v", o.http, err)
	}
	url := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(stdout, "web preview of bus %s: %s\n", name, url)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	log.Info().Str("bus", name).Str("url", url).Msg("serving the web preview")
	err = viewer.ServeHTTP(ctx, name, ln, viewer.HTTPOptions{Dir: o.dir, Timeout: o.timeout, Quality: o.quality, Spin: o.spin.D, Log: cli.Slog(log),
		MaxConns: o.maxConns, IdleTimeout: o.idle, WebRTC: rtcOpts})
	return consumerError(name, o.dir, err)
}

// consumerError turns what the viewer package returns into the command's
// error: nil at the end of --duration or on a signal, a usage error for a
// build without OpenCV or bad options.
func consumerError(name, dir string, err error) error {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case errors.Is(err, viewer.ErrNotInBuild), errors.Is(err, viewer.ErrBadOptions):
		return cli.Usage(err)
	case errors.Is(err, feed.ErrNoProducer):
		return err
	}
	return busError(name, dir, err)
}
