package viewer

// The types of the WebRTC side's numbers, in every build (a build without
// WebRTC says why not); whep_stats_webrtc.go fills them.

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

// webrtcStatus is the WebRTC side's status, or why there is none.
func (s *Server) webrtcStatus() *WebRTCStatus {
	if s.WebRTC == nil {
		return &WebRTCStatus{Reason: s.WebRTCOff, Sessions: []WebRTCViewer{}}
	}
	return s.WebRTC.Status()
}
