package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// newTestPattern makes a pattern whose clock is under the test's control.
func newTestPattern(t testing.TB, w, h uint32, pf framebus.FourCC, fps float64) (*Pattern, *int64) {
	t.Helper()
	p, err := NewPattern(Config{Width: w, Height: h, PixelFormat: pf, FPS: fps})
	if err != nil {
		t.Fatal(err)
	}
	clock := new(int64)
	*clock = 1e9
	p.now = func() int64 { return *clock }
	return p, clock
}

// frameAt renders frame n at ms into a fresh buffer.
func frameAt(p *Pattern, n uint64, ms int64) []byte {
	if p.bg == nil {
		p.init()
	}
	b := make([]byte, p.size)
	p.render(b, n, ms)
	return b
}

var allFormats = PatternFormats

func TestPatternFillsExactlyFrameSize(t *testing.T) {
	sizes := [][2]uint32{{640, 480}, {64, 48}, {2, 2}, {1920, 1080}, {34, 18}}
	for _, pf := range allFormats {
		for _, sz := range sizes {
			t.Run(fmt.Sprintf("%v/%dx%d", pf, sz[0], sz[1]), func(t *testing.T) {
				var frames [2][]byte
				for i, fill := range []byte{0xA5, 0x5A} {
					p, _ := newTestPattern(t, sz[0], sz[1], pf, 0)
					size := int(p.Format().FrameSize)
					buf := bytes.Repeat([]byte{fill}, size+64)
					n, _, err := p.Read(context.Background(), buf)
					if err != nil {
						t.Fatal(err)
					}
					if n != size {
						t.Fatalf("Read = %d bytes, FrameSize %d", n, size)
					}
					for j, b := range buf[size:] {
						if b != fill {
							t.Fatalf("byte %d past the frame was written", j)
						}
					}
					frames[i] = buf[:size]
				}
				// The same frame over different old contents: every byte of
				// the frame was written.
				if i := firstDiff(frames[0], frames[1]); i >= 0 {
					t.Fatalf("byte %d of the frame depends on what was in the buffer before", i)
				}
			})
		}
	}
	// And odd sizes, where the format allows them.
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatGrey, framebus.FormatYUYV} {
		p, _ := newTestPattern(t, 34, 17, pf, 0)
		if n, _, err := p.Read(context.Background(), make([]byte, p.size)); err != nil || n != p.size {
			t.Errorf("%v 34x17: Read = %d, %v", pf, n, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// The bars, in the order they are drawn, and their BT.601 values computed
// here from the floating-point definition (not the code under test).
var wantBars = []rgb{{255, 255, 255}, {255, 255, 0}, {0, 255, 255}, {0, 255, 0}, {255, 0, 255}, {255, 0, 0}, {0, 0, 255}, {0, 0, 0}}

func bt601(c rgb) (y, u, v float64) {
	r, g, b := float64(c.r), float64(c.g), float64(c.b)
	y = 16 + (65.481*r+128.553*g+24.966*b)/255
	u = 128 + (-37.797*r-74.203*g+112.0*b)/255
	v = 128 + (112.0*r-93.786*g-18.214*b)/255
	return
}

func near(got byte, want float64) bool { return math.Abs(float64(got)-want) <= 1 }

// barProbe is a pixel in the middle of bar i, on a row the box does not
// cover in frame 1.
func barProbe(t *testing.T, p *Pattern, i int) (x, y int) {
	l := &p.lay
	x = even((2*i + 1) * l.w / 16)
	y = even(l.barsH - 4)
	bx, by := l.boxAt(1)
	if x >= bx && x < bx+l.box && y >= by && y < by+l.box {
		t.Fatalf("probe (%d,%d) is under the box", x, y)
	}
	return x, y
}

func TestPatternBarsRGB(t *testing.T) {
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24, framebus.FormatGrey} {
		p, _ := newTestPattern(t, 640, 480, pf, 0)
		f := frameAt(p, 1, 0)
		stride := int(p.Format().PlaneStride[0])
		for i, c := range wantBars {
			x, y := barProbe(t, p, i)
			o := y * stride
			var got, want []byte
			switch pf {
			case framebus.FormatRGBA:
				got, want = f[o+4*x:o+4*x+4], []byte{c.r, c.g, c.b, 255}
			case framebus.FormatRGB24:
				got, want = f[o+3*x:o+3*x+3], []byte{c.r, c.g, c.b}
			case framebus.FormatBGR24:
				got, want = f[o+3*x:o+3*x+3], []byte{c.b, c.g, c.r}
			case framebus.FormatGrey:
				l := 0.299*float64(c.r) + 0.587*float64(c.g) + 0.114*float64(c.b)
				if !near(f[o+x], l) {
					t.Errorf("GREY bar %d at (%d,%d) = %d, want %.1f", i, x, y, f[o+x], l)
				}
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%v bar %d at (%d,%d) = %v, want %v", pf, i, x, y, got, want)
			}
		}
	}
}

// yuvAt reads the Y, U and V of pixel (x, y) from a frame of format f.
func yuvAt(f framebus.Format, b []byte, x, y int) (Y, U, V byte) {
	s, o := f.PlaneStride, f.PlaneOffset
	switch f.PixelFormat {
	case framebus.FormatYUYV:
		pair := int(o[0]) + y*int(s[0]) + (x/2)*4
		return b[pair+2*(x%2)], b[pair+1], b[pair+3]
	case framebus.FormatNV12:
		c := int(o[1]) + (y/2)*int(s[1]) + (x/2)*2
		return b[int(o[0])+y*int(s[0])+x], b[c], b[c+1]
	case framebus.FormatI420:
		return b[int(o[0])+y*int(s[0])+x], b[int(o[1])+(y/2)*int(s[1])+x/2], b[int(o[2])+(y/2)*int(s[2])+x/2]
	}
	panic("not YUV")
}

func TestPatternBarsYUV(t *testing.T) {
	for _, pf := range []framebus.FourCC{framebus.FormatYUYV, framebus.FormatNV12, framebus.FormatI420} {
		p, _ := newTestPattern(t, 640, 480, pf, 0)
		f := frameAt(p, 1, 0)
		for i, c := range wantBars {
			x, y := barProbe(t, p, i)
			Y, U, V := yuvAt(p.Format(), f, x, y)
			wy, wu, wv := bt601(c)
			if !near(Y, wy) || !near(U, wu) || !near(V, wv) {
				t.Errorf("%v bar %d at (%d,%d) = Y %d U %d V %d, want %.1f %.1f %.1f", pf, i, x, y, Y, U, V, wy, wu, wv)
			}
		}
		// The band under the text is black: Y 16, neutral chroma.
		l := &p.lay
		Y, U, V := yuvAt(p.Format(), f, l.w-2, l.h-2)
		if Y != 16 || U != 128 || V != 128 {
			t.Errorf("%v band = Y %d U %d V %d, want 16 128 128", pf, Y, U, V)
		}
	}
}

// boxRect finds the orange box in an RGBA frame.
func boxRect(p *Pattern, f []byte) (x0, y0, x1, y1 int, ok bool) {
	x0, y0 = math.MaxInt, math.MaxInt
	stride := int(p.f.PlaneStride[0])
	for y := 0; y < p.lay.h; y++ {
		for x := 0; x < p.lay.w; x++ {
			px := f[y*stride+4*x:]
			if px[0] == 255 && px[1] == 128 && px[2] == 0 {
				x0, y0, x1, y1, ok = min(x0, x), min(y0, y), max(x1, x+1), max(y1, y+1), true
			}
		}
	}
	return
}

func TestPatternBoxMoves(t *testing.T) {
	p, _ := newTestPattern(t, 640, 480, framebus.FormatRGBA, 0)
	var last [4]int
	for i, n := range []uint64{1, 2, 30, 500} {
		x0, y0, x1, y1, ok := boxRect(p, frameAt(p, n, 0))
		if !ok {
			t.Fatalf("frame %d: no box", n)
		}
		if x1-x0 != p.lay.box || y1-y0 != p.lay.box {
			t.Errorf("frame %d: box is %dx%d, want %d", n, x1-x0, y1-y0, p.lay.box)
		}
		if y1 > p.lay.barsH {
			t.Errorf("frame %d: box reaches row %d, below the bars (%d)", n, y1, p.lay.barsH)
		}
		cur := [4]int{x0, y0, x1, y1}
		if i > 0 && cur == last {
			t.Errorf("frame %d: box did not move from %v", n, last)
		}
		last = cur
	}
	// It stays inside the frame however long it runs.
	for n := uint64(0); n < 5000; n += 7 {
		x, y := p.lay.boxAt(n)
		if x < 0 || y < 0 || x+p.lay.box > p.lay.w || y+p.lay.box > p.lay.barsH || x%2 != 0 || y%2 != 0 {
			t.Fatalf("frame %d: box at (%d,%d)", n, x, y)
		}
	}
}

// readText decodes the line of burned-in text at y by sampling the middle of
// every font cell; lit says whether the pixel at (x, y) is text.
func readText(p *Pattern, y int, lit func(x, y int) bool) string {
	sc := p.lay.scale
	var out []byte
	for x := p.lay.textX; x+glyphW*sc <= p.lay.w; x += advanceW * sc {
		var g [glyphH]byte
		for r := 0; r < glyphH; r++ {
			for c := 0; c < glyphW; c++ {
				if lit(x+c*sc+sc/2, y+r*sc+sc/2) {
					g[r] |= 0x10 >> c
				}
			}
		}
		if g == glyphBlank {
			break
		}
		ch := byte('?')
		for _, cand := range []byte("0123456789#xms:.") {
			if *glyph(cand) == g {
				ch = cand
			}
		}
		out = append(out, ch)
	}
	return string(out)
}

func TestPatternText(t *testing.T) {
	cases := []struct {
		n          uint64
		ms         int64
		line1, ms2 string
	}{
		{1, 0, "#000001", "0ms"},
		{2, 33, "#000002", "33ms"},
		{123, 4567, "#000123", "4567ms"},
		{9876543, 12345678, "#9876543", "12345678ms"},
	}
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatI420, framebus.FormatYUYV} {
		p, _ := newTestPattern(t, 640, 480, pf, 0)
		for _, c := range cases {
			f := frameAt(p, c.n, c.ms)
			lit := func(x, y int) bool {
				if pf == framebus.FormatRGBA {
					px := f[y*int(p.f.PlaneStride[0])+4*x:]
					return px[0] > 200 && px[1] > 200 && px[2] > 200
				}
				Y, _, _ := yuvAt(p.f, f, x, y)
				return Y > 128
			}
			if got := readText(p, p.lay.line1Y, lit); got != c.line1 {
				t.Errorf("%v frame %d: line 1 reads %q, want %q", pf, c.n, got, c.line1)
			}
			if got := readText(p, p.lay.line2Y, lit); got != c.ms2 {
				t.Errorf("%v frame %d: line 2 reads %q, want %q", pf, c.n, got, c.ms2)
			}
		}
	}
}

func TestPatternDigitsDiffer(t *testing.T) {
	p, _ := newTestPattern(t, 320, 240, framebus.FormatGrey, 0)
	l := &p.lay
	region := func(f []byte) []byte {
		var out []byte
		for y := l.line1Y; y < l.line1Y+glyphH*l.scale; y++ {
			out = append(out, f[y*l.w+l.textX:y*l.w+l.textX+l.textW]...)
		}
		return out
	}
	prev := region(frameAt(p, 1, 0))
	for n := uint64(2); n < 40; n++ {
		cur := region(frameAt(p, n, 0))
		if bytes.Equal(cur, prev) {
			t.Fatalf("frames %d and %d have the same digit pixels", n-1, n)
		}
		prev = cur
	}
	// All ten digits are distinct glyphs.
	for a := 0; a < 10; a++ {
		for b := a + 1; b < 10; b++ {
			if digitGlyphs[a] == digitGlyphs[b] {
				t.Errorf("digits %d and %d look the same", a, b)
			}
		}
	}
}

func TestPatternFrameNumbersAndTimes(t *testing.T) {
	p, clock := newTestPattern(t, 64, 48, framebus.FormatRGBA, 0)
	buf := make([]byte, p.Format().FrameSize)
	for i := 1; i <= 3; i++ {
		_, ts, err := p.Read(context.Background(), buf)
		if err != nil {
			t.Fatal(err)
		}
		if ts != *clock {
			t.Errorf("frame %d: capture time %d, want the clock's %d", i, ts, *clock)
		}
		if p.frame != uint64(i) {
			t.Errorf("frame counter %d, want %d", p.frame, i)
		}
		*clock += 40e6
	}
	if p.start != 1e9 {
		t.Errorf("start = %d, want the first frame's time", p.start)
	}
}

func TestPatternNoAllocs(t *testing.T) {
	for _, fps := range []float64{0, 5000} {
		for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatI420} {
			p, err := NewPattern(Config{Width: 320, Height: 240, PixelFormat: pf, FPS: fps})
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, p.Format().FrameSize)
			ctx, cancel := context.WithCancel(context.Background())
			if _, _, err := p.Read(ctx, buf); err != nil { // the background is made here
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(50, func() {
				if _, _, err := p.Read(ctx, buf); err != nil {
					t.Fatal(err)
				}
			})
			cancel()
			if allocs != 0 {
				t.Errorf("%v at %v fps: %v allocations per frame", pf, fps, allocs)
			}
		}
	}
}

func TestPatternPacing(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	count := func(fps float64, d time.Duration) int {
		p, err := NewPattern(Config{Width: 64, Height: 48, FPS: fps})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		buf := make([]byte, p.Format().FrameSize)
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		n := 0
		for {
			if _, _, err := p.Read(ctx, buf); err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatal(err)
				}
				return n
			}
			n++
		}
	}
	// 100 fps for 600 ms is about 60 frames; the bounds allow for a busy
	// machine (late frames, never early ones), not for a missing, doubled
	// or tenfold rate.
	if n := count(100, 600*time.Millisecond); n < 20 || n > 70 {
		t.Errorf("100 fps for 600 ms gave %d frames, want about 60", n)
	}
	if n := count(0, 200*time.Millisecond); n < 200 {
		t.Errorf("unpaced for 200 ms gave %d frames, want many more", n)
	}
}

func TestPatternCancelDuringWait(t *testing.T) {
	p, err := NewPattern(Config{Width: 64, Height: 48, FPS: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, p.Format().FrameSize)
	if _, _, err := p.Read(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, _, err = p.Read(ctx, buf) // the next frame is due in 2 s
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Read took %v to see the cancellation", d)
	}
}

func TestPatternErrors(t *testing.T) {
	p, _ := newTestPattern(t, 64, 48, framebus.FormatRGBA, 0)
	if _, _, err := p.Read(context.Background(), make([]byte, 100)); err == nil || !strings.Contains(err.Error(), "buffer of 100 bytes") {
		t.Errorf("short buffer: %v", err)
	}
	p.Close()
	if _, _, err := p.Read(context.Background(), make([]byte, p.size)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	for _, c := range []Config{
		{Width: 0, Height: 480},
		{Width: 100000, Height: 100000},
		{Width: 64, Height: 48, PixelFormat: framebus.FormatMJPEG},
		{Width: 63, Height: 48, PixelFormat: framebus.FormatI420},
		{Width: 64, Height: 48, FPS: -1},
		{Width: 64, Height: 48, FPS: math.NaN()},
		{Width: 64, Height: 48, FPS: 1e9},
	} {
		if _, err := NewPattern(c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("NewPattern(%+v) = %v, want ErrBadConfig", c, err)
		}
	}
}

func TestFPSRational(t *testing.T) {
	for _, c := range []struct {
		fps      float64
		num, den uint32
	}{{0, 0, 1}, {30, 30, 1}, {29.97, 2997, 100}, {0.5, 1, 2}, {59.94, 2997, 50}} {
		p, err := NewPattern(Config{Width: 8, Height: 8, FPS: c.fps})
		if err != nil {
			t.Fatal(err)
		}
		if f := p.Format(); f.FPSNum != c.num || f.FPSDen != c.den {
			t.Errorf("fps %v: %d/%d, want %d/%d", c.fps, f.FPSNum, f.FPSDen, c.num, c.den)
		}
	}
}

func TestOpen(t *testing.T) {
	src, err := Open("pattern", Config{Width: 64, Height: 48, PixelFormat: framebus.FormatNV12})
	if err != nil {
		t.Fatal(err)
	}
	if f := src.Format(); f.Width != 64 || f.PixelFormat != framebus.FormatNV12 || f.FrameSize != 64*48*3/2 {
		t.Errorf("format %v, %d bytes", f, f.FrameSize)
	}
	src.Close()
	// videotest, screen and camera: media_test.go; file: file_*_test.go.
	_, err = Open("nope", Config{})
	if !errors.Is(err, ErrUnknownSource) || !strings.Contains(err.Error(), "pattern") || !strings.Contains(err.Error(), "camera") {
		t.Errorf("Open(nope) = %v", err)
	}
	if _, err := Open("pattern", Config{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("Open(pattern) with no size = %v, want ErrBadConfig", err)
	}
	if got := Sources(); !slices.Contains(got, "pattern") {
		t.Errorf("Sources() = %v", got)
	}
}

// The benchmarks run the real pipeline: the pattern renders into a bus's back
// slot (Begin, Read, Commit) with CRC-32C checksums on, in /dev/shm. The
// render sub-benchmark is the pattern alone, into private memory.
func BenchmarkPattern640x480RGBA(b *testing.B) { benchPattern(b, 640, 480, framebus.FormatRGBA) }
func BenchmarkPattern1080pRGBA(b *testing.B)   { benchPattern(b, 1920, 1080, framebus.FormatRGBA) }
func BenchmarkPattern1080pI420(b *testing.B)   { benchPattern(b, 1920, 1080, framebus.FormatI420) }

func benchPattern(b *testing.B, w, h uint32, pf framebus.FourCC) {
	report := func(b *testing.B, size uint64) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fps")
		b.SetBytes(int64(size))
	}
	b.Run("render", func(b *testing.B) {
		p, err := NewPattern(Config{Width: w, Height: h, PixelFormat: pf})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, p.Format().FrameSize)
		ctx := context.Background()
		p.Read(ctx, buf)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, _, err := p.Read(ctx, buf); err != nil {
				b.Fatal(err)
			}
		}
		report(b, p.Format().FrameSize)
	})
	b.Run("bus+crc", func(b *testing.B) {
		p, err := NewPattern(Config{Width: w, Height: h, PixelFormat: pf})
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		if d, err := os.MkdirTemp("/dev/shm", "capture-bench-"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
		prod, err := framebus.Create("bench", framebus.ProducerOptions{Format: p.Format(), Checksum: true, Dir: dir})
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
			n, ts, err := p.Read(ctx, buf)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := prod.Commit(n, framebus.Meta{CaptureNS: ts}); err != nil {
				b.Fatal(err)
			}
		}
		frame()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			frame()
		}
		report(b, p.Format().FrameSize)
	})
}
