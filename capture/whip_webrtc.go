//go:build framebus_webrtc && cgo

package capture

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
	"github.com/framebus/framebus/internal/vpx"
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

	dec     *vpx.Decoder
	waitKey bool
	from    *whipSession // the session of the frames being decoded
	skipped uint64
	decoded uint64
	stamped bool
}

type whipSession struct {
	id        string
	pc        *webrtc.PeerConnection
	recv      chan *rtc.Receiver
	done      chan struct{}
	once      sync.Once
	connected atomic.Bool // ICE and DTLS succeeded once
}

// whipConnectTimeout is how long a session answered 201 may take to
// connect before it gives the publisher's place up. ICE over a LAN or a
// TURN relay connects within a few seconds of the answer; 10 s is the time
// rtc.Config gives a connected peer gone silent (FailedTimeout's default)
// before it is called failed, so that a publisher that never connects is
// treated no more patiently than one that went away.
const whipConnectTimeout = 10 * time.Second

// whipOfferUnusable says why an offer can never send this server a
// picture ("" when it can): it needs a video m-line that is not rejected
// (port 0) or inactive, that the publisher sends on (sendonly or sendrecv,
// the default), with VP8.
func whipOfferUnusable(offer string) string {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return "bad SDP offer: " + err.Error()
	}
	sessionDir := "sendrecv"
	for _, a := range d.Attributes {
		if isDirection(a.Key) {
			sessionDir = a.Key
		}
	}
	video, sending := false, false
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "video" {
			continue
		}
		video = true
		dir := sessionDir
		vp8 := false
		for _, a := range m.Attributes {
			switch {
			case isDirection(a.Key):
				dir = a.Key
			case a.Key == "rtpmap" && strings.Contains(strings.ToUpper(a.Value), "VP8/90000"):
				vp8 = true
			}
		}
		if m.MediaName.Port.Value != 0 && (dir == "sendonly" || dir == "sendrecv") {
			sending = true
			if vp8 {
				return ""
			}
		}
	}
	switch {
	case !video:
		return "the offer has no video m-line: this server takes one VP8 video track that the publisher sends"
	case !sending:
		return "the offer's video is not sent by the publisher (recvonly, inactive or rejected): a WHIP offer must send its video (sendonly)"
	}
	return "the offer does not send VP8 video (this server takes one VP8 video track)"
}

func isDirection(k string) bool {
	return k == "sendonly" || k == "recvonly" || k == "sendrecv" || k == "inactive"
}

func (s *whipSession) end() {
	s.once.Do(func() {
		close(s.done)
		s.pc.Close()
	})
}

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
	pf := c.PixelFormat
	if pf == 0 {
		pf = framebus.FormatI420
	}
	if !CanConvert(pf) {
		return nil, &ConfigError{Source: name, Err: fmt.Errorf("pixel format %v: the decoded frames can be RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", pf)}
	}
	if c.Width%2 != 0 || c.Height%2 != 0 {
		return nil, &ConfigError{Source: name, Err: fmt.Errorf("size %dx%d: VP8 pictures here have even sizes", c.Width, c.Height)}
	}
	num, den, err := checkFPS(c.FPS)
	if err != nil {
		return nil, &ConfigError{Source: name, Err: err}
	}
	f, err := framebus.Format{Width: c.Width, Height: c.Height, PixelFormat: pf, FPSNum: num, FPSDen: den}.Complete()
	if err == nil && f.FrameSize > uint64(maxInt) {
		err = fmt.Errorf("frame of %d bytes is too large", f.FrameSize)
	}
	if err != nil {
		return nil, &ConfigError{Source: name, Err: err}
	}
	if err := rc.Check(); err != nil {
		return nil, &ConfigError{Source: name, Err: err}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &UnavailableError{Source: name, Msg: "whip: " + err.Error(), Err: err}
	}
	dec, err := vpx.NewDecoder(1)
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

func (s *WHIPSource) post(w http.ResponseWriter, r *http.Request) {
	offer, ok := s.readOffer(w, r)
	if !ok {
		return
	}
	ses, code, msg := s.answer(offer)
	if ses == nil {
		http.Error(w, msg, code)
		return
	}
	s.mu.Lock()
	if s.cur != nil || s.closed {
		s.mu.Unlock()
		ses.pc.Close()
		http.Error(w, "a publisher is connected already: one at a time", http.StatusConflict)
		return
	}
	s.cur = ses
	close(s.change)
	s.change = make(chan struct{})
	s.mu.Unlock()
	// A publisher that never connects (its ICE never succeeds: it went
	// away after the answer, or no path reaches it) gives its place up.
	t := time.AfterFunc(whipConnectTimeout, func() {
		if !ses.connected.Load() {
			s.drop(ses)
		}
	})
	go func() { <-ses.done; t.Stop() }()
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whip/"+ses.id)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, ses.pc.LocalDescription().SDP)
}

// readOffer reads the SDP offer of a POST, or answers why not (false).
func (s *WHIPSource) readOffer(w http.ResponseWriter, r *http.Request) (string, bool) {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), "application/sdp") {
		http.Error(w, "the body must be application/sdp (Content-Type)", http.StatusUnsupportedMediaType)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		http.Error(w, "the offer is unreadable or over 64 KiB", http.StatusRequestEntityTooLarge)
		return "", false
	}
	s.mu.Lock()
	busy := s.cur != nil
	s.mu.Unlock()
	if busy {
		http.Error(w, "a publisher is connected already: one at a time", http.StatusConflict)
		return "", false
	}
	// An offer that can never send us a picture must not take the one
	// publisher's place (the answer would be 201, the session would wait
	// for video that never comes, and the real publisher would get 409).
	if why := whipOfferUnusable(string(body)); why != "" {
		http.Error(w, why, http.StatusBadRequest)
		return "", false
	}
	return string(body), true
}

// answer makes the session of an offer, its answer set and its ICE
// candidates gathered (5 s at most); or nil, the HTTP status and why.
func (s *WHIPSource) answer(offer string) (*whipSession, int, string) {
	api, err := rtc.NewRecvAPI(s.rc)
	if err != nil {
		return nil, http.StatusInternalServerError, "WebRTC: " + err.Error()
	}
	pc, err := api.NewPeerConnection(s.rc.ICEConfig())
	if err != nil {
		return nil, http.StatusInternalServerError, "WebRTC: " + err.Error()
	}
	var id [12]byte
	rand.Read(id[:])
	ses := &whipSession{id: hex.EncodeToString(id[:]), pc: pc, recv: make(chan *rtc.Receiver, 1), done: make(chan struct{})}
	pc.OnTrack(func(t *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
		if t.Kind() == webrtc.RTPCodecTypeVideo {
			select {
			case ses.recv <- rtc.NewReceiver(pc, t, rr):
			default:
			}
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ses.connected.Store(true)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.drop(ses)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		pc.Close()
		return nil, http.StatusBadRequest, "bad SDP offer: " + err.Error()
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil || !strings.Contains(answer.SDP, "VP8/90000") {
		pc.Close()
		return nil, http.StatusBadRequest, "the offer does not send VP8 video (this server takes one VP8 video track)"
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		pc.Close()
		return nil, http.StatusInternalServerError, "WebRTC: " + err.Error()
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	}
	return ses, 0, ""
}

func (s *WHIPSource) delete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ses := s.cur
	s.mu.Unlock()
	if ses == nil || ses.id != r.PathValue("id") {
		http.Error(w, "no such WHIP session", http.StatusNotFound)
		return
	}
	s.drop(ses)
	w.WriteHeader(http.StatusOK)
}

// drop ends a session; the next publisher may come.
func (s *WHIPSource) drop(ses *whipSession) {
	ses.end()
	s.mu.Lock()
	if s.cur == ses {
		s.cur = nil
		close(s.change)
		s.change = make(chan struct{})
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
		if ses == nil {
			select {
			case <-change:
				continue
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
		var r *rtc.Receiver
		select {
		case r = <-ses.recv:
			ses.recv <- r // kept for the next Read
		case <-ses.done:
			continue
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
		if s.from != ses { // a new publisher starts at a keyframe
			s.from, s.waitKey = ses, true
		}
		select {
		case fr, ok := <-r.Frames():
			if !ok {
				s.drop(ses)
				continue
			}
			if pic, ns, ok := s.decode(r, fr); ok {
				n, err := ConvertYCbCr(dst, s.f, pic, LimitedRange)
				if err != nil {
					return 0, 0, err
				}
				s.decoded++
				return n, ns, nil
			}
		case <-ses.done:
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}

func (s *WHIPSource) decode(r *rtc.Receiver, fr rtc.Frame) (*image.YCbCr, int64, bool) {
	if fr.Gap && !fr.Key {
		s.waitKey = true
	}
	if fr.Key && (fr.Width != int(s.f.Width) || fr.Height != int(s.f.Height)) {
		s.waitKey = true // not the bus's size: skipped until a keyframe that is
		s.skipped++
		return nil, 0, false
	}
	if s.waitKey && !fr.Key {
		s.skipped++
		r.RequestKeyFrame()
		return nil, 0, false
	}
	pic, corrupt, err := s.dec.Decode(fr.Data)
	if err != nil || corrupt || pic == nil {
		s.skipped++
		s.waitKey = true
		r.RequestKeyFrame()
		return nil, 0, false
	}
	s.waitKey = false
	s.stamped = fr.Stamped
	return pic, fr.CaptureNS, true
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
	return WHIPStats{Decoded: s.decoded, Skipped: s.skipped, Publishing: s.cur != nil, Stamped: s.stamped}
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
	close(s.change)
	s.change = make(chan struct{})
	s.mu.Unlock()
	if ses != nil {
		ses.end()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	s.srv.Shutdown(ctx)
	cancel()
	s.dec.Close()
	return nil
}
