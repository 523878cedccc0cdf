package capture

import "github.com/framebus/framebus/framebus"

// PatternFrameNumber reads the frame number that the pattern burned into a
// frame ("#000042": 42) of format f, in any of PatternFormats, also after a
// lossy path (a video codec, a scaler that kept the size): it samples the
// middle of every font cell and takes a cell as lit when its luma is over
// mid-grey. ok is false when the line does not read as '#' and digits (a
// frame that is not the pattern's, or too damaged to tell).
func PatternFrameNumber(frame []byte, f framebus.Format) (n uint64, ok bool) {
	w, h := int(f.Width), int(f.Height)
	if w <= 0 || h <= 0 || uint64(len(frame)) < f.FrameSize {
		return 0, false
	}
	luma := func(x, y int) int {
		if x < 0 || y < 0 || x >= w || y >= h {
			return 0
		}
		o := int(f.PlaneOffset[0]) + y*int(f.PlaneStride[0])
		switch f.PixelFormat {
		case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24:
			bpp := 3
			if f.PixelFormat == framebus.FormatRGBA {
				bpp = 4
			}
			p := frame[o+bpp*x:]
			return (int(p[0]) + 2*int(p[1]) + int(p[2])) / 4
		case framebus.FormatGrey, framebus.FormatNV12, framebus.FormatI420:
			return int(frame[o+x])
		case framebus.FormatYUYV:
			return int(frame[o+2*x])
		}
		return 0
	}
	l := newLayout(w, h)
	sc := l.scale
	y := l.line1Y
	digits := 0
	for i, x := 0, l.textX; x+glyphW*sc <= w; i, x = i+1, x+advanceW*sc {
		var g [glyphH]byte
		for r := 0; r < glyphH; r++ {
			for c := 0; c < glyphW; c++ {
				if luma(x+c*sc+sc/2, y+r*sc+sc/2) > 128 {
					g[r] |= 0x10 >> c
				}
			}
		}
		if g == glyphBlank {
			break
		}
		if i == 0 {
			if g != glyphHash {
				return 0, false
			}
			continue
		}
		d := -1
		for k := range digitGlyphs {
			if digitGlyphs[k] == g {
				d = k
			}
		}
		if d < 0 {
			return 0, false
		}
		n = n*10 + uint64(d)
		digits++
	}
	return n, digits > 0
}
