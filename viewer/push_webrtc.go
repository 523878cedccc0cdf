//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"crypto/rand"

	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/rtc"
)

// HasPush says whether this build has Push (framebus push).
const HasPush = true

// Push sends bus name to the WHIP endpoint o.URL (RFC 9725) until ctx
// ends: framebus push. It is the WHEP server's bridge (whep_webrtc.go: the
// bus's frames converted and encoded in VP8 while a session is up, GCC's
// estimate setting the bitrate, keyframes on PLI and FIR and on connecting)
// with one session, a WHIP client's instead of a viewer's: the offer (every
// candidate in it: no trickle) POSTed to o.URL with the bearer token, the
// answer applied, the session's URL (Location) DELETEd when the push ends
// or gives the session up.
//
// The session comes back by itself. A connection that goes disconnected
// (nothing heard for DisconnectedTimeout) is restarted in place when the
// server restarts ICE by PATCH (rtc.Session.RestartICE); one that fails,
// closes, or whose server does not restart ICE is given up (DELETE) and a
// new session POSTed, after rtc's backoff (0.5 s doubling to 5 s, ±25%,
// from 0.5 s again after a session that lasted 10 s). Refusals: 401 ends
// the push at once (a token does not get better by waiting); 403 and 404
// end it when no session ever worked (a wrong token or URL), and are
// retried after one did (a restarted server whose endpoint comes back, or
// still thinks it busy: simple-whip-server answers 403 then); anything else (5xx,
// a network error, an answer that is not SDP) is retried. o.Retries bounds
// the failed attempts in a row (0: for ever).
func Push(ctx context.Context, name string, o PushOptions) error {
	if o.URL == "" {
		return &OptionError{Reason: "push needs the WHIP endpoint's URL (--whip URL)"}
	}
	wo := o.WebRTC
	wo.MaxViewers = 1
	if wo.ICEFailedTimeout <= 0 {
		wo.ICEFailedTimeout = 6 * time.Second
	}
	if wo.ConnectTimeout <= 0 {
		wo.ConnectTimeout = 10 * time.Second
	}
	log := logx.Or(o.Log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := newBridge(ctx, name, HTTPOptions{Dir: o.Dir, Timeout: o.Timeout, Spin: o.Spin, Log: log, WebRTC: wo}, log)
	if err != nil {
		return err
	}
	defer func() { cancel(); b.close() }() // the bridge's loop ends with ctx
	p := &pusher{b: b, o: o, log: log, started: time.Now()}
	done := make(chan struct{})
	defer close(done)
	go p.progress(done)
	return p.run(ctx)
}

// PushStatus is a push's numbers (its progress line).
type PushStatus struct {
	State      string // the session's connection state, or "none" between sessions
	Sessions   uint64 // sessions made
	Reconnects uint64 // sessions made after the first
	Failures   uint64 // attempts that failed (refused, unreachable, not connected)
	WebRTC     *WebRTCStatus
}

type pusher struct {
	b       *webrtcBridge
	o       PushOptions
	log     *slog.Logger
	started time.Time

	sessions, failures atomic.Uint64
	cur                atomic.Pointer[pushSession]
}

// pushSession is the WHIP session: the bridge's session and its HTTP side.
type pushSession struct {
	*whepSession
	sess *rtc.Session
	why  chan string // why it ended
}

// Status is the push's numbers now.
func (p *pusher) Status() PushStatus {
	st := PushStatus{State: "none", Sessions: p.sessions.Load(), Failures: p.failures.Load(), WebRTC: p.b.Status()}
	if st.Sessions > 0 {
		st.Reconnects = st.Sessions - 1
	}
	if s := p.cur.Load(); s != nil {
		st.State = s.peer.State().String()
	}
	return st
}

func (p *pusher) run(ctx context.Context) error {
	bo := rtc.NewBackoff()
	everUp := false
	fails := 0
	for {
		s, err := p.dial(ctx)
		if err == nil {
			p.cur.Store(s)
			t0 := time.Now()
			why := p.watch(ctx, s)
			p.cur.Store(nil)
			connected := s.peer.Connected()
			loc := s.sess.Location()
			delErr := s.sess.Close()
			if ctx.Err() != nil {
				lvl, args := slog.LevelInfo, []any{"bus", p.b.name, "url", p.o.URL, "location", loc}
				if delErr != nil {
					lvl, args = slog.LevelWarn, append([]any{"delete", delErr}, args...)
				}
				p.log.Log(ctx, lvl, "push: stopped; the WHIP session is deleted", args...)
				return nil
			}
			if connected {
				everUp, fails = true, 0
				if time.Since(t0) >= 10*time.Second {
					bo.Reset()
				}
			} else {
				fails++
				p.failures.Add(1)
			}
			d := bo.Next()
			p.log.Warn("push: the WHIP session ended; reconnecting", "bus", p.b.name, "url", p.o.URL, "why", why,
				"retry_in", d.Round(time.Millisecond).String(), "reconnects", p.sessions.Load())
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		fails++
		p.failures.Add(1)
		switch st := rtc.StatusOf(err); {
		case st == http.StatusUnauthorized, st == http.StatusForbidden && !everUp:
			return &PushError{Err: err, Hint: "check the bearer token ($FRAMEBUS_WHIP_TOKEN or --token-file)"}
		case st == http.StatusNotFound && !everUp:
			return &PushError{Err: err, Hint: "check the WHIP endpoint's URL"}
		}
		if p.o.Retries > 0 && fails >= p.o.Retries {
			return &PushError{Err: err, Hint: fmt.Sprintf("gave up after %d attempts in a row (--retries)", fails)}
		}
		d := bo.Next()
		p.log.Warn("push: cannot make the WHIP session; retrying", "bus", p.b.name, "error", err, "attempt", fails,
			"retry_in", d.Round(time.Millisecond).String())
		if !sleep(ctx, d) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dial makes a WHIP session and starts sending on it: the bridge's track
// on a sendonly transceiver, the offer POSTed within 15 s.
func (p *pusher) dial(ctx context.Context) (*pushSession, error) {
	b := p.b
	now := time.Now()
	s := &pushSession{whepSession: &whepSession{id: rtc.NewSessionID(), remote: p.o.URL, created: now, rateAt: now}, why: make(chan string, 1)}
	peer, err := rtc.NewSendPeer(b.cfg, rtc.PeerOptions{
		OnEstimator: func(e cc.BandwidthEstimator) { s.estimator.Store(&e) },
		OnConnected: func() { b.keyWanted.Store(true) },
		OnEnd: func(why string) {
			select {
			case s.why <- why:
			default:
			}
			b.forget(s.whepSession, why)
		},
	})
	if err != nil {
		return nil, err
	}
	s.peer = peer
	var seq [6]byte
	rand.Read(seq[:])
	s.track = rtc.NewVideoTrack("video", "framebus-"+b.name, uint16(seq[0])<<8|uint16(seq[1]),
		uint32(seq[2])<<24|uint32(seq[3])<<16|uint32(seq[4])<<8|uint32(seq[5]))
	if s.sender, err = peer.AddSendTrack(s.track); err != nil {
		peer.Close("no track")
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	s.sess, err = rtc.DialWHIP(dctx, p.o.URL, p.o.Token, peer)
	cancel()
	if err != nil {
		return nil, err
	}
	if prm := s.sender.GetParameters(); len(prm.Encodings) > 0 {
		s.ssrc = uint32(prm.Encodings[0].SSRC)
	}
	sctx, scancel := context.WithCancel(b.ctx)
	s.cancel = scancel
	if err := b.admit(s.whepSession); err != nil {
		scancel()
		s.sess.Close()
		return nil, err
	}
	b.start(s.whepSession, sctx)
	n := p.sessions.Add(1)
	p.log.Info("push: WHIP session made", "bus", b.name, "url", p.o.URL, "location", s.sess.Location(), "session", n)
	return s, nil
}

// watch waits for the session's end (or ctx's), and restarts ICE in place
// when the connection is disconnected and the server takes a PATCH.
func (p *pusher) watch(ctx context.Context, s *pushSession) string {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	tried, up := false, false
	for {
		select {
		case <-ctx.Done():
			return "stopped"
		case why := <-s.why:
			return why
		case <-t.C:
		}
		switch s.peer.State() {
		case webrtc.PeerConnectionStateConnected:
			if !up {
				up = true
				p.log.Info("push: connected", "bus", p.b.name, "url", p.o.URL)
			}
			tried = false
		case webrtc.PeerConnectionStateDisconnected:
			if tried {
				continue
			}
			tried = true
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.sess.RestartICE(rctx)
			cancel()
			if err != nil {
				p.log.Info("push: the connection is disconnected and ICE was not restarted; a new session", "bus", p.b.name, "error", err)
				return "disconnected (" + err.Error() + ")"
			}
			p.log.Info("push: disconnected; ICE restarted by PATCH", "bus", p.b.name)
		}
	}
}

// progress logs the push's numbers every progressEvery until done closes.
func (p *pusher) progress(done <-chan struct{}) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	var lastSent uint64
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		st := p.Status()
		args := []any{"bus", p.b.name, "state", st.State, "sessions", st.Sessions, "reconnects", st.Reconnects,
			"failures", st.Failures, "target_bitrate", st.WebRTC.TargetBitrate, "frames_encoded", st.WebRTC.FramesEncoded}
		if len(st.WebRTC.Sessions) > 0 {
			v := st.WebRTC.Sessions[0]
			fps := 0.0
			if v.FramesSent >= lastSent {
				fps = float64(v.FramesSent-lastSent) / time.Since(last).Seconds()
			}
			lastSent = v.FramesSent
			args = append(args, "fps", f1(fps), "sent_bitrate", v.Bitrate, "frames_sent", v.FramesSent, "rtt_ms", f1(v.RTTMS),
				"loss", f1(100*v.Loss)+"%", "key_requests", v.KeyRequests, "nacks", v.NACKs)
		} else {
			lastSent = 0
		}
		last = time.Now()
		p.log.Info("push progress", args...)
	}
}
