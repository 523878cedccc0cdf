//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
)

// whepServer is a preview's HTTP side with its WHEP endpoint for bus cam
// (which exists, without frames), and the endpoint's URL.
func whepServer(t *testing.T, wo WebRTCOptions) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	p, err := framebus.Create("cam", framebus.ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	wo.LoopbackOnly = true
	ep, closeEP, err := newWebRTC(ctx, "cam", HTTPOptions{Dir: dir, Timeout: time.Second, WebRTC: wo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer("cam", dir, NewHub())
	s.WebRTC = ep
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); cancel(); closeEP() })
	return s, srv.URL
}

// do sends a request: the response (body read and closed) and its body.
func do(t *testing.T, method, url, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, strings.TrimSpace(string(b))
}

// Every route of /whep without a session: the status, the Allow header and
// the message that browsers, WHEP players and TestWHEPBadInput rely on.
func TestWHEPRoutes(t *testing.T) {
	_, url := whepServer(t, WebRTCOptions{})
	const sdp = "application/sdp"
	for _, c := range []struct {
		method, path, ctype, body string
		code                      int
		allow, msg                string
	}{
		{"GET", "/whep", "", "", 405, "OPTIONS, POST", "POST an SDP offer"},
		{"HEAD", "/whep", "", "", 405, "OPTIONS, POST", ""},
		{"GET", "/whep/", "", "", 405, "OPTIONS, POST", "POST an SDP offer"},
		{"DELETE", "/whep/cam", "", "", 405, "OPTIONS, POST", "POST an SDP offer"},
		{"OPTIONS", "/whep", "", "", 204, "OPTIONS, POST, PATCH, DELETE", ""},
		{"OPTIONS", "/whep/0123", "", "", 204, "OPTIONS, POST, PATCH, DELETE", ""},
		{"POST", "/whep", "text/plain", "v=0", 415, "", "application/sdp"},
		{"POST", "/whep", sdp + "; charset=utf-8", "hello", 400, "", "does not start with v=0"},
		{"POST", "/whep/", sdp, "hello", 400, "", "does not start with v=0"},
		{"POST", "/whep/cam", sdp, "hello", 400, "", "does not start with v=0"},
		{"POST", "/whep", sdp, strings.Repeat("v=0\r\n", 20000), 413, "", "64 KiB"},
		{"POST", "/whep/other", sdp, "v=0", 404, "", `this preview serves bus cam: there is no bus "other" here`},
		{"POST", "/whep", sdp, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", 400, "", "bad SDP offer"},
		{"DELETE", "/whep/0123", "", "", 404, "", `no WHEP session "0123"`},
		{"PATCH", "/whep/0123", "application/trickle-ice-sdpfrag", "", 404, "", "no WHEP session"},
		{"PUT", "/whep/0123", "", "", 404, "", "no WHEP session"},
	} {
		resp, msg := do(t, c.method, url+c.path, c.ctype, c.body)
		if resp.StatusCode != c.code || resp.Header.Get("Allow") != c.allow || !strings.Contains(msg, c.msg) {
			t.Errorf("%s %s: %d (Allow %q) %q, want %d (Allow %q) with %q", c.method, c.path, resp.StatusCode,
				resp.Header.Get("Allow"), msg, c.code, c.allow, c.msg)
		}
		if c.method == "OPTIONS" && resp.Header.Get("Accept-Post") != sdp {
			t.Errorf("%s %s: Accept-Post %q", c.method, c.path, resp.Header.Get("Accept-Post"))
		}
		if o := resp.Header.Get("Access-Control-Allow-Origin"); o != "" {
			t.Errorf("%s %s: CORS %q without an allowed origin", c.method, c.path, o)
		}
	}
}

// CORS headers go to the allowed origins only, on every answer.
func TestWHEPCORS(t *testing.T) {
	_, url := whepServer(t, WebRTCOptions{AllowOrigins: []string{"https://ok.example"}})
	for _, c := range []struct{ method, path, origin, want string }{
		{"OPTIONS", "/whep", "https://ok.example", "https://ok.example"},
		{"POST", "/whep/other", "https://ok.example", "https://ok.example"},
		{"DELETE", "/whep/0123", "https://ok.example", "https://ok.example"},
		{"OPTIONS", "/whep", "https://evil.example", ""},
		{"OPTIONS", "/whep", "", ""},
	} {
		resp, _ := do(t, c.method, url+c.path, "", "", "Origin", c.origin)
		h := resp.Header
		if got := h.Get("Access-Control-Allow-Origin"); got != c.want {
			t.Errorf("%s %s from %q: Access-Control-Allow-Origin %q, want %q", c.method, c.path, c.origin, got, c.want)
			continue
		}
		if c.want != "" && (h.Get("Vary") != "Origin" || h.Get("Access-Control-Allow-Methods") != "OPTIONS, POST, PATCH, DELETE" ||
			h.Get("Access-Control-Expose-Headers") != "Location, ETag, Accept-Patch") {
			t.Errorf("%s %s: CORS headers %v", c.method, c.path, h)
		}
	}
	_, url = whepServer(t, WebRTCOptions{AllowOrigins: []string{"*"}})
	if resp, _ := do(t, "OPTIONS", url+"/whep", "", "", "Origin", "https://any.example"); resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("AllowOrigins *: %v", resp.Header)
	}
}

// recvOffer is the offer of a peer that receives video (as rtc.DialWHEP
// makes), candidates gathered; the peer closes with the test.
func recvOffer(t *testing.T) string {
	t.Helper()
	p, err := rtc.NewRecvPeer(rtc.Config{LoopbackOnly: true}, rtc.PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close("the test ends") })
	if _, err := p.PeerConnection().AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := p.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

// A session's life over HTTP: 201 with the answer and its headers, the
// session's own routes (PATCH, DELETE, the rest 405), a viewer over the
// limit answered 503 with Retry-After, and nothing left after DELETE.
func TestWHEPSessionRoutes(t *testing.T) {
	s, url := whepServer(t, WebRTCOptions{MaxViewers: 1})
	resp, answer := do(t, "POST", url+"/whep", "application/sdp", recvOffer(t))
	h := resp.Header
	loc := h.Get("Location")
	if resp.StatusCode != 201 || !strings.HasPrefix(answer, "v=0") || !strings.Contains(answer, "VP8/90000") ||
		h.Get("Content-Type") != "application/sdp" || !strings.HasPrefix(loc, "/whep/") || h.Get("ETag") != `"`+loc[len("/whep/"):]+`"` ||
		h.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("POST /whep: %d %v\n%s", resp.StatusCode, h, answer)
	}
	if st := s.Status().WebRTC; st.Viewers != 1 || len(st.Sessions) != 1 || "/whep/"+st.Sessions[0].ID != loc {
		t.Errorf("status after the POST: %+v", st)
	}
	if resp, msg := do(t, "POST", url+"/whep/cam", "application/sdp", recvOffer(t)); resp.StatusCode != 503 ||
		resp.Header.Get("Retry-After") != "5" || !strings.Contains(msg, "1 WebRTC viewers already") {
		t.Errorf("a viewer over the limit: %d (Retry-After %q) %q", resp.StatusCode, resp.Header.Get("Retry-After"), msg)
	}
	frag := "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
	for _, c := range []struct {
		method, ctype, body string
		code                int
		allow               string
	}{
		{"GET", "", "", 405, "OPTIONS, PATCH, DELETE"},
		{"POST", "application/sdp", "v=0", 405, "OPTIONS, PATCH, DELETE"},
		{"PATCH", "application/sdp", frag, 415, ""},
		{"PATCH", "application/trickle-ice-sdpfrag", frag, 204, ""},
		{"PATCH", "application/trickle-ice-sdpfrag", "a=candidate:nonsense\r\n", 400, ""},
		{"DELETE", "", "", 200, ""},
		{"DELETE", "", "", 404, ""},
	} {
		if resp, msg := do(t, c.method, url+loc, c.ctype, c.body); resp.StatusCode != c.code || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d (Allow %q) %q, want %d (Allow %q)", c.method, loc, resp.StatusCode, resp.Header.Get("Allow"), msg, c.code, c.allow)
		}
	}
	if st := s.Status().WebRTC; st.Viewers != 0 || st.Refused != 1 {
		t.Errorf("status after DELETE: %+v", st)
	}
}
