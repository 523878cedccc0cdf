package viewer

import (
	"net/http"
	"time"
)

// WebRTCOptions configures the web preview's WHEP endpoint (/whep): a VP8
// stream of the bus for browsers and WHEP players, one encoder for all.
type WebRTCOptions struct {
	Off bool // no /whep: the page shows the MJPEG stream

	MaxViewers int // WebRTC viewers at a time (default 16); one more is answered 503
	MinBitrate int // bits per second the encoder never goes below (default 50 kbit/s)
	MaxBitrate int // and never above (default: 0.1 bit per pixel per frame, at least 1 Mbit/s)
	Speed      int // libvpx VP8E_SET_CPUUSED (-16..16, default -8: fast)
	Threads    int // encoder threads (default 1: libvpx's threads spin on a busy machine)

	ICEServers []string // STUN/TURN URLs for viewers behind NAT
	PublicIPs  []string // addresses to announce instead of the host's (1:1 NAT)
	UDPPortMin uint16   // local UDP ports (0: any)
	UDPPortMax uint16

	// AllowOrigins are the web origins (https://example.com, or *) whose
	// pages may use /whep (CORS). The preview's own page needs none; by
	// default no other page can, since a page that receives the stream can
	// read its pixels.
	AllowOrigins []string

	// ICEFailedTimeout: a viewer silent this long is gone and its session
	// ends (default 10 s); ConnectTimeout: a session that does not connect
	// within this ends (default 20 s).
	ICEFailedTimeout time.Duration
	ConnectTimeout   time.Duration

	// LoopbackOnly announces 127.0.0.1 only (tests).
	LoopbackOnly bool
}

// WebRTCStatus is what /viewer.json, /stats and the page say of the WebRTC
// side.
type WebRTCStatus struct {
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason,omitempty"` // why not, when not

	Viewers int    `json:"viewers"`
	Refused uint64 `json:"refused"` // sessions refused for being over MaxViewers

	// The shared encoder.
	Encoding      bool    `json:"encoding"` // the bridge is a consumer of the bus (while somebody watches)
	Width         int     `json:"width"`
	Height        int     `json:"height"`
	FramesEncoded uint64  `json:"frames_encoded"`
	Keyframes     uint64  `json:"keyframes"`
	FramesDropped uint64  `json:"frames_dropped"` // bus frames the bridge skipped (it was busy)
	RateDrops     uint64  `json:"rate_drops"`     // frames the encoder's rate control dropped (the bitrate too low)
	EncodeUS      float64 `json:"encode_us"`      // conversion and encoding of the last frame
	TargetBitrate int     `json:"target_bitrate"` // bits per second asked of the encoder
	CaptureToSent float64 `json:"capture_to_sent_us"`

	Sessions []WebRTCViewer `json:"sessions"`
}

// WebRTCViewer is one WHEP session.
type WebRTCViewer struct {
	ID         string  `json:"id"`
	Remote     string  `json:"remote"` // the HTTP client's address
	State      string  `json:"state"`  // the peer connection's
	AgeS       float64 `json:"age_s"`
	FramesSent uint64  `json:"frames_sent"`
	// FramesDropped: frames this viewer did not get (its link or its
	// sender was slower than the stream, or it waited for a keyframe).
	FramesDropped uint64  `json:"frames_dropped"`
	Bitrate       int     `json:"bitrate"`        // bits per second sent, over the last second or more
	TargetBitrate int     `json:"target_bitrate"` // the congestion controller's estimate for this link
	RTTMS         float64 `json:"rtt_ms"`         // from the receiver's reports
	Loss          float64 `json:"loss"`           // fraction of packets lost, from the receiver's reports
	PacketsLost   int64   `json:"packets_lost"`
	KeyRequests   uint64  `json:"key_requests"` // PLI and FIR
	NACKs         uint64  `json:"nacks"`

	// Estimator is the congestion controller's own view (pion's GCC:
	// its loss- and delay-based targets, usage and state).
	Estimator map[string]any `json:"estimator,omitempty"`
}

// webrtcEndpoint is the WHEP side of a Server (whep_webrtc.go).
type webrtcEndpoint interface {
	http.Handler
	Status() *WebRTCStatus
}

// whepUnavailable answers /whep when the preview has no WebRTC: 501 with the
// reason (the page falls back to MJPEG).
func whepUnavailable(reason string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, reason, http.StatusNotImplemented)
	})
}

// webrtcStatus is the WebRTC side's status, or why there is none.
func (s *Server) webrtcStatus() *WebRTCStatus {
	if s.WebRTC == nil {
		return &WebRTCStatus{Reason: s.WebRTCOff, Sessions: []WebRTCViewer{}}
	}
	return s.WebRTC.Status()
}
