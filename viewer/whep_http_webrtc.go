//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
)

// ServeHTTP answers /whep and /whep/...: CORS for the allowed origins, then
// the routes.
func (b *webrtcBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.cors(w, r)
	b.mux.ServeHTTP(w, r)
}

// routes are the WHEP endpoint's: POST /whep (or /whep/BUS, this bus's
// name) an offer to make a session at /whep/ID, which takes PATCH (trickle
// ICE) and DELETE. The patterns without a method answer the other methods
// (405, with Allow), and a session's name that is not one (404): the
// {id...} wildcards take the whole rest of the path, as the page and WHEP
// players have always been answered.
func (b *webrtcBridge) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("OPTIONS /whep", b.options)
	mux.HandleFunc("OPTIONS /whep/{id...}", b.options)
	mux.HandleFunc("POST /whep", b.post)
	mux.HandleFunc("POST /whep/{id...}", b.postTo)
	mux.HandleFunc("PATCH /whep/{id...}", b.patch)
	mux.HandleFunc("DELETE /whep/{id...}", b.delete)
	mux.HandleFunc("/whep", b.notPost)
	mux.HandleFunc("/whep/{id...}", b.other)
	return mux
}

func (b *webrtcBridge) options(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "OPTIONS, POST, PATCH, DELETE")
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

// notPost answers the endpoint itself for a method other than POST.
func (b *webrtcBridge) notPost(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "OPTIONS, POST")
	http.Error(w, "POST an SDP offer (Content-Type: application/sdp) to start a WHEP session", http.StatusMethodNotAllowed)
}

// isEndpoint says whether /whep/ID is the endpoint itself: /whep/ and
// /whep/BUS, this preview's bus.
func (b *webrtcBridge) isEndpoint(id string) bool { return id == "" || id == b.name }

// session is /whep/ID's session, or nil when it has answered: 405 for the
// endpoint itself (not POST), 404 for no session.
func (b *webrtcBridge) session(w http.ResponseWriter, r *http.Request) *whepSession {
	id := r.PathValue("id")
	if b.isEndpoint(id) {
		b.notPost(w, r)
		return nil
	}
	b.mu.Lock()
	s := b.sessions[id]
	b.mu.Unlock()
	if s == nil {
		http.Error(w, fmt.Sprintf("no WHEP session %q (ended, or never made)", id), http.StatusNotFound)
	}
	return s
}

// postTo is a POST to /whep/ID: the endpoint for this bus's name, 404 for
// another bus, 405 for a session.
func (b *webrtcBridge) postTo(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if b.isEndpoint(id) {
		b.post(w, r)
		return
	}
	b.mu.Lock()
	s := b.sessions[id]
	b.mu.Unlock()
	if s == nil {
		http.Error(w, fmt.Sprintf("this preview serves bus %s: there is no bus %q here", b.name, id), http.StatusNotFound)
		return
	}
	b.sessionOnly(w)
}

// other answers /whep/ID's methods that are not its own.
func (b *webrtcBridge) other(w http.ResponseWriter, r *http.Request) {
	if s := b.session(w, r); s != nil {
		b.sessionOnly(w)
	}
}

func (b *webrtcBridge) sessionOnly(w http.ResponseWriter) {
	w.Header().Set("Allow", "OPTIONS, PATCH, DELETE")
	http.Error(w, "a WHEP session takes PATCH (trickle ICE) and DELETE", http.StatusMethodNotAllowed)
}

// post makes a session from an offer: 201 with the answer and its URL; 400
// for an offer that is not SDP or receives no VP8 video, 404 when the bus
// does not exist, 503 over MaxViewers.
func (b *webrtcBridge) post(w http.ResponseWriter, r *http.Request) {
	offer, ok := rtc.ReadSDP(w, r, "application/sdp")
	if !ok {
		return
	}
	if !strings.HasPrefix(strings.TrimSpace(offer), "v=0") {
		http.Error(w, "bad SDP offer: it does not start with v=0", http.StatusBadRequest)
		return
	}
	if _, err := framebus.Inspect(b.name, b.o.Dir); errors.Is(err, framebus.ErrNotFound) {
		http.Error(w, fmt.Sprintf("bus %s does not exist (its producer has not started, or removed it)", b.name), http.StatusNotFound)
		return
	}
	if b.full() {
		b.tooMany(w, " (--webrtc-max-viewers)")
		return
	}
	s, answer, err := b.newSession(r.Context(), r.RemoteAddr, offer)
	if err != nil {
		rtc.AnswerError(w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(b.ctx)
	s.cancel = cancel
	if err := b.admit(s); err != nil {
		cancel()
		s.peer.Close("not admitted")
		if errors.Is(err, errTooMany) { // others came meanwhile
			b.tooMany(w, "")
		} else {
			rtc.AnswerError(w, r, err)
		}
		return
	}
	b.start(s, ctx)
	h := w.Header()
	h.Set("ETag", `"`+s.id+`"`)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	h.Set("Cache-Control", "no-store")
	rtc.WriteAnswer(w, "/whep/"+s.id, answer)
}

// full says whether MaxViewers are there, counting a refusal if so.
func (b *webrtcBridge) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sessions) >= b.wo.MaxViewers {
		b.refused++
		return true
	}
	return false
}

func (b *webrtcBridge) tooMany(w http.ResponseWriter, hint string) {
	w.Header().Set("Retry-After", "5")
	http.Error(w, fmt.Sprintf("this preview has its %d WebRTC viewers already%s", b.wo.MaxViewers, hint), http.StatusServiceUnavailable)
}

// patch takes trickled candidates (RFC 8840 fragments).
func (b *webrtcBridge) patch(w http.ResponseWriter, r *http.Request) {
	s := b.session(w, r)
	if s == nil {
		return
	}
	frag, ok := rtc.ReadSDP(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	if err := s.peer.AddCandidates(frag); err != nil {
		http.Error(w, "bad candidate: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// delete ends a session.
func (b *webrtcBridge) delete(w http.ResponseWriter, r *http.Request) {
	if s := b.session(w, r); s != nil {
		s.peer.Close("deleted by the viewer")
		w.WriteHeader(http.StatusOK)
	}
}

// cors lets the allowed origins' pages use the endpoint.
func (b *webrtcBridge) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || len(b.wo.AllowOrigins) == 0 {
		return
	}
	h := w.Header()
	switch {
	case slices.Contains(b.wo.AllowOrigins, "*"):
		h.Set("Access-Control-Allow-Origin", "*")
	case slices.Contains(b.wo.AllowOrigins, origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	default:
		return
	}
	h.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE")
	h.Set("Access-Control-Allow-Headers", "Content-Type, If-Match, Authorization")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Accept-Patch")
}
