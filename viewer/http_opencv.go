//go:build framebus_opencv

package viewer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/report"
)

// ServeHTTP runs the web preview of bus name on ln until ctx ends: the
// Server's pages, fed by one reader that converts the newest frame and
// encodes it as a JPEG only while somebody waits for a picture. It waits up
// to Timeout for a producer that has not started (then it fails with a
// *NoProducerError); once it has had one it waits for the next for ever
// (the page says "waiting"), and it follows new generations.
func ServeHTTP(ctx context.Context, name string, ln net.Listener, o HTTPOptions) error {
	log := logx.Or(o.Log)
	q := o.Quality
	if q == 0 {
		q = 80
	}
	if q < 1 || q > 100 {
		return &OptionError{Reason: "JPEG quality must be 1 to 100"}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hub := NewHub()
	srv := NewServer(name, o.Dir, hub)
	srv.MaxConns, srv.IdleTimeout = o.MaxConns, o.IdleTimeout
	rtcSide, closeRTC, err := newWebRTC(ctx, name, o, log) // whep_webrtc.go
	if err != nil {
		return err
	}
	defer closeRTC()
	if rtcSide != nil {
		srv.WebRTC = rtcSide
	} else if srv.WebRTCOff = WebRTCMissing; o.WebRTC.Off {
		srv.WebRTCOff = "WebRTC is off in this preview (--webrtc=false)"
	}
	var wg sync.WaitGroup
	var serveErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr = srv.Serve(ctx, ln)
		cancel()
	}()
	err = encodeLoop(ctx, name, o, q, hub, srv, log)
	hub.Close()
	cancel()
	wg.Wait()
	if err == nil {
		err = serveErr
	}
	return err
}

// encodeLoop reads, converts and encodes until ctx ends.
func encodeLoop(ctx context.Context, name string, o HTTPOptions, quality int, hub *Hub, srv *Server, log *slog.Logger) error {
	// No held wait: a JPEG encode takes milliseconds, and the Ps serve the
	// clients (the bridge's encode says more).
	in := feed.New(name, feed.Options{Dir: o.Dir, Timeout: o.Timeout, Persist: true, Copy: true, Spin: o.Spin, Hold: -1,
		Log: log})
	defer in.Close()
	conv := NewConverter()
	defer conv.Close()
	params := []int{gocv.IMWriteJpegQuality, quality}

	st := Status{Bus: name, State: "starting"}
	var pic Picture
	var rate, readRate rateMeter
	var enc latencyMeter
	var readAtLog uint64 // frames read at the last progress line
	lastLog := time.Now()
	waited := false
	var formatErr string
	onWait := func(we *feed.WaitingError) {
		waited = true
		st.State, st.Waiting, st.FPS, st.ReadFPS = "waiting", we.Reason, 0, 0
		srv.SetStatus(st)
	}
	for {
		fr, err := nextFrame(ctx, in, onWait)
		if fr == nil {
			return err
		}
		now := framebus.Now()
		if waited || st.State == "starting" || fr.GenerationChanged {
			log.Info("streaming", "bus", name, "generation", fr.Generation, "format", report.FormatString(fr.Format))
			waited, formatErr = false, ""
		}
		fs := in.Stats()
		st.State, st.Waiting = "streaming", ""
		st.Generation, st.Seq = fr.Generation, fr.Seq
		st.Width, st.Height, st.Format = int(fr.Format.Width), int(fr.Format.Height), report.FormatName(fr.Format.PixelFormat)
		st.FramesRead, st.Dropped, st.Discarded = fs.Frames, fs.Dropped, fs.Discarded
		if hub.Wanted() {
			if m, err := conv.Convert(fr.Data, fr.Format); err != nil {
				if msg := err.Error(); msg != formatErr {
					log.Error("cannot show the frames", "bus", name, "error", err)
					formatErr = msg
				}
			} else {
				buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, *m, params)
				if err == nil {
					pic = Picture{Seq: fr.Seq, Generation: fr.Generation, CaptureNS: fr.CaptureNS, CommitNS: fr.CommitNS,
						EncodedNS: framebus.Now(), Width: m.Cols(), Height: m.Rows(), Data: buf.GetBytes()}
					hub.Publish(&pic)
					buf.Close()
					pic.Data = nil
					st.Pictures++
					st.CaptureToPicUS = float64(pic.EncodedNS-fr.CaptureNS) / 1e3
					enc.add(pic.EncodedNS - fr.CaptureNS)
					rate.add(now)
				}
			}
		}
		readRate.add(now)
		st.FPS, st.ReadFPS = rate.fps(now), readRate.fps(now)
		srv.SetStatus(st)
		if el := time.Since(lastLog); el >= progressEvery {
			lastLog = time.Now()
			logProgress(log, name, st, &enc, srv, el, st.FramesRead-readAtLog)
			readAtLog = st.FramesRead
		}
	}
}

// logProgress says what was read over the interval el (read frames), and
// the MJPEG side's pictures only when it made some: a page playing WebRTC
// leaves it idle (the bridge logs its own progress).
func logProgress(log *slog.Logger, name string, st Status, enc *latencyMeter, srv *Server, el time.Duration, read uint64) {
	n, mean, mx := enc.take()
	sn, smean, smax := srv.SentLatency()
	vs := srv.Status()
	args := []any{"bus", name, "frames_read", st.FramesRead, "read_fps", f1(float64(read) / el.Seconds()),
		"dropped", st.Dropped, "discarded", st.Discarded}
	if n > 0 || sn > 0 {
		args = append(args, "pictures", st.Pictures, "pictures_recent", n, "mjpeg_fps", f1(float64(n)/el.Seconds()),
			"capture_to_picture_mean", mean.String(), "capture_to_picture_max", mx.String(),
			"parts_sent", sn, "capture_to_sent_mean", smean.String(), "capture_to_sent_max", smax.String())
	}
	args = append(args, "mjpeg_clients", vs.Clients)
	if vs.WebRTC != nil && vs.WebRTC.Enabled {
		args = append(args, "webrtc_viewers", vs.WebRTC.Viewers)
	}
	log.Info("progress", args...)
}

// nextFrame is the next frame of a feed that persists (the previews'): it
// rides out the waits for a producer (onWait is told of each, if not nil)
// and the idle spells; nil and no error once ctx has ended.
func nextFrame(ctx context.Context, in *feed.Feed, onWait func(*feed.WaitingError)) (*framebus.Frame, error) {
	for {
		fr, err := in.Next(ctx)
		if err == nil {
			return fr, nil
		}
		var we *feed.WaitingError
		switch {
		case ctx.Err() != nil:
			return nil, nil
		case errors.As(err, &we):
			if onWait != nil {
				onWait(we)
			}
		case errors.Is(err, feed.ErrIdle):
		default:
			return nil, err
		}
	}
}
