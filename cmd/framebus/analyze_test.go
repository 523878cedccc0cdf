package main

import (
	"context"
	"encoding/json"
	"image"
	"image/draw"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// analyzeLine is one line of analyze's output.
type analyzeLine struct {
	Seq        uint64 `json:"seq"`
	Generation uint64 `json:"generation"`
	CaptureNS  int64  `json:"capture_ns"`
	CommitNS   int64  `json:"commit_ns"`
	ResultNS   int64  `json:"result_ns"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	Detect     string `json:"detect"`
	Boxes      []struct {
		X, Y, W, H int
	} `json:"boxes"`
	LatencyCaptureUS float64 `json:"latency_capture_us"`
	LatencyCommitUS  float64 `json:"latency_commit_us"`
	Dropped          uint64  `json:"dropped"`
}

func parseAnalyze(t *testing.T, out string) []analyzeLine {
	t.Helper()
	var lines []analyzeLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var a analyzeLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("analyze printed %q: %v", l, err)
		}
		if a.ResultNS < a.CommitNS || a.CommitNS < a.CaptureNS || a.LatencyCaptureUS < a.LatencyCommitUS || a.LatencyCommitUS < 0 {
			t.Fatalf("times out of order: %+v", a)
		}
		lines = append(lines, a)
	}
	return lines
}

// publishStill publishes img (RGBA) on bus name at about 50 fps until the
// test ends: a camera looking at a still picture.
func publishStill(t *testing.T, dir, name string, img *image.RGBA) {
	t.Helper()
	b := img.Bounds()
	p, err := framebus.Create(name, framebus.ProducerOptions{Dir: dir,
		Format: framebus.Format{Width: uint32(b.Dx()), Height: uint32(b.Dy()), PixelFormat: framebus.FormatRGBA, FPSNum: 50, FPSDen: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := p.Publish(img.Pix, framebus.Meta{CaptureNS: framebus.Now()}); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Close()
	})
}

// runAnalyze runs analyze on bus name until it has analysed frames frames,
// and returns its lines.
func runAnalyze(t *testing.T, dir, name string, frames int, extra ...string) ([]analyzeLine, string) {
	t.Helper()
	// Ended by the frame count, not by a duration: a loaded machine analyses
	// fewer frames per second, never fewer frames. --duration only bounds a
	// run that goes wrong.
	const bound = 2 * time.Minute
	args := append([]string{"analyze", name, "--dir", dir, "--frames", strconv.Itoa(frames), "--duration", bound.String(), "--timeout", "20s"}, extra...)
	a := startLive(t, nil, args...)
	select {
	case <-a.Done():
	case <-time.After(bound + 20*time.Second):
		a.Cmd.Process.Signal(syscall.SIGQUIT)
		<-a.Done()
		t.Fatalf("analyze did not end after --duration %v:\n%s", bound, a.Stderr.String())
	}
	if a.Code != 0 {
		t.Fatalf("analyze exit %d:\n%s", a.Code, a.Stderr.String())
	}
	lines := parseAnalyze(t, a.Stdout.String())
	if len(lines) != frames {
		t.Fatalf("analyze --frames %d printed %d lines:\n%s", frames, len(lines), a.Stderr.String())
	}
	return lines, a.Stderr.String()
}

// Motion on the moving pattern: boxes in nearly every frame, one of them in
// the colour bars (the bouncing box; the frame counter below moves too).
// analyze starts before the producer and waits for it.
func TestAnalyzeMotionOnThePattern(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	a := startLive(t, nil, "analyze", "moving", "--detect", "motion", "--dir", dir, "--duration", "4s", "--timeout", "20s")
	testutil.WaitFor(t, 10*time.Second, "the wait for a producer", func() bool { return strings.Contains(a.Stderr.String(), "waiting for producer") })
	startCapture(t, dir, "moving", "--size", "320x240", "--fps", "30", "--duration", "2500ms")
	if code := a.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("analyze exit %d:\n%s", code, a.Stderr.String())
	}
	lines := parseAnalyze(t, a.Stdout.String())
	// 75 frames published; how many of them a loaded machine analyses
	// varies (latest-frame semantics), so the bound is loose and what is
	// checked is that every frame is either analysed or counted as skipped.
	if len(lines) < 10 {
		t.Fatalf("%d frames analysed of 2.5 s at 30 fps:\n%s", len(lines), a.Stderr.String())
	}
	checkAnalyzeGaps(t, lines)
	inBars, withBoxes := 0, 0
	for _, l := range lines[1:] { // the first frame has nothing to compare with
		if len(l.Boxes) > 0 {
			withBoxes++
		}
		for _, b := range l.Boxes {
			if b.Y < 150 && b.W >= 20 && b.H >= 20 { // the bars are the top 160 rows
				inBars++
				break
			}
		}
		if l.Width != 320 || l.Height != 240 || l.Detect != "motion" {
			t.Fatalf("line %+v", l)
		}
	}
	if withBoxes < len(lines)*9/10 || inBars < len(lines)*9/10 {
		t.Errorf("of %d frames, %d had motion, %d in the bars; want nearly all", len(lines)-1, withBoxes, inBars)
	}
	if !strings.Contains(a.Stderr.String(), "stream_closed=true") {
		t.Errorf("analyze did not end with the stream:\n%s", a.Stderr.String())
	}
}

// checkAnalyzeGaps asserts that each line's dropped is exactly the gap in
// the sequence numbers since the line before: every frame is analysed or
// counted as skipped.
func checkAnalyzeGaps(t *testing.T, lines []analyzeLine) {
	t.Helper()
	for i := 1; i < len(lines); i++ {
		if gap := lines[i].Seq - lines[i-1].Seq - 1; gap != lines[i].Dropped {
			t.Fatalf("seq %d after %d with dropped=%d", lines[i].Seq, lines[i-1].Seq, lines[i].Dropped)
		}
	}
}

// The pattern, still: no motion at all.
func TestAnalyzeMotionOnAStillPicture(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	img := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for y := range 240 {
		for x := range 320 {
			c := barColors[x*8/320]
			o := img.PixOffset(x, y)
			img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = uint8(c[0]), uint8(c[1]), uint8(c[2]), 255
		}
	}
	publishStill(t, dir, "still", img)
	lines, _ := runAnalyze(t, dir, "still", 20, "--detect", "motion")
	for _, l := range lines {
		if len(l.Boxes) != 0 {
			t.Fatalf("motion on a still picture: %+v", l)
		}
	}
}

// gocvFace is gocv's sample face picture (in the module cache, no download).
func gocvFace(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	if err != nil {
		t.Fatalf("go list -m gocv.io/x/gocv: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "images", "face.jpg")
}

const faceCascade = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"

// A frame made of a real face picture: a face found, where the face is.
func TestAnalyzeFaces(t *testing.T) {
	needOpenCV(t)
	if _, err := os.Stat(faceCascade); err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_BROWSER") != "" {
			t.Fatalf("%v (make sysdeps installs opencv-data)", err)
		}
		t.Skipf("%v (apt-get install opencv-data)", err)
	}
	f, err := os.Open(gocvFace(t))
	if err != nil {
		t.Fatal(err)
	}
	src, err := jpeg.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewRGBA(src.Bounds())
	draw.Draw(img, img.Bounds(), src, src.Bounds().Min, draw.Src)
	dir := t.TempDir()
	publishStill(t, dir, "face", img)
	lines, _ := runAnalyze(t, dir, "face", 5, "--detect", "faces")
	for _, l := range lines {
		if len(l.Boxes) != 1 {
			t.Fatalf("faces %+v, want one", l.Boxes)
		}
		b := l.Boxes[0]
		if cx, cy := b.X+b.W/2, b.Y+b.H/2; cx < 290 || cx > 420 || cy < 180 || cy > 330 {
			t.Fatalf("face box %+v, want one around (350,250)", b)
		}
	}
}

// Slower than the camera: analyze takes the newest frame and says how many
// it skipped, exactly the gaps in the sequence numbers.
func TestAnalyzeSkipsToTheNewest(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	startCapture(t, dir, "fast", "--size", "1280x720", "--fps", "0")
	lines, _ := runAnalyze(t, dir, "fast", 5, "--detect", "faces")
	checkAnalyzeGaps(t, lines)
	var skipped uint64
	for _, l := range lines[1:] {
		skipped += l.Dropped
	}
	if skipped == 0 {
		t.Errorf("no frame skipped analysing %d frames of a producer as fast as it can", len(lines))
	}
}

func TestAnalyzeBadOptions(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"analyze", "x"}, "--detect motion or --detect faces is required"},
		{[]string{"analyze", "x", "--detect", "cats"}, `--detect "cats": want motion or faces`},
		{[]string{"analyze", "x", "--detect", "faces", "--cascade", filepath.Join(dir, "none.xml")}, "face cascade"},
		{[]string{"analyze", "x", "--detect", "motion", "--threshold", "0"}, "--threshold 0"},
		{[]string{"record", "x"}, "--out FILE is required"},
		{[]string{"record", "x", "--out", filepath.Join(dir, "no", "such", "dir.avi")}, "no directory"},
	} {
		r := run(t, append(c.args, "--dir", dir, "--timeout", "0s")...)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, r.Code, r.Stderr, c.want)
		}
	}
	// No producer within --timeout: exit 1.
	r := run(t, "analyze", "nobody", "--detect", "motion", "--timeout", "300ms", "--dir", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "after waiting 300ms") {
		t.Errorf("no producer: exit %d:\n%s", r.Code, r.Stderr)
	}
}
