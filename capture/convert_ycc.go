package capture

import (
	"fmt"
	"image"

	"github.com/framebus/framebus/framebus"
)

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
