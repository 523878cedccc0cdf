package capture

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// --- the media source machinery, over a fake driver reader ---

// fakeReader hands out its images in turn; a nil image ends with err (or
// io.EOF). With gate set, each Read waits for a value on it.
type fakeReader struct {
	imgs  []image.Image
	err   error
	gate  chan struct{}
	reads atomic.Int32
}

func (f *fakeReader) Read() (image.Image, func(), error) {
	if f.gate != nil {
		<-f.gate
	}
	i := int(f.reads.Add(1)) - 1
	img := f.imgs[i%len(f.imgs)]
	if img == nil {
		err := f.err
		if err == nil {
			err = io.EOF
		}
		return nil, func() {}, err
	}
	return img, noRelease, nil
}

func noRelease() {}

func startFake(t *testing.T, r video.Reader, pf framebus.FourCC) (*mediaSource, *atomic.Int32) {
	t.Helper()
	stops := new(atomic.Int32)
	m, err := startMedia("fake", r, func() error { stops.Add(1); return nil }, pf, 30, 1, LimitedRange)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, stops
}

func TestMediaSourceFormatFromFirstFrame(t *testing.T) {
	fr := &fakeReader{imgs: []image.Image{image.NewYCbCr(image.Rect(0, 0, 64, 48), image.YCbCrSubsampleRatio422)}}
	m, _ := startFake(t, fr, framebus.FormatNV12)
	want, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatNV12, FPSNum: 30, FPSDen: 1}.Complete()
	if m.Format() != want {
		t.Errorf("Format() = %+v, want %+v", m.Format(), want)
	}
	// The first Read delivers the frame read by the constructor.
	buf := make([]byte, want.FrameSize)
	before := framebus.Now()
	n, ns, err := m.Read(context.Background(), buf)
	if err != nil || n != int(want.FrameSize) || ns > before {
		t.Fatalf("first Read = %d, %d, %v; want %d bytes captured before %d", n, ns, err, want.FrameSize, before)
	}
	if got := fr.reads.Load(); got != 1 {
		t.Errorf("the driver was read %d times for the first frame, want 1", got)
	}
	if _, ns2, err := m.Read(context.Background(), buf); err != nil || ns2 <= ns || fr.reads.Load() != 2 {
		t.Errorf("second Read: %d (after %d), %v, %d driver reads", ns2, ns, err, fr.reads.Load())
	}
}

func TestMediaSourceBadFirstFrame(t *testing.T) {
	stop := func() error { return nil }
	_, err := startMedia("fake", &fakeReader{imgs: []image.Image{image.NewNRGBA(image.Rect(0, 0, 4, 4))}}, stop, framebus.FormatRGBA, 0, 1, LimitedRange)
	if err == nil || !strings.Contains(err.Error(), "*image.NRGBA") {
		t.Errorf("NRGBA frames: %v", err)
	}
	_, err = startMedia("fake", &fakeReader{imgs: []image.Image{image.NewRGBA(image.Rect(0, 0, 5, 3))}}, stop, framebus.FormatNV12, 0, 1, LimitedRange)
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "even dimensions") {
		t.Errorf("a 5x3 frame in NV12: %v, want ErrBadConfig", err)
	}
	_, err = startMedia("fake", &fakeReader{imgs: []image.Image{nil}, err: errors.New("boom")}, stop, framebus.FormatRGBA, 0, 1, LimitedRange)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing driver: %v", err)
	}
}

func TestMediaSourceErrors(t *testing.T) {
	small, big := image.NewRGBA(image.Rect(0, 0, 4, 4)), image.NewRGBA(image.Rect(0, 0, 8, 4))
	m, _ := startFake(t, &fakeReader{imgs: []image.Image{small, big, small, nil}, err: errors.New("unplugged")}, framebus.FormatRGBA)
	buf := make([]byte, 64)
	ctx := context.Background()
	if _, _, err := m.Read(ctx, buf[:63]); !errors.Is(err, io.ErrShortBuffer) {
		t.Errorf("short buffer: %v", err)
	}
	m.Read(ctx, buf)
	if _, _, err := m.Read(ctx, buf); err == nil || !strings.Contains(err.Error(), "changed from 4x4 to 8x4") {
		t.Errorf("size change: %v", err)
	}
	if _, _, err := m.Read(ctx, buf); err != nil {
		t.Errorf("after a size change: %v", err)
	}
	if _, _, err := m.Read(ctx, buf); err == nil || !strings.Contains(err.Error(), "unplugged") {
		t.Errorf("driver error: %v", err)
	}
	m2, _ := startFake(t, &fakeReader{imgs: []image.Image{small, nil}}, framebus.FormatRGBA)
	m2.Read(ctx, buf)
	if _, _, err := m2.Read(ctx, buf); err != io.EOF {
		t.Errorf("end of the driver's stream: %v, want io.EOF", err)
	}
}

// Read returns when its context ends although the driver blocks; the frame
// it asked for goes to the next Read. Close waits for the driver read in
// flight before it closes the driver.
func TestMediaSourceCancelAndClose(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	fr := &fakeReader{imgs: []image.Image{img}, gate: make(chan struct{}, 1)}
	fr.gate <- struct{}{} // the constructor's frame
	m, stops := startFake(t, fr, framebus.FormatRGBA)
	buf := make([]byte, 64)
	m.Read(context.Background(), buf)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, _, err := m.Read(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with the driver blocked: %v, want the deadline", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Read took %v to see its deadline", d)
	}
	fr.gate <- struct{}{}
	if _, _, err := m.Read(context.Background(), buf); err != nil || fr.reads.Load() != 2 {
		t.Errorf("Read after a cancelled one: %v, %d driver reads (want 2: the pending one)", err, fr.reads.Load())
	}

	// Close with a read in flight: it waits for the driver.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	m.Read(ctx, buf) // leaves a request pending
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close did not wait for the driver read in flight")
	case <-time.After(50 * time.Millisecond):
	}
	if stops.Load() != 0 {
		t.Fatal("the driver was closed under a read")
	}
	fr.gate <- struct{}{}
	<-closed
	if stops.Load() != 1 {
		t.Errorf("driver closed %d times, want 1", stops.Load())
	}
	if _, _, err := m.Read(context.Background(), buf); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := m.Close(); err != nil || stops.Load() != 1 {
		t.Errorf("second Close: %v, %d driver closes", err, stops.Load())
	}
}

// Our side of a frame allocates nothing: the request, the hand-over from the
// reader goroutine and the conversion into the slot.
func TestMediaSourceNoAllocs(t *testing.T) {
	img := yccBars(640, 480, image.YCbCrSubsampleRatio422, LimitedRange)
	for _, pf := range ConvertFormats {
		m, _ := startFake(t, &fakeReader{imgs: []image.Image{img}}, pf)
		buf := make([]byte, m.Format().FrameSize)
		ctx := context.Background()
		m.Read(ctx, buf)
		if a := testing.AllocsPerRun(50, func() { m.Read(ctx, buf) }); a != 0 {
			t.Errorf("%v: %v allocations per frame", pf, a)
		}
		m.Close()
	}
}

// --- videotest: pion/mediadevices' own fake camera, in every build ---

func openVideoTest(t testing.TB, cfg Config) Source {
	t.Helper()
	src, err := Open("videotest", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// videotest's bars (pkg/driver/videotest): seven, limited-range YCbCr, Y
// at 75%.
var videoTestBars = [7][3]byte{
	{235, 128, 128}, {210, 16, 146}, {170, 166, 16}, {145, 54, 34},
	{107, 202, 222}, {82, 90, 240}, {41, 240, 110},
}

func TestVideoTestFrames(t *testing.T) {
	for _, pf := range []framebus.FourCC{framebus.FormatYUYV, framebus.FormatRGBA, framebus.FormatI420} {
		t.Run(pf.String(), func(t *testing.T) {
			// Another size is ignored: the source's own wins.
			src := openVideoTest(t, Config{Width: 1280, Height: 720, PixelFormat: pf, FPS: 30})
			f := src.Format()
			want, _ := framebus.Format{Width: 640, Height: 480, PixelFormat: pf, FPSNum: 30, FPSDen: 1}.Complete()
			if f != want {
				t.Fatalf("Format() = %v (%d bytes), want %v", f, f.FrameSize, want)
			}
			bufs := [2][]byte{make([]byte, f.FrameSize), make([]byte, f.FrameSize)}
			var last int64
			changed := 0
			for i := 0; i < 6; i++ {
				buf := bufs[i%2]
				n, ns, err := src.Read(context.Background(), buf)
				if err != nil || n != int(f.FrameSize) || ns <= last {
					t.Fatalf("frame %d: %d bytes, capture %d (previous %d), %v", i, n, ns, last, err)
				}
				last = ns
				if i > 0 && !bytes.Equal(bufs[0], bufs[1]) {
					changed++
				}
			}
			if changed < 4 {
				t.Errorf("only %d of 5 frames differ from the one before (the noise area moves every frame)", changed)
			}
			// The middle of each bar, in the bar rows (the top 3/4).
			buf := bufs[1]
			for c, bar := range videoTestBars {
				x, y := (2*c+1)*640/14&^1, 100
				got := readPixel(buf, f, x, y)
				wantY, u, v := int(uint16(bar[0])*75/100), int(bar[1]), int(bar[2])
				switch pf {
				case framebus.FormatRGBA:
					// the reference: the package's own 4:4:4 path, checked in convert_test.go
					ref := image.NewYCbCr(image.Rect(0, 0, 1, 1), image.YCbCrSubsampleRatio444)
					ref.Y[0], ref.Cb[0], ref.Cr[0] = uint8(wantY), uint8(u), uint8(v)
					var px [4]byte
					rf, _ := framebus.Format{Width: 1, Height: 1, PixelFormat: framebus.FormatRGBA}.Complete()
					ConvertYCbCr(px[:], rf, ref, LimitedRange)
					if got != (pix{int(px[0]), int(px[1]), int(px[2])}) {
						t.Errorf("bar %d: RGB %v, want %v", c, got, px[:3])
					}
				default: // the driver's samples, unchanged
					if got != (pix{wantY, u, v}) {
						t.Errorf("bar %d: YUV %v, want %d %d %d", c, got, wantY, u, v)
					}
				}
			}
		})
	}
}

// The rate: ~30 fps as asked; with fps 0, as fast as its ticker goes.
func TestVideoTestRate(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a second")
	}
	for _, fps := range []float64{30, 0} {
		src := openVideoTest(t, Config{FPS: fps, PixelFormat: framebus.FormatYUYV})
		buf := make([]byte, src.Format().FrameSize)
		ctx := context.Background()
		src.Read(ctx, buf) // the constructor's frame
		n, t0 := 0, time.Now()
		for time.Since(t0) < 700*time.Millisecond {
			if _, _, err := src.Read(ctx, buf); err != nil {
				t.Fatal(err)
			}
			n++
		}
		rate := float64(n) / time.Since(t0).Seconds()
		t.Logf("videotest at --fps %v: %.1f fps", fps, rate)
		if fps == 30 && (rate < 10 || rate > 40) { // a loaded machine delivers late, never early
			t.Errorf("videotest at 30 fps delivers %.1f fps", rate)
		}
		if fps == 0 && rate < 45 { // not paced at 30
			t.Errorf("videotest as fast as possible delivers only %.1f fps", rate)
		}
		src.Close()
	}
}

func TestVideoTestCancelCloseReopen(t *testing.T) {
	src := openVideoTest(t, Config{FPS: 2}) // the driver blocks 500 ms per frame
	buf := make([]byte, src.Format().FrameSize)
	if f := src.Format(); f.PixelFormat != framebus.FormatYUYV {
		t.Errorf("default pixel format %v, want YUYV", f.PixelFormat)
	}
	src.Read(context.Background(), buf)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, _, err := src.Read(ctx, buf); !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 300*time.Millisecond {
		t.Errorf("Read with a 20 ms deadline: %v after %v", err, time.Since(t0))
	}
	// One videotest per process: the driver is a singleton.
	if _, err := Open("videotest", Config{}); err == nil || !strings.Contains(err.Error(), "one videotest source per process") {
		t.Errorf("a second videotest: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.Read(context.Background(), buf); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	// Closed, the driver opens again.
	src2 := openVideoTest(t, Config{FPS: 30, PixelFormat: framebus.FormatGrey})
	if _, _, err := src2.Read(context.Background(), make([]byte, src2.Format().FrameSize)); err != nil {
		t.Errorf("reopened videotest: %v", err)
	}
}

func TestMediaConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{PixelFormat: framebus.FormatMJPEG}, "MJPEG"},
		{Config{PixelFormat: framebus.MakeFourCC('H', '2', '6', '4')}, "pixel format H264"},
		{Config{FPS: -1}, "fps -1"},
	} {
		_, err := Open("videotest", c.cfg)
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("videotest %+v: %v, want ErrBadConfig saying %q", c.cfg, err, c.want)
		}
	}
}

// Allocations per frame of the whole videotest path: all of them are
// mediadevices' (TestMediaSourceNoAllocs shows ours are none).
func TestVideoTestAllocs(t *testing.T) {
	src := openVideoTest(t, Config{FPS: 0, PixelFormat: framebus.FormatNV12})
	buf := make([]byte, src.Format().FrameSize)
	ctx := context.Background()
	src.Read(ctx, buf)
	a := testing.AllocsPerRun(50, func() { src.Read(ctx, buf) })
	t.Logf("videotest: %v allocations per frame, all in mediadevices", a)
	if a > 4 {
		t.Errorf("%v allocations per frame (mediadevices' videotest makes 1: its *image.YCbCr)", a)
	}
}

// --- camera: what runs without a camera ---

func TestCameraPath(t *testing.T) {
	_, _, err := cameraPath("")
	if _, statErr := os.Stat(defaultCamera); statErr == nil {
		t.Logf("%s exists here", defaultCamera)
	} else {
		const want = "/dev/video0 does not exist; try --source videotest"
		if err == nil || err.Error() != want || !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrBadConfig) || !errors.Is(err, ErrUnavailable) {
			t.Errorf("cameraPath(\"\") = %v, want %q wrapping fs.ErrNotExist, ErrBadConfig, ErrUnavailable", err, want)
		}
	}
	dir := t.TempDir()
	if _, _, err := cameraPath(filepath.Join(dir, "video7")); err == nil || err.Error() != filepath.Join(dir, "video7")+" does not exist; try --source videotest" {
		t.Errorf("missing device: %v", err)
	}
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o600)
	if _, _, err := cameraPath(file); err == nil || !strings.Contains(err.Error(), "is not a video device") || !errors.Is(err, ErrBadConfig) {
		t.Errorf("a regular file: %v", err)
	}
	// A character device, through a symbolic link: the node is the real one's.
	link := filepath.Join(dir, "cam")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	if path, node, err := cameraPath(link); err != nil || path != link || node != "null" {
		t.Errorf("cameraPath(link to /dev/null) = %q, %q, %v", path, node, err)
	}
}

func TestChooseCameraMode(t *testing.T) {
	mode := func(w, h int, f frame.Format, fps float32) prop.Media {
		return prop.Media{Video: prop.Video{Width: w, Height: h, FrameFormat: f, FrameRate: fps}}
	}
	modes := []prop.Media{
		mode(640, 480, frame.FormatYUYV, 30),
		mode(1280, 720, frame.FormatYUYV, 10),
		mode(1280, 720, frame.FormatMJPEG, 30),
		mode(1920, 1080, frame.FormatMJPEG, 30),
		mode(1920, 1080, frame.FormatMJPEG, 15),
		mode(2592, 1944, frame.FormatYUYV, 2),
		mode(4000, 3000, frame.FormatZ16, 30), // depth: not taken
		mode(640, 480, frame.FormatNV12, 30),
	}
	for _, c := range []struct {
		name string
		cfg  Config
		fps  float64
		want prop.Media
	}{
		{"no size: the largest at the rate", Config{PixelFormat: framebus.FormatRGBA}, 30, modes[3]},
		{"no size, 2 fps: the largest", Config{PixelFormat: framebus.FormatRGBA}, 2, modes[5]},
		{"no size, as fast as possible", Config{PixelFormat: framebus.FormatRGBA}, 0, modes[3]},
		{"size: raw before MJPEG", Config{Width: 640, Height: 480, PixelFormat: framebus.FormatRGBA}, 30, modes[0]},
		{"size: the native format", Config{Width: 640, Height: 480, PixelFormat: framebus.FormatNV12}, 30, modes[7]},
		{"size: the rate before the format", Config{Width: 1280, Height: 720, PixelFormat: framebus.FormatYUYV}, 30, modes[2]},
		{"size: the format when the rate allows", Config{Width: 1280, Height: 720, PixelFormat: framebus.FormatYUYV}, 10, modes[1]},
		{"size: the nearest", Config{Width: 1900, Height: 1000, PixelFormat: framebus.FormatRGBA}, 30, modes[3]},
		{"size and rate: the nearest rate", Config{Width: 1920, Height: 1080, PixelFormat: framebus.FormatRGBA}, 12, modes[4]},
	} {
		got, ok := chooseCameraMode(modes, c.cfg, c.fps)
		if !ok || got != c.want {
			t.Errorf("%s: %v %v, want %v", c.name, ok, got.Video, c.want.Video)
		}
	}
	if _, ok := chooseCameraMode([]prop.Media{mode(640, 480, frame.FormatZ16, 30)}, Config{}, 30); ok {
		t.Errorf("a depth camera gave a mode")
	}
}

// --- into a bus: the rates a consumer sees ---

// publisher makes the loop of the command: Begin, Read into the slot,
// Commit, on a bus in a temporary directory.
func publisher(tb testing.TB, src Source) func() {
	p, err := framebus.Create("media", framebus.ProducerOptions{Format: src.Format(), Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	ctx := context.Background()
	return func() {
		buf, err := p.Begin()
		if err != nil {
			tb.Fatal(err)
		}
		n, ns, err := src.Read(ctx, buf)
		if err != nil {
			p.Abort()
			tb.Fatal(err)
		}
		if _, err := p.Commit(n, framebus.Meta{CaptureNS: ns}); err != nil {
			tb.Fatal(err)
		}
	}
}

// benchIntoBus publishes src's frames as fast as it makes them: frames per
// second, and allocations per frame (mediadevices': ours are none).
func benchIntoBus(b *testing.B, src Source) {
	frame := publisher(b, src)
	frame() // the constructor's frame
	b.SetBytes(int64(src.Format().FrameSize))
	b.ReportAllocs()
	for b.Loop() {
		frame()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fps")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

func BenchmarkVideoTestIntoBus(b *testing.B) {
	for _, pf := range []framebus.FourCC{framebus.FormatYUYV, framebus.FormatRGBA} {
		b.Run(pf.String(), func(b *testing.B) {
			benchIntoBus(b, openVideoTest(b, Config{FPS: 0, PixelFormat: pf}))
		})
	}
}
