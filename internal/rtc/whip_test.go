package rtc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The backoff doubles from Min to Max, each pause within ±Jitter.
func TestBackoff(t *testing.T) {
	b := NewBackoff()
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		d := b.Next()
		lo, hi := time.Duration(float64(w)*(1-RetryJitter)), time.Duration(float64(w)*(1+RetryJitter))
		if d < lo || d > hi {
			t.Errorf("pause %d: %v, want %v ±25%%", i, d, w)
		}
	}
	b.Reset()
	if d := b.Next(); d > 625*time.Millisecond {
		t.Errorf("after Reset: %v", d)
	}
}

// A WHIP server's refusals and garbage are clear errors with their status;
// the bearer token goes in Authorization and never in an error.
func TestDialWHIPRefusals(t *testing.T) {
	const token = "s3cret-token"
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/401":
			http.Error(w, "bad token "+token, http.StatusUnauthorized)
		case "/404":
			http.Error(w, "no such endpoint", http.StatusNotFound)
		case "/500":
			http.Error(w, "janus is down", http.StatusInternalServerError)
		case "/garbage":
			w.Header().Set("Location", "/garbage/1")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "<html>hello</html>")
		case "/badsdp":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "v=0\r\nm=video nonsense\r\n")
		}
	}))
	defer srv.Close()
	cases := []struct {
		path   string
		status int
		msg    string
	}{
		{"/401", 401, "bad token [token]"},
		{"/404", 404, "no such endpoint"},
		{"/500", 500, "janus is down"},
		{"/garbage", 0, "the answer is not SDP"},
		{"/badsdp", 0, "bad SDP answer"},
	}
	for _, c := range cases {
		p, err := NewSendPeer(Config{LoopbackOnly: true}, PeerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AddSendTrack(NewVideoTrack("video", "test", 1, 1)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = DialWHIP(ctx, srv.URL+c.path, token, p)
		cancel()
		if err == nil {
			t.Fatalf("%s: no error", c.path)
		}
		if !errors.Is(err, ErrWHEP) || StatusOf(err) != c.status || !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "WHIP ") {
			t.Errorf("%s: %v (status %d), want status %d and %q", c.path, err, StatusOf(err), c.status, c.msg)
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("%s: the token is in the error: %v", c.path, err)
		}
		if gotAuth != "Bearer "+token {
			t.Errorf("%s: Authorization %q", c.path, gotAuth)
		}
		select {
		case <-p.Ended():
		case <-time.After(2 * time.Second):
			t.Errorf("%s: the peer was not closed", c.path)
		}
	}
	if _, err := DialWHIP(context.Background(), "ftp://x", "", mustPeer(t)); err == nil || !strings.Contains(err.Error(), "http://") {
		t.Errorf("ftp URL: %v", err)
	}
}

func mustPeer(t *testing.T) *Peer {
	p, err := NewSendPeer(Config{LoopbackOnly: true}, PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withICE puts a PATCH answer's credentials and candidates in the answer.
func TestWithICE(t *testing.T) {
	answer := "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	got, ok := withICE(answer, "a=ice-ufrag:new\r\na=ice-pwd:newpwd\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:2 1 udp 1 127.0.0.1 6000 typ host\r\n")
	if !ok || strings.Contains(got, "old") || !strings.Contains(got, "a=ice-ufrag:new") || !strings.Contains(got, "6000") || strings.Contains(got, "5000") {
		t.Errorf("withICE:\n%s", got)
	}
	if _, ok := withICE(answer, ""); ok {
		t.Error("an empty fragment restarted ICE")
	}
	frag := iceFragment("v=0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\nm=video 9 X 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n")
	if frag != "a=ice-ufrag:u\r\na=ice-pwd:p\r\nm=video 9 X 96\r\na=mid:0\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n" {
		t.Errorf("iceFragment:\n%q", frag)
	}
}
