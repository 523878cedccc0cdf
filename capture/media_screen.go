//go:build framebus_media && cgo && linux

package capture

// #cgo pkg-config: x11
// #include <X11/Xlib.h>
import "C"

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/pion/mediadevices"
	"github.com/pion/mediadevices/pkg/driver"
	"github.com/pion/mediadevices/pkg/driver/screen" // X11 through cgo (libx11-dev, libxext-dev)
	"github.com/pion/mediadevices/pkg/prop"
)

func init() {
	Register("screen", func(c Config) (Source, error) {
		s, err := NewScreen(c)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// screenInit guards screen.Initialize, which registers one driver per X
// screen each time it finds a display.
var screenInit sync.Mutex

// NewScreen captures the X display of $DISPLAY (its first screen, whole)
// through mediadevices.GetDisplayMedia, as RGBA at cfg.FPS (0: up to 1000
// fps), converted to cfg.PixelFormat (default RGBA). The size is the
// screen's: another cfg size is ignored and Format says the real one.
//
// With no DISPLAY, or none that opens, the error is an UnavailableError
// (ErrBadConfig: the command exits 2).
func NewScreen(cfg Config) (Source, error) {
	pf, num, den, err := mediaConfig("screen", cfg, framebus.FormatRGBA)
	if err != nil {
		return nil, err
	}
	disp := os.Getenv("DISPLAY")
	if disp == "" {
		return nil, &UnavailableError{Source: "screen", Msg: "no X display for screen (DISPLAY is not set); run under xvfb-run or use --source videotest"}
	}
	hold := xHold()
	if hold == nil {
		return nil, &UnavailableError{Source: "screen", Msg: fmt.Sprintf("cannot open the X display %q for screen; run under xvfb-run or use --source videotest", disp)}
	}
	release := func() { C.XCloseDisplay(hold) }
	if !haveScreens() {
		release()
		return nil, &UnavailableError{Source: "screen", Msg: fmt.Sprintf("no screen on the X display %q; run under xvfb-run or use --source videotest", disp)}
	}
	rate := driverRate(num, den)
	stream, err := mediadevices.GetDisplayMedia(mediadevices.MediaStreamConstraints{
		Video: func(c *mediadevices.MediaTrackConstraints) { c.FrameRate = prop.Float(rate) },
	})
	if err != nil { // most likely: the display of the driver's first Open is gone
		release()
		return nil, &UnavailableError{Source: "screen", Msg: fmt.Sprintf("cannot capture the X display %q for screen (%v); run under xvfb-run or use --source videotest", disp, err), Err: err}
	}
	tracks := stream.GetVideoTracks()
	if len(tracks) == 0 {
		release()
		return nil, fmt.Errorf("screen: display %s: no video track", disp)
	}
	for _, t := range tracks[1:] {
		t.Close()
	}
	vt, ok := tracks[0].(*mediadevices.VideoTrack)
	if !ok {
		tracks[0].Close()
		release()
		return nil, fmt.Errorf("screen: display %s: a %T, not a video track", disp, tracks[0])
	}
	// One reader, not copying: the driver's RGBA buffer is reused for the
	// next frame, which the reader goroutine reads only after Read has
	// converted this one.
	stop := func() error {
		err := vt.Close()
		release()
		return err
	}
	return startMedia("screen", vt.NewReader(false), stop, pf, num, den, LimitedRange)
}

// xHold opens a connection to $DISPLAY for the source to keep until it
// closes, or returns nil. An X server resets when its last client leaves
// (Xvfb and xvfb-run's do, without -noreset), and mediadevices opens and
// closes the display several times while it sets up (screen.Initialize,
// Properties, Open): without a connection held, one of them can come during
// a reset and fail. It retries for a second, for a reset under way.
func xHold() *C.Display {
	deadline := time.Now().Add(time.Second)
	for {
		if dp := C.XOpenDisplay(nil); dp != nil {
			return dp
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haveScreens reports whether mediadevices has a screen driver, registering
// the screens of $DISPLAY if it has none (its init found no display: DISPLAY
// was set later, or the server was not up yet).
func haveScreens() bool {
	isScreen := func(d driver.Driver) bool { return d.Info().DeviceType == driver.Screen }
	screenInit.Lock()
	defer screenInit.Unlock()
	if len(findDrivers(isScreen)) > 0 {
		return true
	}
	screen.Initialize()
	return len(findDrivers(isScreen)) > 0
}
