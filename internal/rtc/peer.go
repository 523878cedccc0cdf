package rtc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"
)

// ErrEnded is returned by Receiver once the peer has ended.
var ErrEnded = errors.New("the peer connection ended")

// OfferError is an offer refused for what it says (an HTTP 400).
type OfferError struct{ Msg string }

func (e *OfferError) Error() string { return e.Msg }

// Peer is one peer connection carrying one VP8 video track, and its life:
// what every session here is made of, whichever side drives it. A server
// (the WHEP server in viewer/, the whip: source) answers the remote offer
// with Answer; a client (the whep: source's Session, and a WHIP client that
// pushes a bus) makes the offer with Offer and applies the answer with
// Accept. Both then talk HTTP (server.go, whep.go); the peer knows nothing
// of it.
//
// A sending peer (NewSendPeer) carries the track given to AddTrack; a
// receiving one (NewRecvPeer) hands out the first remote video track's
// Receiver. The peer ends once: Close, a connection that failed (ICE gave
// up: Config's timeouts) or closed, or none within the time given to
// EndUnlessConnected. Ended is closed then, PeerOptions.OnEnd is told why,
// and the connection is closed.
type Peer struct {
	pc     *webrtc.PeerConnection
	o      PeerOptions
	sends  bool
	sender *webrtc.RTPSender // a sending peer's track, once added

	gotTrack  chan struct{} // closed when rcv is set
	rcv       *Receiver
	trackOnce sync.Once

	ended     chan struct{}
	endOnce   sync.Once
	connected atomic.Bool
	state     guarded[webrtc.PeerConnectionState] // frozen once ended
}

// PeerOptions are what the driver of a peer is told; nil funcs are not called.
type PeerOptions struct {
	// OnConnected is called each time the connection becomes connected
	// (ICE and DTLS done; again after a disconnection).
	OnConnected func()
	// OnEnd is called once, when the peer ends, before the connection
	// closes.
	OnEnd func(why string)
	// OnEstimator receives a sending peer's congestion controller, while
	// NewSendPeer runs.
	OnEstimator func(cc.BandwidthEstimator)
}

type guarded[T any] struct {
	mu sync.Mutex
	v  T
}

func (a *guarded[T]) Load() T   { a.mu.Lock(); defer a.mu.Unlock(); return a.v }
func (a *guarded[T]) Store(v T) { a.mu.Lock(); a.v = v; a.mu.Unlock() }

// NewSendPeer makes a peer that sends one VP8 track (AddTrack), with its
// own congestion controller (NewSendAPI).
func NewSendPeer(c Config, o PeerOptions) (*Peer, error) {
	api, err := NewSendAPI(c, o.OnEstimator)
	if err != nil {
		return nil, err
	}
	return newPeer(api, c, o, true)
}

// NewRecvPeer makes a peer that receives one VP8 track (Receiver).
func NewRecvPeer(c Config, o PeerOptions) (*Peer, error) {
	api, err := NewRecvAPI(c)
	if err != nil {
		return nil, err
	}
	return newPeer(api, c, o, false)
}

func newPeer(api *webrtc.API, c Config, o PeerOptions, sends bool) (*Peer, error) {
	pc, err := api.NewPeerConnection(c.ICEConfig())
	if err != nil {
		return nil, err
	}
	p := &Peer{pc: pc, o: o, sends: sends, gotTrack: make(chan struct{}), ended: make(chan struct{})}
	if !sends {
		pc.OnTrack(p.onTrack)
	}
	pc.OnConnectionStateChange(p.onState)
	return p, nil
}

func (p *Peer) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	if t.Kind() != webrtc.RTPCodecTypeVideo {
		return
	}
	p.trackOnce.Do(func() { // a second video track: not ours to read
		p.rcv = NewReceiver(p.pc, t, r)
		close(p.gotTrack)
	})
}

func (p *Peer) onState(st webrtc.PeerConnectionState) {
	select {
	case <-p.ended: // keep the state it ended in (failed, say), not the close's
		return
	default:
	}
	p.state.Store(st)
	switch st {
	case webrtc.PeerConnectionStateConnected:
		p.connected.Store(true)
		if p.o.OnConnected != nil {
			p.o.OnConnected()
		}
	case webrtc.PeerConnectionStateFailed:
		go p.end("the connection failed (the other end is gone)")
	case webrtc.PeerConnectionStateClosed:
		go p.end("the connection closed")
	}
}

// end ends the peer once: Ended, then OnEnd, then the connection.
func (p *Peer) end(why string) {
	p.endOnce.Do(func() {
		close(p.ended)
		if p.o.OnEnd != nil {
			p.o.OnEnd(why)
		}
		p.pc.Close()
	})
}

// Close ends the peer (why goes to OnEnd) and closes its connection.
func (p *Peer) Close(why string) { p.end(why) }

// Ended is closed when the peer has ended.
func (p *Peer) Ended() <-chan struct{} { return p.ended }

// State is the connection's state; once the peer ended, the state it ended in.
func (p *Peer) State() webrtc.PeerConnectionState { return p.state.Load() }

// Connected says whether the connection was ever connected.
func (p *Peer) Connected() bool { return p.connected.Load() }

// EndUnlessConnected ends the peer if it has not connected within d: an
// answer nobody takes up (the other end went away, or no path reaches it)
// gives its place up.
func (p *Peer) EndUnlessConnected(d time.Duration) {
	t := time.AfterFunc(d, func() {
		if !p.connected.Load() {
			p.end(fmt.Sprintf("not connected within %v", d))
		}
	})
	go func() { <-p.ended; t.Stop() }()
}

// AddTrack adds the track a sending peer sends.
func (p *Peer) AddTrack(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	s, err := p.pc.AddTrack(t)
	if err == nil {
		p.sender = s
	}
	return s, err
}

// Receiver waits for a receiving peer's video track: ErrEnded when the peer
// ended before it came.
func (p *Peer) Receiver(ctx context.Context) (*Receiver, error) {
	select {
	case <-p.gotTrack:
		return p.rcv, nil
	default:
	}
	select {
	case <-p.gotTrack:
		return p.rcv, nil
	case <-p.ended:
		return nil, ErrEnded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answerWait bounds a server's wait for its candidates: past it, the
// answer holds those gathered.
const answerWait = 5 * time.Second

// Answer is a server's side of the exchange: it applies the remote offer
// and returns the answer with every candidate gathered (within 5 s), once
// it is sure the answer carries VP8 video this way (the peer's direction).
// An *OfferError is the offer's fault; ctx is the request's.
func (p *Peer) Answer(ctx context.Context, offer string) (string, error) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", &OfferError{"bad SDP offer: " + err.Error()}
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", &OfferError{"cannot answer this offer: " + err.Error()}
	}
	if !strings.Contains(answer.SDP, "VP8/90000") || (p.sends && !p.sendsVideo()) {
		if p.sends {
			return "", &OfferError{"the offer does not receive VP8 video (this endpoint sends one VP8 video track)"}
		}
		return "", &OfferError{"the offer does not send VP8 video (this server takes one VP8 video track)"}
	}
	if err := p.setLocal(ctx, answer, answerWait); err != nil {
		return "", err
	}
	return p.pc.LocalDescription().SDP, nil
}

// sendsVideo says whether the sending track's transceiver is part of the
// answer, sending.
func (p *Peer) sendsVideo() bool {
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() == p.sender {
			d := t.Direction()
			return t.Mid() != "" && (d == webrtc.RTPTransceiverDirectionSendonly || d == webrtc.RTPTransceiverDirectionSendrecv)
		}
	}
	return false
}

// Offer is a client's side: the offer with every candidate gathered (no
// trickle), within ctx.
func (p *Peer) Offer(ctx context.Context) (string, error) {
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	if err := p.setLocal(ctx, offer, 0); err != nil {
		return "", err
	}
	return p.pc.LocalDescription().SDP, nil
}

// Accept applies the server's answer to Offer.
func (p *Peer) Accept(answer string) error {
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// setLocal applies our description and waits for ICE to gather the
// candidates: until ctx ends, or for at most wait (0: no bound).
func (p *Peer) setLocal(ctx context.Context, d webrtc.SessionDescription, wait time.Duration) error {
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(d); err != nil {
		return err
	}
	var timeout <-chan time.Time
	if wait > 0 {
		timeout = time.After(wait)
	}
	select {
	case <-gathered:
	case <-timeout: // with what was gathered
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// AddCandidates takes trickled candidates (an RFC 8840 SDP fragment: a=mid
// lines name the m-line of the a=candidate lines after them).
func (p *Peer) AddCandidates(frag string) error {
	mid := ""
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")}
			if mid != "" {
				m := mid
				c.SDPMid = &m
			}
			if err := p.pc.AddICECandidate(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// PeerConnection is the peer's connection (its statistics).
func (p *Peer) PeerConnection() *webrtc.PeerConnection { return p.pc }

// AddSendTrack adds the track of a sending client (a WHIP push) on a
// sendonly transceiver: the offer says it sends and receives nothing.
func (p *Peer) AddSendTrack(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	tr, err := p.pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	p.sender = tr.Sender()
	return p.sender, nil
}
