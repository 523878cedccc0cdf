//go:build framebus_media && cgo && linux

package capture

import (
	"fmt"
	"strings"

	"github.com/framebus/framebus/framebus"
	"github.com/pion/mediadevices/pkg/driver"
	_ "github.com/pion/mediadevices/pkg/driver/camera" // V4L2 through cgo; finds /dev/video* at init
	"github.com/pion/mediadevices/pkg/frame"
)

func init() {
	Register("camera", func(c Config) (Source, error) {
		s, err := NewCamera(c)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// NewCamera opens the V4L2 camera cfg.Arg (default /dev/video0) through
// pion/mediadevices' camera driver, in the mode chooseCameraMode picks for
// cfg's size (none, or a DefaultSize: the camera's largest at the rate),
// rate and format, and converts its frames to cfg.PixelFormat (default
// YUYV).
//
// A device that does not exist is an UnavailableError, found before
// anything is opened ("/dev/video0 does not exist; try --source videotest").
//
// No passthrough: mediadevices v0.9.4's camera driver hands out decoded
// images only (camera_linux.go copies each V4L2 buffer and runs
// frame.NewDecoder's decoder on it: YUYV is split into Y, Cb and Cr planes,
// MJPEG goes through image/jpeg), and keeps the device (a
// *webcam.Webcam) unexported. So --format MJPEG is refused, and YUYV from a
// YUYV mode is re-interleaved from those planes: the camera's bytes, bit for
// bit, for one more pass over the frame. Raw frames would take our own V4L2
// capture (github.com/blackjack/webcam directly), not mediadevices.
func NewCamera(cfg Config) (Source, error) {
	pf, num, den, err := mediaConfig("camera", cfg, framebus.FormatYUYV)
	if err != nil {
		if cfg.PixelFormat == framebus.FormatMJPEG {
			return nil, &ConfigError{Source: "camera", Err: fmt.Errorf("pixel format MJPEG: pion/mediadevices v0.9.4 decodes every camera frame (no raw MJPEG); use YUYV (bit-exact from a YUYV camera), NV12, I420, RGBA, RGB24, BGR24 or GREY")}
		}
		return nil, err
	}
	path, node, err := cameraPath(cfg.Arg)
	if err != nil {
		return nil, err
	}
	ds := findDrivers(func(d driver.Driver) bool { return isCameraNode(d, node) })
	if len(ds) == 0 {
		var found []string
		for _, d := range findDrivers(func(d driver.Driver) bool { return d.Info().DeviceType == driver.Camera }) {
			found = append(found, d.Info().Label)
		}
		return nil, &UnavailableError{Source: "camera", Msg: fmt.Sprintf("%s is not a camera that pion/mediadevices found at start-up (it found: %s)", path, strings.Join(found, ", "))}
	}
	d := ds[0]
	rec, err := openRecorder("camera "+path, d)
	if err != nil {
		return nil, err
	}
	fps := 0.0
	if num != 0 {
		fps = float64(num) / float64(den)
	}
	want := Config{Width: cfg.Width, Height: cfg.Height, PixelFormat: pf}
	if cfg.DefaultSize { // no --size: the camera's own
		want.Width, want.Height = 0, 0
	}
	mode, ok := chooseCameraMode(d.Properties(), want, fps)
	if !ok {
		d.Close()
		return nil, &UnavailableError{Source: "camera", Msg: fmt.Sprintf("%s offers no format framebus takes (YUYV, NV12, I420, UYVY, NV21 or MJPEG)", path)}
	}
	if mode.FrameRate > 0 {
		num, den, _ = checkFPS(float64(mode.FrameRate))
	}
	r, err := rec.VideoRecord(mode)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("camera %s: %dx%d %s: %w", path, mode.Width, mode.Height, mode.FrameFormat, err)
	}
	return startMedia("camera "+path, r, d.Close, pf, num, den, frameRange(mode.FrameFormat))
}

// isCameraNode tells whether d is mediadevices' camera driver for the
// device node ("video0"): its label is "NAME;video0".
func isCameraNode(d driver.Driver, node string) bool {
	if d.Info().DeviceType != driver.Camera {
		return false
	}
	_, real, ok := strings.Cut(d.Info().Label, ";")
	return ok && real == node
}

// frameRange is the YCbCr range of a camera format: JPEG is full range,
// V4L2's YUV formats limited.
func frameRange(f frame.Format) Range {
	if f == frame.FormatMJPEG {
		return FullRange
	}
	return LimitedRange
}
