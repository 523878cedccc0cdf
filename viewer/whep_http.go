package viewer

import "net/http"

// The /whep routes in every build: the WebRTC side's when there is one
// (whep_http_webrtc.go), else 501 with the reason, on which the page falls
// back to MJPEG.

// webrtcEndpoint is the WHEP side of a Server: the bridge of
// whep_webrtc.go, in a build with WebRTC.
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

// mountWHEP routes /whep and everything under it to the WebRTC side, or to
// whepUnavailable.
func (s *Server) mountWHEP(mux *http.ServeMux) {
	h := whepUnavailable(s.WebRTCOff)
	if s.WebRTC != nil {
		h = s.WebRTC
	}
	mux.Handle("/whep", h)
	mux.Handle("/whep/", h)
}
