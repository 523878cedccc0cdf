//go:build framebus_opencv

package viewer

import (
	"errors"
	"fmt"
	"testing"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
)

// bars are the test picture's colours, left to right (R, G, B).
var bars = [8][3]uint8{
	{255, 255, 255}, {255, 255, 0}, {0, 255, 255}, {0, 255, 0},
	{255, 0, 255}, {255, 0, 0}, {0, 0, 255}, {0, 0, 0},
}

const testW, testH = 64, 16

func barAt(x int) [3]uint8 { return bars[x*len(bars)/testW] }

// yuv is BT.601 limited range, what OpenCV's YUV conversions expect.
func yuv(c [3]uint8) (y, u, v uint8) {
	r, g, b := float64(c[0]), float64(c[1]), float64(c[2])
	clamp := func(f float64) uint8 { return uint8(min(255, max(0, f+0.5))) }
	return clamp(16 + 0.257*r + 0.504*g + 0.098*b), clamp(128 - 0.148*r - 0.291*g + 0.439*b), clamp(128 + 0.439*r - 0.368*g - 0.071*b)
}

// encodeBars makes the picture in a pixel format, with rows of stride bytes
// for the packed formats (0: tight).
func encodeBars(t testing.TB, pf framebus.FourCC, stride int) ([]byte, framebus.Format) {
	t.Helper()
	f := framebus.Format{Width: testW, Height: testH, PixelFormat: pf}
	var buf []byte
	packed := func(bpp int, px func(c [3]uint8, x int, out []byte)) {
		if stride == 0 {
			stride = testW * bpp
		}
		f.PlaneCount, f.PlaneStride[0] = 1, uint32(stride)
		buf = make([]byte, stride*testH)
		for y := 0; y < testH; y++ {
			for x := 0; x < testW; x++ {
				px(barAt(x), x, buf[y*stride+x*bpp:])
			}
		}
	}
	switch pf {
	case framebus.FormatRGBA:
		packed(4, func(c [3]uint8, _ int, o []byte) { o[0], o[1], o[2], o[3] = c[0], c[1], c[2], 255 })
	case framebus.FormatRGB24:
		packed(3, func(c [3]uint8, _ int, o []byte) { o[0], o[1], o[2] = c[0], c[1], c[2] })
	case framebus.FormatBGR24:
		packed(3, func(c [3]uint8, _ int, o []byte) { o[0], o[1], o[2] = c[2], c[1], c[0] })
	case framebus.FormatGrey:
		packed(1, func(c [3]uint8, _ int, o []byte) {
			o[0] = uint8(0.299*float64(c[0]) + 0.587*float64(c[1]) + 0.114*float64(c[2]) + 0.5)
		})
	case framebus.FormatYUYV:
		packed(2, func(c [3]uint8, x int, o []byte) {
			y, u, v := yuv(c)
			o[0], o[1] = y, u
			if x%2 == 1 {
				o[1] = v
			}
		})
	case framebus.FormatNV12, framebus.FormatI420:
		ys := testW * testH
		buf = make([]byte, ys*3/2)
		for y := 0; y < testH; y++ {
			for x := 0; x < testW; x++ {
				Y, U, V := yuv(barAt(x))
				buf[y*testW+x] = Y
				if x%2 == 0 && y%2 == 0 {
					ci := (y/2)*(testW/2) + x/2
					if pf == framebus.FormatNV12 {
						buf[ys+2*ci], buf[ys+2*ci+1] = U, V
					} else {
						buf[ys+ci], buf[ys+ys/4+ci] = U, V
					}
				}
			}
		}
	default:
		t.Fatalf("no encoder for %v", pf)
	}
	if pf == framebus.FormatNV12 || pf == framebus.FormatI420 {
		c, err := f.Complete()
		if err != nil {
			t.Fatal(err)
		}
		f = c
	}
	return buf, f
}

// checkBars checks the colour at the middle of each bar of a BGR Mat.
func checkBars(t *testing.T, m *gocv.Mat, grey bool, tol int) {
	t.Helper()
	if m.Cols() != testW || m.Rows() != testH || m.Type() != gocv.MatTypeCV8UC3 {
		t.Fatalf("got a %dx%d Mat of type %v, want %dx%d BGR", m.Cols(), m.Rows(), m.Type(), testW, testH)
	}
	for i, c := range bars {
		x, y := (2*i+1)*testW/16, testH/2
		want := [3]int{int(c[2]), int(c[1]), int(c[0])}
		if grey {
			l := int(0.299*float64(c[0]) + 0.587*float64(c[1]) + 0.114*float64(c[2]) + 0.5)
			want = [3]int{l, l, l}
		}
		v := m.GetVecbAt(y, x)
		for k := range 3 {
			if d := int(v[k]) - want[k]; d > tol || d < -tol {
				t.Errorf("bar %d at (%d,%d): BGR %v, want %v (±%d)", i, x, y, v, want, tol)
				break
			}
		}
	}
}

func TestConvertEveryFormat(t *testing.T) {
	for _, c := range []struct {
		pf     framebus.FourCC
		stride int
		tol    int
	}{
		{framebus.FormatRGBA, 0, 0},
		{framebus.FormatRGBA, testW*4 + 64, 0}, // padded rows
		{framebus.FormatRGB24, 0, 0},
		{framebus.FormatBGR24, 0, 0},
		{framebus.FormatBGR24, testW*3 + 3, 0},
		{framebus.FormatGrey, 0, 0},
		{framebus.FormatYUYV, 0, 3},
		{framebus.FormatNV12, 0, 3},
		{framebus.FormatI420, 0, 3},
	} {
		t.Run(fmt.Sprintf("%v/stride%d", c.pf, c.stride), func(t *testing.T) {
			data, f := encodeBars(t, c.pf, c.stride)
			cv := NewConverter()
			defer cv.Close()
			m, err := cv.Convert(data, f)
			if err != nil {
				t.Fatal(err)
			}
			checkBars(t, m, c.pf == framebus.FormatGrey, c.tol)
			// Again, through the header made the first time.
			if m, err = cv.Convert(data, f); err != nil {
				t.Fatal(err)
			}
			checkBars(t, m, c.pf == framebus.FormatGrey, c.tol)
		})
	}
}

func TestConvertMJPEG(t *testing.T) {
	data, f := encodeBars(t, framebus.FormatBGR24, 0)
	cv := NewConverter()
	defer cv.Close()
	bgr, err := cv.Convert(data, f)
	if err != nil {
		t.Fatal(err)
	}
	jpg, err := gocv.IMEncode(gocv.JPEGFileExt, *bgr)
	if err != nil {
		t.Fatal(err)
	}
	defer jpg.Close()
	jf := framebus.Format{Width: testW, Height: testH, PixelFormat: framebus.FormatMJPEG}
	m, err := cv.Convert(jpg.GetBytes(), jf)
	if err != nil {
		t.Fatal(err)
	}
	checkBars(t, m, false, 24) // JPEG is lossy at the bars' edges
	if _, err := cv.Convert([]byte("not a jpeg at all"), jf); !errors.Is(err, ErrFrame) {
		t.Errorf("garbage MJPEG: %v, want ErrFrame", err)
	}
	trunc := append([]byte{}, jpg.GetBytes()[:20]...)
	if _, err := cv.Convert(trunc, jf); !errors.Is(err, ErrFrame) {
		t.Errorf("truncated MJPEG: %v, want ErrFrame", err)
	}
}

func TestConvertBadInput(t *testing.T) {
	cv := NewConverter()
	defer cv.Close()
	data, f := encodeBars(t, framebus.FormatRGBA, 0)
	if _, err := cv.Convert(data[:len(data)-1], f); !errors.Is(err, ErrFrame) {
		t.Errorf("short frame: %v, want ErrFrame", err)
	}
	odd := framebus.Format{Width: 63, Height: 16, PixelFormat: framebus.FormatNV12}
	if _, err := cv.Convert(make([]byte, 4096), odd); !errors.Is(err, ErrFormat) {
		t.Errorf("odd NV12: %v, want ErrFormat", err)
	}
	gap := framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatI420, PlaneCount: 3,
		PlaneStride: [4]uint32{64, 32, 32}, PlaneOffset: [4]uint32{0, 2048, 2048 + 512}}
	if _, err := cv.Convert(make([]byte, 8192), gap); !errors.Is(err, ErrFormat) {
		t.Errorf("I420 with a gap: %v, want ErrFormat", err)
	}
	unknown := framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.MakeFourCC('X', 'Y', 'Z', 'W')}
	if _, err := cv.Convert(make([]byte, 8192), unknown); !errors.Is(err, ErrFormat) {
		t.Errorf("unknown fourcc: %v, want ErrFormat", err)
	}
	narrow := framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatRGBA, PlaneCount: 1, PlaneStride: [4]uint32{100}}
	if _, err := cv.Convert(make([]byte, 8192), narrow); !errors.Is(err, ErrFormat) {
		t.Errorf("stride narrower than a row: %v, want ErrFormat", err)
	}
}

// Converting allocates nothing per frame, neither on the Go heap (counted
// here) nor new Mat headers (one per frame address, made at the first frame):
// every raw format, at 1080p too.
func TestConvertAllocatesNothing(t *testing.T) {
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24, framebus.FormatGrey,
		framebus.FormatYUYV, framebus.FormatNV12, framebus.FormatI420} {
		data, f := encodeBars(t, pf, 0)
		data2 := append([]byte{}, data...) // a second slot
		cv := NewConverter()
		frames := [][]byte{data, data2}
		i := 0
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := cv.Convert(frames[i%2], f); err != nil {
				t.Fatal(err)
			}
			i++
		})
		cv.Close()
		if allocs != 0 {
			t.Errorf("%v: %.1f allocations per frame, want 0", pf, allocs)
		}
	}
}

func BenchmarkConvert1080p(b *testing.B) {
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatNV12, framebus.FormatYUYV, framebus.FormatI420} {
		b.Run(pf.String(), func(b *testing.B) {
			f, err := framebus.Format{Width: 1920, Height: 1080, PixelFormat: pf}.Complete()
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, f.FrameSize)
			cv := NewConverter()
			defer cv.Close()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cv.Convert(data, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The web preview's per-picture work at 1080p: convert (no allocation) and
// encode a JPEG (gocv's IMEncodeWithParams allocates a few small Go values
// per call: the parameter vector and the buffer handle; the JPEG bytes stay
// in OpenCV's buffer until the hub copies them into a reused one).
func BenchmarkPicture1080p(b *testing.B) {
	f, _ := framebus.Format{Width: 1920, Height: 1080, PixelFormat: framebus.FormatRGBA}.Complete()
	data := make([]byte, f.FrameSize)
	cv := NewConverter()
	defer cv.Close()
	params := []int{gocv.IMWriteJpegQuality, 80}
	b.ReportAllocs()
	for b.Loop() {
		m, err := cv.Convert(data, f)
		if err != nil {
			b.Fatal(err)
		}
		buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, *m, params)
		if err != nil {
			b.Fatal(err)
		}
		buf.Close()
	}
}
