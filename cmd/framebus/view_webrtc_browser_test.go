package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/framebus/framebus/internal/testutil"
)

func needWebRTC(t *testing.T) {
	t.Helper()
	if !hasWebRTC {
		t.Skip("the binary has no WebRTC bridge (build with -tags framebus_webrtc,framebus_opencv; make test does)")
	}
}

// getJSON decodes url's JSON into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// busSeq is the bus's last sequence number, from the preview's /stats.
func busSeq(t *testing.T, url string) uint64 {
	t.Helper()
	var st struct {
		LastSeq uint64 `json:"last_seq"`
	}
	getJSON(t, url+"stats", &st)
	return st.LastSeq
}

// pageStats is what the page knows of its player (window.fb).
type pageStats struct {
	Mode, Error string
	Decoded     struct {
		FramesDecoded, FramesDropped, Width, Height int
		FPS                                         float64
	}
	Latencies []float64
}

func readPage(t *testing.T, ctx context.Context) pageStats {
	t.Helper()
	ps, err := chromedp.Run(ctx, chromedp.Evaluate[pageStats](`({Mode: fb.mode, Error: fb.error, Decoded: fb.decoded || {}, Latencies: fb.latencies})`))
	if err != nil {
		t.Fatalf("reading the page's state: %v", err)
	}
	return ps
}

// percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// The page plays the WebRTC stream of a 1280x720 pattern in a real headless
// Chromium: over 5 s the frames Chromium decodes (getStats' framesDecoded)
// grow at the bus's rate within 20%, at the bus's size; the preview counts
// the viewer; the capture-to-shown latency the page measures from the
// frames' abs-capture-time is reported. Leaving the page ends the session.
func TestViewWebRTCInChromium(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "rtc", "--source", "pattern", "--size", "1280x720", "--fps", "30", "--dir", dir)
	_, url := startViewHTTP(t, dir, "rtc", "--timeout", "30s")
	ctx := newBrowser(t, 90*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`fb.mode !== "starting" && fb.decoded !== undefined && fb.decoded.framesDecoded > 10`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		ps := readPage(t, ctx)
		t.Fatalf("the page did not play WebRTC: mode %q (%s), %+v: %v", ps.Mode, ps.Error, ps.Decoded, err)
	}
	ps0, seq0, t0 := readPage(t, ctx), busSeq(t, url), time.Now()
	if ps0.Mode != "webrtc" {
		t.Fatalf("the page plays %s (%s), want webrtc", ps0.Mode, ps0.Error)
	}
	// Its numbers are real within a few seconds of the first frames.
	if took := checkPageNumbers(t, ctx, url, "webrtc"); took > 5*time.Second {
		t.Errorf("the page's figures took %v after the first frames to be real, want them within 5 s", took)
	}
	ps0, seq0, t0 = readPage(t, ctx), busSeq(t, url), time.Now()
	time.Sleep(5 * time.Second)
	ps1, seq1, el := readPage(t, ctx), busSeq(t, url), time.Since(t0)
	decoded := ps1.Decoded.FramesDecoded - ps0.Decoded.FramesDecoded
	published := int(seq1 - seq0)
	t.Logf("over %v: the bus published %d frames, Chromium decoded %d (%.1f fps), %dx%d, %d dropped by the player",
		el.Round(time.Millisecond), published, decoded, float64(decoded)/el.Seconds(), ps1.Decoded.Width, ps1.Decoded.Height, ps1.Decoded.FramesDropped)
	// The page reads getStats every 500 ms: its counts lag by up to that,
	// at both ends of the window.
	if slack := published/5 + 15; decoded < published-slack || decoded > published+slack {
		t.Errorf("Chromium decoded %d frames while the bus published %d (want within 20%% and the page's 0.5 s sampling)", decoded, published)
	}
	if ps1.Decoded.Width != 1280 || ps1.Decoded.Height != 720 {
		t.Errorf("decoded %dx%d, want 1280x720", ps1.Decoded.Width, ps1.Decoded.Height)
	}
	var vs struct {
		WebRTC struct {
			Viewers       int
			FramesEncoded uint64  `json:"frames_encoded"`
			FramesDropped uint64  `json:"frames_dropped"`
			EncodeUS      float64 `json:"encode_us"`
			Sessions      []struct {
				FramesSent    uint64 `json:"frames_sent"`
				FramesDropped uint64 `json:"frames_dropped"`
				Bitrate       int
				State         string
			}
		}
	}
	getJSON(t, url+"viewer.json", &vs)
	t.Logf("the bridge: %d frames encoded, %d skipped, the last in %.1f ms; sessions %+v", vs.WebRTC.FramesEncoded,
		vs.WebRTC.FramesDropped, vs.WebRTC.EncodeUS/1e3, vs.WebRTC.Sessions)
	if vs.WebRTC.Viewers != 1 || len(vs.WebRTC.Sessions) != 1 || vs.WebRTC.Sessions[0].State != "connected" || vs.WebRTC.Sessions[0].FramesSent == 0 {
		t.Errorf("the preview's WebRTC side: %+v, want one connected viewer with frames sent", vs.WebRTC)
	}
	if lat := slices.Sorted(slices.Values(ps1.Latencies)); len(lat) > 0 {
		t.Logf("capture to shown in Chromium (abs-capture-time): p50 %.1f ms, p99 %.1f ms over %d frames",
			percentile(lat, 0.5), percentile(lat, 0.99), len(lat))
	} else {
		t.Logf("Chromium gave no capture times (requestVideoFrameCallback's captureTime)")
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err == nil {
		path := filepath.Join(artifactDir(t), "view-webrtc-chromium.png")
		if err := os.WriteFile(path, png, 0o644); err == nil {
			t.Logf("screenshot: %s", path)
		}
	}
	// Leaving the page DELETEs the session.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the session to end", func() bool {
		getJSON(t, url+"viewer.json", &vs)
		return vs.WebRTC.Viewers == 0
	})
}
