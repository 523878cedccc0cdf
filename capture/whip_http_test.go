//go:build framebus_webrtc && cgo

package capture

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
)

// sendOffer is the offer of a peer that sends one VP8 track (as a WHIP
// client would make), candidates gathered; the peer closes with the test.
func sendOffer(t *testing.T) string {
	t.Helper()
	p, err := rtc.NewSendPeer(rtc.Config{LoopbackOnly: true}, rtc.PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close("the test ends") })
	if _, err := p.AddTrack(rtc.NewVideoTrack("video", "publisher", 1, 1)); err != nil {
		t.Fatal(err)
	}
	offer, err := p.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

// whipDo sends a request: its status, headers and body.
func whipDo(t *testing.T, method, url, ctype, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(b))
}

// The WHIP server's routes: the page, bad input, one publisher at a time
// (201 with the answer and Location, 409 for another), DELETE ends it and
// frees the place.
func TestWHIPRoutes(t *testing.T) {
	s, err := OpenWHIP(Config{Arg: "127.0.0.1:0", Width: 64, Height: 48, FPS: 30, PixelFormat: framebus.FormatI420},
		rtc.Config{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "http://" + s.Addr()
	if code, h, page := whipDo(t, "GET", url+"/", "", ""); code != 200 || !strings.Contains(page, "64") ||
		h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %d %v", code, h)
	}
	for _, c := range []struct {
		method, path, ctype, body string
		code                      int
		msg                       string
	}{
		{"POST", "/whip", "text/plain", "v=0", 415, "application/sdp"},
		{"POST", "/whip", "application/sdp", strings.Repeat("v=0\r\n", 20000), 413, "64 KiB"},
		{"POST", "/whip", "application/sdp", "hello", 400, "bad SDP offer"},
		{"DELETE", "/whip/0123", "", "", 404, "no such WHIP session"},
		{"GET", "/whip", "", "", 405, ""},
	} {
		if code, _, msg := whipDo(t, c.method, url+c.path, c.ctype, c.body); code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, code, msg, c.code, c.msg)
		}
	}
	code, h, answer := whipDo(t, "POST", url+"/whip", "application/sdp", sendOffer(t))
	loc := h.Get("Location")
	if code != 201 || !strings.Contains(answer, "VP8/90000") || h.Get("Content-Type") != "application/sdp" || !strings.HasPrefix(loc, "/whip/") {
		t.Fatalf("POST /whip: %d %v\n%s", code, h, answer)
	}
	if !s.Stats().Publishing {
		t.Error("not publishing after a 201")
	}
	if code, _, msg := whipDo(t, "POST", url+"/whip", "application/sdp", sendOffer(t)); code != 409 {
		t.Errorf("a second publisher: %d %q", code, msg)
	}
	if code, _, _ := whipDo(t, "DELETE", url+loc, "", ""); code != 200 {
		t.Errorf("DELETE %s: %d", loc, code)
	}
	if s.Stats().Publishing {
		t.Error("publishing after DELETE")
	}
	if code, _, _ := whipDo(t, "DELETE", url+loc, "", ""); code != 404 {
		t.Errorf("DELETE %s again: %d", loc, code)
	}
	if code, _, _ := whipDo(t, "POST", url+"/whip", "application/sdp", sendOffer(t)); code != 201 {
		t.Errorf("a publisher after DELETE: %d", code)
	}
}
