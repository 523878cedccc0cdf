package capture

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"

	"github.com/framebus/framebus/framebus"
)

// The colours of the pattern's bars, and what BT.601 limited range makes of
// them (yuv, the pattern's formula, checked by hand for red: 82, 90, 240).
var knownColors = barColors[:]

func TestKnownColorsYUV(t *testing.T) {
	want := map[rgb][3]int{
		{255, 255, 255}: {235, 128, 128},
		{0, 0, 0}:       {16, 128, 128},
		{255, 0, 0}:     {82, 90, 240},
		{0, 255, 0}:     {144, 54, 34}, // the integer form; 144.55 exactly
		{0, 0, 255}:     {41, 240, 110},
	}
	for c, w := range want {
		y, u, v := yuv(c)
		if [3]int{y, u, v} != w {
			t.Errorf("yuv(%v) = %d %d %d, want %v", c, y, u, v, w)
		}
	}
}

// pix is one pixel read back from a frame: Y, U, V for the YUV formats,
// R, G, B for the RGB ones, the grey level in a for GREY.
type pix struct{ a, b, c int }

// readPixel decodes pixel (x, y) of a frame laid out as f, by the layouts of
// PROTOCOL.md (and nothing of convert.go).
func readPixel(buf []byte, f framebus.Format, x, y int) pix {
	p0 := buf[f.PlaneOffset[0]+uint32(y)*f.PlaneStride[0]:]
	switch f.PixelFormat {
	case framebus.FormatRGBA:
		return pix{int(p0[4*x]), int(p0[4*x+1]), int(p0[4*x+2])}
	case framebus.FormatRGB24:
		return pix{int(p0[3*x]), int(p0[3*x+1]), int(p0[3*x+2])}
	case framebus.FormatBGR24:
		return pix{int(p0[3*x+2]), int(p0[3*x+1]), int(p0[3*x])}
	case framebus.FormatGrey:
		return pix{int(p0[x]), 0, 0}
	case framebus.FormatYUYV:
		q := p0[4*(x/2):]
		return pix{int(q[2*(x%2)]), int(q[1]), int(q[3])}
	case framebus.FormatNV12:
		c := buf[f.PlaneOffset[1]+uint32(y/2)*f.PlaneStride[1]:]
		return pix{int(p0[x]), int(c[2*(x/2)]), int(c[2*(x/2)+1])}
	case framebus.FormatI420:
		u := buf[f.PlaneOffset[1]+uint32(y/2)*f.PlaneStride[1]:]
		v := buf[f.PlaneOffset[2]+uint32(y/2)*f.PlaneStride[2]:]
		return pix{int(p0[x]), int(u[x/2]), int(v[x/2])}
	}
	panic("format")
}

// expect is what a flat area of colour c must read back as in pf.
func expect(pf framebus.FourCC, c rgb) pix {
	switch pf {
	case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24:
		return pix{int(c.r), int(c.g), int(c.b)}
	case framebus.FormatGrey:
		return pix{int(luma(c)), 0, 0}
	}
	y, u, v := yuv(c)
	return pix{y, u, v}
}

func isYUV(pf framebus.FourCC) bool {
	return pf == framebus.FormatYUYV || pf == framebus.FormatNV12 || pf == framebus.FormatI420
}

func nearPix(a, b pix, tol int) bool {
	d := func(x, y int) bool { return x-y <= tol && y-x <= tol }
	return d(a.a, b.a) && d(a.b, b.b) && d(a.c, b.c)
}

// bars is a w x h image description: 8 vertical bars of knownColors, each
// an even number of pixels wide (whole chroma blocks).
func barAt(x, w int) rgb { return knownColors[x*len(knownColors)/w] }

func rgbaBars(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := barAt(x, w)
			m.SetRGBA(x, y, color.RGBA{c.r, c.g, c.b, 255})
		}
	}
	return m
}

// yccBars makes the bars as YCbCr of ratio sr: limited range with the
// pattern's formula, or full range (JFIF) with image/color's.
func yccBars(w, h int, sr image.YCbCrSubsampleRatio, r Range) *image.YCbCr {
	m := image.NewYCbCr(image.Rect(0, 0, w, h), sr)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := barAt(x, w)
			var yy, u, v uint8
			if r == FullRange {
				yy, u, v = color.RGBToYCbCr(c.r, c.g, c.b)
			} else {
				a, b, d := yuv(c)
				yy, u, v = uint8(a), uint8(b), uint8(d)
			}
			m.Y[m.YOffset(x, y)] = yy
			m.Cb[m.COffset(x, y)] = u // a flat bar: every pixel of a sample agrees
			m.Cr[m.COffset(x, y)] = v
		}
	}
	return m
}

// paddedFormat is f with each plane's stride 16 bytes wider than its row, so
// that the tests see whether a conversion honours strides and offsets.
func paddedFormat(t testing.TB, w, h int, pf framebus.FourCC) framebus.Format {
	t.Helper()
	f, err := framebus.Format{Width: uint32(w), Height: uint32(h), PixelFormat: pf}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	g := framebus.Format{Width: f.Width, Height: f.Height, PixelFormat: pf, PlaneCount: f.PlaneCount}
	for i := 0; i < int(f.PlaneCount); i++ {
		g.PlaneStride[i] = f.PlaneStride[i] + 16
	}
	g, err = g.Complete()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

const sentinel = 0xEE

// checkPadding fails if a conversion wrote a byte outside the rows of the
// planes.
func checkPadding(t *testing.T, buf []byte, f framebus.Format) {
	t.Helper()
	inRow := make([]bool, len(buf))
	min, _ := framebus.Format{Width: f.Width, Height: f.Height, PixelFormat: f.PixelFormat}.Complete()
	for i := 0; i < int(f.PlaneCount); i++ {
		rows := int(f.Height)
		if i > 0 {
			rows /= 2
		}
		for r := 0; r < rows; r++ {
			o := int(f.PlaneOffset[i]) + r*int(f.PlaneStride[i])
			for k := 0; k < int(min.PlaneStride[i]); k++ {
				inRow[o+k] = true
			}
		}
	}
	for i, b := range buf {
		if !inRow[i] && b != sentinel {
			t.Fatalf("byte %d (outside every plane row) was written: %#x", i, b)
		}
	}
}

func newFrame(f framebus.Format) []byte {
	return bytes.Repeat([]byte{sentinel}, int(f.FrameSize)+8)
}

// Every source type into every format, pixel by pixel, with padded strides.
func TestConvertBarsEveryFormat(t *testing.T) {
	const w, h = 64, 6
	sources := []struct {
		name string
		img  image.Image
		r    Range
		// tolerance into RGB, and into YUV
		tolRGB, tolYUV int
	}{
		{"RGBA", rgbaBars(w, h), LimitedRange, 0, 0},
		{"YCbCr422", yccBars(w, h, image.YCbCrSubsampleRatio422, LimitedRange), LimitedRange, 1, 0},
		{"YCbCr420", yccBars(w, h, image.YCbCrSubsampleRatio420, LimitedRange), LimitedRange, 1, 0},
		{"YCbCr444", yccBars(w, h, image.YCbCrSubsampleRatio444, LimitedRange), LimitedRange, 1, 0},
		{"YCbCr411", yccBars(w, h, image.YCbCrSubsampleRatio411, LimitedRange), LimitedRange, 1, 0},
		{"YCbCr420full", yccBars(w, h, image.YCbCrSubsampleRatio420, FullRange), FullRange, 1, 1},
		{"YCbCr422full", yccBars(w, h, image.YCbCrSubsampleRatio422, FullRange), FullRange, 1, 1},
	}
	for _, s := range sources {
		for _, pf := range ConvertFormats {
			t.Run(s.name+"/"+pf.String(), func(t *testing.T) {
				f := paddedFormat(t, w, h, pf)
				buf := newFrame(f)
				n, err := ConvertImage(buf, f, s.img, s.r)
				if err != nil || n != int(f.FrameSize) {
					t.Fatalf("ConvertImage = %d, %v; want %d", n, err, f.FrameSize)
				}
				checkPadding(t, buf, f)
				tol := s.tolRGB
				if isYUV(pf) {
					tol = s.tolYUV
				}
				if pf == framebus.FormatGrey && s.name != "RGBA" {
					tol = 1 // luma through Y: rounding
				}
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						c := barAt(x, w)
						got, want := readPixel(buf, f, x, y), expect(pf, c)
						if !nearPix(got, want, tol) {
							t.Fatalf("pixel (%d, %d) of %v: %v, want %v (±%d)", x, y, c, got, want, tol)
						}
					}
				}
			})
		}
	}
}

// YCbCr into YUV formats keeps the samples exactly: 4:2:2 into YUYV is the
// camera's bytes back (the "passthrough" of a YUYV camera).
func TestConvertYCbCrExact(t *testing.T) {
	const w, h = 16, 4
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio422)
	for i := range m.Y {
		m.Y[i] = uint8(16 + i%220)
	}
	for i := range m.Cb {
		m.Cb[i], m.Cr[i] = uint8(16+i*7%225), uint8(240-i*5%225)
	}
	f, _ := framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatYUYV}.Complete()
	buf := make([]byte, f.FrameSize)
	if _, err := ConvertYCbCr(buf, f, m, LimitedRange); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 0, f.FrameSize)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x += 2 {
			c := m.COffset(x, y)
			want = append(want, m.Y[m.YOffset(x, y)], m.Cb[c], m.Y[m.YOffset(x+1, y)], m.Cr[c])
		}
	}
	if !bytes.Equal(buf, want) {
		t.Errorf("YUYV from 4:2:2:\n got %v\nwant %v", buf, want)
	}

	// 4:2:0 into I420 and NV12: the planes as they are.
	m420 := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for i := range m420.Y {
		m420.Y[i] = uint8(i)
	}
	for i := range m420.Cb {
		m420.Cb[i], m420.Cr[i] = uint8(100+i), uint8(200-i)
	}
	f, _ = framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatI420}.Complete()
	buf = make([]byte, f.FrameSize)
	ConvertYCbCr(buf, f, m420, LimitedRange)
	if want := append(append(append([]byte{}, m420.Y...), m420.Cb...), m420.Cr...); !bytes.Equal(buf, want) {
		t.Errorf("I420 from 4:2:0:\n got %v\nwant %v", buf, want)
	}
	f, _ = framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatNV12}.Complete()
	buf = make([]byte, f.FrameSize)
	ConvertYCbCr(buf, f, m420, LimitedRange)
	uv := buf[w*h:]
	for i := range m420.Cb {
		if uv[2*i] != m420.Cb[i] || uv[2*i+1] != m420.Cr[i] {
			t.Fatalf("NV12 chroma %d: %d %d, want %d %d", i, uv[2*i], uv[2*i+1], m420.Cb[i], m420.Cr[i])
		}
	}
}

// Chroma is averaged over each output block: 4:2:2 rows pairwise into
// 4:2:0, 4:4:4 over 2x2, RGBA over the four pixels' chroma.
func TestConvertChromaAveraging(t *testing.T) {
	const w, h = 4, 2
	// 4:2:2 with different chroma on the two rows of each block.
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio422)
	copy(m.Cb, []byte{100, 50, 201, 60}) // row 0: 100 50, row 1: 201 60
	copy(m.Cr, []byte{10, 20, 31, 40})
	for _, pf := range []framebus.FourCC{framebus.FormatNV12, framebus.FormatI420} {
		f, _ := framebus.Format{Width: w, Height: h, PixelFormat: pf}.Complete()
		buf := make([]byte, f.FrameSize)
		ConvertYCbCr(buf, f, m, LimitedRange)
		// (100+201+1)/2 = 151, (50+60+1)/2 = 55; (10+31+1)/2 = 21, (20+40+1)/2 = 30
		if p := readPixel(buf, f, 0, 0); p.b != 151 || p.c != 21 {
			t.Errorf("%v block 0: U %d V %d, want 151 21", pf, p.b, p.c)
		}
		if p := readPixel(buf, f, 2, 1); p.b != 55 || p.c != 30 {
			t.Errorf("%v block 1: U %d V %d, want 55 30", pf, p.b, p.c)
		}
	}
	// 4:4:4: the four samples of each block.
	m = image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio444)
	copy(m.Cb, []byte{10, 20, 0, 0, 30, 41, 0, 0}) // block 0: 10 20 / 30 41 -> (101+2)/4 = 25
	copy(m.Cr, []byte{200, 200, 0, 0, 200, 201, 0, 0})
	f, _ := framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatI420}.Complete()
	buf := make([]byte, f.FrameSize)
	ConvertYCbCr(buf, f, m, LimitedRange)
	if p := readPixel(buf, f, 0, 0); p.b != 25 || p.c != 200 {
		t.Errorf("I420 from 4:4:4: U %d V %d, want 25 200", p.b, p.c)
	}
	f, _ = framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatYUYV}.Complete()
	buf = make([]byte, f.FrameSize)
	ConvertYCbCr(buf, f, m, LimitedRange)
	if p := readPixel(buf, f, 0, 1); p.b != 36 || p.c != 201 { // (30+41+1)/2, (200+201+1)/2
		t.Errorf("YUYV from 4:4:4 row 1: U %d V %d, want 36 201", p.b, p.c)
	}

	// RGBA: a red and a blue pixel over a green and a white one.
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	cs := []rgb{{255, 0, 0}, {0, 0, 255}, {0, 255, 0}, {255, 255, 255}}
	for i, c := range cs {
		img.SetRGBA(i%2, i/2, color.RGBA{c.r, c.g, c.b, 255})
	}
	var su, sv int
	for _, c := range cs {
		_, u, v := yuv(c)
		su, sv = su+u, sv+v
	}
	for _, pf := range []framebus.FourCC{framebus.FormatNV12, framebus.FormatI420} {
		f, _ := framebus.Format{Width: 2, Height: 2, PixelFormat: pf}.Complete()
		buf := make([]byte, f.FrameSize)
		ConvertRGBA(buf, f, img)
		want := pix{0, (su + 2) / 4, (sv + 2) / 4}
		for i, c := range cs {
			y, _, _ := yuv(c)
			want.a = y
			if p := readPixel(buf, f, i%2, i/2); !nearPix(p, want, 1) || p.a != y {
				t.Errorf("%v pixel %d: %v, want %v (chroma ±1: averaged before rounding)", pf, i, p, want)
			}
		}
	}
	f, _ = framebus.Format{Width: 2, Height: 2, PixelFormat: framebus.FormatYUYV}.Complete()
	buf = make([]byte, f.FrameSize)
	ConvertRGBA(buf, f, img)
	_, u0, v0 := yuv(cs[0])
	_, u1, v1 := yuv(cs[1])
	if p := readPixel(buf, f, 1, 0); !nearPix(p, pix{p.a, (u0 + u1 + 1) / 2, (v0 + v1 + 1) / 2}, 1) {
		t.Errorf("YUYV red|blue: %v, want U %d V %d", p, (u0+u1+1)/2, (v0+v1+1)/2)
	}
}

// The extremes of limited range map to the extremes of RGB and GREY.
func TestConvertRangeEnds(t *testing.T) {
	for _, c := range []struct {
		y, cb, cr uint8
		r         Range
		want      [3]uint8
		grey      uint8
	}{
		{235, 128, 128, LimitedRange, [3]uint8{255, 255, 255}, 255},
		{16, 128, 128, LimitedRange, [3]uint8{0, 0, 0}, 0},
		{255, 128, 128, LimitedRange, [3]uint8{255, 255, 255}, 255}, // above white clamps
		{0, 128, 128, LimitedRange, [3]uint8{0, 0, 0}, 0},
		{255, 128, 128, FullRange, [3]uint8{255, 255, 255}, 255},
		{0, 128, 128, FullRange, [3]uint8{0, 0, 0}, 0},
		{126, 128, 128, LimitedRange, [3]uint8{128, 128, 128}, 128},
	} {
		m := image.NewYCbCr(image.Rect(0, 0, 2, 2), image.YCbCrSubsampleRatio420)
		for i := range m.Y {
			m.Y[i] = c.y
		}
		m.Cb[0], m.Cr[0] = c.cb, c.cr
		for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatGrey} {
			f, _ := framebus.Format{Width: 2, Height: 2, PixelFormat: pf}.Complete()
			buf := make([]byte, f.FrameSize)
			ConvertYCbCr(buf, f, m, c.r)
			if pf == framebus.FormatGrey {
				if buf[3] != c.grey {
					t.Errorf("%s Y %d to GREY: %d, want %d", c.r, c.y, buf[3], c.grey)
				}
				continue
			}
			if got := [3]uint8(buf[4:7]); got != c.want || buf[7] != 255 {
				t.Errorf("%s Y %d to RGBA: %v alpha %d, want %v 255", c.r, c.y, got, buf[7], c.want)
			}
		}
	}
	// Full range into the limited YUV formats: 0-255 becomes 16-235 and 16-240.
	m := image.NewYCbCr(image.Rect(0, 0, 2, 2), image.YCbCrSubsampleRatio420)
	copy(m.Y, []byte{0, 255, 128, 128})
	m.Cb[0], m.Cr[0] = 0, 255
	f, _ := framebus.Format{Width: 2, Height: 2, PixelFormat: framebus.FormatI420}.Complete()
	buf := make([]byte, f.FrameSize)
	ConvertYCbCr(buf, f, m, FullRange)
	if want := []byte{16, 235, 126, 126, 16, 240}; !bytes.Equal(buf, want) {
		t.Errorf("full range into I420: %v, want %v", buf, want)
	}
}

// A sub-image, odd corner included, converts pixel for pixel like a 4:4:4
// (or RGBA) copy of it: the chroma phase of its first column is honoured.
func TestConvertSubImage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := func(b []byte) {
		for i := range b {
			b[i] = uint8(16 + rnd.IntN(225))
		}
	}
	var srcs []image.Image
	for _, sr := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio411} {
		m := image.NewYCbCr(image.Rect(0, 0, 64, 8), sr)
		noise(m.Y)
		noise(m.Cb)
		noise(m.Cr)
		srcs = append(srcs, m)
	}
	rgba := image.NewRGBA(image.Rect(0, 0, 64, 8))
	noise(rgba.Pix)
	srcs = append(srcs, rgba)
	for _, r := range []image.Rectangle{image.Rect(8, 2, 40, 6), image.Rect(7, 1, 39, 5), image.Rect(5, 3, 27, 7)} {
		for _, src := range srcs {
			var sub, ref image.Image
			switch m := src.(type) {
			case *image.YCbCr:
				s := m.SubImage(r).(*image.YCbCr)
				c := image.NewYCbCr(image.Rect(0, 0, r.Dx(), r.Dy()), image.YCbCrSubsampleRatio444)
				for y := 0; y < r.Dy(); y++ {
					for x := 0; x < r.Dx(); x++ {
						i, j := s.YOffset(r.Min.X+x, r.Min.Y+y), s.COffset(r.Min.X+x, r.Min.Y+y)
						k := c.YOffset(x, y)
						c.Y[k], c.Cb[k], c.Cr[k] = s.Y[i], s.Cb[j], s.Cr[j]
					}
				}
				sub, ref = s, c
			case *image.RGBA:
				s := m.SubImage(r).(*image.RGBA)
				c := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
				for y := 0; y < r.Dy(); y++ {
					copy(c.Pix[y*c.Stride:], s.Pix[s.PixOffset(r.Min.X, r.Min.Y+y):][:4*r.Dx()])
				}
				sub, ref = s, c
			}
			for _, pf := range []framebus.FourCC{framebus.FormatRGB24, framebus.FormatGrey} {
				f, _ := framebus.Format{Width: uint32(r.Dx()), Height: uint32(r.Dy()), PixelFormat: pf}.Complete()
				got, want := make([]byte, f.FrameSize), make([]byte, f.FrameSize)
				if _, err := ConvertImage(got, f, sub, LimitedRange); err != nil {
					t.Fatal(err)
				}
				ConvertImage(want, f, ref, LimitedRange)
				if !bytes.Equal(got, want) {
					t.Errorf("%T sub-image %v into %v differs from its copy", src, r, pf)
				}
			}
		}
	}
}

func TestConvertGray(t *testing.T) {
	m := image.NewGray(image.Rect(0, 0, 4, 2))
	copy(m.Pix, []byte{0, 255, 128, 128, 10, 20, 30, 40})
	for _, pf := range ConvertFormats {
		f := paddedFormat(t, 4, 2, pf)
		buf := newFrame(f)
		if _, err := ConvertImage(buf, f, m, FullRange); err != nil {
			t.Fatal(err)
		}
		checkPadding(t, buf, f)
		for i, g := range m.Pix {
			if got, want := readPixel(buf, f, i%4, i/4), expect(pf, rgb{g, g, g}); got != want {
				t.Errorf("%v pixel %d (grey %d): %v, want %v", pf, i, g, got, want)
			}
		}
	}
}

func TestConvertErrors(t *testing.T) {
	f, _ := framebus.Format{Width: 4, Height: 2, PixelFormat: framebus.FormatRGBA}.Complete()
	ok := image.NewRGBA(image.Rect(0, 0, 4, 2))
	cases := []struct {
		name string
		dst  []byte
		f    framebus.Format
		img  image.Image
	}{
		{"size", make([]byte, f.FrameSize), f, image.NewRGBA(image.Rect(0, 0, 4, 4))},
		{"short buffer", make([]byte, f.FrameSize-1), f, ok},
		{"format not completed", make([]byte, 64), framebus.Format{Width: 4, Height: 2, PixelFormat: framebus.FormatRGBA}, ok},
		{"MJPEG", make([]byte, 64), framebus.Format{Width: 4, Height: 2, PixelFormat: framebus.FormatMJPEG, PlaneCount: 1, FrameSize: 64}, ok},
		{"image type", make([]byte, f.FrameSize), f, image.NewNRGBA(image.Rect(0, 0, 4, 2))},
		{"nil", make([]byte, f.FrameSize), f, nil},
		{"short YCbCr", make([]byte, f.FrameSize), f, &image.YCbCr{Rect: image.Rect(0, 0, 4, 2), SubsampleRatio: image.YCbCrSubsampleRatio420, YStride: 4, CStride: 2, Y: make([]byte, 8), Cb: make([]byte, 1), Cr: make([]byte, 2)}},
		{"short RGBA", make([]byte, f.FrameSize), f, &image.RGBA{Rect: image.Rect(0, 0, 4, 2), Stride: 16, Pix: make([]byte, 31)}},
	}
	for _, c := range cases {
		n, err := ConvertImage(c.dst, c.f, c.img, LimitedRange)
		if !errors.Is(err, ErrConvert) || n != 0 {
			t.Errorf("%s: %d, %v; want ErrConvert", c.name, n, err)
		}
	}
}

// No allocation per frame, whatever the conversion.
func TestConvertNoAllocs(t *testing.T) {
	const w, h = 64, 32
	srcs := []image.Image{
		rgbaBars(w, h), image.NewGray(image.Rect(0, 0, w, h)),
		yccBars(w, h, image.YCbCrSubsampleRatio420, LimitedRange),
		yccBars(w, h, image.YCbCrSubsampleRatio422, LimitedRange),
		yccBars(w, h, image.YCbCrSubsampleRatio444, LimitedRange),
	}
	for _, src := range srcs {
		for _, pf := range ConvertFormats {
			f, _ := framebus.Format{Width: w, Height: h, PixelFormat: pf}.Complete()
			buf := make([]byte, f.FrameSize)
			if a := testing.AllocsPerRun(20, func() { ConvertImage(buf, f, src, FullRange) }); a != 0 {
				t.Errorf("%T into %v: %v allocations per frame", src, pf, a)
			}
		}
	}
}

// 1080p conversions: ns per frame, throughput of the output, allocations.
func BenchmarkConvert1080p(b *testing.B) {
	const w, h = 1920, 1080
	srcs := []struct {
		name string
		img  image.Image
		r    Range
	}{
		{"YCbCr422", yccBars(w, h, image.YCbCrSubsampleRatio422, LimitedRange), LimitedRange},
		{"YCbCr420", yccBars(w, h, image.YCbCrSubsampleRatio420, LimitedRange), LimitedRange},
		{"YCbCr420full", yccBars(w, h, image.YCbCrSubsampleRatio420, FullRange), FullRange},
		{"RGBA", rgbaBars(w, h), LimitedRange},
	}
	for _, s := range srcs {
		for _, pf := range ConvertFormats {
			b.Run(fmt.Sprintf("%s-to-%v", s.name, pf), func(b *testing.B) {
				f, _ := framebus.Format{Width: w, Height: h, PixelFormat: pf}.Complete()
				buf := make([]byte, f.FrameSize)
				b.SetBytes(int64(f.FrameSize))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := ConvertImage(buf, f, s.img, s.r); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
			})
		}
	}
}
