//go:build framebus_webrtc && cgo

package capture

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
)

// sendOffer is a pion peer's offer to send one VP8 track, candidates
// gathered; the peer closes with the test.
func sendOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", "publisher")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

func whipDo(t *testing.T, method, url, ctype, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, strings.TrimSpace(string(b))
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
	if resp, page := whipDo(t, "GET", url+"/", "", ""); resp.StatusCode != 200 || !strings.Contains(page, "64") ||
		resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %d %v", resp.StatusCode, resp.Header)
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
		if resp, msg := whipDo(t, c.method, url+c.path, c.ctype, c.body); resp.StatusCode != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, resp.StatusCode, msg, c.code, c.msg)
		}
	}
	resp, answer := whipDo(t, "POST", url+"/whip", "application/sdp", sendOffer(t))
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 201 || !strings.Contains(answer, "VP8/90000") || resp.Header.Get("Content-Type") != "application/sdp" ||
		!strings.HasPrefix(loc, "/whip/") {
		t.Fatalf("POST /whip: %d %v\n%s", resp.StatusCode, resp.Header, answer)
	}
	if !s.Stats().Publishing {
		t.Error("not publishing after a 201")
	}
	if resp, msg := whipDo(t, "POST", url+"/whip", "application/sdp", sendOffer(t)); resp.StatusCode != 409 {
		t.Errorf("a second publisher: %d %q", resp.StatusCode, msg)
	}
	if resp, _ := whipDo(t, "DELETE", url+loc, "", ""); resp.StatusCode != 200 {
		t.Errorf("DELETE %s: %d", loc, resp.StatusCode)
	}
	if s.Stats().Publishing {
		t.Error("publishing after DELETE")
	}
	if resp, _ := whipDo(t, "DELETE", url+loc, "", ""); resp.StatusCode != 404 {
		t.Errorf("DELETE %s again: %d", loc, resp.StatusCode)
	}
	if resp, _ := whipDo(t, "POST", url+"/whip", "application/sdp", sendOffer(t)); resp.StatusCode != 201 {
		t.Errorf("a publisher after DELETE: %d", resp.StatusCode)
	}
}
