//go:build framebus_opencv

package viewer

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
)

// Converter turns frames of any bus pixel format into one BGR gocv.Mat that
// it owns and reuses (OpenCV's own order, what IMShow, IMEncode, VideoWriter
// and the detectors take).
//
// Raw formats are one cv::cvtColor each (BT.601 for the YUV ones, as OpenCV
// defines them) from a Mat header laid over the frame's bytes themselves: no
// copy, and, for the read-only slots of the bus, no write. Those headers are
// made once per frame address (a bus has 2 to 8 slots; copy mode has one
// buffer) and kept, so Convert allocates nothing per frame, on the Go heap or
// in OpenCV. MJPEG frames are decoded with cv::imdecode, which allocates its
// output Mat (a Go handle and OpenCV's pixels) on every frame; gocv v0.31 has
// no decode into an existing Mat.
//
// A Converter is not safe for concurrent use; Close releases its Mats.
type Converter struct {
	bgr  gocv.Mat
	srcs [2 * framebus.MaxSlots]srcMat
	next int // the srcs entry to replace when all are taken
	f    framebus.Format
}

// srcMat is a Mat header over frame bytes at base, whose layout is key.
type srcMat struct {
	base *byte
	key  srcKey
	full gocv.Mat // over the whole frame (rows of stride bytes)
	roi  gocv.Mat // full's visible width, when stride is wider; else full
	sub  bool     // roi is a region of full
}

type srcKey struct {
	pf         framebus.FourCC
	rows, cols int
	typ        gocv.MatType
	bpp        int // bytes per element of typ
	width      int // visible columns (< cols when the stride pads rows)
}

// NewConverter makes a converter.
func NewConverter() *Converter {
	return &Converter{bgr: gocv.NewMat()}
}

// Close releases the Mats.
func (c *Converter) Close() {
	c.bgr.Close()
	for i := range c.srcs {
		c.srcs[i].close()
		c.srcs[i] = srcMat{}
	}
}

func (s *srcMat) close() {
	if s.base == nil {
		return
	}
	if s.sub {
		s.roi.Close()
	}
	s.full.Close()
}

// Supported reports whether Convert takes the pixel format.
func Supported(pf framebus.FourCC) bool {
	switch pf {
	case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24, framebus.FormatGrey,
		framebus.FormatYUYV, framebus.FormatNV12, framebus.FormatI420, framebus.FormatMJPEG:
		return true
	}
	return false
}

// Convert converts one frame of format f into the converter's BGR Mat and
// returns it; the Mat stays the converter's and is overwritten by the next
// call. data is only read. Errors wrap ErrFormat (a format or layout it
// cannot show) or ErrFrame (a frame too short, an MJPEG frame that does not
// decode).
func (c *Converter) Convert(data []byte, f framebus.Format) (*gocv.Mat, error) {
	if f.PixelFormat == framebus.FormatMJPEG {
		return c.decodeJPEG(data)
	}
	key, size, err := layoutOf(f)
	if err != nil {
		return nil, err
	}
	if len(data) < size {
		return nil, &FrameError{Format: f, Reason: fmt.Sprintf("%d bytes, the format needs %d", len(data), size)}
	}
	src, err := c.src(data, key)
	if err != nil {
		return nil, err
	}
	switch f.PixelFormat {
	case framebus.FormatBGR24:
		src.CopyTo(&c.bgr)
	case framebus.FormatRGBA:
		gocv.CvtColor(*src, &c.bgr, gocv.ColorRGBAToBGR)
	case framebus.FormatRGB24:
		gocv.CvtColor(*src, &c.bgr, gocv.ColorBGRToRGB) // the same swap (COLOR_RGB2BGR == COLOR_BGR2RGB)
	case framebus.FormatGrey:
		gocv.CvtColor(*src, &c.bgr, gocv.ColorGrayToBGR)
	case framebus.FormatYUYV:
		gocv.CvtColor(*src, &c.bgr, gocv.ColorYUVToBGRYUY2)
	case framebus.FormatNV12:
		gocv.CvtColor(*src, &c.bgr, gocv.ColorYUVToBGRNV12)
	case framebus.FormatI420:
		gocv.CvtColor(*src, &c.bgr, gocv.ColorYUVToBGRIYUV)
	}
	c.f = f
	return &c.bgr, nil
}

// layoutOf checks that OpenCV can take f's planes as they are and gives the
// Mat that covers them and the bytes a frame needs. Packed formats may have
// padded rows (a region of a wider Mat); the YUV 4:2:0 formats must be
// OpenCV's layout: planes one after the other, chroma rows half as wide.
func layoutOf(f framebus.Format) (srcKey, int, error) {
	w, h := int(f.Width), int(f.Height)
	bad := func(why string) (srcKey, int, error) {
		return srcKey{}, 0, &FormatError{Format: f, Reason: why}
	}
	if w <= 0 || h <= 0 {
		return bad("no size")
	}
	stride := int(f.PlaneStride[0])
	if f.PlaneOffset[0] != 0 {
		return bad("first plane not at the start of the frame")
	}
	packed := func(bpp int, typ gocv.MatType) (srcKey, int, error) {
		if stride == 0 {
			stride = w * bpp
		}
		if stride < w*bpp || stride%bpp != 0 {
			return bad(fmt.Sprintf("stride %d for %d pixels of %d bytes", stride, w, bpp))
		}
		return srcKey{pf: f.PixelFormat, rows: h, cols: stride / bpp, typ: typ, bpp: bpp, width: w}, (h-1)*stride + w*bpp, nil
	}
	switch f.PixelFormat {
	case framebus.FormatRGBA:
		return packed(4, gocv.MatTypeCV8UC4)
	case framebus.FormatRGB24, framebus.FormatBGR24:
		return packed(3, gocv.MatTypeCV8UC3)
	case framebus.FormatGrey:
		return packed(1, gocv.MatTypeCV8UC1)
	case framebus.FormatYUYV:
		if w%2 != 0 {
			return bad("odd width")
		}
		return packed(2, gocv.MatTypeCV8UC2)
	case framebus.FormatNV12, framebus.FormatI420:
		if w%2 != 0 || h%2 != 0 {
			return bad("odd size")
		}
		if stride == 0 {
			stride = w
		}
		y := uint32(w * h)
		ok := stride == w
		if f.PixelFormat == framebus.FormatNV12 {
			ok = ok && (f.PlaneCount == 0 || f.PlaneCount == 2 && f.PlaneOffset[1] == y && (f.PlaneStride[1] == 0 || f.PlaneStride[1] == uint32(w)))
		} else {
			ok = ok && (f.PlaneCount == 0 || f.PlaneCount == 3 && f.PlaneOffset[1] == y && f.PlaneOffset[2] == y+y/4 &&
				(f.PlaneStride[1] == 0 || f.PlaneStride[1] == uint32(w/2)) && (f.PlaneStride[2] == 0 || f.PlaneStride[2] == uint32(w/2)))
		}
		if !ok {
			return bad("planes with padding or gaps (OpenCV takes contiguous 4:2:0 planes only)")
		}
		return srcKey{pf: f.PixelFormat, rows: h * 3 / 2, cols: w, typ: gocv.MatTypeCV8UC1, bpp: 1, width: w}, w * h * 3 / 2, nil
	}
	return bad("not a format the viewer shows")
}

// src returns the Mat over data, made at the first frame at that address
// and layout.
func (c *Converter) src(data []byte, key srcKey) (*gocv.Mat, error) {
	base := &data[0]
	for i := range c.srcs {
		if s := &c.srcs[i]; s.base == base && s.key == key {
			return &s.roi, nil
		}
	}
	var slot *srcMat
	for i := range c.srcs {
		if c.srcs[i].base == nil {
			slot = &c.srcs[i]
			break
		}
	}
	if slot == nil {
		slot = &c.srcs[c.next]
		c.next = (c.next + 1) % len(c.srcs)
		slot.close()
		*slot = srcMat{}
	}
	// The Mat covers whole rows of the stride.
	rowBytes := key.cols * key.bpp
	n := key.rows * rowBytes
	if len(data) < n {
		return nil, &FrameError{Reason: fmt.Sprintf("%d bytes for %d rows of %d", len(data), key.rows, rowBytes)}
	}
	full, err := gocv.NewMatFromBytes(key.rows, key.cols, key.typ, data[:n])
	if err != nil {
		return nil, &FrameError{Reason: err.Error()}
	}
	*slot = srcMat{base: base, key: key, full: full, roi: full}
	if key.width < key.cols {
		slot.roi = full.Region(image.Rect(0, 0, key.width, key.rows))
		slot.sub = true
	}
	return &slot.roi, nil
}

// Forget drops the Mats over frame memory. They are only headers (an
// address and a shape), used only when a frame at that very address and
// layout is converted, so stale ones are harmless; Forget frees them.
func (c *Converter) Forget() {
	for i := range c.srcs {
		c.srcs[i].close()
		c.srcs[i] = srcMat{}
	}
}

// decodeJPEG decodes an MJPEG frame into the BGR Mat.
func (c *Converter) decodeJPEG(data []byte) (*gocv.Mat, error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil, &FrameError{Reason: "MJPEG frame does not start with a JPEG SOI marker"}
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || m.Empty() {
		m.Close()
		return nil, &FrameError{Reason: "MJPEG frame does not decode"}
	}
	c.bgr.Close()
	c.bgr = m
	return &c.bgr, nil
}
