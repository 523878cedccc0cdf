//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/internal/rtc"
)

// whepSession is one viewer: a sending rtc.Peer with its VP8 track, fed by
// the bridge's Hub, and what its reports say. Its life: newSession answers
// the offer, admit counts it in (or refuses it, over MaxViewers), start
// sends; it ends once (DELETE, ICE failure, not connected within
// ConnectTimeout, the preview stopping: rtc.Peer's end), and forget counts
// it out.
type whepSession struct {
	id, remote string
	created    time.Time
	peer       *rtc.Peer
	track      *rtc.VideoTrack
	sender     *webrtc.RTPSender
	ssrc       uint32
	estimator  atomic.Pointer[cc.BandwidthEstimator]
	cancel     context.CancelFunc // its sender's context

	sent, dropped, bytes, keyReqs, nacks atomic.Uint64

	mu        sync.Mutex
	rttMS     float64
	loss      float64
	lost      int64
	rateBytes uint64
	rateAt    time.Time
	bitrate   int
}

// newSession makes a viewer's session from its offer and answers it; the
// session is not counted in yet.
func (b *webrtcBridge) newSession(ctx context.Context, remote, offer string) (*whepSession, string, error) {
	now := time.Now()
	s := &whepSession{id: rtc.NewSessionID(), remote: remote, created: now, rateAt: now}
	p, err := rtc.NewSendPeer(b.cfg, rtc.PeerOptions{
		OnEstimator: func(e cc.BandwidthEstimator) { s.estimator.Store(&e) },
		OnConnected: func() { b.keyWanted.Store(true) }, // the viewer starts at a keyframe
		OnEnd:       func(why string) { b.forget(s, why) },
	})
	if err != nil {
		return nil, "", err
	}
	s.peer = p
	var seq [6]byte
	rand.Read(seq[:])
	s.track = rtc.NewVideoTrack("video", "framebus-"+b.name, uint16(seq[0])<<8|uint16(seq[1]),
		uint32(seq[2])<<24|uint32(seq[3])<<16|uint32(seq[4])<<8|uint32(seq[5]))
	if s.sender, err = p.AddTrack(s.track); err != nil {
		p.Close("no track")
		return nil, "", err
	}
	answer, err := p.Answer(ctx, offer)
	if err != nil {
		p.Close("not answered")
		return nil, "", err
	}
	if prm := s.sender.GetParameters(); len(prm.Encodings) > 0 {
		s.ssrc = uint32(prm.Encodings[0].SSRC)
	}
	return s, answer, nil
}

// errTooMany refuses a viewer over MaxViewers.
var errTooMany = errors.New("too many viewers")

// admit counts a new session in, unless MaxViewers are there already
// (errTooMany) or it ended meanwhile.
func (b *webrtcBridge) admit(s *whepSession) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sessions) >= b.wo.MaxViewers {
		b.refused++
		return errTooMany
	}
	select {
	case <-s.peer.Ended(): // before it was counted in: forget had nothing to do
		return errors.New("the connection ended before it was answered")
	default:
	}
	b.sessions[s.id] = s
	return nil
}

// start sends to an admitted session and reads its reports, until it ends.
func (b *webrtcBridge) start(s *whepSession, ctx context.Context) {
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		b.send(ctx, s)
	}()
	go func() {
		defer b.wg.Done()
		b.readRTCP(s)
	}()
	s.peer.EndUnlessConnected(b.wo.ConnectTimeout)
	b.poke()
	b.log.Info("WebRTC: viewer joined", "bus", b.name, "session", s.id, "remote", s.remote)
}

// forget counts an ended session out (its peer's OnEnd); the encoder stops
// with the last one.
func (b *webrtcBridge) forget(s *whepSession, why string) {
	b.mu.Lock()
	if b.sessions[s.id] != s { // never admitted
		b.mu.Unlock()
		return
	}
	delete(b.sessions, s.id)
	if len(b.sessions) == 0 && b.stopEnc != nil {
		b.stopEnc()
		b.stopEnc = nil
	}
	b.mu.Unlock()
	s.cancel()
	b.log.Info("WebRTC: viewer left", "bus", b.name, "session", s.id, "why", why, "frames_sent", s.sent.Load(),
		"frames_dropped", s.dropped.Load())
}

// send writes the newest encoded frame each time the previous one is out. A
// gap (the viewer was slower than the stream) waits for a keyframe.
func (b *webrtcBridge) send(ctx context.Context, s *whepSession) {
	rd := b.hub.Reader(ctx)
	defer rd.Close()
	var last uint64
	if p := b.hub.Latest(); p != nil { // start after the frame already there
		last = p.ID()
		b.hub.Release(p)
	}
	needKey := true
	for {
		p := rd.Next(last)
		if p == nil {
			return
		}
		if last != 0 && p.ID() > last+1 {
			s.dropped.Add(p.ID() - last - 1)
			needKey = true
		}
		last = p.ID()
		if !s.peer.Connected() {
			b.hub.Release(p)
			continue
		}
		if needKey && !p.Key {
			s.dropped.Add(1)
			b.keyWanted.Store(true)
			b.hub.Release(p)
			continue
		}
		n, err := s.track.WriteFrame(p.Data, p.CaptureNS)
		captureNS := p.CaptureNS
		b.hub.Release(p)
		if err != nil {
			if errors.Is(err, io.ErrClosedPipe) || ctx.Err() != nil {
				return
			}
			s.dropped.Add(1)
			needKey = true
			continue
		}
		needKey = false
		s.sent.Add(1)
		s.bytes.Add(uint64(n))
		b.sentFrame(captureNS)
	}
}

// readRTCP handles the viewer's reports: keyframe requests, loss and round
// trip time.
func (b *webrtcBridge) readRTCP(s *whepSession) {
	for {
		pkts, _, err := s.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.keyReqs.Add(1)
				b.keyWanted.Store(true)
			case *rtcp.TransportLayerNack:
				s.nacks.Add(uint64(len(p.Nacks)))
			case *rtcp.ReceiverReport:
				s.report(p.Reports)
			case *rtcp.SenderReport:
				s.report(p.Reports)
			}
		}
	}
}

// report takes the reception report of our stream.
func (s *whepSession) report(rs []rtcp.ReceptionReport) {
	for _, r := range rs {
		if s.ssrc != 0 && r.SSRC != s.ssrc {
			continue
		}
		s.mu.Lock()
		s.loss = float64(r.FractionLost) / 256
		s.lost = int64(r.TotalLost)
		if r.LastSenderReport != 0 {
			// RFC 3550 section 6.4.1: now - LSR - DLSR, in 1/65536 s.
			now := uint32(rtc.NTP(time.Now().UnixNano()) >> 16)
			if d := now - r.LastSenderReport - r.Delay; d < 1<<30 {
				s.rttMS = float64(d) * 1000 / 65536
			}
		}
		s.mu.Unlock()
	}
}
