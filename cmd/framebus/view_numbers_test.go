package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// previewNumbers is what /viewer.json says of the preview's rates and
// latencies.
type previewNumbers struct {
	State          string
	ReadFPS        float64 `json:"read_fps"`
	FPS            float64 `json:"fps"`
	CaptureToPicUS float64 `json:"capture_to_pic_us"`
	CaptureToSent  float64 `json:"capture_to_sent_us"`
	WebRTCFPS      float64 `json:"webrtc_fps"`
	WebRTC         struct {
		CaptureToSent float64 `json:"capture_to_sent_us"`
		Sessions      []struct {
			Bitrate int
		}
	}
}

var firstNumber = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// checkPageNumbers checks, while video plays in mode ("webrtc" or
// "mjpeg"), that the preview's numbers are real (the page once showed
// "preview fps 0.0", "capture to picture 0.0 ms" and "0.00 Mbit/s" while
// WebRTC played): in /viewer.json, on the page (each figure a number above
// zero, none left "measuring" or 0), and in the page's chart. It returns
// how long after the call the page had them all.
func checkPageNumbers(t *testing.T, ctx context.Context, url, mode string) time.Duration {
	t.Helper()
	start := time.Now()
	// The figures of what the page plays, and the rows that say so.
	ids := []string{"readfps", "pubfps", "fps", "latsent"}
	if mode == "webrtc" {
		ids = append(ids, "rtcbitrate", "decfps")
	} else {
		ids = append(ids, "lat")
	}
	var texts map[string]string
	got, err := chromedp.Run(ctx, chromedp.Poll[map[string]string](`(() => {
		const ids = `+"`"+strings.Join(ids, ",")+"`"+`.split(","), out = {};
		for (const id of ids) {
			const t = document.getElementById(id).textContent;
			if (!/[1-9]/.test(t.split(" ")[0]) || t.startsWith("measuring")) return null;
			out[id] = t;
		}
		return out; })()`, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		got, _ = chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`(() => { const out = {};
			for (const id of `+"`"+strings.Join(ids, ",")+"`"+`.split(",")) out[id] = document.getElementById(id).textContent;
			return out; })()`))
		t.Fatalf("the page's figures did not all become real while video played (%s): %v: %v", mode, got, err)
	}
	texts = got
	took := time.Since(start)
	for id, txt := range texts {
		if v, err := strconv.ParseFloat(firstNumber.FindString(txt), 64); err != nil || v <= 0 {
			t.Errorf("#%s shows %q, want a number above 0", id, txt)
		}
	}
	t.Logf("the page (%s), %v after the first frames: %v", mode, took.Round(time.Millisecond), texts)

	// The JSON endpoint: the same figures, real.
	var v previewNumbers
	getJSON(t, url+"viewer.json", &v)
	if v.State != "streaming" || v.ReadFPS <= 0 {
		t.Errorf("viewer.json: state %q, read_fps %v; want streaming and the frames read per second", v.State, v.ReadFPS)
	}
	if mode == "webrtc" {
		if v.WebRTCFPS <= 0 || v.WebRTC.CaptureToSent <= 0 || len(v.WebRTC.Sessions) == 0 || v.WebRTC.Sessions[0].Bitrate <= 0 {
			t.Errorf("viewer.json while WebRTC plays: %+v; want webrtc_fps, webrtc.capture_to_sent_us and the session's bitrate above 0", v)
		}
	} else if v.FPS <= 0 || v.CaptureToPicUS <= 0 || v.CaptureToSent <= 0 {
		t.Errorf("viewer.json while MJPEG plays: %+v; want fps, capture_to_pic_us and capture_to_sent_us above 0", v)
	}
	t.Logf("viewer.json: %+v", v)

	// The chart: points with both a latency and a rate.
	n, err := chromedp.Run(ctx, chromedp.Poll[int](`(() => { const n = fb.chart.filter((p) => p.lat > 0 && p.fps > 0).length;
		return n >= 4 ? n : null; })()`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Errorf("the chart has no points with a latency and a rate: %v", err)
	} else {
		t.Logf("the chart has %d points", n)
	}
	return took
}
