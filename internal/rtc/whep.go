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

// WHEPError is a WHEP (or WHIP) server's refusal or an exchange that went
// wrong.
type WHEPError struct {
	Proto  string // "WHEP" or "WHIP" ("": WHEP)
	URL    string
	Status int    // the HTTP status, 0 if none
	Msg    string // the server's message, or what failed
}

func (e *WHEPError) Error() string {
	proto := e.Proto
	if proto == "" {
		proto = "WHEP"
	}
	if e.Status != 0 {
		return fmt.Sprintf("%s %s: %d %s: %s", proto, e.URL, e.Status, http.StatusText(e.Status), e.Msg)
	}
	return fmt.Sprintf("%s %s: %s", proto, e.URL, e.Msg)
}
func (e *WHEPError) Unwrap() error { return ErrWHEP }

// StatusOf is the HTTP status of a WHEP or WHIP server's refusal (0: none,
// the exchange failed otherwise).
func StatusOf(err error) int {
	var we *WHEPError
	if errors.As(err, &we) {
		return we.Status
	}
	return 0
}

// Session is a client's session with a server: a Peer whose offer was
// POSTed to the server's URL, and the session's resource there, which Close
// DELETEs. DialWHEP makes a receiving one; a WHIP client (framebus push)
// would make a sending Peer with its track and dial it the same way.
type Session struct {
	peer        *Peer
	proto       string // WHEP or WHIP, for errors
	url         string
	token       string // bearer token, "" for none
	location    string // the session's resource, for DELETE and PATCH
	acceptPatch string // the server's Accept-Patch ("": it did not say)
	etag        string
	client      *http.Client
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
	return dial(ctx, "WHEP", rawURL, "", p)
}

// DialWHIP opens a WHIP session (RFC 9725) with the server at rawURL for
// the sending peer p (its track added with AddSendTrack): the offer with
// every candidate (no trickle) POSTed with the bearer token when there is
// one, the answer applied. ctx bounds the exchange. On error p is closed.
// A refusal is a *WHEPError with the HTTP status (StatusOf).
func DialWHIP(ctx context.Context, rawURL, token string, p *Peer) (*Session, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Close("bad URL")
		return nil, &WHEPError{Proto: "WHIP", URL: rawURL, Msg: "want an http:// or https:// URL"}
	}
	return dial(ctx, "WHIP", rawURL, token, p)
}

// dial is the client's side of the exchange over HTTP: the peer's offer
// POSTed to rawURL, the answer applied, the session's Location kept.
func dial(ctx context.Context, proto, rawURL, token string, p *Peer) (*Session, error) {
	s := &Session{peer: p, proto: proto, url: rawURL, token: token, client: &http.Client{Timeout: 15 * time.Second}}
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
	if !strings.HasPrefix(strings.TrimSpace(answer), "v=0") {
		s.Close()
		return nil, &WHEPError{Proto: proto, URL: rawURL, Msg: fmt.Sprintf("the answer is not SDP (it starts %q)", head(answer))}
	}
	if err := p.Accept(answer); err != nil {
		s.Close()
		return nil, &WHEPError{Proto: proto, URL: rawURL, Msg: "bad SDP answer: " + err.Error()}
	}
	return s, nil
}

// head is the start of a body, for an error.
func head(b string) string {
	b = strings.TrimSpace(b)
	if len(b) > 40 {
		b = b[:40] + "..."
	}
	return b
}

// authorize sets the bearer token of the session's requests.
func (s *Session) authorize(req *http.Request) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
}

// post sends the offer and returns the answer; it keeps the Location.
func (s *Session) post(ctx context.Context, offer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(offer))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", &WHEPError{Proto: s.proto, URL: s.url, Msg: redactToken(err.Error(), s.token)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSDP+1))
	resp.Body.Close()
	if err != nil {
		return "", &WHEPError{Proto: s.proto, URL: s.url, Msg: "reading the answer: " + err.Error()}
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return "", &WHEPError{Proto: s.proto, URL: s.url, Status: resp.StatusCode, Msg: redactToken(msg, s.token)}
	}
	if len(body) > maxSDP {
		return "", &WHEPError{Proto: s.proto, URL: s.url, Msg: "answer over 64 KiB"}
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if l, err := resp.Request.URL.Parse(loc); err == nil {
			s.location = l.String()
		}
	}
	s.acceptPatch = resp.Header.Get("Accept-Patch")
	s.etag = resp.Header.Get("ETag")
	return string(body), nil
}

// redactToken hides the token in a message (a server that echoes it).
func redactToken(msg, token string) string {
	if token == "" {
		return msg
	}
	return strings.ReplaceAll(msg, token, "[token]")
}

// Location is the session's resource on the server ("" when it gave none).
func (s *Session) Location() string { return s.location }

// Receiver waits for the session's video track.
func (s *Session) Receiver(ctx context.Context) (*Receiver, error) {
	r, err := s.peer.Receiver(ctx)
	if errors.Is(err, ErrEnded) {
		return nil, &WHEPError{Proto: s.proto, URL: s.url, Msg: "the connection " + s.peer.State().String() + " before any video came"}
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
// the connection. The error is the DELETE's (nil: the server said 2xx, or
// there was no resource to delete).
func (s *Session) Close() error {
	var derr error
	if s.location != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location, nil); err == nil {
			s.authorize(req)
			if resp, err := s.client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					derr = &WHEPError{Proto: s.proto, URL: s.location, Status: resp.StatusCode, Msg: "DELETE refused"}
				}
			} else {
				derr = &WHEPError{Proto: s.proto, URL: s.location, Msg: "DELETE: " + redactToken(err.Error(), s.token)}
			}
		}
		cancel()
		s.location = ""
	}
	s.peer.Close("closed by this end")
	return derr
}

// ErrNoICERestart is returned by RestartICE when the server does not
// restart ICE by PATCH (no session URL, 405, 501, or an answer without new
// credentials): the caller makes a new session instead.
var ErrNoICERestart = errors.New("the server does not restart ICE (PATCH)")

// RestartICE restarts ICE in the session (RFC 9725 section 4.4.1): a new
// offer with new ICE credentials, its ufrag, pwd and candidates PATCHed to
// the session's URL (If-Match: "*"), and the server's new credentials and
// candidates (a 200 with an application/trickle-ice-sdpfrag body) applied
// to its answer. ErrNoICERestart (wrapped) when the server does not do it.
func (s *Session) RestartICE(ctx context.Context) error {
	if s.location == "" {
		return fmt.Errorf("%w: no session URL", ErrNoICERestart)
	}
	p := s.peer
	offer, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return err
	}
	if err := p.setLocal(ctx, offer, 5*time.Second); err != nil {
		return err
	}
	frag := iceFragment(p.pc.LocalDescription().SDP)
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.location, strings.NewReader(frag))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	req.Header.Set("If-Match", "*")
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return &WHEPError{Proto: s.proto, URL: s.location, Msg: "PATCH: " + redactToken(err.Error(), s.token)}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxSDP))
	resp.Body.Close()
	back := func(err error) error {
		// Back to the description the connection has, so that it may
		// still recover by itself; the caller makes a new session anyway.
		p.pc.SetRemoteDescription(*p.pc.RemoteDescription())
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return back(fmt.Errorf("%w: PATCH answered %d %s", ErrNoICERestart, resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	answer, ok := withICE(p.pc.RemoteDescription().SDP, string(body))
	if !ok {
		return back(fmt.Errorf("%w: the PATCH answer has no new ICE credentials", ErrNoICERestart))
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return &WHEPError{Proto: s.proto, URL: s.location, Msg: "the ICE restart's answer: " + err.Error()}
	}
	return nil
}

// iceFragment is the RFC 8840 fragment of an offer's ICE credentials and
// candidates: ufrag and pwd, then each m-line with its mid and candidates.
func iceFragment(offer string) string {
	var b, media strings.Builder
	ufrag, pwd := "", ""
	for _, line := range strings.Split(offer, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:") && ufrag == "":
			ufrag = line
		case strings.HasPrefix(line, "a=ice-pwd:") && pwd == "":
			pwd = line
		case strings.HasPrefix(line, "m="), strings.HasPrefix(line, "a=mid:"), strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
			media.WriteString(line + "\r\n")
		}
	}
	b.WriteString(ufrag + "\r\n" + pwd + "\r\n")
	b.WriteString(media.String())
	return b.String()
}

// withICE is the answer with the ICE credentials and candidates of frag in
// place of its own; false when frag has no ufrag and pwd.
func withICE(answer, frag string) (string, bool) {
	ufrag, pwd := "", ""
	var cands []string
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			ufrag = line
		case strings.HasPrefix(line, "a=ice-pwd:"):
			pwd = line
		case strings.HasPrefix(line, "a=candidate:"):
			cands = append(cands, line)
		}
	}
	if ufrag == "" || pwd == "" {
		return "", false
	}
	var out []string
	firstMedia := true
	for _, line := range strings.Split(answer, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			line = ufrag
		case strings.HasPrefix(line, "a=ice-pwd:"):
			line = pwd
		case strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
			continue
		}
		out = append(out, line)
		if strings.HasPrefix(line, "a=mid:") && firstMedia {
			out = append(out, cands...)
			firstMedia = false
		}
	}
	return strings.Join(out, "\r\n") + "\r\n", true
}
