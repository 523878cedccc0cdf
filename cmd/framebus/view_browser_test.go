package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserPath finds Debian's chromium. Without it the test is skipped, unless
// FRAMEBUS_REQUIRE_BROWSER is set (make test sets it and installs chromium).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FRAMEBUS_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium is not installed and FRAMEBUS_REQUIRE_BROWSER is set (make sysdeps installs it: apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or make sysdeps); set FRAMEBUS_REQUIRE_BROWSER=1 to make this a failure")
	return ""
}

// artifactDir is where the test keeps its screenshot: $FRAMEBUS_ARTIFACTS
// if set, else the test's artifact directory (kept with go test -artifacts).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("FRAMEBUS_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// newBrowser starts a headless Chromium for the test, with a context that
// ends after d.
func newBrowser(t *testing.T, d time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	chromium := browserPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1000, 600),
	}
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, d)
	t.Cleanup(cancelT)
	return ctx
}

// The web preview in a real headless Chromium, with WebRTC off: the page
// falls back to the MJPEG stream, the live picture loads at the bus's size,
// the stats on the page change over time, and a screenshot of the page is
// kept.
func TestViewHTTPInChromium(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "browser", "--source", "pattern", "--size", "480x360", "--fps", "30", "--dir", dir)
	_, url := startViewHTTP(t, dir, "browser", "--timeout", "30s", "--webrtc=false")
	ctx := newBrowser(t, 60*time.Second)

	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	// The picture: the MJPEG stream decoded by the browser, at the bus's size.
	size, err := chromedp.Run(ctx, chromedp.Poll[[]int](`(() => { const i = document.getElementById("live");
		return i.complete !== undefined && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null; })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the picture did not load: %v", err)
	}
	if len(size) != 2 || size[0] != 480 || size[1] != 360 {
		t.Fatalf("the picture is %v, want 480x360", size)
	}
	// The stats: the last sequence number shown changes.
	first, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => { const s = document.getElementById("seq").textContent;
		return s !== "-" ? s : null; })()`, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("no stats on the page: %v", err)
	}
	later, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => { const s = document.getElementById("seq").textContent;
		return s !== "-" && s !== `+"`"+first+"`"+` ? s : null; })()`, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the stats stayed at last seq %s: %v", first, err)
	}
	state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#state")))
	if err != nil || state != "streaming" {
		t.Errorf("state on the page: %q, %v; want streaming", state, err)
	}
	mode, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#mode")))
	if err != nil || !strings.HasPrefix(mode, "MJPEG (WebRTC is off") {
		t.Errorf("mode on the page: %q, %v; want MJPEG, WebRTC being off", mode, err)
	}
	t.Logf("picture %dx%d, last seq %s then %s", size[0], size[1], first, later)
	checkPageNumbers(t, ctx, url, "mjpeg")

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifactDir(t), "view-http-chromium.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
