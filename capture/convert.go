package capture

import (
	"errors"
	"fmt"
	"image"
	"math"

	"github.com/framebus/framebus/framebus"
)

// Conversions of decoded frames (what pion/mediadevices' drivers return:
// *image.YCbCr, *image.RGBA, *image.Gray) into a frame slot laid out as a
// completed framebus.Format, in any of ConvertFormats. They write each plane
// row at the format's plane offset and stride and touch no other byte (the
// padding of a stride wider than a row stays as it was), and allocate
// nothing.
//
// Colour: YCbCr <-> RGB is BT.601. The YUV formats of the bus (YUYV, NV12,
// I420) are limited range (Y 16-235, Cb/Cr 16-240), as V4L2 cameras and the
// pattern deliver them; GREY is full-range luma (0-255), as the pattern makes
// it. A YCbCr source says its range (Range): limited for V4L2 YUV frames and
// videotest, full for JPEG (MJPEG) frames, which are JFIF; full-range input
// is rescaled into the limited range of the YUV formats.
//
// Chroma: where the output has fewer chroma samples than the input, each
// output sample is the rounded average of the input samples over its block
// (2x1 for YUYV, 2x2 for NV12 and I420; for RGBA input, of the pixels'
// chroma). Where it has more (4:2:0 into YUYV or RGB), the sample of the
// block is repeated.

// Range is the quantisation range of YCbCr samples.
type Range uint8

const (
	// LimitedRange is BT.601 studio swing: Y 16-235, Cb and Cr 16-240
	// (V4L2 YUV formats, mediadevices' videotest).
	LimitedRange Range = iota
	// FullRange is JFIF: Y, Cb and Cr 0-255 (JPEG, so MJPEG cameras).
	FullRange
)

func (r Range) String() string {
	if r == FullRange {
		return "full"
	}
	return "limited"
}

// ConvertFormats are the pixel formats the Convert functions write.
var ConvertFormats = []framebus.FourCC{
	framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24, framebus.FormatGrey,
	framebus.FormatYUYV, framebus.FormatNV12, framebus.FormatI420,
}

// CanConvert reports whether the Convert functions write pixel format pf.
func CanConvert(pf framebus.FourCC) bool {
	for _, c := range ConvertFormats {
		if c == pf {
			return true
		}
	}
	return false
}

// ErrConvert is wrapped by the errors of the Convert functions: an image that
// does not fit the format, a short buffer, an image type or pixel format
// they do not handle.
var ErrConvert = errors.New("cannot convert frame")

// ConvertImage writes img into dst, laid out as f (completed; f's size must
// be img's), dispatching on img's type: *image.YCbCr (of range r),
// *image.RGBA or *image.Gray. It returns the bytes of the frame,
// f.FrameSize.
func ConvertImage(dst []byte, f framebus.Format, img image.Image, r Range) (int, error) {
	switch m := img.(type) {
	case *image.YCbCr:
		return ConvertYCbCr(dst, f, m, r)
	case *image.RGBA:
		return ConvertRGBA(dst, f, m)
	case *image.Gray:
		return ConvertGray(dst, f, m)
	case nil:
		return 0, fmt.Errorf("%w: no image", ErrConvert)
	}
	return 0, fmt.Errorf("%w: image type %T (want *image.YCbCr, *image.RGBA or *image.Gray)", ErrConvert, img)
}

// dstPlanes are the planes of a frame in dst, each cut to its rows.
type dstPlanes struct {
	w, h   int
	p      [framebus.MaxPlanes][]byte
	stride [framebus.MaxPlanes]int
}

// row returns row y of plane i, n bytes long.
func (d *dstPlanes) row(i, y, n int) []byte {
	o := y * d.stride[i]
	return d.p[i][o : o+n : o+n]
}

// planesOf checks dst and f against an image of bounds b and cuts the planes.
func planesOf(dst []byte, f *framebus.Format, b image.Rectangle) (dstPlanes, error) {
	var d dstPlanes
	w, h := b.Dx(), b.Dy()
	if uint32(w) != f.Width || uint32(h) != f.Height || w <= 0 || h <= 0 {
		return d, fmt.Errorf("%w: a %dx%d image into a %dx%d frame", ErrConvert, w, h, f.Width, f.Height)
	}
	if !CanConvert(f.PixelFormat) {
		return d, fmt.Errorf("%w: into pixel format %v", ErrConvert, f.PixelFormat)
	}
	if f.PlaneCount == 0 || f.FrameSize == 0 || f.FrameSize > uint64(len(dst)) {
		return d, fmt.Errorf("%w: buffer of %d bytes for a frame of %d (or the format is not completed)", ErrConvert, len(dst), f.FrameSize)
	}
	d.w, d.h = w, h
	for i := 0; i < int(f.PlaneCount) && i < framebus.MaxPlanes; i++ {
		rows := h
		if i > 0 { // the chroma planes of NV12 and I420
			rows = h / 2
		}
		off, stride := uint64(f.PlaneOffset[i]), uint64(f.PlaneStride[i])
		end := off + stride*uint64(rows)
		if end > uint64(len(dst)) {
			return d, fmt.Errorf("%w: plane %d ends at %d, past the buffer of %d bytes", ErrConvert, i, end, len(dst))
		}
		d.p[i], d.stride[i] = dst[off:end], int(stride)
	}
	return d, nil
}

// Lookup tables, built once.
var (
	// RGB from YCbCr, 16-bit fixed point; yRGB includes the rounding half.
	rgbLimited, rgbFull rgbTable
	yFullToLim          [256]uint8 // Y 0-255 to 16-235 (= the Y of RGB grey)
	cFullToLim          [256]uint8 // Cb/Cr 0-255 to 16-240
	yLimToFull          [256]uint8 // Y 16-235 to GREY 0-255
)

type rgbTable struct {
	y, rv, gu, gv, bu [256]int32
}

func init() {
	fill := func(t *rgbTable, ky, y0, kr, kgu, kgv, kb float64) {
		for i := 0; i < 256; i++ {
			c := float64(i - 128)
			t.y[i] = int32(math.Round(ky*65536*(float64(i)-y0))) + 1<<15
			t.rv[i] = int32(math.Round(kr * 65536 * c))
			t.gu[i] = int32(math.Round(-kgu * 65536 * c))
			t.gv[i] = int32(math.Round(-kgv * 65536 * c))
			t.bu[i] = int32(math.Round(kb * 65536 * c))
		}
	}
	// BT.601 (Kr 0.299, Kb 0.114); limited: Y scaled by 255/219, chroma by 255/224.
	fill(&rgbLimited, 255.0/219, 16, 1.402*255/224, 0.344136*255/224, 0.714136*255/224, 1.772*255/224)
	fill(&rgbFull, 1, 0, 1.402, 0.344136, 0.714136, 1.772)
	for i := 0; i < 256; i++ {
		yFullToLim[i] = uint8((220*i+128)>>8 + 16) // (66+129+25) i: as yuv(rgb{i, i, i})
		cFullToLim[i] = uint8(128 + int(math.Round(float64(i-128)*224/255)))
		yLimToFull[i] = clamp8(int32(math.Round(float64(i-16) * 255 / 219)))
	}
}

func clamp8(v int32) uint8 {
	if uint32(v) < 256 {
		return uint8(v)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// rgb16 turns a 16-bit fixed-point sum into a byte.
func rgb16(v int32) uint8 { return clamp8(v >> 16) }

// rgbToY is BT.601 limited-range luma, the integer form the pattern uses (yuv).
func rgbToY(r, g, b int32) uint8 { return uint8((66*r+129*g+25*b+128)>>8 + 16) }

// rgbToUV is the chroma of the sum of n = 1<<shift pixels' r, g and b.
func rgbToUV(sr, sg, sb int32, shift uint) (u, v uint8) {
	half := int32(128) << shift
	u = uint8((-38*sr-74*sg+112*sb+half)>>(8+shift) + 128)
	v = uint8((112*sr-94*sg-18*sb+half)>>(8+shift) + 128)
	return
}

// luma8 is full-range BT.601 luma (GREY), as the pattern makes it.
func luma8(r, g, b int32) uint8 { return uint8((77*r + 150*g + 29*b + 128) >> 8) }

// rgbLayout gives bytes per pixel and the offsets of red and blue for the
// packed RGB formats.
func rgbLayout(pf framebus.FourCC) (bpp, ri, bi int) {
	switch pf {
	case framebus.FormatRGBA:
		return 4, 0, 2
	case framebus.FormatRGB24:
		return 3, 0, 2
	}
	return 3, 2, 0 // BGR24
}

// ConvertRGBA writes src into dst laid out as f. RGBA output copies the
// source's alpha; the other formats ignore it (video frames are opaque).
func ConvertRGBA(dst []byte, f framebus.Format, src *image.RGBA) (int, error) {
	d, err := planesOf(dst, &f, src.Rect)
	if err != nil {
		return 0, err
	}
	w := d.w
	if last := src.PixOffset(src.Rect.Min.X, src.Rect.Max.Y-1) + 4*w; src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y) < 0 || last > len(src.Pix) {
		return 0, fmt.Errorf("%w: RGBA pixels too short for %v", ErrConvert, src.Rect)
	}
	row := func(y int) []byte {
		o := src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y)
		return src.Pix[o : o+4*w : o+4*w]
	}
	switch f.PixelFormat {
	case framebus.FormatRGBA:
		for y := 0; y < d.h; y++ {
			copy(d.row(0, y, 4*w), row(y))
		}
	case framebus.FormatRGB24, framebus.FormatBGR24:
		first, last := 0, 2 // RGB: R first
		if f.PixelFormat == framebus.FormatBGR24 {
			first, last = 2, 0
		}
		for y := 0; y < d.h; y++ {
			in, out := row(y), d.row(0, y, 3*w)
			for x := range w {
				p, q := in[4*x:4*x+4:4*x+4], out[3*x:3*x+3:3*x+3]
				q[0], q[1], q[2] = p[first], p[1], p[last]
			}
		}
	case framebus.FormatGrey:
		for y := 0; y < d.h; y++ {
			in, out := row(y), d.row(0, y, w)
			for x := range out {
				p := in[4*x : 4*x+4 : 4*x+4]
				out[x] = luma8(int32(p[0]), int32(p[1]), int32(p[2]))
			}
		}
	case framebus.FormatYUYV:
		n := w / 2
		for y := 0; y < d.h; y++ {
			in, out := row(y), d.row(0, y, 4*n)
			for k := range n {
				p := in[8*k : 8*k+8 : 8*k+8]
				r0, g0, b0 := int32(p[0]), int32(p[1]), int32(p[2])
				r1, g1, b1 := int32(p[4]), int32(p[5]), int32(p[6])
				u, v := rgbToUV(r0+r1, g0+g1, b0+b1, 1)
				q := out[4*k : 4*k+4 : 4*k+4]
				q[0], q[1], q[2], q[3] = rgbToY(r0, g0, b0), u, rgbToY(r1, g1, b1), v
			}
		}
	case framebus.FormatNV12, framebus.FormatI420:
		nv12 := f.PixelFormat == framebus.FormatNV12
		for j := 0; j < d.h/2; j++ {
			in0, in1 := row(2*j), row(2*j+1)
			y0, y1 := d.row(0, 2*j, w), d.row(0, 2*j+1, w)
			var u, v []byte
			step := 1
			if nv12 {
				u = d.row(1, j, w)
				v, step = u[1:], 2
			} else {
				u, v = d.row(1, j, w/2), d.row(2, j, w/2)
			}
			for x := 0; x+1 < w; x += 2 {
				p, q := in0[4*x:4*x+8:4*x+8], in1[4*x:4*x+8:4*x+8]
				r0, g0, b0 := int32(p[0]), int32(p[1]), int32(p[2])
				r1, g1, b1 := int32(p[4]), int32(p[5]), int32(p[6])
				r2, g2, b2 := int32(q[0]), int32(q[1]), int32(q[2])
				r3, g3, b3 := int32(q[4]), int32(q[5]), int32(q[6])
				y0[x], y0[x+1] = rgbToY(r0, g0, b0), rgbToY(r1, g1, b1)
				y1[x], y1[x+1] = rgbToY(r2, g2, b2), rgbToY(r3, g3, b3)
				k := (x >> 1) * step
				u[k], v[k] = rgbToUV(r0+r1+r2+r3, g0+g1+g2+g3, b0+b1+b2+b3, 2)
			}
		}
	}
	return int(f.FrameSize), nil
}

// ConvertGray writes src (full-range luma, as JPEG's grey frames) into dst
// laid out as f: grey RGB, or neutral chroma.
func ConvertGray(dst []byte, f framebus.Format, src *image.Gray) (int, error) {
	d, err := planesOf(dst, &f, src.Rect)
	if err != nil {
		return 0, err
	}
	w := d.w
	if last := src.PixOffset(src.Rect.Min.X, src.Rect.Max.Y-1) + w; src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y) < 0 || last > len(src.Pix) {
		return 0, fmt.Errorf("%w: Gray pixels too short for %v", ErrConvert, src.Rect)
	}
	row := func(y int) []byte {
		o := src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y)
		return src.Pix[o : o+w : o+w]
	}
	switch f.PixelFormat {
	case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24:
		bpp, _, _ := rgbLayout(f.PixelFormat)
		for y := 0; y < d.h; y++ {
			in, out := row(y), d.row(0, y, bpp*w)
			for x, g := range in {
				p := out[bpp*x : bpp*x+bpp]
				p[0], p[1], p[2] = g, g, g
				if bpp == 4 {
					p[3] = 255
				}
			}
		}
	case framebus.FormatGrey:
		for y := 0; y < d.h; y++ {
			copy(d.row(0, y, w), row(y))
		}
	case framebus.FormatYUYV:
		for y := 0; y < d.h; y++ {
			out := d.row(0, y, 2*w)
			lutRow(out, 2, row(y), &yFullToLim)
			for k := 1; k < len(out); k += 2 {
				out[k] = 128
			}
		}
	case framebus.FormatNV12, framebus.FormatI420:
		for y := 0; y < d.h; y++ {
			lutRow(d.row(0, y, w), 1, row(y), &yFullToLim)
		}
		n := w // NV12: interleaved
		if f.PixelFormat == framebus.FormatI420 {
			n = w / 2
		}
		for i := 1; i < int(f.PlaneCount); i++ {
			for j := 0; j < d.h/2; j++ {
				c := d.row(i, j, n)
				for k := range c {
					c[k] = 128
				}
			}
		}
	}
	return int(f.FrameSize), nil
}
