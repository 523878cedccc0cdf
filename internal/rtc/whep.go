package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// ErrWHEP is wrapped by the errors of a WHEP exchange.
var ErrWHEP = errors.New("WHEP")

// WHEPError is a WHEP server's refusal or an exchange that went wrong.
type WHEPError struct {
	URL    string
	Status int    // the HTTP status, 0 if none
	Msg    string // the server's message, or what failed
}

func (e *WHEPError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("WHEP %s: %s: %s", e.URL, http.StatusText(e.Status), e.Msg)
	}
	return fmt.Sprintf("WHEP %s: %s", e.URL, e.Msg)
}
func (e *WHEPError) Unwrap() error { return ErrWHEP }

// Session is a WHEP session: one receiving peer connection and its video
// track.
type Session struct {
	pc       *webrtc.PeerConnection
	url      string
	location string // the session's resource, for DELETE
	client   *http.Client

	recv  chan *Receiver // the track's receiver, once
	ended chan struct{}  // the connection failed or closed
	once  sync.Once
	state guarded[webrtc.PeerConnectionState]
}

type guarded[T any] struct {
	mu sync.Mutex
	v  T
}

func (a *guarded[T]) Load() T   { a.mu.Lock(); defer a.mu.Unlock(); return a.v }
func (a *guarded[T]) Store(v T) { a.mu.Lock(); a.v = v; a.mu.Unlock() }

// maxSDP bounds an SDP body read from the network.
const maxSDP = 64 << 10

// DialWHEP opens a WHEP session with the server at rawURL: it offers to
// receive one video track (VP8), POSTs the offer with every candidate
// (no trickle) and applies the answer. ctx bounds the exchange.
func DialWHEP(ctx context.Context, rawURL string, c Config) (*Session, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &WHEPError{URL: rawURL, Msg: "want an http:// or https:// URL"}
	}
	api, err := NewRecvAPI(c)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(c.ICEConfig())
	if err != nil {
		return nil, err
	}
	s := &Session{pc: pc, url: rawURL, client: &http.Client{Timeout: 15 * time.Second},
		recv: make(chan *Receiver, 1), ended: make(chan struct{})}
	fail := func(err error) (*Session, error) {
		pc.Close()
		return nil, err
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fail(err)
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		if t.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		select {
		case s.recv <- NewReceiver(pc, t, r):
		default: // a second video track: not ours to read
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.state.Store(st)
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			s.once.Do(func() { close(s.ended) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := s.client.Do(req)
	if err != nil {
		return fail(&WHEPError{URL: rawURL, Msg: err.Error()})
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSDP+1))
	resp.Body.Close()
	if err != nil {
		return fail(&WHEPError{URL: rawURL, Msg: "reading the answer: " + err.Error()})
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fail(&WHEPError{URL: rawURL, Status: resp.StatusCode, Msg: strings.TrimSpace(string(body))})
	}
	if len(body) > maxSDP {
		return fail(&WHEPError{URL: rawURL, Msg: "answer over 64 KiB"})
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if l, err := resp.Request.URL.Parse(loc); err == nil {
			s.location = l.String()
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		s.Close()
		return nil, &WHEPError{URL: rawURL, Msg: "bad answer: " + err.Error()}
	}
	return s, nil
}

// Receiver waits for the session's video track.
func (s *Session) Receiver(ctx context.Context) (*Receiver, error) {
	select {
	case r := <-s.recv:
		return r, nil
	case <-s.ended:
		return nil, &WHEPError{URL: s.url, Msg: "the connection " + s.state.Load().String() + " before any video came"}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ended is closed when the connection failed or closed.
func (s *Session) Ended() <-chan struct{} { return s.ended }

// State is the connection's state.
func (s *Session) State() webrtc.PeerConnectionState { return s.state.Load() }

// PeerConnection is the session's connection (its statistics).
func (s *Session) PeerConnection() *webrtc.PeerConnection { return s.pc }

// Close ends the session: DELETE of its resource (best effort, 2 s), then
// the connection.
func (s *Session) Close() error {
	if s.location != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location, nil); err == nil {
			if resp, err := s.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		cancel()
		s.location = ""
	}
	return s.pc.Close()
}
