//go:build framebus_media && cgo && linux

package capture

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/xvfb"
)

func TestScreenNoDisplay(t *testing.T) {
	t.Setenv("DISPLAY", "")
	_, err := Open("screen", Config{FPS: 30})
	const want = "no X display for screen (DISPLAY is not set); run under xvfb-run or use --source videotest"
	if !errors.Is(err, ErrBadConfig) || !errors.Is(err, ErrUnavailable) || err.Error() != want {
		t.Errorf("Open(screen) without DISPLAY = %v, want %q (ErrBadConfig)", err, want)
	}
	// The format is checked first.
	if _, err := Open("screen", Config{PixelFormat: framebus.FormatMJPEG}); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "MJPEG") {
		t.Errorf("screen in MJPEG: %v", err)
	}
}

// startXvfb runs a private X server of w x h (internal/xvfb) and returns its display.
func startXvfb(t testing.TB, w, h int) string {
	t.Helper()
	return xvfb.Start(t, w, h, "-retro")
}

// A display that does not open.
func TestScreenBadDisplay(t *testing.T) {
	t.Setenv("DISPLAY", ":9876")
	_, err := Open("screen", Config{})
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), `X display ":9876"`) || !strings.Contains(err.Error(), "xvfb-run") {
		t.Errorf("Open(screen) on a dead display: %v", err)
	}
}

func TestScreenUnderXvfb(t *testing.T) {
	disp := startXvfb(t, 320, 240)
	t.Setenv("DISPLAY", disp)
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatNV12} {
		// The size asked is ignored: the screen's wins.
		src, err := Open("screen", Config{Width: 1280, Height: 720, FPS: 60, PixelFormat: pf})
		if err != nil {
			t.Fatal(err)
		}
		f := src.Format()
		want, _ := framebus.Format{Width: 320, Height: 240, PixelFormat: pf, FPSNum: 60, FPSDen: 1}.Complete()
		if f != want {
			src.Close()
			t.Fatalf("Format() = %v, want %v", f, want)
		}
		buf := make([]byte, f.FrameSize)
		var last int64
		for i := 0; i < 5; i++ {
			n, ns, err := src.Read(context.Background(), buf)
			if err != nil || n != int(f.FrameSize) || ns <= last {
				src.Close()
				t.Fatalf("frame %d: %d bytes at %d (previous %d): %v", i, n, ns, last, err)
			}
			last = ns
		}
		if pf == framebus.FormatRGBA {
			// Xvfb's root window is the X weave: black and white pixels.
			var black, white int
			for i := 0; i < len(buf); i += 4 {
				switch {
				case buf[i] == 0 && buf[i+1] == 0 && buf[i+2] == 0:
					black++
				case buf[i] == 255 && buf[i+1] == 255 && buf[i+2] == 255:
					white++
				}
				if buf[i+3] != 255 {
					t.Fatalf("pixel %d: alpha %d", i/4, buf[i+3])
				}
			}
			if black+white != 320*240 || black == 0 || white == 0 {
				t.Errorf("the root window: %d black and %d white pixels of %d", black, white, 320*240)
			}
		}
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}
}

// The rate into a bus, and the allocations per frame (all mediadevices').
func TestScreenIntoBus(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a second")
	}
	disp := startXvfb(t, 1280, 720)
	t.Setenv("DISPLAY", disp)
	for _, fps := range []float64{30, 0} {
		src, err := Open("screen", Config{FPS: fps})
		if err != nil {
			t.Fatal(err)
		}
		rate, allocs := pump(t, src, 700*time.Millisecond)
		t.Logf("screen 1280x720 RGBA --fps %v into a bus: %.0f fps, %.1f allocations per frame (mediadevices')", fps, rate, allocs)
		if fps == 30 && (rate < 10 || rate > 40) { // a loaded machine delivers late, never early
			t.Errorf("screen at 30 fps delivers %.1f fps", rate)
		}
		src.Close()
	}
}

func BenchmarkScreenIntoBus(b *testing.B) {
	b.Setenv("DISPLAY", startXvfb(b, 1280, 720))
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatNV12} {
		b.Run(pf.String(), func(b *testing.B) {
			src, err := Open("screen", Config{FPS: 0, PixelFormat: pf})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			benchIntoBus(b, src)
		})
	}
}

// pump publishes src's frames on a bus for d and returns the frames per
// second and the allocations per frame of the loop.
func pump(t testing.TB, src Source, d time.Duration) (fps, allocs float64) {
	t.Helper()
	frame := publisher(t, src)
	frame() // the constructor's frame
	n, t0 := 0, time.Now()
	for time.Since(t0) < d {
		frame()
		n++
	}
	fps = float64(n) / time.Since(t0).Seconds()
	return fps, testing.AllocsPerRun(20, frame)
}
