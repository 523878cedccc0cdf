package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/xvfb"
)

// The pion/mediadevices sources end to end: capture publishes, tail reads
// back. videotest is in every build; screen and camera only in a binary
// built with -tags framebus_media (hasMedia).

func needMedia(t *testing.T) {
	t.Helper()
	if !hasMedia {
		t.Skip("the binary has no screen or camera (build with -tags framebus_media; make test does)")
	}
}

// captureThenTail runs capture with args on the bus "m" in a new directory
// for its --duration, with a tail reading it, and returns capture's stderr
// and the frames tail saw of size bytes.
func captureThenTail(t *testing.T, bytes int, args ...string) (stderr string, frames int) {
	t.Helper()
	dir := t.TempDir()
	tail := start(t, "tail", "m", "--dir", dir, "--timeout", "20s")
	capt := run(t, append([]string{"capture", "--name", "m", "--dir", dir}, args...)...)
	if capt.Code != 0 {
		t.Fatalf("capture exit %d:\n%s", capt.Code, capt.Stderr)
	}
	if code := tail.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("tail exit %d:\n%s", code, tail.Stderr.String())
	}
	return capt.Stderr, checkTailFrames(t, tail.Stdout.String(), bytes)
}

func TestCaptureVideotestThenTail(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		format string
		bytes  int
		warn   bool
	}{
		// Its own size whatever --size says, with a warning.
		{"size asked", []string{"--size", "1280x720"}, "640x480 RGBA (AB24) @ 30 fps", 640 * 480 * 4, true},
		{"own size", []string{"--format", "YUYV"}, "640x480 YUYV @ 30 fps", 640 * 480 * 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--source", "videotest", "--duration", "1500ms"}, c.args...)
			stderr, frames := captureThenTail(t, c.bytes, args...)
			if !strings.Contains(stderr, `format="`+c.format+`"`) {
				t.Errorf("capture did not publish %s:\n%s", c.format, stderr)
			}
			const warning = "the source makes 640x480 frames, not the --size 1280x720 asked"
			if strings.Contains(stderr, warning) != c.warn {
				t.Errorf("warning %q: %v, want %v:\n%s", warning, !c.warn, c.warn, stderr)
			}
			// 1.5 s at 30 fps is 45 frames; the tail may join a little late.
			if frames < 20 || frames > 50 {
				t.Errorf("tail saw %d frames, want about 45", frames)
			}
		})
	}
}

func TestCaptureScreenThenTail(t *testing.T) {
	needMedia(t)
	t.Setenv("DISPLAY", startXvfb(t, 320, 240))
	stderr, frames := captureThenTail(t, 320*240*4, "--source", "screen", "--fps", "30", "--duration", "1500ms")
	if want := `format="320x240 RGBA (AB24) @ 30 fps"`; !strings.Contains(stderr, want) {
		t.Errorf("capture did not publish %s:\n%s", want, stderr)
	}
	if frames < 20 || frames > 50 {
		t.Errorf("tail saw %d frames, want about 45", frames)
	}
}

// usageError runs capture, which must fail with exit 2 and one line saying
// want, and leave nothing in the bus directory.
func usageError(t *testing.T, want string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	r := run(t, append([]string{"capture", "--name", "x", "--dir", dir}, args...)...)
	msg := strings.TrimRight(r.Stderr, "\n")
	if r.Code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Errorf("capture %q: exit %d, stderr %q; want exit 2 and one line saying %q", args, r.Code, r.Stderr, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("capture %q left %d files in the bus directory", args, len(ents))
	}
}

func TestCaptureScreenNoDisplay(t *testing.T) {
	t.Setenv("DISPLAY", "")
	want := "source screen: needs a build with -tags framebus_media (make build)"
	if hasMedia {
		want = "framebus capture: no X display for screen (DISPLAY is not set); run under xvfb-run or use --source videotest"
	}
	usageError(t, want, "--source", "screen")
}

func TestCaptureCameraNotThere(t *testing.T) {
	for _, dev := range []string{"", "/dev/video7"} {
		spec, path := "camera", "/dev/video0"
		if dev != "" {
			spec, path = "camera:"+dev, dev
		}
		if _, err := os.Stat(path); err == nil {
			t.Logf("%s exists here: not testing --source %s", path, spec)
			continue
		}
		want := "source camera: needs a build with -tags framebus_media (make build)"
		if hasMedia {
			want = "framebus capture: " + path + " does not exist; try --source videotest"
		}
		usageError(t, want, "--source", spec)
	}
	if hasMedia {
		usageError(t, "decodes every camera frame", "--source", "camera", "--format", "MJPEG")
	}
}

func TestCaptureHelpNamesMediaSources(t *testing.T) {
	r := run(t, "capture", "--help")
	for _, want := range []string{"videotest", "screen", "camera[:/dev/videoN]", "-tags\nframebus_media", "xvfb-run"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("capture --help does not say %q:\n%s", want, r.Stdout)
		}
	}
}

// startXvfb runs a private X server of w x h (internal/xvfb) and returns its display.
func startXvfb(t testing.TB, w, h int) string {
	t.Helper()
	return xvfb.Start(t, w, h)
}
