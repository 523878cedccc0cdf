//go:build framebus_opencv

package capture

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"
	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// The test clip, testdata/pattern.avi, is our own pattern source: 320x240,
// 60 frames at 25 fps, MJPEG in AVI, frame n showing "#0000nn" and the time
// (n-1)/25 s. Write it again (after a change of the pattern) with
//
//	go test -tags framebus_opencv -run TestWriteClip ./capture/ -update-clip
var updateClip = flag.Bool("update-clip", false, "write ../testdata/pattern.avi again from the pattern source")

const (
	clipPath     = "../testdata/pattern.avi"
	clipW, clipH = 320, 240
	clipFrames   = 60
	clipFPS      = 25
)

// clipMS is the time printed on frame n of the clip.
func clipMS(n int) int64 { return int64(n-1) * 1e9 / clipFPS / 1e6 }

// slotMem is memory like a bus slot's: an anonymous mapping, outside the Go
// heap, so that a Mat may keep pointing at it (cgo's pointer rules).
func slotMem(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func TestWriteClip(t *testing.T) {
	if !*updateClip {
		t.Skip("-update-clip writes the clip again")
	}
	p, _ := newTestPattern(t, clipW, clipH, framebus.FormatBGR24, 0)
	tmp := strings.TrimSuffix(clipPath, ".avi") + ".new.avi" // the writer picks the container by the extension
	vw, err := gocv.VideoWriterFile(tmp, "MJPG", clipFPS, clipW, clipH, true)
	if err != nil || !vw.IsOpened() {
		t.Fatalf("VideoWriterFile(%s): %v", tmp, err)
	}
	buf := slotMem(t, int(p.Format().FrameSize))
	m, err := gocv.NewMatFromBytes(clipH, clipW, gocv.MatTypeCV8UC3, buf)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for n := 1; n <= clipFrames; n++ {
		if p.bg == nil {
			p.init()
		}
		p.render(buf, uint64(n), clipMS(n))
		vw.Write(m)
	}
	vw.Close()
	if err := os.Rename(tmp, clipPath); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(clipPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d bytes", clipPath, fi.Size())
}

func openClip(t testing.TB, cfg Config) *File {
	t.Helper()
	cfg.Arg = clipPath
	f, err := NewFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFileOpensTheClip(t *testing.T) {
	fi, err := os.Stat(clipPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Errorf("the clip has %d bytes: keep it under 1 MiB", fi.Size())
	}
	// As the command asks without --size and --fps: its defaults give way to
	// the file's size and rate.
	src, err := Open("file:"+clipPath, Config{Width: 1280, Height: 720, FPS: 30, PixelFormat: framebus.FormatRGBA, DefaultSize: true, DefaultFPS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want, _ := framebus.Format{Width: clipW, Height: clipH, PixelFormat: framebus.FormatRGBA, FPSNum: clipFPS, FPSDen: 1}.Complete()
	if got := src.Format(); got != want {
		t.Errorf("format %+v\nwant %+v", got, want)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "320x240 AB24"}, // zero: the file's size, as fast as possible
		{Config{Width: 640, Height: 480, PixelFormat: framebus.FormatNV12, FPS: 12.5}, "640x480 NV12 @12.5 fps"},
		{Config{Width: 640, Height: 480, PixelFormat: framebus.FormatGrey, FPS: 60, DefaultFPS: true}, "640x480 GREY @25 fps"},
		{Config{Width: 64, Height: 48, PixelFormat: framebus.FormatI420, FPS: 5, DefaultSize: true}, "320x240 YU12 @5 fps"},
	} {
		f := openClip(t, c.cfg)
		if got := f.Format().String(); got != c.want {
			t.Errorf("%+v: format %s, want %s", c.cfg, got, c.want)
		}
	}
}

func TestFileRate(t *testing.T) {
	for _, c := range []struct {
		fps      float64
		num, den uint32
	}{
		{30, 30, 1}, {25, 25, 1}, {29.999999, 30, 1}, {30000.0 / 1001, 30000, 1001}, {29.97, 30000, 1001},
		{24000.0 / 1001, 24000, 1001}, {60000.0 / 1001, 60000, 1001}, {12.5, 25, 2}, {7.3, 73, 10},
	} {
		num, den, ok := fileRate(c.fps)
		if !ok || num != c.num || den != c.den {
			t.Errorf("fileRate(%v) = %d/%d %v, want %d/%d", c.fps, num, den, ok, c.num, c.den)
		}
	}
	for _, fps := range []float64{0, -1, math.NaN(), math.Inf(1), 1e9} {
		if _, _, ok := fileRate(fps); ok {
			t.Errorf("fileRate(%v) is known", fps)
		}
	}
}

// lumaAt is a byte of frame b that is bright where the pattern's white text is.
func lumaAt(f framebus.Format, b []byte, x, y int) byte {
	o := y * int(f.PlaneStride[0])
	switch f.PixelFormat {
	case framebus.FormatRGBA:
		return b[o+4*x+1]
	case framebus.FormatRGB24, framebus.FormatBGR24:
		return b[o+3*x+1]
	case framebus.FormatGrey:
		return b[o+x]
	}
	Y, _, _ := yuvAt(f, b, x, y)
	return Y
}

// Frames come in the file's order, the first again after the last, with the
// capture time of each taken during its Read. RGBA takes the general way
// (decode, then cvtColor into the source's buffer), BGR24 the direct one
// (decoded into that buffer), both across the loop; Go copies the frame into
// the slot.
func TestFileFramesInOrderAndLoop(t *testing.T) {
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatBGR24, framebus.FormatYUYV} {
		t.Run(pf.String(), func(t *testing.T) {
			s := openClip(t, Config{PixelFormat: pf})
			f := s.Format()
			p, _ := newTestPattern(t, clipW, clipH, pf, 0) // for the text layout
			bufs := [][]byte{slotMem(t, int(f.FrameSize)), slotMem(t, int(f.FrameSize))}
			var last int64
			for i := 0; i < 2*clipFrames+3; i++ {
				buf := bufs[i%2]
				before := framebus.Now()
				n, ts, err := s.Read(context.Background(), buf)
				after := framebus.Now()
				if err != nil || n != int(f.FrameSize) {
					t.Fatalf("read %d: %d bytes, %v", i, n, err)
				}
				if ts < before || ts > after || ts <= last {
					t.Errorf("read %d: capture time %d, outside the call [%d, %d] or not after %d", i, ts, before, after, last)
				}
				last = ts
				lit := func(x, y int) bool { return lumaAt(f, buf, x, y) > 128 }
				num := i%clipFrames + 1
				if got, want := readText(p, p.lay.line1Y, lit), fmt.Sprintf("#%06d", num); got != want {
					t.Fatalf("read %d shows frame %q, want %q", i, got, want)
				}
				if got, want := readText(p, p.lay.line2Y, lit), fmt.Sprintf("%dms", clipMS(num)); got != want {
					t.Errorf("read %d shows time %q, want %q", i, got, want)
				}
			}
			if s.loops != 2 {
				t.Errorf("started the file again %d times, want 2", s.loops)
			}
		})
	}
}

// colourTol is how far MJPEG (quality as the writer made it, 4:2:0 chroma)
// and scaling may move a colour in the middle of a bar.
const colourTol = 6

func near8(got byte, want int) bool { return math.Abs(float64(got)-float64(want)) <= colourTol }

// Every format at the clip's size, scaled up, scaled down and to 1080p fills
// the slot, and the middle of each colour bar and the black band have their
// colour.
func TestFileColours(t *testing.T) {
	sizes := [][2]uint32{{clipW, clipH}, {640, 480}, {160, 120}, {1920, 1080}}
	for _, sz := range sizes {
		for _, pf := range FileFormats {
			t.Run(fmt.Sprintf("%dx%d/%v", sz[0], sz[1], pf), func(t *testing.T) {
				s := openClip(t, Config{Width: sz[0], Height: sz[1], PixelFormat: pf})
				f := s.Format()
				if f.Width != sz[0] || f.Height != sz[1] || f.PixelFormat != pf {
					t.Fatalf("format %v", f)
				}
				buf := slotMem(t, int(f.FrameSize)+16)
				for i := range buf {
					buf[i] = 0xa5
				}
				n, _, err := s.Read(context.Background(), buf)
				if err != nil || n != int(f.FrameSize) {
					t.Fatalf("Read: %d bytes, %v", n, err)
				}
				for i, b := range buf[n:] {
					if b != 0xa5 {
						t.Fatalf("Read wrote byte %d past the frame", n+i)
					}
				}
				w, h := int(f.Width), int(f.Height)
				probes := []struct {
					x, y int
					c    rgb
				}{{even(w - 2), even(h - 2), bandColor}}
				for i, c := range wantBars {
					probes = append(probes, struct {
						x, y int
						c    rgb
					}{even((2*i + 1) * w / 16), even(h / 3), c})
				}
				for _, pr := range probes {
					if msg := checkColour(f, buf, pr.x, pr.y, pr.c); msg != "" {
						t.Errorf("(%d,%d) should be %v: %s", pr.x, pr.y, pr.c, msg)
					}
				}
			})
		}
	}
}

// checkColour compares pixel (x, y) of frame b with colour c, within
// colourTol, and says what differs.
func checkColour(f framebus.Format, b []byte, x, y int, c rgb) string {
	o := y * int(f.PlaneStride[0])
	var got []byte
	var want []int
	switch f.PixelFormat {
	case framebus.FormatRGBA:
		got, want = b[o+4*x:o+4*x+4], []int{int(c.r), int(c.g), int(c.b), 255}
	case framebus.FormatRGB24:
		got, want = b[o+3*x:o+3*x+3], []int{int(c.r), int(c.g), int(c.b)}
	case framebus.FormatBGR24:
		got, want = b[o+3*x:o+3*x+3], []int{int(c.b), int(c.g), int(c.r)}
	case framebus.FormatGrey:
		got, want = b[o+x:o+x+1], []int{int(luma(c))}
	default:
		Y, U, V := yuvAt(f, b, x, y)
		y, u, v := yuv(c)
		got, want = []byte{Y, U, V}, []int{y, u, v}
	}
	for i := range want {
		if !near8(got[i], want[i]) {
			return fmt.Sprintf("got %v, want %v ±%d", got, want, colourTol)
		}
	}
	return ""
}

// frameMat is a BGR Mat over a frame of the pattern, in mapped memory.
func frameMat(t testing.TB, p *Pattern, n uint64, ms int64) gocv.Mat {
	t.Helper()
	src := frameAt(p, n, ms)
	buf := slotMem(t, len(src))
	copy(buf, src)
	m, err := gocv.NewMatFromBytes(int(p.f.Height), int(p.f.Width), gocv.MatTypeCV8UC3, buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Without the codec in the way, the conversions give what the pattern
// renders in each format itself: exactly for the RGB orders, within the
// rounding of the two ways to do the arithmetic for the others.
func TestFileConvertsLikeThePattern(t *testing.T) {
	const w, h = 320, 240
	bgr, _ := newTestPattern(t, w, h, framebus.FormatBGR24, 0)
	for _, pf := range FileFormats {
		ref, _ := newTestPattern(t, w, h, pf, 0)
		s := &File{frame: gocv.NewMat(), sized: gocv.NewMat(), now: framebus.Now}
		s.setFormat(ref.Format())
		t.Cleanup(func() { s.Close() })
		dst := slotMem(t, s.size)
		for _, n := range []uint64{1, 37} {
			if err := s.convert(frameMat(t, bgr, n, 1234), dst); err != nil {
				t.Fatal(err)
			}
			want := frameAt(ref, n, 1234)
			tol := 1
			switch pf {
			case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24:
				tol = 0
			}
			worst, at := 0, -1
			for i := range want {
				if d := int(dst[i]) - int(want[i]); d > worst || -d > worst {
					worst, at = max(d, -d), i
				}
			}
			if worst > tol {
				t.Errorf("%v frame %d: byte %d is %d, the pattern's %d (off by %d, allowed %d)", pf, n, at, dst[at], want[at], worst, tol)
			}
		}
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.mp4")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a video\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.avi")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec string
		cfg  Config
		want string
	}{
		{"file:" + filepath.Join(dir, "missing.mp4"), Config{}, "source file: stat " + filepath.Join(dir, "missing.mp4") + ": no such file or directory"},
		{"file:", Config{}, "source file: no file named: use file:PATH"},
		{"file", Config{}, "source file: no file named: use file:PATH"},
		{"file:" + dir, Config{}, "is a directory"},
		{"file:" + junk, Config{}, "source file: " + junk + ": not a video file that OpenCV (FFmpeg) can open"},
		{"file:" + empty, Config{}, "not a video file"},
		{"file:" + clipPath, Config{PixelFormat: framebus.FormatMJPEG}, "the file source makes RGBA, RGB24"},
		{"file:" + clipPath, Config{Width: 321, Height: 240, PixelFormat: framebus.FormatNV12}, "even dimensions"},
		{"file:" + clipPath, Config{Width: 1 << 20, Height: 240}, "larger than"},
		{"file:" + clipPath, Config{FPS: -3}, "fps -3"},
	} {
		src, err := Open(c.spec, c.cfg)
		if err == nil {
			src.Close()
		}
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q, %+v) = %v, want ErrBadConfig saying %q", c.spec, c.cfg, err, c.want)
		}
	}

	s := openClip(t, Config{})
	if _, _, err := s.Read(context.Background(), make([]byte, 100)); !errors.Is(err, io.ErrShortBuffer) || !strings.Contains(err.Error(), "buffer of 100 bytes") {
		t.Errorf("short buffer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Read(ctx, slotMem(t, s.size)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	s.Close()
	if _, _, err := s.Read(context.Background(), slotMem(t, s.size)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Read allocates nothing per frame on the Go heap, in any format, scaled or
// not, paced or not, across the end of the file: the Mats are reused.
func TestFileNoAllocs(t *testing.T) {
	for _, sz := range [][2]uint32{{clipW, clipH}, {640, 480}} {
		for _, pf := range FileFormats {
			fps := 0.0
			if pf == framebus.FormatRGBA {
				fps = 5000 // the pacer's timer too
			}
			s := openClip(t, Config{Width: sz[0], Height: sz[1], PixelFormat: pf, FPS: fps})
			bufs := [][]byte{slotMem(t, s.size), slotMem(t, s.size)} // two slots, as a bus has
			ctx := context.Background()
			i := 0
			read := func() {
				if _, _, err := s.Read(ctx, bufs[i%2]); err != nil {
					t.Fatal(err)
				}
				i++
			}
			read()
			read() // the Mats over the slots are made here
			if allocs := testing.AllocsPerRun(2*clipFrames, read); allocs != 0 {
				t.Errorf("%dx%d %v: %v allocations per frame", sz[0], sz[1], pf, allocs)
			}
			if s.loops < 2 {
				t.Errorf("%dx%d %v: only %d loops", sz[0], sz[1], pf, s.loops)
			}
		}
	}
}

func TestFilePacing(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	count := func(cfg Config, d time.Duration) int {
		s := openClip(t, cfg)
		buf := slotMem(t, s.size)
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		n := 0
		for {
			if _, _, err := s.Read(ctx, buf); err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatal(err)
				}
				return n
			}
			n++
		}
	}
	// The clip's 25 fps for 600 ms is about 15 frames, 100 fps about 60; the
	// bounds allow for a busy machine (late frames, never early ones), not
	// for a wrong rate.
	if n := count(Config{FPS: 100, DefaultFPS: true}, 600*time.Millisecond); n < 5 || n > 19 {
		t.Errorf("the file's 25 fps for 600 ms gave %d frames, want about 15", n)
	}
	if n := count(Config{FPS: 100}, 600*time.Millisecond); n < 20 || n > 70 {
		t.Errorf("100 fps for 600 ms gave %d frames, want about 60", n)
	}
	if n := count(Config{}, 300*time.Millisecond); n < 100 {
		t.Errorf("unpaced for 300 ms gave %d frames, want many more", n)
	}
}

// The file source publishing on a bus in /dev/shm, as fast as it goes: the
// clip at its own size, and scaled to 1080p.
func BenchmarkFile(b *testing.B) {
	for _, c := range []struct {
		w, h uint32
		pf   framebus.FourCC
	}{
		{clipW, clipH, framebus.FormatRGBA}, {clipW, clipH, framebus.FormatBGR24}, {clipW, clipH, framebus.FormatI420},
		{1920, 1080, framebus.FormatRGBA}, {1920, 1080, framebus.FormatBGR24}, {1920, 1080, framebus.FormatI420},
		{1920, 1080, framebus.FormatNV12}, {1920, 1080, framebus.FormatYUYV},
	} {
		b.Run(fmt.Sprintf("%dx%d/%v", c.w, c.h, c.pf), func(b *testing.B) {
			s := openClip(b, Config{Width: c.w, Height: c.h, PixelFormat: c.pf})
			dir := b.TempDir()
			if d, err := os.MkdirTemp("/dev/shm", "capture-bench-"); err == nil {
				dir = d
				defer os.RemoveAll(d)
			}
			prod, err := framebus.Create("bench", framebus.ProducerOptions{Format: s.Format(), Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			ctx := context.Background()
			frame := func() {
				buf, err := prod.Begin()
				if err != nil {
					b.Fatal(err)
				}
				n, ts, err := s.Read(ctx, buf)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := prod.Commit(n, framebus.Meta{CaptureNS: ts}); err != nil {
					b.Fatal(err)
				}
			}
			frame()
			frame()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				frame()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fps")
			b.SetBytes(int64(s.size))
		})
	}
}
