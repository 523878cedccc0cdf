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

// ycc is a YCbCr source, row by row.
type ycc struct {
	m      *image.YCbCr
	w, h   int
	hs, vs uint // chroma subsampling, as shifts: 4:2:0 is 1, 1
	cx0    int  // the first column's position inside its chroma sample
	cw     int  // chroma samples per row
}

func newYCC(m *image.YCbCr) (ycc, error) {
	s := ycc{m: m, w: m.Rect.Dx(), h: m.Rect.Dy()}
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
	case image.YCbCrSubsampleRatio422:
		s.hs = 1
	case image.YCbCrSubsampleRatio420:
		s.hs, s.vs = 1, 1
	case image.YCbCrSubsampleRatio440:
		s.vs = 1
	case image.YCbCrSubsampleRatio411:
		s.hs = 2
	case image.YCbCrSubsampleRatio410:
		s.hs, s.vs = 2, 1
	default:
		return s, fmt.Errorf("%w: YCbCr subsample ratio %v", ErrConvert, m.SubsampleRatio)
	}
	s.cx0 = m.Rect.Min.X & (1<<s.hs - 1)
	s.cw = (s.cx0+s.w-1)>>s.hs + 1
	// Hostile or broken images fail here, not with a panic in a loop.
	if s.w > 0 && s.h > 0 {
		last := s.h - 1
		yo := m.YOffset(m.Rect.Min.X, m.Rect.Min.Y+last)
		co := m.COffset(m.Rect.Min.X, m.Rect.Min.Y+last)
		if m.YOffset(m.Rect.Min.X, m.Rect.Min.Y) < 0 || m.COffset(m.Rect.Min.X, m.Rect.Min.Y) < 0 ||
			yo+s.w > len(m.Y) || co+s.cw > len(m.Cb) || co+s.cw > len(m.Cr) {
			return s, fmt.Errorf("%w: YCbCr planes too short for %v", ErrConvert, m.Rect)
		}
	}
	return s, nil
}

func (s *ycc) yRow(y int) []byte {
	o := s.m.YOffset(s.m.Rect.Min.X, s.m.Rect.Min.Y+y)
	return s.m.Y[o : o+s.w : o+s.w]
}

func (s *ycc) cRow(y int) (cb, cr []byte) {
	o := s.m.COffset(s.m.Rect.Min.X, s.m.Rect.Min.Y+y)
	return s.m.Cb[o : o+s.cw : o+s.cw], s.m.Cr[o : o+s.cw : o+s.cw]
}

// ConvertYCbCr writes src, whose samples are of range r, into dst laid out as
// f. Every subsample ratio is handled; 4:2:0 and 4:2:2 (what cameras and
// videotest deliver) have fast paths.
func ConvertYCbCr(dst []byte, f framebus.Format, src *image.YCbCr, r Range) (int, error) {
	d, err := planesOf(dst, &f, src.Rect)
	if err != nil {
		return 0, err
	}
	s, err := newYCC(src)
	if err != nil {
		return 0, err
	}
	full := r == FullRange
	switch f.PixelFormat {
	case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24:
		t := &rgbLimited
		if full {
			t = &rgbFull
		}
		bpp, ri, bi := rgbLayout(f.PixelFormat)
		for y := 0; y < d.h; y++ {
			cb, cr := s.cRow(y)
			yccRowToRGB(d.row(0, y, d.w*bpp), s.yRow(y), cb, cr, &s, t, bpp, ri, bi)
		}
	case framebus.FormatGrey:
		for y := 0; y < d.h; y++ {
			out, in := d.row(0, y, d.w), s.yRow(y)
			if full {
				copy(out, in)
			} else {
				lutRow(out, 1, in, &yLimToFull)
			}
		}
	case framebus.FormatYUYV:
		for y := 0; y < d.h; y++ {
			out := d.row(0, y, d.w*2)
			yRowTo(out, 2, s.yRow(y), full)
			s.chromaRow(out[1:], out[3:], 4, d.w/2, y, y, full)
		}
	case framebus.FormatNV12, framebus.FormatI420:
		for y := 0; y < d.h; y++ {
			yRowTo(d.row(0, y, d.w), 1, s.yRow(y), full)
		}
		for j := 0; j < d.h/2; j++ {
			if f.PixelFormat == framebus.FormatNV12 {
				uv := d.row(1, j, d.w)
				s.chromaRow(uv, uv[1:], 2, d.w/2, 2*j, 2*j+1, full)
			} else {
				s.chromaRow(d.row(1, j, d.w/2), d.row(2, j, d.w/2), 1, d.w/2, 2*j, 2*j+1, full)
			}
		}
	}
	return int(f.FrameSize), nil
}

// yccRowToRGB converts one row to packed RGB (bpp 3 or 4, red at ri, blue
// at bi).
func yccRowToRGB(out, yr, cb, cr []byte, s *ycc, t *rgbTable, bpp, ri, bi int) {
	w := len(yr)
	x := 0
	if s.hs == 1 && s.cx0 == 0 {
		// Two pixels per chroma sample: the chroma terms once per pair.
		n := w / 2
		switch {
		case bpp == 4:
			yccPairsRGBA(out[:8*n], yr[:2*n], cb[:n], cr[:n], t)
		case ri == 0:
			yccPairsRGB(out[:6*n], yr[:2*n], cb[:n], cr[:n], t, 0, 2)
		default:
			yccPairsRGB(out[:6*n], yr[:2*n], cb[:n], cr[:n], t, 2, 0)
		}
		x = 2 * n // an odd last pixel below
	}
	for ; x < w; x++ {
		c := (x + s.cx0) >> s.hs
		u, v := cb[c], cr[c]
		yy := t.y[yr[x]]
		p := out[x*bpp : x*bpp+bpp]
		p[ri], p[1], p[bi] = rgb16(yy+t.rv[v]), rgb16(yy+t.gu[u]+t.gv[v]), rgb16(yy+t.bu[u])
		if bpp == 4 {
			p[3] = 255
		}
	}
}

func yccPairsRGBA(out, yr, cb, cr []byte, t *rgbTable) {
	cr = cr[:len(cb)]
	for k := range cb {
		u, v := cb[k], cr[k]
		rv, guv, bu := t.rv[v], t.gu[u]+t.gv[v], t.bu[u]
		yp := yr[2*k : 2*k+2 : 2*k+2]
		y0, y1 := t.y[yp[0]], t.y[yp[1]]
		p := out[8*k : 8*k+8 : 8*k+8]
		p[0], p[1], p[2], p[3] = rgb16(y0+rv), rgb16(y0+guv), rgb16(y0+bu), 255
		p[4], p[5], p[6], p[7] = rgb16(y1+rv), rgb16(y1+guv), rgb16(y1+bu), 255
	}
}

// yccPairsRGB writes RGB24 (ri 0, bi 2) or BGR24 (ri 2, bi 0); ri and bi
// are constants at each call, and the compiler checks p's bounds once.
func yccPairsRGB(out, yr, cb, cr []byte, t *rgbTable, ri, bi int) {
	cr = cr[:len(cb)]
	for k := range cb {
		u, v := cb[k], cr[k]
		rv, guv, bu := t.rv[v], t.gu[u]+t.gv[v], t.bu[u]
		yp := yr[2*k : 2*k+2 : 2*k+2]
		y0, y1 := t.y[yp[0]], t.y[yp[1]]
		p := out[6*k : 6*k+6 : 6*k+6]
		if ri == 0 {
			p[0], p[1], p[2] = rgb16(y0+rv), rgb16(y0+guv), rgb16(y0+bu)
			p[3], p[4], p[5] = rgb16(y1+rv), rgb16(y1+guv), rgb16(y1+bu)
		} else {
			p[0], p[1], p[2] = rgb16(y0+bu), rgb16(y0+guv), rgb16(y0+rv)
			p[3], p[4], p[5] = rgb16(y1+bu), rgb16(y1+guv), rgb16(y1+rv)
		}
	}
}

// lutRow writes lut[in[i]] to out[i*step].
func lutRow(out []byte, step int, in []byte, lut *[256]uint8) {
	if step == 1 {
		out = out[:len(in)]
		for i, v := range in {
			out[i] = lut[v]
		}
		return
	}
	for i, v := range in {
		out[i*step] = lut[v]
	}
}

// yRowTo writes a row of Y samples, every step bytes, in limited range.
func yRowTo(out []byte, step int, in []byte, full bool) {
	switch {
	case full:
		lutRow(out, step, in, &yFullToLim)
	case step == 1:
		copy(out, in)
	default:
		for i, v := range in {
			out[i*step] = v
		}
	}
}

// chromaRow writes n chroma samples (Cb to u, Cr to v, every step bytes),
// each the average of the input over 2 pixels across and image rows y0 and
// y1 (the same row for YUYV), in limited range.
func (s *ycc) chromaRow(u, v []byte, step, n, y0, y1 int, full bool) {
	cb0, cr0 := s.cRow(y0)
	cb1, cr1 := s.cRow(y1)
	lut := (*[256]uint8)(nil)
	if full {
		lut = &cFullToLim
	}
	sameRow := &cb0[0] == &cb1[0]
	switch {
	case s.hs == 1 && s.cx0 == 0 && sameRow: // 4:2:2 into YUYV, 4:2:0 into NV12/I420 or YUYV
		cb0, cr0 = cb0[:n], cr0[:n]
		if lut == nil && step == 1 {
			copy(u, cb0)
			copy(v, cr0)
			return
		}
		for k := range cb0 {
			a, b := cb0[k], cr0[k]
			if lut != nil {
				a, b = lut[a], lut[b]
			}
			u[k*step], v[k*step] = a, b
		}
	case s.hs == 1 && s.cx0 == 0: // 4:2:2 into NV12/I420: average two rows
		cb0, cr0, cb1, cr1 = cb0[:n], cr0[:n], cb1[:n], cr1[:n]
		for k := range cb0 {
			a := uint8((uint16(cb0[k]) + uint16(cb1[k]) + 1) >> 1)
			b := uint8((uint16(cr0[k]) + uint16(cr1[k]) + 1) >> 1)
			if lut != nil {
				a, b = lut[a], lut[b]
			}
			u[k*step], v[k*step] = a, b
		}
	default: // any ratio: the four (or two) samples under the block
		for k := 0; k < n; k++ {
			xa := (2*k + s.cx0) >> s.hs
			xb := (2*k + 1 + s.cx0) >> s.hs
			a := uint8((uint16(cb0[xa]) + uint16(cb0[xb]) + uint16(cb1[xa]) + uint16(cb1[xb]) + 2) >> 2)
			b := uint8((uint16(cr0[xa]) + uint16(cr0[xb]) + uint16(cr1[xa]) + uint16(cr1[xb]) + 2) >> 2)
			if lut != nil {
				a, b = lut[a], lut[b]
			}
			u[k*step], v[k*step] = a, b
		}
	}
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
