//go:build framebus_opencv

package capture

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"sync"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
)

func init() {
	Register("file", func(c Config) (Source, error) {
		f, err := NewFile(c)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return f, nil
	})
}

// FileFormats are the pixel formats the file source makes.
var FileFormats = PatternFormats

// defaultFileFPS paces a file whose container does not say its rate.
const defaultFileFPS = 30

// File is the file:PATH source: a video file read with OpenCV (gocv's
// VideoCapture, FFmpeg underneath), played in a loop.
//
// It opens the file and decodes its first frame before the bus exists, so a
// missing, unreadable or undecodable file is a configuration error
// (ErrBadConfig), and Format has the real size and rate: the file's own
// (CAP_PROP_FPS) unless the Config asks for others. A frame of another size
// than the slot is scaled with cv::resize (area interpolation when it
// shrinks, bilinear otherwise).
//
// OpenCV decodes to BGR; Read converts that into the slot's planes through a
// cv::Mat laid over a frame buffer of the source's own (gocv.NewMatFromBytes
// wraps, it does not copy), and copies the frame into the slot in Go. Not
// straight into the slot: C code writing a slot whose bus file was
// truncated under the producer dies of SIGBUS, which only Go code can turn
// into an error (framebus.Producer.Fill). The copy costs 0.3-0.7 ms at
// 1080p RGBA, a fraction of the decoding. BGR24 at the file's size is
// decoded straight into that buffer. RGBA, RGB24,
// GREY and I420 are one cvtColor each (GREY is full-range BT.601 luma, I420
// BT.601 limited range, as OpenCV defines them); NV12 is OpenCV's I420 with
// the chroma planes interleaved in place; YUYV, which OpenCV cannot make, is
// converted in Go (BT.601 limited range, the pattern's formula, chroma of
// each pixel pair averaged). The Mats are made once (one per slot address)
// and reused: Read allocates nothing on the Go heap.
//
// At the end of the file Read seeks back to the first frame (or reopens the
// file when it cannot seek) and goes on within the same call, so the loop
// keeps the pace. The capture time of a frame is taken when it has been
// decoded.
type File struct {
	path string
	f    framebus.Format
	size int
	w, h int // the slot's frame size

	vc    *gocv.VideoCapture
	frame gocv.Mat // the decoded frame, BGR, the file's size
	sized gocv.Mat // frame scaled to the slot's size, when it differs
	buf   []byte   // the frame in the slot's format, copied into the slot
	outs  [framebus.MaxSlots]outMat
	next  int    // the outs entry to replace when all are taken
	uv    []byte // NV12: a copy of I420's U and V planes

	pace   pacer
	now    func() int64
	pos    int    // frames decoded since the start of the file
	loops  uint64 // times the file was started again
	closed bool
}

// outMat is a Mat over the slot whose first byte is at base.
type outMat struct {
	base *byte
	m    gocv.Mat
}

// NewFile opens the video file cfg.Arg. Width and Height (0x0, or
// cfg.DefaultSize: the file's size) are the size of the frames it makes,
// PixelFormat (0: RGBA) their format, FPS their rate (cfg.DefaultFPS: the
// file's). Errors wrap ErrBadConfig.
func NewFile(cfg Config) (*File, error) {
	bad := func(err error) (*File, error) { return nil, &ConfigError{Source: "file", Err: err} }
	path := cfg.Arg
	if path == "" {
		return bad(errors.New("no file named: use file:PATH"))
	}
	pf := cfg.PixelFormat
	if pf == 0 {
		pf = framebus.FormatRGBA
	}
	if _, ok := planeUnits(pf); !ok {
		return bad(fmt.Errorf("pixel format %v: the file source makes RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", pf))
	}
	// The checks OpenCV would only answer with "cannot open".
	fi, err := os.Stat(path)
	if err != nil {
		return bad(err)
	}
	if fi.IsDir() {
		return bad(fmt.Errorf("%s is a directory, not a video file", path))
	}
	fh, err := os.Open(path)
	if err != nil {
		return bad(err)
	}
	fh.Close()

	s := &File{path: path, frame: gocv.NewMat(), sized: gocv.NewMat(), now: framebus.Now}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if err := s.open(); err != nil {
		return bad(err)
	}
	// Decode the first frame: it proves the file is a video OpenCV can
	// read, and gives the real size (some containers do not say it).
	if !s.vc.Read(&s.frame) || s.frame.Empty() {
		return bad(fmt.Errorf("%s: OpenCV found no frame it can decode", path))
	}
	if s.frame.Type() != gocv.MatTypeCV8UC3 {
		return bad(fmt.Errorf("%s: OpenCV decodes it to %v, not 8-bit BGR", path, s.frame.Type()))
	}
	if err := s.rewind(); err != nil {
		return bad(err)
	}

	w, h := uint32(s.frame.Cols()), uint32(s.frame.Rows())
	if !cfg.DefaultSize && (cfg.Width != 0 || cfg.Height != 0) {
		w, h = cfg.Width, cfg.Height
	}
	var num, den uint32
	if cfg.DefaultFPS {
		var known bool
		if num, den, known = fileRate(s.vc.Get(gocv.VideoCaptureFPS)); !known {
			num, den = defaultFileFPS, 1
		}
	} else if num, den, err = checkFPS(cfg.FPS); err != nil {
		return bad(err)
	}
	f, err := framebus.Format{Width: w, Height: h, PixelFormat: pf, FPSNum: num, FPSDen: den}.Complete()
	if err != nil {
		return bad(err)
	}
	if f.FrameSize > uint64(maxInt) {
		return bad(fmt.Errorf("frame of %d bytes is too large", f.FrameSize))
	}
	s.setFormat(f)
	ok = true
	return s, nil
}

// setFormat makes s produce frames of the completed format f.
func (s *File) setFormat(f framebus.Format) {
	s.f, s.size, s.w, s.h = f, int(f.FrameSize), int(f.Width), int(f.Height)
	s.buf = make([]byte, s.size)
	s.uv = nil
	if f.PixelFormat == framebus.FormatNV12 {
		s.uv = make([]byte, s.size-s.w*s.h)
	}
	s.pace = newPacer(f.FPSNum, f.FPSDen, func() int64 { return s.now() })
}

// fileRate turns OpenCV's CAP_PROP_FPS into framebus's rational: exact for
// whole rates and the NTSC family (30000/1001, ...), else to a thousandth.
// known is false when the container does not say.
func fileRate(fps float64) (num, den uint32, known bool) {
	if !(fps >= 0.01 && fps <= maxFPS) { // NaN too
		return 0, 0, false
	}
	if r := math.Round(fps); math.Abs(fps-r) < 1e-3 {
		return uint32(r), 1, true
	}
	if n := math.Round(fps * 1001); math.Mod(n, 1000) == 0 && math.Abs(fps-n/1001) < 1e-4 {
		return uint32(n), 1001, true
	}
	num, den, err := checkFPS(fps)
	return num, den, err == nil
}

// quietFFmpeg silences FFmpeg's messages on stderr ("moov atom not found"
// for a file that is no video), which would garble the command's one-line
// errors; what went wrong is in the error instead. OpenCV reads
// OPENCV_FFMPEG_LOGLEVEL when it first loads FFmpeg; a value the user set is
// kept (e.g. 32 for FFmpeg's info level).
var quietFFmpeg = sync.OnceFunc(func() {
	if _, set := os.LookupEnv("OPENCV_FFMPEG_LOGLEVEL"); !set {
		os.Setenv("OPENCV_FFMPEG_LOGLEVEL", "-8") // AV_LOG_QUIET
	}
})

// open (re)opens the file with OpenCV's FFmpeg backend (the others, tried
// in turn by CAP_ANY, take image sequences and GStreamer pipelines, start
// slowly and print their own failures).
func (s *File) open() error {
	quietFFmpeg()
	if s.vc != nil {
		s.vc.Close()
		s.vc = nil
	}
	vc, err := gocv.VideoCaptureFileWithAPI(s.path, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return fmt.Errorf("%s: not a video file that OpenCV (FFmpeg) can open", s.path)
	}
	s.vc = vc
	return nil
}

// rewind goes back to the first frame: a seek, or reopening the file.
func (s *File) rewind() error {
	s.pos = 0
	s.vc.Set(gocv.VideoCapturePosFrames, 0)
	if s.vc.Get(gocv.VideoCapturePosFrames) == 0 {
		return nil
	}
	return s.open()
}

// Format returns the completed frame format.
func (s *File) Format() framebus.Format { return s.f }

// Read waits for the next frame time, decodes the next frame of the file
// (the first after the last) and writes it into dst in the slot's format.
func (s *File) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if s.closed {
		return 0, 0, ErrClosed
	}
	if len(dst) < s.size {
		return 0, 0, fmt.Errorf("capture: file: %w: buffer of %d bytes for a frame of %d", io.ErrShortBuffer, len(dst), s.size)
	}
	if err := s.pace.wait(ctx); err != nil {
		return 0, 0, err
	}
	ts, err := s.frameInto(s.buf)
	if err != nil {
		return 0, 0, err
	}
	copy(dst, s.buf) // in Go: see the type's comment
	return s.size, ts, nil
}

// frameInto decodes the next frame and converts it into buf, the source's
// own frame buffer, returning its capture time.
func (s *File) frameInto(buf []byte) (int64, error) {
	if s.f.PixelFormat == framebus.FormatBGR24 {
		// Decoded straight into the buffer when the sizes agree.
		if ts, done, err := s.readInto(buf); done || err != nil {
			return ts, err
		}
	}
	if err := s.decode(&s.frame); err != nil {
		return 0, err
	}
	ts := s.now()
	return ts, s.convert(s.frame, buf)
}

// readInto decodes a BGR24 frame of the slot's size straight into dst.
// done is false when Read must take the general way: at the end of the file
// (a failed read releases the Mat) or when the frame has another size
// (OpenCV gave the Mat a buffer of its own); the slot's Mat is made again.
func (s *File) readInto(dst []byte) (ts int64, done bool, err error) {
	if s.frame.Cols() != s.w || s.frame.Rows() != s.h { // scaling: the general way
		return 0, false, nil
	}
	m, err := s.out(dst)
	if err != nil {
		return 0, false, err
	}
	if !s.vc.Read(m) || m.Empty() {
		s.dropOut(dst)
		return 0, false, nil
	}
	ts = s.now()
	s.pos++
	if wraps(*m, dst, s.h, s.w) {
		return ts, true, nil
	}
	// Another size: that Mat is now the decoded frame.
	s.frame.Close()
	s.frame = *m
	s.forgetOut(dst)
	return ts, true, s.convert(s.frame, dst)
}

// decode reads the next frame into m, starting the file again at its end.
func (s *File) decode(m *gocv.Mat) error {
	if s.vc.Read(m) && !m.Empty() {
		s.pos++
		return nil
	}
	if s.pos == 0 {
		return fmt.Errorf("capture: file %s: no frame could be decoded", s.path)
	}
	// The end (or a frame that does not decode): from the start again.
	if err := s.rewind(); err != nil {
		return fmt.Errorf("capture: file %s: %w", s.path, err)
	}
	s.loops++
	if s.vc.Read(m) && !m.Empty() {
		s.pos++
		return nil
	}
	if err := s.open(); err == nil && s.vc.Read(m) && !m.Empty() { // the seek did not work
		s.pos++
		return nil
	}
	return fmt.Errorf("capture: file %s: no frame after starting again", s.path)
}

// convert writes the BGR frame src into dst in the slot's size and format.
func (s *File) convert(src gocv.Mat, dst []byte) error {
	pf := s.f.PixelFormat
	bgr := src
	if src.Cols() != s.w || src.Rows() != s.h {
		interp := gocv.InterpolationLinear
		if s.w < src.Cols() && s.h < src.Rows() {
			interp = gocv.InterpolationArea
		}
		if pf == framebus.FormatBGR24 {
			m, err := s.out(dst)
			if err != nil {
				return err
			}
			gocv.Resize(src, m, image.Pt(s.w, s.h), 0, 0, interp)
			return s.check(m, dst)
		}
		gocv.Resize(src, &s.sized, image.Pt(s.w, s.h), 0, 0, interp)
		bgr = s.sized
	}
	if pf == framebus.FormatYUYV {
		b, err := bgr.DataPtrUint8()
		if err != nil {
			return fmt.Errorf("capture: file: %w", err)
		}
		bgrToYUYV(dst, b, s.w, s.h, bgr.Step(), int(s.f.PlaneStride[0]))
		return nil
	}
	m, err := s.out(dst)
	if err != nil {
		return err
	}
	switch pf {
	case framebus.FormatBGR24:
		bgr.CopyTo(m)
	case framebus.FormatRGBA:
		gocv.CvtColor(bgr, m, gocv.ColorBGRToRGBA)
	case framebus.FormatRGB24:
		gocv.CvtColor(bgr, m, gocv.ColorBGRToRGB)
	case framebus.FormatGrey:
		gocv.CvtColor(bgr, m, gocv.ColorBGRToGray)
	case framebus.FormatI420, framebus.FormatNV12:
		gocv.CvtColor(bgr, m, gocv.ColorBGRToYUVI420)
	}
	if err := s.check(m, dst); err != nil {
		return err
	}
	if pf == framebus.FormatNV12 {
		interleaveUV(dst[s.w*s.h:], s.uv)
	}
	return nil
}

// check makes sure OpenCV wrote into the slot, not into a buffer of its own.
func (s *File) check(m *gocv.Mat, dst []byte) error {
	rows, cols, _ := s.outShape()
	if wraps(*m, dst, rows, cols) {
		return nil
	}
	err := fmt.Errorf("capture: file: OpenCV did not write the frame into the slot (%dx%d, type %v)", m.Cols(), m.Rows(), m.Type())
	s.dropOut(dst)
	return err
}

// wraps says whether m is rows x cols over the memory of dst.
func wraps(m gocv.Mat, dst []byte, rows, cols int) bool {
	if m.Rows() != rows || m.Cols() != cols {
		return false
	}
	b, err := m.DataPtrUint8()
	return err == nil && len(b) > 0 && len(b) <= len(dst) && &b[0] == &dst[0]
}

// outShape is the Mat that covers a slot: rows, columns and type.
func (s *File) outShape() (rows, cols int, t gocv.MatType) {
	switch s.f.PixelFormat {
	case framebus.FormatRGBA:
		return s.h, s.w, gocv.MatTypeCV8UC4
	case framebus.FormatRGB24, framebus.FormatBGR24:
		return s.h, s.w, gocv.MatTypeCV8UC3
	case framebus.FormatI420, framebus.FormatNV12:
		return s.h * 3 / 2, s.w, gocv.MatTypeCV8UC1 // OpenCV's layout of I420
	}
	return s.h, s.w, gocv.MatTypeCV8UC1 // GREY
}

// out returns the Mat over the slot dst, made at the first frame into it.
func (s *File) out(dst []byte) (*gocv.Mat, error) {
	base := &dst[0]
	for i := range s.outs {
		if s.outs[i].base == base {
			return &s.outs[i].m, nil
		}
	}
	rows, cols, t := s.outShape()
	m, err := gocv.NewMatFromBytes(rows, cols, t, dst[:s.size])
	if err != nil {
		return nil, fmt.Errorf("capture: file: %w", err)
	}
	o := &s.outs[s.next]
	s.next = (s.next + 1) % len(s.outs)
	if o.base != nil {
		o.m.Close()
	}
	*o = outMat{base: base, m: m}
	return &o.m, nil
}

// dropOut closes the Mat over dst.
func (s *File) dropOut(dst []byte) {
	for i := range s.outs {
		if s.outs[i].base == &dst[0] {
			s.outs[i].m.Close()
			s.outs[i] = outMat{}
		}
	}
}

// forgetOut removes the Mat over dst from the table without closing it.
func (s *File) forgetOut(dst []byte) {
	for i := range s.outs {
		if s.outs[i].base == &dst[0] {
			s.outs[i] = outMat{}
		}
	}
}

// Close releases the file and OpenCV's memory. Safe to call twice.
func (s *File) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.pace.stop()
	if s.vc != nil {
		s.vc.Close()
		s.vc = nil
	}
	s.frame.Close()
	s.sized.Close()
	for i := range s.outs {
		if s.outs[i].base != nil {
			s.outs[i].m.Close()
			s.outs[i] = outMat{}
		}
	}
	return nil
}
