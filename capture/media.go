package capture

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/pion/mediadevices/pkg/driver"
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// The pion/mediadevices sources (github.com/pion/mediadevices v0.9.4):
//
//	videotest             media_videotest.go  pure Go, in every build
//	screen                media_screen.go     X11 through cgo: -tags framebus_media
//	camera[:/dev/videoN]  media_camera.go     V4L2 through cgo: -tags framebus_media
//
// Each opens its driver, reads the first frame to learn the real size (the
// driver's, whatever --size asked: the caller compares and warns), and keeps
// that frame as the first one it delivers. A goroutine of the source reads
// the driver, one frame per Read, so that Read returns when its context ends
// even while the driver blocks (videotest and screen block until their next
// tick, a camera up to its 5 s read timeout). Read converts the driver's
// image straight into the producer's slot (convert.go); our code allocates
// nothing per frame, mediadevices does (its readers make a new image or copy
// per frame; BenchmarkVideoTestIntoBus and BenchmarkScreenIntoBus count).

// ErrUnavailable is wrapped by the errors of a source that this machine
// cannot run as it is: no such camera, no X display.
var ErrUnavailable = errors.New("source unavailable")

// UnavailableError says why a source cannot run here, in words for the user
// (Msg: "/dev/video0 does not exist; try --source videotest"). It wraps
// ErrUnavailable, ErrBadConfig (nothing was created: a usage error for the
// command) and the cause, if any (fs.ErrNotExist, ...).
type UnavailableError struct {
	Source string
	Msg    string
	Err    error
}

func (e *UnavailableError) Error() string {
	if e.Msg == "" && e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *UnavailableError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnavailable, ErrBadConfig}
	}
	return []error{ErrUnavailable, ErrBadConfig, e.Err}
}

// maxDriverFPS is the rate asked of a ticking driver (videotest, screen) for
// "as fast as possible" (fps 0): their tickers need a rate.
const maxDriverFPS = 1000

// firstFrameWait bounds the wait for the first frame in a constructor (a
// camera's read timeout is 5 s).
const firstFrameWait = 10 * time.Second

// closeWait bounds the wait in Close for a driver read in flight.
const closeWait = 10 * time.Second

// mediaConfig validates what every media source takes from cfg: the pixel
// format (def if none) and the rate.
func mediaConfig(name string, cfg Config, def framebus.FourCC) (pf framebus.FourCC, num, den uint32, err error) {
	pf = cfg.PixelFormat
	if pf == 0 {
		pf = def
	}
	switch {
	case pf == framebus.FormatMJPEG:
		return 0, 0, 0, &ConfigError{Source: name, Err: fmt.Errorf("pixel format MJPEG: pion/mediadevices decodes every frame, so %s makes RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", name)}
	case !CanConvert(pf):
		return 0, 0, 0, &ConfigError{Source: name, Err: fmt.Errorf("pixel format %v: %s makes RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", pf, name)}
	}
	num, den, err = checkFPS(cfg.FPS)
	if err != nil {
		return 0, 0, 0, &ConfigError{Source: name, Err: err}
	}
	return pf, num, den, nil
}

// driverRate is the rate to ask of a ticking driver for num/den fps.
func driverRate(num, den uint32) float32 {
	if num == 0 {
		return maxDriverFPS
	}
	return float32(min(float64(num)/float64(den), maxDriverFPS))
}

// mediaSource is a Source over a mediadevices video reader.
type mediaSource struct {
	name string
	f    framebus.Format
	size int
	rng  Range // of the driver's YCbCr frames
	stop func() error
	now  func() int64

	// The reader goroutine serves one request at a time: Read asks (req),
	// the goroutine reads the driver and answers (res). A request left
	// pending by a cancelled Read is answered to the next Read.
	req     chan struct{}
	res     chan mediaFrame
	quit    chan struct{}
	done    chan struct{}
	pending bool

	first  mediaFrame // the constructor's frame, delivered by the first Read
	have   bool
	closed bool
}

type mediaFrame struct {
	img     image.Image
	release func()
	ns      int64 // when the driver returned it, on framebus.Now's clock
	err     error
}

func (fr *mediaFrame) done() {
	if fr.release != nil {
		fr.release()
	}
	*fr = mediaFrame{}
}

// startMedia runs r (from a driver or track that stop closes), reads the
// first frame and completes the format from its size: pf at num/den fps.
// On error it has closed everything.
func startMedia(name string, r video.Reader, stop func() error, pf framebus.FourCC, num, den uint32, rng Range) (*mediaSource, error) {
	m := &mediaSource{
		name: name, rng: rng, stop: stop, now: framebus.Now,
		req: make(chan struct{}, 1), res: make(chan mediaFrame, 1),
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	go m.run(r)
	fail := func(err error) (*mediaSource, error) {
		m.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), firstFrameWait)
	defer cancel()
	fr, err := m.next(ctx)
	if err != nil {
		return fail(fmt.Errorf("%s: no frame within %v", name, firstFrameWait))
	}
	if fr.err != nil {
		err := fr.err
		fr.done()
		return fail(fmt.Errorf("%s: first frame: %w", name, err))
	}
	switch fr.img.(type) {
	case *image.YCbCr, *image.RGBA, *image.Gray:
	default:
		err := fmt.Errorf("%s: the driver makes %T images, which framebus does not convert", name, fr.img)
		fr.done()
		return fail(err)
	}
	b := fr.img.Bounds()
	f, err := framebus.Format{Width: uint32(b.Dx()), Height: uint32(b.Dy()), PixelFormat: pf, FPSNum: num, FPSDen: den}.Complete()
	if err == nil && f.FrameSize > uint64(maxInt) {
		err = fmt.Errorf("frame of %d bytes is too large", f.FrameSize)
	}
	if err != nil {
		fr.done()
		return fail(&ConfigError{Source: name, Err: err})
	}
	m.f, m.size = f, int(f.FrameSize)
	m.first, m.have = fr, true
	return m, nil
}

// run is the reader goroutine.
func (m *mediaSource) run(r video.Reader) {
	defer close(m.done)
	for {
		select {
		case <-m.quit:
			return
		case <-m.req:
		}
		img, release, err := r.Read()
		m.res <- mediaFrame{img: img, release: release, ns: m.now(), err: err}
	}
}

// next returns the next frame from the driver, or the context's error.
func (m *mediaSource) next(ctx context.Context) (mediaFrame, error) {
	if m.have {
		m.have = false
		return m.first, nil
	}
	if !m.pending {
		m.req <- struct{}{}
		m.pending = true
	}
	select {
	case fr := <-m.res:
		m.pending = false
		return fr, nil
	case <-ctx.Done():
		return mediaFrame{}, ctx.Err()
	}
}

// Format returns the completed frame format, of the driver's real size.
func (m *mediaSource) Format() framebus.Format { return m.f }

// Read waits for the driver's next frame and converts it into dst.
func (m *mediaSource) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if m.closed {
		return 0, 0, ErrClosed
	}
	if len(dst) < m.size {
		return 0, 0, fmt.Errorf("capture: %s: %w: buffer of %d bytes for a frame of %d", m.name, io.ErrShortBuffer, len(dst), m.size)
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	fr, err := m.next(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer fr.done()
	if fr.err != nil {
		if errors.Is(fr.err, io.EOF) {
			return 0, 0, io.EOF
		}
		return 0, 0, fmt.Errorf("%s: %w", m.name, fr.err)
	}
	if b := fr.img.Bounds(); uint32(b.Dx()) != m.f.Width || uint32(b.Dy()) != m.f.Height {
		return 0, 0, fmt.Errorf("%s: the frame size changed from %dx%d to %dx%d", m.name, m.f.Width, m.f.Height, b.Dx(), b.Dy())
	}
	n, err := ConvertImage(dst, m.f, fr.img, m.rng)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", m.name, err)
	}
	return n, fr.ns, nil
}

// Close stops the reader goroutine (after the driver read in flight, if
// any: closing a driver under a read crashes some of them) and closes the
// driver.
func (m *mediaSource) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	close(m.quit)
	t := time.NewTimer(closeWait)
	select {
	case <-m.done:
	case <-t.C:
	}
	t.Stop()
	if m.have {
		m.have = false
		m.first.done()
	}
	select {
	case fr := <-m.res:
		fr.done()
	default:
	}
	return m.stop()
}

// findDrivers returns the registered mediadevices drivers that match.
func findDrivers(match func(driver.Driver) bool) []driver.Driver {
	return driver.GetManager().Query(driver.FilterFn(match))
}

// openRecorder opens d, which must be a video recorder.
func openRecorder(name string, d driver.Driver) (driver.VideoRecorder, error) {
	rec, ok := d.(driver.VideoRecorder)
	if !ok {
		return nil, fmt.Errorf("%s: driver %q records no video", name, d.Info().Label)
	}
	if err := d.Open(); err != nil {
		return nil, fmt.Errorf("%s: %w (one %s source per process)", name, err, name)
	}
	return rec, nil
}

// defaultCamera is what "camera" with no path opens.
const defaultCamera = "/dev/video0"

// cameraPath checks the device of a camera spec before anything is opened:
// it must exist and be a character device. It returns the path and the name
// mediadevices' camera driver knows it by (the base name of the real
// device, "video0").
func cameraPath(arg string) (path, node string, err error) {
	path = arg
	if path == "" {
		path = defaultCamera
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", "", &UnavailableError{Source: "camera", Msg: path + " does not exist; try --source videotest", Err: err}
	case err != nil:
		return "", "", &UnavailableError{Source: "camera", Err: err}
	case fi.Mode()&fs.ModeCharDevice == 0:
		return "", "", &UnavailableError{Source: "camera", Msg: path + " is not a video device (want a V4L2 node such as /dev/video0)"}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", &UnavailableError{Source: "camera", Err: err}
	}
	return path, filepath.Base(real), nil
}

// Camera frame formats: those framebus can take, best first when the
// requested pixel format does not decide. The raw ones cost a copy and a
// split into planes in mediadevices; MJPEG costs a JPEG decode (image/jpeg)
// per frame.
var cameraFormats = []frame.Format{
	frame.FormatYUYV, frame.FormatYUY2, frame.FormatNV12, frame.FormatI420,
	frame.FormatUYVY, frame.FormatNV21, frame.FormatMJPEG,
}

// nativeFormat is the camera format that holds the samples of pixel format
// pf unchanged (YUYV: the planes mediadevices splits it into are
// re-interleaved bit for bit), if any.
func nativeFormat(pf framebus.FourCC) frame.Format {
	switch pf {
	case framebus.FormatYUYV:
		return frame.FormatYUYV
	case framebus.FormatNV12:
		return frame.FormatNV12
	case framebus.FormatI420:
		return frame.FormatI420
	}
	return ""
}

// chooseCameraMode picks one of a camera's modes (its driver's Properties)
// for cfg at fps frames per second (0: the fastest):
//
//   - with a size asked (cfg.Width, cfg.Height): that size, else the
//     nearest; then a rate of at least fps; then the format;
//   - with none: a rate of at least fps; then the largest size; then the
//     format.
//
// Formats rank: the one holding pf's samples unchanged (YUYV for --format
// YUYV), then the raw ones (cameraFormats' order), MJPEG last. Last, the
// rate nearest fps; fps 0 stands for the camera's top rate. ok is false
// when no mode has a format framebus takes.
func chooseCameraMode(modes []prop.Media, cfg Config, fps float64) (best prop.Media, ok bool) {
	type score struct{ a, b, c, d float64 }
	less := func(x, y score) bool {
		switch {
		case x.a != y.a:
			return x.a < y.a
		case x.b != y.b:
			return x.b < y.b
		case x.c != y.c:
			return x.c < y.c
		}
		return x.d < y.d
	}
	if fps == 0 { // as fast as possible: the camera's top rate
		for _, m := range modes {
			fps = max(fps, float64(m.FrameRate))
		}
	}
	native := nativeFormat(cfg.PixelFormat)
	var bestScore score
	for _, m := range modes {
		rank := -1
		for i, f := range cameraFormats {
			if m.FrameFormat == f {
				rank = i + 1
			}
		}
		if rank < 0 || m.Width <= 0 || m.Height <= 0 {
			continue
		}
		if native != "" && (m.FrameFormat == native || (native == frame.FormatYUYV && m.FrameFormat == frame.FormatYUY2)) {
			rank = 0
		}
		rate := float64(m.FrameRate)
		slow := 0.0 // 1: slower than asked
		if rate > 0 && fps > 0 && rate < fps-0.01 {
			slow = 1
		}
		rateDist := math.Abs(rate - fps)
		var s score
		if cfg.Width != 0 && cfg.Height != 0 {
			dw, dh := float64(m.Width)-float64(cfg.Width), float64(m.Height)-float64(cfg.Height)
			s = score{dw*dw + dh*dh, slow, float64(rank), rateDist}
		} else {
			s = score{slow, -float64(m.Width) * float64(m.Height), float64(rank), rateDist}
		}
		if !ok || less(s, bestScore) {
			best, bestScore, ok = m, s, true
		}
	}
	return best, ok
}
