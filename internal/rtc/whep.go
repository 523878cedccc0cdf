package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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

// Session is a client's session with a server: a Peer whose offer was
// POSTed to the server's URL, and the session's resource there, which Close
// DELETEs. DialWHEP makes a receiving one; a WHIP client (framebus push)
// would make a sending Peer with its track and dial it the same way.
type Session struct {
	peer     *Peer
	url      string
	location string // the session's resource, for DELETE
	client   *http.Client
}

// DialWHEP opens a WHEP session with the server at rawURL: it offers to
// receive one video track (VP8), POSTs the offer with every candidate
// (no trickle) and applies the answer. ctx bounds the exchange.
func DialWHEP(ctx context.Context, rawURL string, c Config) (*Session, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &WHEPError{URL: rawURL, Msg: "want an http:// or https:// URL"}
	}
	p, err := NewRecvPeer(c, PeerOptions{})
	if err != nil {
		return nil, err
	}
	if _, err := p.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		p.Close("no transceiver")
		return nil, err
	}
	return dial(ctx, rawURL, p)
}

// dial is the client's side of the exchange over HTTP: the peer's offer
// POSTed to rawURL, the answer applied, the session's Location kept.
func dial(ctx context.Context, rawURL string, p *Peer) (*Session, error) {
	s := &Session{peer: p, url: rawURL, client: &http.Client{Timeout: 15 * time.Second}}
	fail := func(err error) (*Session, error) {
		p.Close("the exchange failed")
		return nil, err
	}
	offer, err := p.Offer(ctx)
	if err != nil {
		return fail(err)
	}
	answer, err := s.post(ctx, offer)
	if err != nil {
		return fail(err)
	}
	if err := p.Accept(answer); err != nil {
		s.Close()
		return nil, &WHEPError{URL: rawURL, Msg: "bad answer: " + err.Error()}
	}
	return s, nil
}

// post sends the offer and returns the answer; it keeps the Location.
func (s *Session) post(ctx context.Context, offer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(offer))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", &WHEPError{URL: s.url, Msg: err.Error()}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSDP+1))
	resp.Body.Close()
	if err != nil {
		return "", &WHEPError{URL: s.url, Msg: "reading the answer: " + err.Error()}
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", &WHEPError{URL: s.url, Status: resp.StatusCode, Msg: strings.TrimSpace(string(body))}
	}
	if len(body) > maxSDP {
		return "", &WHEPError{URL: s.url, Msg: "answer over 64 KiB"}
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if l, err := resp.Request.URL.Parse(loc); err == nil {
			s.location = l.String()
		}
	}
	return string(body), nil
}

// Receiver waits for the session's video track.
func (s *Session) Receiver(ctx context.Context) (*Receiver, error) {
	r, err := s.peer.Receiver(ctx)
	if errors.Is(err, ErrEnded) {
		return nil, &WHEPError{URL: s.url, Msg: "the connection " + s.peer.State().String() + " before any video came"}
	}
	return r, err
}

// Ended is closed when the connection failed or closed.
func (s *Session) Ended() <-chan struct{} { return s.peer.Ended() }

// State is the connection's state (the one it ended in, once ended).
func (s *Session) State() webrtc.PeerConnectionState { return s.peer.State() }

// PeerConnection is the session's connection (its statistics).
func (s *Session) PeerConnection() *webrtc.PeerConnection { return s.peer.pc }

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
	s.peer.Close("closed by this end")
	return nil
}
