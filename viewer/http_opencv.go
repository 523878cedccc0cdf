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
	var rate rateMeter
	var enc latencyMeter
	lastLog := time.Now()
	waited := false
	var formatErr string
	for {
		fr, err := in.Next(ctx)
		if err != nil {
			var we *feed.WaitingError
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &we):
				waited = true
				st.State, st.Waiting, st.FPS = "waiting", we.Reason, 0
				srv.SetStatus(st)
				continue
			case errors.Is(err, feed.ErrIdle):
				continue
			}
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
		st.FPS = rate.fps(now)
		srv.SetStatus(st)
		if time.Since(lastLog) >= progressEvery {
			lastLog = time.Now()
			n, mean, mx := enc.take()
			sn, smean, smax := srv.SentLatency()
			log.Info("progress", "bus", name, "frames_read", st.FramesRead, "pictures", st.Pictures, "pictures_recent", n, "fps", f1(st.FPS), "capture_to_picture_mean", mean.String(), "capture_to_picture_max", mx.String(), "parts_sent", sn, "capture_to_sent_mean", smean.String(), "capture_to_sent_max", smax.String(), "dropped", st.Dropped, "discarded", st.Discarded, "clients", srv.Status().Clients)
		}
	}
}
