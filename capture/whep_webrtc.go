//go:build framebus_webrtc && cgo

package capture

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
)

func init() {
	Register("whep", func(c Config) (Source, error) {
		// A server gone silent is given up within 2 + 4 s, and the
		// session made again (Read).
		s, err := OpenWHEP(c.context(), c, rtc.Config{DisconnectedTimeout: 2 * time.Second, FailedTimeout: 4 * time.Second})
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// WHEPSource is whep:URL: a WHEP stream (another framebus view --http, or
// any WHEP server that sends VP8) received over WebRTC and decoded with
// libvpx into the bus's format.
//
// Open connects, waits for the first keyframe (its size is the bus's) and
// watches the next few frames' RTP timestamps for the rate (unless --fps
// is given). Each frame's capture time is the sender's, carried by the
// abs-capture-time header extension (internal/rtc explains the clocks), so
// a consumer of the local bus measures capture to wake across both hosts;
// a sender without it gives the arrival time. Lost packets that NACK could
// not repair make the next frame wait for a keyframe (asked for with a
// PLI): frames are skipped, never shown broken. The decoder writes into its
// own memory; Read converts from there into the slot, in Go.
//
// A session that ends (the server stopped or restarted, the network or
// ICE failed) is made again by Read, after rtc's backoff (0.5 s doubling to
// 5 s, ±25%, for as long as it takes; from 0.5 s again after a session that
// delivered frames): the bus stays, in the same generation when the stream
// comes back at its size (its consumers only see frames stop and start
// again), and a keyframe of another size is ErrFormatChanged (a new
// generation). Each loss and return is logged (Config.Logf) and counted
// (Reconnects). A stream that changes size within a session ends Read
// with an error.
type WHEPSource struct {
	url  string
	rc   rtc.Config
	log  *slog.Logger
	sess *rtc.Session
	recv *rtc.Receiver
	dec  *vp8Decoder
	f    framebus.Format
	size int

	first   *image.YCbCr // the constructor's keyframe, decoded, for the first Read
	firstNS int64
	queued  []rtc.Frame // frames read ahead for the rate, not decoded yet
	lastRTP uint32
	closed  bool

	reconnects atomic.Uint64
	backoff    *rtc.Backoff
	delivered  uint64 // frames delivered in this session
}

// errSessionEnded wraps the end of a session, which Read makes again.
var errSessionEnded = errors.New("the WHEP session ended")

// WHEPStats counts what the source did.
type WHEPStats struct {
	rtc.RecvStats
	Decoded uint64 // frames decoded and delivered
	Skipped uint64 // frames not shown: broken by loss until a keyframe came
	Stamped bool   // the sender stamps capture times (abs-capture-time)
}

// OpenWHEP opens whep:URL (c.Arg is the URL) with the given WebRTC
// configuration, waiting up to 10 s for the first frame.
func OpenWHEP(ctx context.Context, c Config, rc rtc.Config) (*WHEPSource, error) {
	const name = "whep"
	if c.Arg == "" {
		return nil, &ConfigError{Source: name, Err: errors.New("want whep:URL, e.g. whep:http://camera-box:8080/whep")}
	}
	pf, err := decodedFormat(name, c)
	if err != nil {
		return nil, err
	}
	var num, den uint32
	if !c.DefaultFPS {
		if num, den, err = checkFPS(c.FPS); err != nil {
			return nil, &ConfigError{Source: name, Err: err}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, firstFrameWait)
	defer cancel()
	sess, err := rtc.DialWHEP(ctx, c.Arg, rc)
	if err != nil {
		return nil, &UnavailableError{Source: name, Msg: "whep: " + err.Error(), Err: err}
	}
	s := &WHEPSource{url: c.Arg, rc: rc, log: c.log(), sess: sess, backoff: rtc.NewBackoff()}
	fail := func(err error) (*WHEPSource, error) {
		s.Close()
		return nil, err
	}
	if s.dec, err = newVP8Decoder(); err != nil {
		return fail(err)
	}
	if s.recv, err = sess.Receiver(ctx); err != nil {
		return fail(&UnavailableError{Source: name, Msg: "whep: " + err.Error(), Err: err})
	}
	// The first keyframe.
	s.dec.waitKey = true
	for s.first == nil {
		fr, err := s.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("no video from %s within %v", c.Arg, firstFrameWait)
			}
			return fail(&UnavailableError{Source: name, Msg: "whep: " + err.Error(), Err: err})
		}
		pic, ns, ok, err := s.decode(fr)
		if err != nil {
			return fail(err)
		}
		if ok {
			s.first, s.firstNS = pic, ns
		}
	}
	b := s.first.Rect
	// The rate: the median step of the next RTP timestamps, unless given.
	if num == 0 && c.DefaultFPS {
		num, den = s.watchRate(ctx)
	}
	if s.f, err = completeFormat(name, framebus.Format{Width: uint32(b.Dx()), Height: uint32(b.Dy()), PixelFormat: pf, FPSNum: num, FPSDen: den}); err != nil {
		return fail(err)
	}
	s.size = int(s.f.FrameSize)
	return s, nil
}

// watchRate reads up to 6 frames ahead (they stay queued) and returns
// their median rate, rounded to a whole or common fractional rate; 0/1
// (unknown) when they do not come within half a second.
func (s *WHEPSource) watchRate(ctx context.Context) (num, den uint32) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	prev := s.lastRTP
	var steps []float64
	for len(s.queued) < 6 {
		select {
		case fr, ok := <-s.recv.Frames():
			if !ok {
				return 0, 1
			}
			s.queued = append(s.queued, fr)
			if d := fr.RTPTime - prev; d > 0 && d < rtc.ClockRate {
				steps = append(steps, float64(d))
			}
			prev = fr.RTPTime
		case <-ctx.Done():
			return 0, 1
		}
	}
	if len(steps) < 3 {
		return 0, 1
	}
	slices.Sort(steps)
	return snapRate(rtc.ClockRate / steps[len(steps)/2])
}

// snapRate is a measured frame rate as a common rate: an NTSC rate
// (30000/1001, ...) when it measures that to 0.1%, else the nearest common
// whole rate within 8% (capture times jitter on a busy machine: a 30 fps
// source measures 28 or 32), else the rate rounded.
func snapRate(fps float64) (num, den uint32) {
	for _, n := range []uint32{24000, 30000, 60000} {
		if r := float64(n) / 1001; math.Abs(fps-r) < 0.001*r {
			return n, 1001
		}
	}
	best, bd := 0, math.Inf(1)
	for _, r := range []int{5, 10, 12, 15, 20, 24, 25, 30, 48, 50, 60, 90, 120} {
		if d := math.Abs(fps-float64(r)) / float64(r); d < bd {
			best, bd = r, d
		}
	}
	switch {
	case bd < 0.08:
		return uint32(best), 1
	case fps < 1:
		return 0, 1
	}
	return uint32(math.Round(fps)), 1
}

// next is the next frame: one read ahead, else the receiver's.
func (s *WHEPSource) next(ctx context.Context) (rtc.Frame, error) {
	if len(s.queued) > 0 {
		fr := s.queued[0]
		s.queued = s.queued[1:]
		return fr, nil
	}
	select {
	case fr, ok := <-s.recv.Frames():
		if !ok {
			return rtc.Frame{}, s.ended()
		}
		s.lastRTP = fr.RTPTime
		return fr, nil
	case <-s.sess.Ended():
		return rtc.Frame{}, s.ended()
	case <-ctx.Done():
		return rtc.Frame{}, ctx.Err()
	}
}

func (s *WHEPSource) ended() error {
	switch st := s.sess.State(); st {
	case webrtc.PeerConnectionStateFailed:
		return fmt.Errorf("%w: the session with %s failed: the server stopped answering", errSessionEnded, s.url)
	case webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateConnected:
		return fmt.Errorf("%w: the WHEP server %s ended the stream", errSessionEnded, s.url)
	default:
		return fmt.Errorf("%w: the session with %s ended (connection %s)", errSessionEnded, s.url, st)
	}
}

// reconnect makes the session again after why, pausing by the backoff,
// until the first keyframe comes or ctx ends. A keyframe of the bus's size
// is kept for the next Read; one of another size makes the new format, and
// ErrFormatChanged is returned.
func (s *WHEPSource) reconnect(ctx context.Context, why error) error {
	down := time.Now()
	if s.delivered > 0 {
		s.backoff.Reset()
	}
	s.delivered = 0
	s.sess.Close()
	s.queued = nil
	s.log.Warn("whep: the session ended; reconnecting", "url", s.url, "why", strings.TrimPrefix(why.Error(), errSessionEnded.Error()+": "))
	for attempt := 1; ; attempt++ {
		d := s.backoff.Next()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pic, err := s.dialAgain(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt == 1 || attempt%10 == 0 {
				s.log.Warn("whep: cannot reconnect yet", "url", s.url, "attempt", attempt, "error", err, "retry_max", rtc.RetryMax.String())
			}
			continue
		}
		n := s.reconnects.Add(1)
		b := pic.Rect
		s.log.Info(fmt.Sprintf("whep: the stream is back as %dx%d", b.Dx(), b.Dy()), "url", s.url,
			"down", time.Since(down).Round(10*time.Millisecond).String(), "attempts", attempt, "reconnects", n)
		s.first = pic
		if uint32(b.Dx()) != s.f.Width || uint32(b.Dy()) != s.f.Height {
			nf := s.f
			nf.Width, nf.Height, nf.FrameSize = uint32(b.Dx()), uint32(b.Dy()), 0
			nf.PlaneStride, nf.PlaneOffset, nf.PlaneCount = [framebus.MaxPlanes]uint32{}, [framebus.MaxPlanes]uint32{}, 0
			if nf, err = completeFormat("whep", nf); err != nil {
				return err
			}
			s.f, s.size = nf, int(nf.FrameSize)
			return ErrFormatChanged
		}
		return nil
	}
}

// dialAgain makes a new session and waits for its first keyframe (any
// size), within firstFrameWait.
func (s *WHEPSource) dialAgain(ctx context.Context) (*image.YCbCr, error) {
	ctx, cancel := context.WithTimeout(ctx, firstFrameWait)
	defer cancel()
	sess, err := rtc.DialWHEP(ctx, s.url, s.rc)
	if err != nil {
		return nil, err
	}
	s.sess = sess
	if s.recv, err = sess.Receiver(ctx); err != nil {
		return nil, err
	}
	s.dec.waitKey = true
	for {
		fr, err := s.next(ctx)
		if err != nil {
			return nil, err
		}
		pic, ok, err := s.dec.decode(fr, s.recv, image.Point{}, sizeIsError)
		if err != nil {
			return nil, err
		}
		if ok {
			s.firstNS = fr.CaptureNS
			return pic, nil
		}
	}
}

// Reconnects counts the sessions made again after one ended.
func (s *WHEPSource) Reconnects() uint64 { return s.reconnects.Load() }

// decode decodes fr, or skips it (ok false) while the stream is broken; a
// keyframe of another size than the bus's (once it has one) is an error.
func (s *WHEPSource) decode(fr rtc.Frame) (pic *image.YCbCr, captureNS int64, ok bool, err error) {
	var want image.Point
	if s.size != 0 {
		want = image.Pt(int(s.f.Width), int(s.f.Height))
	}
	pic, ok, err = s.dec.decode(fr, s.recv, want, sizeIsError)
	return pic, fr.CaptureNS, ok, err
}

// Format is the bus's format: the first keyframe's size.
func (s *WHEPSource) Format() framebus.Format { return s.f }

// Read waits for the next frame that decodes and converts it into dst.
func (s *WHEPSource) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if s.closed {
		return 0, 0, ErrClosed
	}
	if len(dst) < s.size {
		return 0, 0, fmt.Errorf("capture: whep: buffer of %d bytes for a frame of %d", len(dst), s.size)
	}
	if s.first != nil {
		pic, ns := s.first, s.firstNS
		s.first = nil
		return s.deliver(dst, pic, ns)
	}
	for {
		fr, err := s.next(ctx)
		if errors.Is(err, errSessionEnded) {
			if err := s.reconnect(ctx, err); err != nil {
				return 0, 0, err
			}
			pic, ns := s.first, s.firstNS
			s.first = nil
			return s.deliver(dst, pic, ns)
		}
		if err != nil {
			return 0, 0, err
		}
		pic, ns, ok, err := s.decode(fr)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			return s.deliver(dst, pic, ns)
		}
	}
}

func (s *WHEPSource) deliver(dst []byte, pic *image.YCbCr, captureNS int64) (int, int64, error) {
	s.delivered++
	n, err := s.dec.deliver(dst, s.f, pic)
	return n, captureNS, err
}

// Stats returns the counters. Not safe while Read runs.
func (s *WHEPSource) Stats() WHEPStats {
	var st WHEPStats
	if s.dec != nil {
		st.Decoded, st.Skipped, st.Stamped = s.dec.decoded, s.dec.skipped, s.dec.stamped
	}
	if s.recv != nil {
		st.RecvStats = s.recv.Stats()
	}
	return st
}

// Close ends the WHEP session (DELETE) and frees the decoder.
func (s *WHEPSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.sess != nil {
		s.sess.Close()
	}
	if s.dec != nil {
		s.dec.close()
	}
	s.first = nil
	return nil
}
