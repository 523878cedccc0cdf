package capture

import (
	"fmt"

	"github.com/framebus/framebus/framebus"
	"github.com/pion/mediadevices/pkg/driver"
	_ "github.com/pion/mediadevices/pkg/driver/videotest" // registers the "VideoTest" driver; pure Go
)

func init() {
	Register("videotest", func(c Config) (Source, error) {
		s, err := NewVideoTest(c)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	})
}

// videoTestLabel is the label of mediadevices' videotest driver.
const videoTestLabel = "VideoTest"

// NewVideoTest opens pion/mediadevices' fake camera (pkg/driver/videotest):
// 640x480 colour bars, a grey ramp and a noise area that changes every
// frame, as limited-range YCbCr 4:2:2, at cfg.FPS (0: up to 1000 fps), in
// cfg.PixelFormat (default YUYV, its own layout). It has one size: another
// cfg size is ignored and Format says the real one. One videotest source
// can be open in a process at a time.
//
// It is reached through mediadevices' driver manager rather than
// GetUserMedia, which picks the best-scoring of all the camera drivers in
// the build (a real camera would win).
func NewVideoTest(cfg Config) (Source, error) {
	pf, num, den, err := mediaConfig("videotest", cfg, framebus.FormatYUYV)
	if err != nil {
		return nil, err
	}
	ds := findDrivers(func(d driver.Driver) bool { return d.Info().Label == videoTestLabel })
	if len(ds) == 0 {
		return nil, fmt.Errorf("videotest: mediadevices registered no %q driver", videoTestLabel)
	}
	d := ds[0]
	rec, err := openRecorder("videotest", d)
	if err != nil {
		return nil, err
	}
	modes := d.Properties() // one: 640x480 YUYV at 30 fps
	if len(modes) == 0 {
		d.Close()
		return nil, fmt.Errorf("videotest: the driver has no video mode")
	}
	mode := modes[0]
	mode.FrameRate = driverRate(num, den) // its ticker runs at whatever it is given
	r, err := rec.VideoRecord(mode)
	if err != nil {
		d.Close() // VideoRecord closes it on error; again is harmless
		return nil, fmt.Errorf("videotest: %w", err)
	}
	return startMedia("videotest", r, d.Close, pf, num, den, LimitedRange)
}
