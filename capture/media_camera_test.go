//go:build framebus_media && cgo && linux

package capture

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/framebus/framebus/framebus"
)

// No /dev/video* exists on the CI machines: a camera that is not there is
// refused before anything is opened, with a usage error.
func TestCameraNotThere(t *testing.T) {
	for spec, dev := range map[string]string{"camera": "/dev/video0", "camera:/dev/video7": "/dev/video7"} {
		if _, err := os.Stat(dev); err == nil {
			t.Logf("%s exists here: not testing %q", dev, spec)
			continue
		}
		_, err := Open(spec, Config{Width: 640, Height: 480, FPS: 30})
		want := dev + " does not exist; try --source videotest"
		if err == nil || err.Error() != want || !errors.Is(err, ErrBadConfig) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want %q (ErrBadConfig, fs.ErrNotExist)", spec, err, want)
		}
	}
	// Not a device; not a camera mediadevices found.
	if _, err := Open("camera:/etc/hostname", Config{}); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "not a video device") {
		t.Errorf("camera:/etc/hostname: %v", err)
	}
	if _, err := Open("camera:/dev/null", Config{}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not a camera that pion/mediadevices found") {
		t.Errorf("camera:/dev/null: %v", err)
	}
	// No raw MJPEG through mediadevices: refused, whatever the device.
	if _, err := Open("camera", Config{PixelFormat: framebus.FormatMJPEG}); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "decodes every camera frame") {
		t.Errorf("camera in MJPEG: %v", err)
	}
}
