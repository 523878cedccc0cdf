package framebus

import (
	"fmt"
	"strings"
)

// FourCC is a V4L2 pixel format code, first character in the low byte.
type FourCC uint32

// MakeFourCC builds a FourCC from its four characters.
func MakeFourCC(a, b, c, d byte) FourCC {
	return FourCC(uint32(a) | uint32(b)<<8 | uint32(c)<<16 | uint32(d)<<24)
}

// The pixel formats of PROTOCOL.md section 3.2.
var (
	FormatRGBA  = MakeFourCC('A', 'B', '2', '4') // RGBA 8-8-8-8 in memory order
	FormatRGB24 = MakeFourCC('R', 'G', 'B', '3')
	FormatBGR24 = MakeFourCC('B', 'G', 'R', '3')
	FormatGrey  = MakeFourCC('G', 'R', 'E', 'Y')
	FormatYUYV  = MakeFourCC('Y', 'U', 'Y', 'V')
	FormatNV12  = MakeFourCC('N', 'V', '1', '2')
	FormatI420  = MakeFourCC('Y', 'U', '1', '2')
	FormatMJPEG = MakeFourCC('M', 'J', 'P', 'G')
)

func (f FourCC) String() string {
	b := [4]byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("0x%08x", uint32(f))
		}
	}
	return string(b[:])
}

var formatNames = map[string]FourCC{
	"RGBA": FormatRGBA, "RGB24": FormatRGB24, "BGR24": FormatBGR24, "GREY": FormatGrey, "GRAY": FormatGrey,
	"YUYV": FormatYUYV, "NV12": FormatNV12, "I420": FormatI420, "MJPEG": FormatMJPEG,
}

// ParseFourCC accepts a format name (RGBA, RGB24, BGR24, GREY, YUYV, NV12,
// I420, MJPEG) or a raw four-character code (AB24, YU12, ...).
func ParseFourCC(s string) (FourCC, error) {
	if f, ok := formatNames[strings.ToUpper(s)]; ok {
		return f, nil
	}
	if len(s) == 4 {
		f := MakeFourCC(s[0], s[1], s[2], s[3])
		if _, ok := planeLayout(f); ok {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown pixel format %q (want RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG or a fourcc such as AB24)", ErrBadOptions, s)
}

// planeSpec: for each plane, bytes per pixel column (numerator/denominator
// of width) and the row divisor.
type planeSpec struct {
	bppNum, bppDen uint32 // row bytes = width * bppNum / bppDen
	rowDiv         uint32 // plane rows = height / rowDiv
}

func planeLayout(f FourCC) ([]planeSpec, bool) {
	switch f {
	case FormatRGBA:
		return []planeSpec{{4, 1, 1}}, true
	case FormatRGB24, FormatBGR24:
		return []planeSpec{{3, 1, 1}}, true
	case FormatGrey:
		return []planeSpec{{1, 1, 1}}, true
	case FormatYUYV:
		return []planeSpec{{2, 1, 1}}, true
	case FormatNV12:
		return []planeSpec{{1, 1, 1}, {1, 1, 2}}, true
	case FormatI420:
		return []planeSpec{{1, 1, 1}, {1, 2, 2}, {1, 2, 2}}, true
	case FormatMJPEG:
		return nil, true // compressed: one plane, variable size
	}
	return nil, false
}

// Format describes the frames of one generation.
type Format struct {
	Width, Height uint32
	PixelFormat   FourCC
	// Planes: stride (bytes per row) and offset inside the slot of each plane.
	// Left zero, they are derived from the pixel format.
	PlaneCount  uint32
	PlaneStride [MaxPlanes]uint32
	PlaneOffset [MaxPlanes]uint32
	// FrameSize is the largest frame in bytes (the slot capacity). Derived for
	// raw formats; for MJPEG it defaults to width*height*2.
	FrameSize uint64
	// Frame rate, FPSNum/FPSDen frames per second; 0 = unknown.
	FPSNum, FPSDen uint32
}

// MaxDimension bounds width and height (16384, more than any camera).
const MaxDimension = 16384

// Complete validates f and derives plane strides, offsets and the frame size
// where they are zero. It returns the completed format.
func (f Format) Complete() (Format, error) {
	if f.Width == 0 || f.Height == 0 {
		return f, fmt.Errorf("%w: frame size %dx%d: width and height must be positive", ErrBadOptions, f.Width, f.Height)
	}
	if f.Width > MaxDimension || f.Height > MaxDimension {
		return f, fmt.Errorf("%w: frame size %dx%d: larger than %dx%d", ErrBadOptions, f.Width, f.Height, MaxDimension, MaxDimension)
	}
	if f.PixelFormat == 0 {
		f.PixelFormat = FormatRGBA
	}
	specs, ok := planeLayout(f.PixelFormat)
	if !ok {
		return f, fmt.Errorf("%w: unsupported pixel format %v", ErrBadOptions, f.PixelFormat)
	}
	if f.FPSNum == 0 || f.FPSDen == 0 {
		if f.FPSNum == 0 {
			f.FPSDen = 1
		} else {
			return f, fmt.Errorf("%w: fps denominator 0", ErrBadOptions)
		}
	}
	if f.PixelFormat == FormatMJPEG {
		f.PlaneCount = 1
		f.PlaneStride = [MaxPlanes]uint32{}
		f.PlaneOffset = [MaxPlanes]uint32{}
		if f.FrameSize == 0 {
			f.FrameSize = uint64(f.Width) * uint64(f.Height) * 2
		}
		return f, nil
	}
	if (f.PixelFormat == FormatNV12 || f.PixelFormat == FormatI420 || f.PixelFormat == FormatYUYV) && (f.Width%2 != 0 || (f.PixelFormat != FormatYUYV && f.Height%2 != 0)) {
		return f, fmt.Errorf("%w: %v needs even dimensions, got %dx%d", ErrBadOptions, f.PixelFormat, f.Width, f.Height)
	}
	given := f.PlaneCount != 0
	if given && f.PlaneCount != uint32(len(specs)) {
		return f, fmt.Errorf("%w: %v has %d planes, %d given", ErrBadOptions, f.PixelFormat, len(specs), f.PlaneCount)
	}
	f.PlaneCount = uint32(len(specs))
	var off uint64
	for i, s := range specs {
		minStride := uint64(f.Width) * uint64(s.bppNum) / uint64(s.bppDen)
		stride := uint64(f.PlaneStride[i])
		if stride == 0 {
			stride = minStride
		} else if stride < minStride {
			return f, fmt.Errorf("%w: plane %d stride %d is shorter than a row (%d bytes)", ErrBadOptions, i, stride, minStride)
		}
		rows := uint64(f.Height / s.rowDiv)
		if given && f.PlaneOffset[i] != 0 {
			if uint64(f.PlaneOffset[i]) < off {
				return f, fmt.Errorf("%w: plane %d offset %d overlaps the previous plane", ErrBadOptions, i, f.PlaneOffset[i])
			}
			off = uint64(f.PlaneOffset[i])
		}
		if off+stride*rows > 1<<32-1 {
			return f, fmt.Errorf("%w: frame of %dx%d %v is too large", ErrBadOptions, f.Width, f.Height, f.PixelFormat)
		}
		f.PlaneStride[i] = uint32(stride)
		f.PlaneOffset[i] = uint32(off)
		off += stride * rows
	}
	if f.FrameSize == 0 {
		f.FrameSize = off
	} else if f.FrameSize < off {
		return f, fmt.Errorf("%w: frame size %d is smaller than the planes (%d bytes)", ErrBadOptions, f.FrameSize, off)
	}
	return f, nil
}

func (f Format) String() string {
	fps := ""
	if f.FPSNum != 0 {
		fps = fmt.Sprintf(" @%g fps", float64(f.FPSNum)/float64(f.FPSDen))
	}
	return fmt.Sprintf("%dx%d %v%s", f.Width, f.Height, f.PixelFormat, fps)
}
