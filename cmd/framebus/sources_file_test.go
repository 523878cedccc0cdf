package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fileMissing is what capture --source file:clip.mp4 (no such file here)
// says, with and without OpenCV in the build.
var fileMissing = map[bool]string{
	true:  "source file: stat clip.mp4: no such file or directory",
	false: "source file: needs a build with OpenCV (-tags framebus_opencv, make build)",
}[hasOpenCV]

// testClip is the pattern source recorded: 320x240, 60 frames at 25 fps,
// MJPEG (capture/file_test.go writes it).
const testClip = "../../testdata/pattern.avi"

func needOpenCV(t *testing.T) {
	t.Helper()
	if !hasOpenCV {
		t.Skip("the binary has no OpenCV (build with -tags framebus_opencv; make test does)")
	}
}

var framesClosed = regexp.MustCompile(`closed the bus .*frames=(\d+)`)

// A video file published on a bus and read back by tail: at the file's own
// size and rate (25 fps, not the --fps default of 30), across the end of the
// 2.4 s clip; and scaled, in another format, at a rate of our choosing.
func TestCaptureFileThenTail(t *testing.T) {
	needOpenCV(t)
	for _, c := range []struct {
		name      string
		extra     []string
		format    string // as the "publishing" line says
		bytes     int
		duration  string
		published [2]int // bounds of the frames published
		minTailed int
	}{
		{"own size and rate", nil, "320x240 RGBA (AB24) @ 25 fps", 320 * 240 * 4, "3s", [2]int{60, 80}, 35},
		{"scaled", []string{"--size", "1280x720", "--format", "NV12", "--fps", "50"}, "1280x720 NV12 @ 50 fps", 1280 * 720 * 3 / 2, "2s", [2]int{75, 105}, 40},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			tail := start(t, "tail", "clip", "--dir", dir, "--timeout", "20s")
			args := append([]string{"capture", "--name", "clip", "--source", "file:" + testClip, "--duration", c.duration, "--dir", dir}, c.extra...)
			capt := run(t, args...)
			if capt.Code != 0 {
				t.Fatalf("capture exit %d:\n%s", capt.Code, capt.Stderr)
			}
			if !strings.Contains(capt.Stderr, `format="`+c.format+`"`) {
				t.Errorf("capture did not publish %s:\n%s", c.format, capt.Stderr)
			}
			m := framesClosed.FindStringSubmatch(capt.Stderr)
			if m == nil {
				t.Fatalf("no frame count in the capture's log:\n%s", capt.Stderr)
			}
			if n, _ := strconv.Atoi(m[1]); n < c.published[0] || n > c.published[1] {
				t.Errorf("published %d frames in %s, want %d to %d", n, c.duration, c.published[0], c.published[1])
			}
			if code := tail.Wait(t, 15*time.Second); code != 0 {
				t.Fatalf("tail exit %d:\n%s", code, tail.Stderr.String())
			}
			n := checkTailFrames(t, tail.Stdout.String(), c.bytes)
			if n < c.minTailed {
				t.Errorf("tail printed %d frames, want at least %d", n, c.minTailed)
			}
		})
	}
}

// Everything wrong with the file is a one-line usage error (exit 2) found
// before the bus exists.
func TestCaptureFileErrors(t *testing.T) {
	needOpenCV(t)
	tmp := t.TempDir()
	junk := filepath.Join(tmp, "junk.mp4")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a video\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--source", "file:/nonexistent"}, "source file: stat /nonexistent: no such file or directory"},
		{[]string{"--source", "file:" + junk}, "source file: " + junk + ": not a video file that OpenCV (FFmpeg) can open"},
		{[]string{"--source", "file:" + tmp}, "is a directory"},
		{[]string{"--source", "file"}, "source file: no file named: use file:PATH"},
		{[]string{"--source", "file:" + testClip, "--format", "MJPEG"}, "the file source makes RGBA"},
		{[]string{"--source", "file:" + testClip, "--size", "321x240", "--format", "I420"}, "even dimensions"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			r := run(t, append([]string{"capture", "--name", "x", "--dir", dir}, c.args...)...)
			if r.Code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", r.Code, r.Stderr)
			}
			msg := strings.TrimRight(r.Stderr, "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) {
				t.Errorf("stderr %q: want one line saying %q", r.Stderr, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("a usage error left %d files in the bus directory", len(ents))
			}
		})
	}
}
