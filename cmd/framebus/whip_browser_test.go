package main

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// capture --source whip:LISTEN takes a camera pushed by a browser: headless
// Chromium's fake camera, published by the source's own page, arrives on
// the bus at the bus's size and close to its rate, with capture times
// (abs-capture-time) that give a sane capture to wake; a second publisher
// is refused while the first is on; when the page goes, the session ends
// and the capture keeps waiting for the next.
func TestWHIPFromChromium(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	capt := startLive(t, nil, "capture", "--name", "cam", "--source", "whip:127.0.0.1:"+port, "--size", "640x480", "--fps", "30",
		"--format", "I420", "--dir", dir)
	ctx := newBrowser(t, 90*time.Second, chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true))
	url := "http://127.0.0.1:" + port + "/"
	testutil.WaitFor(t, 15*time.Second, "the WHIP server", func() bool {
		if !capt.Running() {
			t.Fatalf("capture ended: %s", capt.Stderr.String())
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"?start")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`fb.state === "publishing"`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`fb.state + " " + fb.error`))
		t.Fatalf("the page did not publish: %s: %v", st, err)
	}
	code, msg := post(t, "POST", url+"whip", "application/sdp", "v=0\r\n")
	if code != 409 {
		t.Errorf("a second publisher: %d %q, want 409", code, msg)
	}

	c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := c.Format()
	if f.Width != 640 || f.Height != 480 {
		t.Fatalf("bus %dx%d", f.Width, f.Height)
	}
	buf := make([]byte, f.FrameSize)
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lat []float64
	varied := false
	for {
		fr, err := c.ReadInto(rctx, buf)
		if err != nil {
			break
		}
		lat = append(lat, float64(fr.WakeNS-fr.CaptureNS)/1e6)
		y := fr.Data[:int(f.Width)*int(f.Height)]
		varied = varied || slices.Max(y)-slices.Min(y) > 50
	}
	slices.Sort(lat)
	t.Logf("%d frames in 5 s from Chromium's fake camera; capture (in Chromium) to wake p50 %.1f ms, p99 %.1f ms",
		len(lat), percentile(lat, 0.5), percentile(lat, 0.99))
	if len(lat) < 30 { // Chromium's fake camera makes 20 fps; a loaded machine fewer
		t.Errorf("%d frames in 5 s, want at least 30", len(lat))
	}
	if !varied {
		t.Error("the frames are flat: nothing of the camera's picture")
	}
	if p50 := percentile(lat, 0.5); p50 <= 0 || p50 > 1000 {
		t.Errorf("capture to wake p50 %.1f ms", p50)
	}
	// The page goes: DELETE; another publisher may come.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the session to end", func() bool {
		code, _ := post(t, "POST", url+"whip", "application/sdp", "v=0\r\n")
		return code == 400 // no publisher: the offer itself is refused
	})
	if !capt.Running() {
		t.Errorf("the capture ended with its publisher: %s", capt.Stderr.String())
	}
}
