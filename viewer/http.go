package viewer

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/metrics"
	"github.com/framebus/framebus/internal/report"
)

//go:embed page.html
var pageHTML []byte

// Status is what the web preview says about itself (/viewer.json) and what
// the window's overlay shows.
type Status struct {
	Bus        string `json:"bus"`
	State      string `json:"state"`             // "starting", "streaming", "waiting"
	Waiting    string `json:"waiting,omitempty"` // why, while waiting
	Generation uint64 `json:"generation"`
	Seq        uint64 `json:"seq"` // of the newest frame read
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	Format     string `json:"format"`

	FramesRead uint64 `json:"frames_read"` // frames the feed delivered
	Pictures   uint64 `json:"pictures"`    // frames converted and encoded (only while somebody watches)
	Dropped    uint64 `json:"dropped"`     // frames the bus had that the viewer skipped
	Discarded  uint64 `json:"discarded"`   // frames overwritten while being converted
	Clients    int    `json:"clients"`     // open /stream.mjpg connections

	Connections int    `json:"connections"` // open HTTP connections (at most Server.MaxConns)
	Refused     uint64 `json:"refused"`     // connections refused for being over MaxConns

	// ReadFPS is the frames read from the bus per second, over the last
	// second or so: real whether or not anybody watches. FPS and the
	// latencies are the MJPEG side's (/stream.mjpg, /frame.jpg): 0 while
	// nobody watches it (a page playing WebRTC), whose figures are
	// WebRTCFPS and webrtc.capture_to_sent_us. A rate is 0 until it has
	// a quarter of a second of events to go by.
	ReadFPS        float64 `json:"read_fps"`
	FPS            float64 `json:"fps"`               // JPEG pictures per second over the last second or so
	CaptureToPicUS float64 `json:"capture_to_pic_us"` // capture to encoded picture, the last one
	CaptureToSent  float64 `json:"capture_to_sent_us"`
	WebRTCFPS      float64 `json:"webrtc_fps"` // VP8 frames encoded per second, over the last second or so

	WebRTC *WebRTCStatus `json:"webrtc"` // the WHEP side (whep_stats.go)
}

// Server is the web preview's HTTP side: the page, the MJPEG stream, the
// newest frame as a JPEG, the bus's status (the JSON of 'framebus stat
// --json') and the viewer's own. Pictures come from a Hub that one encoder
// fills.
type Server struct {
	Name, Dir string
	Hub       *Hub

	// MaxConns bounds the connections open at a time (0: DefaultMaxConns);
	// IdleTimeout closes a keep-alive connection idle that long (0:
	// DefaultIdleTimeout). See limits.go.
	MaxConns    int
	IdleTimeout time.Duration
	ln          *limitListener

	// WebRTC serves /whep (whep_http_webrtc.go); nil: /whep answers 501 with
	// WebRTCOff, and the page shows the MJPEG stream.
	WebRTC    webrtcEndpoint
	WebRTCOff string

	mu       sync.Mutex
	st       Status
	prev     *framebus.Snapshot // the previous /stats snapshot, for the rate
	sent     latencyMeter       // capture to sent, stream parts
	sentLast float64
	rtc      counterRate // the WebRTC side's frames encoded, for WebRTCFPS
}

// NewServer makes the server of bus name.
func NewServer(name, dir string, hub *Hub) *Server {
	return &Server{Name: name, Dir: dir, Hub: hub, st: Status{Bus: name, State: "starting"}}
}

// SetStatus replaces the viewer's status (clients and the send latency are
// the server's own).
func (s *Server) SetStatus(st Status) {
	s.mu.Lock()
	clients, sent := s.st.Clients, s.st.CaptureToSent
	s.st = st
	s.st.Clients, s.st.CaptureToSent = clients, sent
	s.mu.Unlock()
}

// Status returns the viewer's status.
func (s *Server) Status() Status {
	s.mu.Lock()
	st := s.st
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		st.Connections, st.Refused = int(ln.open.Load()), ln.refused.Load()
	}
	st.WebRTC = s.webrtcStatus()
	s.mu.Lock()
	if st.WebRTC.Enabled && st.WebRTC.Encoding {
		st.WebRTCFPS = s.rtc.rate(time.Now(), st.WebRTC.FramesEncoded)
	} else {
		s.rtc = counterRate{} // nobody watches: start again when somebody does
	}
	s.mu.Unlock()
	return st
}

// SentLatency returns and resets the capture-to-sent latency of the stream
// parts written since the last call: count, mean and max.
func (s *Server) SentLatency() (n int, mean, maxi time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent.take()
}

func (s *Server) addClients(d int) {
	s.mu.Lock()
	s.st.Clients += d
	s.mu.Unlock()
}

func (s *Server) sentOne(captureNS int64) {
	lat := framebus.Now() - captureNS
	s.mu.Lock()
	s.sent.add(lat)
	s.st.CaptureToSent = float64(lat) / 1e3
	s.mu.Unlock()
}

// Handler serves /, /stream.mjpg, /frame.jpg, /stats, /viewer.json, /whep
// (whep_http.go) and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /stream.mjpg", s.stream)
	mux.HandleFunc("GET /frame.jpg", s.frame)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("GET /viewer.json", s.viewer)
	s.mountWHEP(mux)
	mux.Handle("GET /metrics", metrics.Handler(s.Dir)) // every bus of the directory, for Prometheus
	return mux
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(pageHTML)
}

const boundary = "framebusframe"

// partTimeout drops a client that takes longer than this to accept one
// picture (it holds that picture meanwhile, nothing more).
const partTimeout = 10 * time.Second

// stream sends the newest picture each time the client has taken the
// previous one: multipart/x-mixed-replace, which browsers show in an <img>.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "multipart/x-mixed-replace; boundary="+boundary)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	s.addClients(1)
	defer s.addClients(-1)
	var hdr []byte
	var last uint64
	rd := s.Hub.Reader(r.Context())
	defer rd.Close()
	for {
		p := rd.Next(last)
		if p == nil {
			return
		}
		last = p.ID()
		hdr = append(hdr[:0], "--"+boundary+"\r\nContent-Type: image/jpeg\r\nContent-Length: "...)
		hdr = strconv.AppendInt(hdr, int64(len(p.Data)), 10)
		hdr = appendPicHeaders(hdr, p)
		hdr = append(hdr, "\r\n"...)
		rc.SetWriteDeadline(time.Now().Add(partTimeout))
		_, err := w.Write(hdr)
		if err == nil {
			_, err = w.Write(p.Data)
		}
		if err == nil {
			_, err = w.Write(crlf)
		}
		if err == nil {
			err = rc.Flush()
		}
		captureNS := p.CaptureNS
		s.Hub.Release(p)
		if err != nil {
			return
		}
		s.sentOne(captureNS)
	}
}

var crlf = []byte("\r\n")

// appendPicHeaders appends the picture's own header lines (each ending in
// CRLF), after a first header line still open.
func appendPicHeaders(b []byte, p *Picture) []byte {
	b = append(b, "\r\nX-Frame-Seq: "...)
	b = strconv.AppendUint(b, p.Seq, 10)
	b = append(b, "\r\nX-Frame-Generation: "...)
	b = strconv.AppendUint(b, p.Generation, 10)
	b = append(b, "\r\nX-Capture-NS: "...)
	b = strconv.AppendInt(b, p.CaptureNS, 10)
	b = append(b, "\r\nX-Commit-NS: "...)
	b = strconv.AppendInt(b, p.CommitNS, 10)
	return append(b, "\r\n"...)
}

// frameWait is how long /frame.jpg waits for a picture newer than the last
// one made before it answers with that one.
const frameWait = 2 * time.Second

// frame answers with a fresh picture: the next one made (the encoder makes
// pictures only while somebody waits for one), or the last one when none
// comes within frameWait (the producer is gone), or 503 when there is none.
func (s *Server) frame(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if p := s.Hub.Latest(); p != nil {
		after = p.ID()
		s.Hub.Release(p)
	}
	ctx, cancel := context.WithTimeout(r.Context(), frameWait)
	rd := s.Hub.Reader(ctx)
	p := rd.Next(after)
	rd.Close()
	cancel()
	if p == nil {
		if r.Context().Err() != nil {
			return
		}
		p = s.Hub.Latest()
	}
	if p == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "waiting for the producer of bus "+s.Name, http.StatusServiceUnavailable)
		return
	}
	defer s.Hub.Release(p)
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(p.Data)))
	h.Set("X-Frame-Seq", strconv.FormatUint(p.Seq, 10))
	h.Set("X-Frame-Generation", strconv.FormatUint(p.Generation, 10))
	h.Set("X-Capture-NS", strconv.FormatInt(p.CaptureNS, 10))
	w.Write(p.Data)
}

// stats answers with what 'framebus stat NAME --json' prints (internal/report
// makes both), the publish rate measured since the previous request when that
// was at least half a second before, as 'stat --watch' does.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	snap, err := framebus.Inspect(s.Name, s.Dir)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, framebus.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeJSON(w, code, map[string]string{"name": s.Name, "error": report.Cause(err).Error()})
		return
	}
	s.mu.Lock()
	prev := s.prev
	if prev == nil || snap.NowNS-prev.NowNS >= int64(500*time.Millisecond) || prev.Header.Generation != snap.Header.Generation {
		s.prev = snap
	}
	s.mu.Unlock()
	if prev != nil && snap.NowNS-prev.NowNS < int64(500*time.Millisecond) {
		prev = nil
	}
	writeJSON(w, http.StatusOK, struct {
		*report.Status
		WebRTC *WebRTCStatus `json:"webrtc"`
	}{report.NewStatus(snap, prev), s.webrtcStatus()})
}

func (s *Server) viewer(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Status())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Serve serves the handler on ln until ctx ends, then shuts down (open
// streams end at once).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	maxConns, idle := s.MaxConns, s.IdleTimeout
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	ll := &limitListener{Listener: ln, max: int64(maxConns)}
	s.mu.Lock()
	s.ln = ll
	s.mu.Unlock()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: min(readHeaderTimeout, idle), IdleTimeout: idle,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ll) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-errc
	return nil
}

// ListenAddr completes a --http address: a missing host is 127.0.0.1 (the
// preview is for this machine unless asked otherwise), a bare port too.
func ListenAddr(addr string) (string, error) {
	if addr == "" {
		return "127.0.0.1:8080", nil
	}
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", addr), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", &OptionError{Reason: "--http " + strconv.Quote(addr) + ": want HOST:PORT, :PORT or PORT"}
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", &OptionError{Reason: "--http " + strconv.Quote(addr) + ": bad port"}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// latencyMeter sums latencies between two reads.
type latencyMeter struct {
	n         int
	sum, maxi int64
}

func (m *latencyMeter) add(ns int64) {
	m.n++
	m.sum += ns
	m.maxi = max(m.maxi, ns)
}

func (m *latencyMeter) take() (int, time.Duration, time.Duration) {
	n, sum, mx := m.n, m.sum, m.maxi
	*m = latencyMeter{}
	if n == 0 {
		return 0, 0, 0
	}
	return n, time.Duration(sum / int64(n)), time.Duration(mx)
}
