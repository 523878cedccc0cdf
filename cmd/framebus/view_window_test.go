package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

// needTools finds the commands a test needs. A missing one skips the test,
// unless FRAMEBUS_REQUIRE_BROWSER is set (make test sets it; make sysdeps
// installs them all).
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("FRAMEBUS_REQUIRE_BROWSER") != "" {
				t.Fatalf("%s is not installed and FRAMEBUS_REQUIRE_BROWSER is set (make sysdeps installs it)", n)
			}
			t.Skipf("%s is not installed (make sysdeps installs it)", n)
		}
	}
}

// screenshot takes a picture of the whole X display.
func screenshot(t *testing.T, display, path string) image.Image {
	t.Helper()
	out, err := exec.Command("import", "-display", display, "-window", "root", "png:"+path).CombinedOutput()
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	return readPNG(t, path)
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// findBars looks for the pattern's coloured bars on one row of img: runs
// of at least minRun pixels of yellow, cyan, green, magenta, red and blue,
// in that order. It returns the row and where the yellow bar starts.
func findBars(img image.Image, minRun int) (y, x int, ok bool) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		next, runStart, runLen, yellowX := 1, 0, 0, -1
		for x := b.Min.X; x < b.Max.X && next < 7; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := [3]int{int(r >> 8), int(g >> 8), int(bl >> 8)}
			if near(c, barColors[next], 30) {
				if runLen == 0 {
					runStart = x
				}
				runLen++
				if runLen == minRun {
					if next == 1 {
						yellowX = runStart
					}
					next++
					runLen = 0
				}
				continue
			}
			if runLen > 0 {
				runLen = 0 // a short run: not a bar
			}
		}
		if next == 7 {
			return y, yellowX, true
		}
	}
	return 0, 0, false
}

func near(c, want [3]int, tol int) bool {
	for k := range 3 {
		if d := c[k] - want[k]; d > tol || d < -tol {
			return false
		}
	}
	return true
}

// xdo runs xdotool on display.
func xdo(t *testing.T, display string, args ...string) string {
	t.Helper()
	cmd := exec.Command("xdotool", args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+display)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xdotool %q: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The window under a private Xvfb: a screenshot of the display shows the
// pattern's colour bars; s saves a PNG of the frame; the window says
// "waiting for producer" when the producer leaves and follows the next one
// (another size); q quits.
func TestViewWindow(t *testing.T) {
	needOpenCV(t)
	needTools(t, "Xvfb", "import", "xdotool")
	display := startXvfb(t, 1024, 768)
	dir, snaps, art := t.TempDir(), t.TempDir(), artifactDir(t)
	capt := startLive(t, nil, "capture", "--name", "win", "--source", "pattern", "--size", "640x480", "--fps", "30", "--dir", dir)
	v := startLive(t, []string{"DISPLAY=" + display}, "view", "win", "--dir", dir, "--timeout", "20s", "--snapshot-dir", snaps)
	testutil.WaitFor(t, 20*time.Second, "the window to show frames", func() bool {
		if !v.Running() {
			t.Fatalf("view ended (exit %d):\n%s", v.Code, v.Stderr.String())
		}
		return strings.Contains(v.Stderr.String(), "showing")
	})

	// The screenshot: the bars, each at least 60 of its 80 pixels wide.
	var img image.Image
	shot := filepath.Join(art, "view-window.png")
	testutil.WaitFor(t, 10*time.Second, "the pattern on the X display", func() bool {
		img = screenshot(t, display, shot)
		_, _, ok := findBars(img, 60)
		return ok
	})
	y, x, _ := findBars(img, 60)
	t.Logf("pattern bars found on the display at row %d, yellow from x=%d; screenshot %s", y, x, shot)

	// s: a snapshot of the frame, without the overlay.
	wid := xdo(t, display, "search", "--name", "framebus view win")
	wid = strings.Fields(wid)[0]
	xdo(t, display, "windowfocus", "--sync", wid)
	xdo(t, display, "key", "s")
	var saved []string
	testutil.WaitFor(t, 10*time.Second, "a snapshot", func() bool {
		saved, _ = filepath.Glob(filepath.Join(snaps, "win-*.png"))
		return len(saved) > 0
	})
	snap := readPNG(t, saved[0])
	if snap.Bounds().Size() != image.Pt(640, 480) {
		t.Fatalf("snapshot %s is %v, want 640x480", saved[0], snap.Bounds().Size())
	}
	checkPattern(t, snap, 2)

	// The producer leaves: the window stays and waits; a new producer of
	// another size is followed.
	if code := capt.Stop(t); code != 0 {
		t.Fatalf("capture exit %d", code)
	}
	testutil.WaitFor(t, 10*time.Second, "waiting for producer", func() bool { return strings.Contains(v.Stderr.String(), "waiting for producer") })
	time.Sleep(500 * time.Millisecond)
	if !v.Running() {
		t.Fatalf("view ended when the producer left:\n%s", v.Stderr.String())
	}
	screenshot(t, display, filepath.Join(art, "view-window-waiting.png"))
	startLive(t, nil, "capture", "--name", "win", "--source", "pattern", "--size", "320x240", "--format", "YUYV", "--fps", "30", "--dir", dir)
	testutil.WaitFor(t, 20*time.Second, "the new producer on the window", func() bool {
		return strings.Contains(v.Stderr.String(), `format="320x240 YUYV @ 30 fps"`)
	})
	testutil.WaitFor(t, 10*time.Second, "the smaller pattern on the X display", func() bool {
		img = screenshot(t, display, filepath.Join(art, "view-window-320.png"))
		_, _, ok := findBars(img, 30)
		_, _, big := findBars(img, 60)
		return ok && !big
	})

	// q quits.
	xdo(t, display, "windowfocus", "--sync", wid)
	xdo(t, display, "key", "q")
	select {
	case <-v.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("q did not end the view:\n%s", v.Stderr.String())
	}
	if v.Code != 0 {
		t.Fatalf("view exit %d:\n%s", v.Code, v.Stderr.String())
	}
}

// Without a display the window refuses at once, naming the alternatives.
func TestViewWindowNoDisplay(t *testing.T) {
	needOpenCV(t)
	cmd := exec.Command(bin, "view", "cam0", "--dir", t.TempDir())
	cmd.Env = append(os.Environ(), "DISPLAY=")
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 2 || !strings.Contains(se.String(), "--http") || !strings.Contains(se.String(), "xvfb-run") {
		t.Fatalf("%v, stderr:\n%s", err, se.String())
	}
	_ = fmt.Sprint
}
