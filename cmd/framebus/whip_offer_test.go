package main

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/internal/testutil"
)

// whipOffer is the SDP offer of a pion peer with one transceiver of kind
// in direction dir (its codecs: the default ones, or only H.264), with its
// candidates gathered; the peer is closed when the test ends (it never
// takes an answer, so its ICE never connects).
func whipOffer(t *testing.T, kind webrtc.RTPCodecType, dir webrtc.RTPTransceiverDirection, h264Only bool) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if h264Only {
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
			PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	} else if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	inactive := dir == webrtc.RTPTransceiverDirectionInactive
	if inactive { // pion offers no inactive transceiver: a sendonly one, rewritten
		dir = webrtc.RTPTransceiverDirectionSendonly
	}
	if dir == webrtc.RTPTransceiverDirectionRecvonly {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
	} else {
		mime := webrtc.MimeTypeVP8
		switch {
		case kind == webrtc.RTPCodecTypeAudio:
			mime = webrtc.MimeTypeOpus
		case h264Only:
			mime = webrtc.MimeTypeH264
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, "cam", "publisher")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
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
	if inactive {
		return strings.ReplaceAll(pc.LocalDescription().SDP, "a=sendonly", "a=inactive")
	}
	return pc.LocalDescription().SDP
}

// postOffer posts an offer to a WHIP endpoint: the status and the body.
func postOffer(t *testing.T, url, offer string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/sdp", strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// capture --source whip: an offer that can never send a picture (its video
// recvonly, no video m-line, no VP8) is a 400 that says why, and leaves the
// one publisher's place free; a publisher answered 201 whose ICE never
// connects gives the place up after whipConnectTimeout (10 s). Pion is the
// client. Before, a recvonly offer got 201 and took the place (every real
// publisher got 409 until pion's ICE gave up on it, 14 s), and the other
// refused offers found it taken.
func TestWHIPOffersThatCannotSend(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	capt := start(t, "capture", "--name", "whipbad", "--source", "whip:127.0.0.1:"+port, "--size", "64x48", "--fps", "30",
		"--format", "I420", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the WHIP server", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	url := "http://127.0.0.1:" + port + "/whip"
	for _, c := range []struct {
		what  string
		offer string
		want  string
	}{
		{"video recvonly", whipOffer(t, webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverDirectionRecvonly, false), "recvonly"},
		{"video inactive", whipOffer(t, webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverDirectionInactive, false), "not sent by the publisher"},
		{"audio only", whipOffer(t, webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverDirectionSendonly, false), "no video m-line"},
		{"H.264 only", whipOffer(t, webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverDirectionSendonly, true), "VP8"},
	} {
		code, body := postOffer(t, url, c.offer)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want 400 saying %q", c.what, code, strings.TrimSpace(body), c.want)
		}
	}
	// The place is free: a publisher that sends VP8 is answered. It never
	// takes the answer, so its ICE never connects.
	if code, body := postOffer(t, url, whipOffer(t, webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverDirectionSendonly, false)); code != http.StatusCreated {
		t.Fatalf("a VP8 publisher after the refused offers: %d %q, want 201", code, strings.TrimSpace(body))
	}
	at := time.Now()
	if code, _ := postOffer(t, url, whipOffer(t, webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverDirectionSendonly, false)); code != http.StatusConflict {
		t.Fatalf("a second publisher while the first is being connected: %d, want 409", code)
	}
	// whipConnectTimeout is 10 s; before, pion's ICE gave up on checking
	// after its disconnected + failed timeouts, 14 s, and a peer whose ICE
	// connected but whose DTLS did not was not bounded by those at all.
	var code int
	for code != http.StatusCreated {
		if time.Since(at) > 13*time.Second {
			t.Fatalf("the place of a publisher that never connected was not freed within 13 s (last answer %d); capture:\n%s", code, capt.Stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
		code, _ = postOffer(t, url, whipOffer(t, webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverDirectionSendonly, false))
	}
	t.Logf("the place of a publisher that never connected was free again %v after its 201", time.Since(at).Round(100*time.Millisecond))
}
