package rtc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
)

// What the WHEP server (viewer/) and the WHIP server (the whip: source)
// share of HTTP (RFC 9725 and the WHEP draft): a session is made by a POST
// of an SDP offer, answered 201 with the answer and the session's URL in
// Location, and ended by a DELETE of that URL.

// maxSDP bounds an SDP body read from the network.
const maxSDP = 64 << 10

// ReadSDP reads a request body of content type ctype, at most 64 KiB. On
// false it has answered: 415 for another content type, 413 over 64 KiB, 400
// when the body cannot be read.
func ReadSDP(w http.ResponseWriter, r *http.Request, ctype string) (string, bool) {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), ctype) {
		http.Error(w, "the body must be "+ctype+" (Content-Type)", http.StatusUnsupportedMediaType)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSDP))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			http.Error(w, "the body is over 64 KiB", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		}
		return "", false
	}
	return string(body), true
}

// NewSessionID is a session's name in its URL: 96 random bits, in hex.
func NewSessionID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteAnswer answers a POST that made a session: 201, the answer, and the
// session's URL in Location (headers already set are kept).
func WriteAnswer(w http.ResponseWriter, location, answer string) {
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", location)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// AnswerError answers a POST whose offer Answer (or the peer's making)
// refused: 400 for the offer's fault, 500 for ours, nothing when the
// client has gone.
func AnswerError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *OfferError
	switch {
	case errors.As(err, &oe):
		http.Error(w, oe.Msg, http.StatusBadRequest)
	case r.Context().Err() != nil:
	default:
		http.Error(w, "WebRTC: "+err.Error(), http.StatusInternalServerError)
	}
}
