//go:build framebus_webrtc && cgo

package capture

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
)

//go:embed whip.html
var whipPage string

func init() {
	Register("whip", func(c Config) (Source, error) {
		s, err := OpenWHIP(c, rtc.Config{})
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// WHIPSource is whip:LISTEN: a WHIP server (RFC 9725) on LISTEN that a
// browser or any WHIP client sending VP8 pushes a camera to. GET / is a page
// that publishes the browser's camera; POST /whip takes an offer (201, the
// answer, the session's Location); DELETE the Location ends the session.
// One publisher at a time (another is answered 409); an offer that cannot
// send VP8 video is answered 400 and takes no place, and a session that
// does not connect within whipConnectTimeout gives its place up.
//
// The bus's size is the configuration's (--size, 1280x720 by default), asked
// of the publisher's camera by the page; frames of another size are skipped
// (Stats). The rate is --fps. Read waits for a publisher and, when one
// leaves, for the next. Capture times come from abs-capture-time when the
// publisher sends it (the page asks for it), else they are arrival times.
type WHIPSource struct {
	f    framebus.Format
	size int
	rc   rtc.Config
	srv  *http.Server
	ln   net.Listener
	addr string

	mu     sync.Mutex
	cur    *whipSession
	change chan struct{} // closed and replaced when cur changes
	closed bool

	dec  *vp8Decoder
	from *whipSession // the session of the frames being decoded
}

// whipSession is the publisher's session: a receiving peer and its name.
type whipSession struct {
	id   string
	peer *rtc.Peer
}

// whipConnectTimeout is how long a session answered 201 may take to
// connect before it gives the publisher's place up. ICE over a LAN or a
// TURN relay connects within a few seconds of the answer; 10 s is the time
// rtc.Config gives a connected peer gone silent (FailedTimeout's default)
// before it is called failed, so that a publisher that never connects is
// treated no more patiently than one that went away.
const whipConnectTimeout = 10 * time.Second

// OpenWHIP listens on c.Arg (HOST:PORT, :PORT or PORT; a bare port binds
// 127.0.0.1).
func OpenWHIP(c Config, rc rtc.Config) (*WHIPSource, error) {
	const name = "whip"
	addr := c.Arg
	if addr == "" {
		return nil, &ConfigError{Source: name, Err: errors.New("want whip:LISTEN, e.g. whip::8090 or whip:0.0.0.0:8090")}
	}
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		addr = "127.0.0.1:" + addr
	} else if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	pf, err := decodedFormat(name, c)
	if err != nil {
		return nil, err
	}
	if c.Width%2 != 0 || c.Height%2 != 0 {
		return nil, &ConfigError{Source: name, Err: fmt.Errorf("size %dx%d: VP8 pictures here have even sizes", c.Width, c.Height)}
	}
	num, den, err := checkFPS(c.FPS)
	if err != nil {
		return nil, &ConfigError{Source: name, Err: err}
	}
	f, err := completeFormat(name, framebus.Format{Width: c.Width, Height: c.Height, PixelFormat: pf, FPSNum: num, FPSDen: den})
	if err != nil {
		return nil, err
	}
	if err := rc.Check(); err != nil {
		return nil, &ConfigError{Source: name, Err: err}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &UnavailableError{Source: name, Msg: "whip: " + err.Error(), Err: err}
	}
	dec, err := newVP8Decoder()
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &WHIPSource{f: f, size: int(f.FrameSize), rc: rc, ln: ln, addr: ln.Addr().String(), change: make(chan struct{}), dec: dec}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("POST /whip", s.post)
	mux.HandleFunc("DELETE /whip/{id}", s.delete)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// Addr is the address the server listens on.
func (s *WHIPSource) Addr() string { return s.addr }

func (s *WHIPSource) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	page := strings.NewReplacer("{{WIDTH}}", strconv.Itoa(int(s.f.Width)), "{{HEIGHT}}", strconv.Itoa(int(s.f.Height)),
		"{{FPS}}", strconv.FormatFloat(max(1, float64(s.f.FPSNum)/float64(max(1, s.f.FPSDen))), 'f', -1, 64)).Replace(whipPage)
	io.WriteString(w, page)
}

// post makes the publisher's session from an offer.
func (s *WHIPSource) post(w http.ResponseWriter, r *http.Request) {
	offer, ok := rtc.ReadSDP(w, r, "application/sdp")
	if !ok {
		return
	}
	s.mu.Lock()
	busy := s.cur != nil
	s.mu.Unlock()
	if busy {
		http.Error(w, "a publisher is connected already: one at a time", http.StatusConflict)
		return
	}
	// An offer that can never send us a picture must not take the one
	// publisher's place (the answer would be 201, the session would wait
	// for video that never comes, and the real publisher would get 409).
	if why := rtc.CannotSendVideo(offer); why != "" {
		http.Error(w, why, http.StatusBadRequest)
		return
	}
	ses := &whipSession{id: rtc.NewSessionID()}
	p, err := rtc.NewRecvPeer(s.rc, rtc.PeerOptions{OnEnd: func(string) { s.forget(ses) }})
	if err != nil {
		rtc.AnswerError(w, r, err)
		return
	}
	ses.peer = p
	answer, err := p.Answer(r.Context(), offer)
	if err != nil {
		p.Close("not answered")
		rtc.AnswerError(w, r, err)
		return
	}
	if !s.take(ses) {
		p.Close("another publisher came first")
		http.Error(w, "a publisher is connected already: one at a time", http.StatusConflict)
		return
	}
	// A publisher that never connects (its ICE never succeeds: it went
	// away after the answer, or no path reaches it) gives its place up.
	p.EndUnlessConnected(whipConnectTimeout)
	rtc.WriteAnswer(w, "/whip/"+ses.id, answer)
}

// take makes ses the publisher's session, unless there is one (or the
// source is closed, or ses has ended already).
func (s *WHIPSource) take(ses *whipSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-ses.peer.Ended():
		return false
	default:
	}
	if s.cur != nil || s.closed {
		return false
	}
	s.cur = ses
	s.changed()
	return true
}

// changed wakes Read: cur changed (under mu).
func (s *WHIPSource) changed() {
	close(s.change)
	s.change = make(chan struct{})
}

func (s *WHIPSource) delete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ses := s.cur
	s.mu.Unlock()
	if ses == nil || ses.id != r.PathValue("id") {
		http.Error(w, "no such WHIP session", http.StatusNotFound)
		return
	}
	ses.peer.Close("deleted by the publisher")
	w.WriteHeader(http.StatusOK)
}

// forget lets the next publisher come once ses ended (its peer's OnEnd).
func (s *WHIPSource) forget(ses *whipSession) {
	s.mu.Lock()
	if s.cur == ses {
		s.cur = nil
		s.changed()
	}
	s.mu.Unlock()
}

// Format is the bus's format.
func (s *WHIPSource) Format() framebus.Format { return s.f }

// Read waits for the next frame of a publisher that decodes at the bus's
// size and converts it into dst.
func (s *WHIPSource) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if len(dst) < s.size {
		return 0, 0, fmt.Errorf("capture: whip: buffer of %d bytes for a frame of %d", len(dst), s.size)
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, 0, ErrClosed
		}
		ses, change := s.cur, s.change
		s.mu.Unlock()
		var r *rtc.Receiver
		var err error
		if ses != nil {
			r, err = ses.peer.Receiver(ctx)
		}
		if ses == nil || errors.Is(err, rtc.ErrEnded) { // the next publisher
			select {
			case <-change:
				continue
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
		if err != nil {
			return 0, 0, err
		}
		if s.from != ses { // a new publisher starts at a keyframe
			s.from, s.dec.waitKey = ses, true
		}
		select {
		case fr, ok := <-r.Frames():
			if !ok {
				ses.peer.Close("the publisher's track ended")
				continue
			}
			if pic, ok, _ := s.dec.decode(fr, r, image.Pt(int(s.f.Width), int(s.f.Height)), sizeSkipped); ok {
				n, err := s.dec.deliver(dst, s.f, pic)
				return n, fr.CaptureNS, err
			}
		case <-ses.peer.Ended():
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}

// WHIPStats counts what the source did.
type WHIPStats struct {
	Decoded, Skipped uint64
	Publishing       bool
	Stamped          bool // the last frame's capture time came from the publisher
}

// Stats returns the counters. Not safe while Read runs.
func (s *WHIPSource) Stats() WHIPStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return WHIPStats{Decoded: s.dec.decoded, Skipped: s.dec.skipped, Publishing: s.cur != nil, Stamped: s.dec.stamped}
}

// Close ends the publisher's session and the server.
func (s *WHIPSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ses := s.cur
	s.changed()
	s.mu.Unlock()
	if ses != nil {
		ses.peer.Close("the capture stops")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	s.srv.Shutdown(ctx)
	cancel()
	s.dec.close()
	return nil
}
