package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// post sends body to url with the content type and returns the status and
// the answer.
func post(t *testing.T, method, url, ctype, body string) (int, string) {
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
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

type webrtcViewers struct {
	WebRTC struct {
		Viewers  int
		Refused  uint64
		Sessions []struct {
			ID         string
			State      string
			FramesSent uint64 `json:"frames_sent"`
		}
	} `json:"webrtc"`
}

// Bad input to /whep gets a clear 4xx and changes nothing: a malformed
// offer, an offer that receives no video, the wrong content type, a POST
// for another bus, a DELETE of a session that does not exist, one viewer
// more than --webrtc-max-viewers. A viewer that vanishes without DELETE
// (kill -9) is cleaned up once ICE times out, and the other viewer keeps
// its frames throughout. Once the bus is gone, a POST says so (404).
func TestWHEPBadInput(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	src := startLive(t, nil, "capture", "--name", "bad", "--source", "pattern", "--size", "320x240", "--fps", "30", "--dir", dir)
	// The offers below must meet a bus: on a loaded machine the capture
	// could still be starting (404 "bus bad does not exist" instead of 400).
	testutil.WaitFor(t, 15*time.Second, "the bus", func() bool { return exists(segment(dir, "bad")) })
	_, url := startViewHTTP(t, dir, "bad", "--timeout", "30s", "--webrtc-max-viewers", "2")
	whep := url + "whep"

	for _, c := range []struct {
		method, path, ctype, body string
		code                      int
		msg                       string
	}{
		{"POST", "whep", "application/sdp", "hello", 400, "bad SDP offer: it does not start with v=0"},
		{"POST", "whep", "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video nonsense\r\n", 400, "bad SDP offer"},
		{"POST", "whep", "application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", 400, ""},
		{"POST", "whep", "text/plain", "v=0", 415, "application/sdp"},
		{"POST", "whep/other", "application/sdp", "v=0", 404, "this preview serves bus bad: there is no bus \"other\" here"},
		{"DELETE", "whep/0123456789abcdef01234567", "", "", 404, "no WHEP session"},
		{"GET", "whep", "", "", 405, "POST an SDP offer"},
		{"POST", "whep", "application/sdp", strings.Repeat("v=0\r\n", 20000), 413, "64 KiB"},
	} {
		code, msg := post(t, c.method, url+c.path, c.ctype, c.body)
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s /%s (%s, %d bytes): %d %q, want %d with %q", c.method, c.path, c.ctype, len(c.body), code, msg, c.code, c.msg)
		}
	}
	var vs webrtcViewers
	getJSON(t, url+"viewer.json", &vs)
	if vs.WebRTC.Viewers != 0 {
		t.Fatalf("bad requests left %d sessions", vs.WebRTC.Viewers)
	}

	// Two viewers; a third is refused.
	keep := startLive(t, nil, "capture", "--name", "keep", "--source", "whep:"+whep, "--format", "GREY", "--dir", dir)
	gone := startLive(t, nil, "capture", "--name", "gone", "--source", "whep:"+whep, "--format", "GREY", "--dir", dir)
	testutil.WaitFor(t, 20*time.Second, "two viewers", func() bool {
		getJSON(t, url+"viewer.json", &vs)
		return vs.WebRTC.Viewers == 2
	})
	res := run(t, "capture", "--name", "third", "--source", "whep:"+whep, "--dir", dir)
	if res.Code != 2 || !strings.Contains(res.Stderr, "Service Unavailable") || !strings.Contains(res.Stderr, "2 WebRTC viewers already") {
		t.Errorf("a third viewer: exit %d, %s", res.Code, res.Stderr)
	}

	// One vanishes without DELETE; the other keeps receiving.
	c, err := framebus.Open("keep", framebus.ConsumerOptions{Dir: dir, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lastSeq := func() uint64 {
		s, err := framebus.Inspect("keep", dir)
		if err != nil {
			t.Fatal(err)
		}
		return s.Header.LastSeq
	}
	before := lastSeq()
	gone.Signal(t, syscall.SIGKILL)
	gone.Wait(t, 5*time.Second)
	t0 := time.Now()
	testutil.WaitFor(t, 30*time.Second, "the vanished viewer's session to end", func() bool {
		getJSON(t, url+"viewer.json", &vs)
		return vs.WebRTC.Viewers == 1
	})
	ended := time.Since(t0)
	t.Logf("the vanished viewer's session ended %v after its kill -9", ended.Round(100*time.Millisecond))
	mid := lastSeq()
	time.Sleep(time.Second)
	after := lastSeq()
	// The pattern runs at 30 fps: at least half of that all along.
	if float64(mid-before) < 15*ended.Seconds() || after-mid < 10 {
		t.Errorf("the other viewer's bus: seq %d before the kill, %d when the session ended, %d a second later", before, mid, after)
	}
	if !keep.Running() {
		t.Fatalf("the other viewer ended: %s", keep.Stderr.String())
	}
	if len(vs.WebRTC.Sessions) != 1 || vs.WebRTC.Sessions[0].State != "connected" {
		t.Errorf("sessions %+v, want the one connected", vs.WebRTC.Sessions)
	}

	// The bus goes: its producer ends and the bus is removed.
	src.Signal(t, syscall.SIGTERM)
	src.Wait(t, 10*time.Second)
	run(t, "rm", "bad", "--dir", dir)
	code, msg := post(t, "POST", whep, "application/sdp", "v=0\r\n")
	if code != 404 || !strings.Contains(msg, "bus bad does not exist") {
		t.Errorf("POST for a removed bus: %d %q", code, msg)
	}
}
