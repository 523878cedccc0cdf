package viewer

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A preview without WebRTC answers /whep with 501 and the reason (the page
// falls back to MJPEG on it), and says so in /viewer.json.
func TestWHEPUnavailable(t *testing.T) {
	s := NewServer("cam0", t.TempDir(), NewHub())
	s.WebRTCOff = "WebRTC is off in this preview (--webrtc=false)"
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, path := range []string{"/whep", "/whep/abc"} {
		resp, err := http.Post(srv.URL+path, "application/sdp", strings.NewReader("v=0\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented || strings.TrimSpace(string(body)) != s.WebRTCOff {
			t.Errorf("POST %s: %d %q", path, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(srv.URL + "/viewer.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.WebRTC == nil || st.WebRTC.Enabled || st.WebRTC.Reason != s.WebRTCOff {
		t.Errorf("viewer.json webrtc: %+v", st.WebRTC)
	}
}
