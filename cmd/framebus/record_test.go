//go:build framebus_opencv

package main

import (
	"image"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/internal/testutil"
)

var recorded = regexp.MustCompile(`^recorded (\d+) frames \((\d+) dropped\) to (.+): (\d+)x(\d+) MJPEG at ([\d.]+) fps\n$`)

// record writes the pattern to an MJPEG .avi at the bus's rate; the file
// read back (gocv, and the file: source of capture) has the frames record
// says it wrote, the size and rate of the bus, and the pattern's colours.
func TestRecord(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "rec.avi")
	rec := startLive(t, nil, "record", "rec", "--out", out, "--dir", dir, "--timeout", "20s")
	testutil.WaitFor(t, 10*time.Second, "the wait for a producer", func() bool { return strings.Contains(rec.Stderr.String(), "waiting for producer") })
	startCapture(t, dir, "rec", "--size", "320x240", "--fps", "25", "--duration", "2s")
	if code := rec.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("record exit %d:\n%s", code, rec.Stderr.String())
	}
	m := recorded.FindStringSubmatch(rec.Stdout.String())
	if m == nil {
		t.Fatalf("record printed %q", rec.Stdout.String())
	}
	written, _ := strconv.Atoi(m[1])
	if written < 10 || // 50 published; a loaded machine records fewer, each counted
		m[3] != out || m[4] != "320" || m[5] != "240" || m[6] != "25" {
		t.Fatalf("record: %q", m[0])
	}

	vc, err := gocv.VideoCaptureFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	if fps := vc.Get(gocv.VideoCaptureFPS); fps != 25 {
		t.Errorf("the file's rate is %v fps, want 25 (the bus's)", fps)
	}
	frame := gocv.NewMat()
	defer frame.Close()
	n := 0
	for vc.Read(&frame) && !frame.Empty() {
		if n == 10 {
			img, err := frame.ToImage()
			if err != nil {
				t.Fatal(err)
			}
			if img.Bounds().Size() != image.Pt(320, 240) {
				t.Fatalf("frame of %v, want 320x240", img.Bounds().Size())
			}
			checkPattern(t, img, 40)
		}
		n++
	}
	if n != written {
		t.Errorf("the file has %d frames, record says it wrote %d", n, written)
	}

	// The file plays back through capture's file: source.
	capt := run(t, "capture", "--name", "replay", "--source", "file:"+out, "--duration", "1s", "--dir", dir)
	if capt.Code != 0 || !strings.Contains(capt.Stderr, `format="320x240 RGBA (AB24) @ 25 fps"`) {
		t.Errorf("capture --source file:%s: exit %d\n%s", out, capt.Code, capt.Stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Errorf("%s: %v", out, err)
	}
}
