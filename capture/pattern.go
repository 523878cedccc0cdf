package capture

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/framebus/framebus/framebus"
)

func init() {
	Register("pattern", func(c Config) (Source, error) {
		p, err := NewPattern(c)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return p, nil
	})
}

// Pattern is the built-in synthetic source: a moving test pattern at any
// size, in RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420.
//
// From the top: eight colour bars (white, yellow, cyan, green, magenta, red,
// blue, black) over two thirds of the height, with an orange box that bounces
// across them; a grey ramp (black to white, left to right); a black band with
// the frame number ("#000042", 1 for the first frame) and the time since the
// first frame ("1366ms") burned in, in a scaled 5x7 bitmap font, and the size
// ("640x480") on the right.
//
// YUV formats are BT.601 limited range (Y 16-235), as V4L2 cameras deliver
// them, with the chroma of each 2x1 (YUYV) or 2x2 (NV12, I420) block
// averaged; GREY is full-range BT.601 luma. Everything that moves sits on
// even coordinates, so it covers whole chroma blocks.
//
// The static background is rendered once, at the first Read; each frame is a
// copy of it plus the box and the text. Read allocates nothing.
type Pattern struct {
	f      framebus.Format
	size   int
	planes []plane
	inks   [numInks][framebus.MaxPlanes][]byte // one plane row of each ink
	lay    layout
	bg     []byte // the background frame, made at the first Read

	pace  pacer
	now   func() int64
	frame uint64 // frames produced
	start int64  // capture time of frame 1
	text  [48]byte

	closed bool
}

// plane is one plane of the format, in units: the smallest group of bytes
// that repeats across a row (RGBA: 4 bytes, 1 pixel; YUYV: 4 bytes, 2 pixels;
// the U plane of I420: 1 byte, 2 pixels of 2 rows).
type plane struct {
	off, stride int
	rows        int // rows of the plane
	xdiv, ydiv  int // pixels per unit across; image rows per plane row
	unit        int // bytes per unit
	units       int // units per row
}

// Inks are the colours drawn per frame.
const (
	inkText = iota
	inkBox
	numInks
)

type rgb struct{ r, g, b uint8 }

var (
	barColors = [8]rgb{
		{255, 255, 255}, {255, 255, 0}, {0, 255, 255}, {0, 255, 0},
		{255, 0, 255}, {255, 0, 0}, {0, 0, 255}, {0, 0, 0},
	}
	bandColor = rgb{0, 0, 0}
	inkColors = [numInks]rgb{inkText: {255, 255, 255}, inkBox: {255, 128, 0}}
)

// PatternFormats are the pixel formats the pattern makes.
var PatternFormats = []framebus.FourCC{
	framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24, framebus.FormatGrey,
	framebus.FormatYUYV, framebus.FormatNV12, framebus.FormatI420,
}

// NewPattern makes a pattern source of cfg's size, pixel format (default
// RGBA) and rate (0: as fast as Read is called). Errors wrap ErrBadConfig.
func NewPattern(cfg Config) (*Pattern, error) {
	bad := func(err error) (*Pattern, error) { return nil, &ConfigError{Source: "pattern", Err: err} }
	pf := cfg.PixelFormat
	if pf == 0 {
		pf = framebus.FormatRGBA
	}
	specs, ok := planeUnits(pf)
	if !ok {
		return bad(fmt.Errorf("pixel format %v: the pattern makes RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", pf))
	}
	num, den, err := checkFPS(cfg.FPS)
	if err != nil {
		return bad(err)
	}
	f, err := framebus.Format{Width: cfg.Width, Height: cfg.Height, PixelFormat: pf, FPSNum: num, FPSDen: den}.Complete()
	if err != nil {
		return bad(err)
	}
	if f.FrameSize > uint64(maxInt) {
		return bad(fmt.Errorf("frame of %d bytes is too large", f.FrameSize))
	}
	p := &Pattern{f: f, size: int(f.FrameSize), now: framebus.Now}
	for i, s := range specs {
		s.off, s.stride = int(f.PlaneOffset[i]), int(f.PlaneStride[i])
		s.rows = int(f.Height) / s.ydiv
		s.units = int(f.Width) / s.xdiv
		p.planes = append(p.planes, s)
	}
	p.lay = newLayout(int(f.Width), int(f.Height))
	p.pace = newPacer(num, den, func() int64 { return p.now() })
	return p, nil
}

const maxInt = int(^uint(0) >> 1)

// planeUnits gives the unit geometry of each plane of the pattern's formats.
func planeUnits(pf framebus.FourCC) ([]plane, bool) {
	switch pf {
	case framebus.FormatRGBA:
		return []plane{{xdiv: 1, ydiv: 1, unit: 4}}, true
	case framebus.FormatRGB24, framebus.FormatBGR24:
		return []plane{{xdiv: 1, ydiv: 1, unit: 3}}, true
	case framebus.FormatGrey:
		return []plane{{xdiv: 1, ydiv: 1, unit: 1}}, true
	case framebus.FormatYUYV:
		return []plane{{xdiv: 2, ydiv: 1, unit: 4}}, true
	case framebus.FormatNV12:
		return []plane{{xdiv: 1, ydiv: 1, unit: 1}, {xdiv: 2, ydiv: 2, unit: 2}}, true
	case framebus.FormatI420:
		return []plane{{xdiv: 1, ydiv: 1, unit: 1}, {xdiv: 2, ydiv: 2, unit: 1}, {xdiv: 2, ydiv: 2, unit: 1}}, true
	}
	return nil, false
}

// Format returns the completed frame format.
func (p *Pattern) Format() framebus.Format { return p.f }

// Read waits for the next frame time, then renders frame number n+1 into dst.
func (p *Pattern) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if p.closed {
		return 0, 0, ErrClosed
	}
	if len(dst) < p.size {
		return 0, 0, fmt.Errorf("capture: pattern: %w: buffer of %d bytes for a frame of %d", io.ErrShortBuffer, len(dst), p.size)
	}
	if p.bg == nil {
		p.init()
	}
	if err := p.pace.wait(ctx); err != nil {
		return 0, 0, err
	}
	now := p.now()
	if p.frame == 0 {
		p.start = now
	}
	p.frame++
	p.render(dst, p.frame, (now-p.start)/1e6)
	return p.size, now, nil
}

// Close ends the source.
func (p *Pattern) Close() error {
	p.closed = true
	p.pace.stop()
	p.bg = nil
	return nil
}

// init renders the background and the ink rows.
func (p *Pattern) init() {
	for ink, c := range inkColors {
		u := encode(p.f.PixelFormat, c)
		for i, pl := range p.planes {
			row := make([]byte, pl.units*pl.unit)
			for x := 0; x < len(row); x += pl.unit {
				copy(row[x:], u[i][:pl.unit])
			}
			p.inks[ink][i] = row
		}
	}
	p.bg = make([]byte, p.size)
	p.renderBackground(p.bg)
	l := &p.lay
	if l.labelX >= 0 {
		label := strconv.AppendUint(p.text[:0], uint64(p.f.Width), 10)
		label = append(label, 'x')
		label = strconv.AppendUint(label, uint64(p.f.Height), 10)
		if x := l.right - len(label)*advanceW*l.scale; x >= l.labelX {
			p.drawText(p.bg, x&^1, l.line1Y, label, inkText)
		}
	}
}

// layout places what the pattern draws. Every coordinate and size of what
// moves is even.
type layout struct {
	w, h         int
	barsH        int // the bars: rows [0, barsH)
	rampY, bandY int // the ramp: rows [rampY, bandY); the band below
	scale        int // font cell in pixels
	textX, right int
	line1Y       int // frame number
	line2Y       int // time since the first frame
	labelX       int // left bound of the size label; -1: no room
	box          int // box side
	boxMaxX      int // the box's x range is [0, boxMaxX]
	boxMaxY      int
	stepX, stepY int // box speed, pixels per frame
	textW        int // width reserved for the frame number
}

func even(v int) int { return v &^ 1 }

func newLayout(w, h int) layout {
	l := layout{w: w, h: h}
	l.barsH = even(h * 2 / 3)
	l.rampY = l.barsH
	l.bandY = l.barsH + even(h/12)
	l.scale = max(2, even((h-l.bandY)/20))
	margin := 2 * l.scale
	l.textX = margin
	l.right = w - margin
	l.line1Y = l.bandY + margin
	l.line2Y = l.line1Y + lineH*l.scale
	l.textW = 8 * advanceW * l.scale // "#" and up to 7 digits
	l.labelX = l.textX + l.textW + 2*advanceW*l.scale
	if l.labelX >= l.right {
		l.labelX = -1
	}
	l.box = max(2, even(min(w, l.barsH)/5))
	l.boxMaxX = max(0, w-l.box)
	l.boxMaxY = max(0, l.barsH-l.box)
	l.stepX = max(2, even(w/128))
	l.stepY = max(2, even(l.barsH/96))
	return l
}

// boxAt is the box's top-left corner in frame n: it bounces off the edges of
// the bars.
func (l *layout) boxAt(n uint64) (x, y int) {
	return even(bounce(n*uint64(l.stepX), l.boxMaxX)), even(bounce(n*uint64(l.stepY), l.boxMaxY))
}

// bounce folds t into [0, span] as a triangle wave.
func bounce(t uint64, span int) int {
	if span <= 0 {
		return 0
	}
	t %= 2 * uint64(span)
	if t > uint64(span) {
		t = 2*uint64(span) - t
	}
	return int(t)
}

// render writes frame n, ms milliseconds after the first, into dst.
func (p *Pattern) render(dst []byte, n uint64, ms int64) {
	copy(dst[:p.size], p.bg)
	l := &p.lay
	x, y := l.boxAt(n)
	p.fillRect(dst, x, y, l.box, l.box, inkBox)
	t := append(p.text[:0], '#')
	t = appendPadded(t, n, 6)
	p.drawText(dst, l.textX, l.line1Y, t, inkText)
	t = strconv.AppendInt(p.text[:0], ms, 10)
	t = append(t, 'm', 's')
	p.drawText(dst, l.textX, l.line2Y, t, inkText)
}

// appendPadded appends n in decimal with at least width digits.
func appendPadded(b []byte, n uint64, width int) []byte {
	var d [20]byte
	s := strconv.AppendUint(d[:0], n, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// drawText draws s with its top-left corner at (x, y), one font cell being
// scale x scale pixels.
func (p *Pattern) drawText(dst []byte, x, y int, s []byte, ink int) {
	sc := p.lay.scale
	for _, ch := range s {
		g := glyph(ch)
		for r := 0; r < glyphH; r++ {
			bits := g[r]
			for c := 0; c < glyphW; {
				if bits&(0x10>>c) == 0 {
					c++
					continue
				}
				c0 := c
				for c < glyphW && bits&(0x10>>c) != 0 {
					c++
				}
				p.fillRect(dst, x+c0*sc, y+r*sc, (c-c0)*sc, sc, ink)
			}
		}
		x += advanceW * sc
	}
}

// fillRect fills a rectangle, clipped to the frame, with an ink. For the
// subsampled formats x, y, w and h should be even (whole chroma blocks).
func (p *Pattern) fillRect(dst []byte, x, y, w, h, ink int) {
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+w, p.lay.w), min(y+h, p.lay.h)
	if x0 >= x1 || y0 >= y1 {
		return
	}
	for i := range p.planes {
		pl := &p.planes[i]
		u0, u1 := x0/pl.xdiv, x1/pl.xdiv
		if u0 >= u1 {
			continue
		}
		row := p.inks[ink][i][:(u1-u0)*pl.unit]
		for r := y0 / pl.ydiv; r < y1/pl.ydiv; r++ {
			o := pl.off + r*pl.stride + u0*pl.unit
			copy(dst[o:o+len(row)], row)
		}
	}
}

// bgAt is the background colour of pixel (x, y).
func (l *layout) bgAt(x, y int) rgb {
	switch {
	case y < l.rampY:
		return barColors[x*len(barColors)/l.w]
	case y < l.bandY:
		v := uint8(0)
		if l.w > 1 {
			v = uint8(x * 255 / (l.w - 1))
		}
		return rgb{v, v, v}
	}
	return bandColor
}

// region numbers the horizontal bands whose rows are all alike.
func (l *layout) region(y int) int {
	switch {
	case y < l.rampY:
		return 0
	case y < l.bandY:
		return 1
	}
	return 2
}

// renderBackground converts the background into the pixel format. Rows of a
// region are alike (and regions start on even rows), so each plane row is
// computed once per region and copied after that.
func (p *Pattern) renderBackground(dst []byte) {
	l := &p.lay
	for i := range p.planes {
		pl := &p.planes[i]
		rowBytes := pl.units * pl.unit
		prev, prevRegion := -1, -1
		for r := 0; r < pl.rows; r++ {
			y := r * pl.ydiv
			o := pl.off + r*pl.stride
			row := dst[o : o+rowBytes]
			if reg := l.region(y); reg == prevRegion {
				copy(row, dst[prev:prev+rowBytes])
				continue
			}
			prev, prevRegion = o, l.region(y)
			p.convertRow(row, i, y)
		}
	}
}

// convertRow writes plane i's row for image row y (and y+1 for 2x2 chroma).
func (p *Pattern) convertRow(row []byte, i, y int) {
	l := &p.lay
	pl := &p.planes[i]
	pf := p.f.PixelFormat
	for u := 0; u < pl.units; u++ {
		out := row[u*pl.unit : (u+1)*pl.unit]
		x := u * pl.xdiv
		switch {
		case pl.xdiv == 1 && pl.ydiv == 1: // one pixel per unit
			e := encode(pf, l.bgAt(x, y))
			copy(out, e[i][:pl.unit])
		case pf == framebus.FormatYUYV:
			y0, u0, v0 := yuv(l.bgAt(x, y))
			y1, u1, v1 := yuv(l.bgAt(x+1, y))
			out[0], out[1], out[2], out[3] = uint8(y0), uint8((u0+u1+1)/2), uint8(y1), uint8((v0+v1+1)/2)
		default: // a 2x2 chroma block of NV12 or I420
			var su, sv int
			for dy := 0; dy < 2; dy++ {
				for dx := 0; dx < 2; dx++ {
					_, cu, cv := yuv(l.bgAt(x+dx, min(y+dy, l.h-1)))
					su += cu
					sv += cv
				}
			}
			cu, cv := uint8((su+2)/4), uint8((sv+2)/4)
			switch {
			case pf == framebus.FormatNV12:
				out[0], out[1] = cu, cv
			case i == 1:
				out[0] = cu
			default:
				out[0] = cv
			}
		}
	}
}

// yuv is BT.601 limited range, the integer form of ITU-R BT.601.
func yuv(c rgb) (y, u, v int) {
	r, g, b := int(c.r), int(c.g), int(c.b)
	y = (66*r+129*g+25*b+128)>>8 + 16
	u = (-38*r-74*g+112*b+128)>>8 + 128
	v = (112*r-94*g-18*b+128)>>8 + 128
	return
}

// luma is full-range BT.601 luma (GREY).
func luma(c rgb) uint8 {
	return uint8((77*int(c.r) + 150*int(c.g) + 29*int(c.b) + 128) >> 8)
}

// encode gives the unit bytes of colour c in each plane of format pf (for a
// flat area: both pixels of a YUYV pair, a whole chroma block).
func encode(pf framebus.FourCC, c rgb) (u [framebus.MaxPlanes][4]byte) {
	y, cu, cv := yuv(c)
	switch pf {
	case framebus.FormatRGBA:
		u[0] = [4]byte{c.r, c.g, c.b, 255}
	case framebus.FormatRGB24:
		u[0] = [4]byte{c.r, c.g, c.b}
	case framebus.FormatBGR24:
		u[0] = [4]byte{c.b, c.g, c.r}
	case framebus.FormatGrey:
		u[0] = [4]byte{luma(c)}
	case framebus.FormatYUYV:
		u[0] = [4]byte{uint8(y), uint8(cu), uint8(y), uint8(cv)}
	case framebus.FormatNV12:
		u[0], u[1] = [4]byte{uint8(y)}, [4]byte{uint8(cu), uint8(cv)}
	case framebus.FormatI420:
		u[0], u[1], u[2] = [4]byte{uint8(y)}, [4]byte{uint8(cu)}, [4]byte{uint8(cv)}
	}
	return u
}
