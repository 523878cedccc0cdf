// Package y4m reads and writes the header lines of YUV4MPEG2 streams (the
// .y4m format of mjpegtools, which ffmpeg calls yuv4mpegpipe and GStreamer
// y4menc/y4mdec), and maps their colour spaces to framebus pixel formats.
//
// A stream is one header line, "YUV4MPEG2 W320 H240 F30:1 Ip A1:1 C420jpeg\n",
// then, for each frame, a line "FRAME\n" (parameters allowed after FRAME)
// followed by the frame's planes, Y then Cb then Cr, each tightly packed.
//
// framebus carries the 4:2:0 colour spaces (C420jpeg, C420mpeg2,
// C420paldv, C420: the chroma siting differs, the bytes do not) as I420 and
// Cmono as GREY. Written streams also use C422 for YUYV frames (the planes
// taken apart). Everything else (4:4:4, 4:1:1, alpha, more than 8 bits) is
// refused with an error that says so.
package y4m

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/framebus/framebus/framebus"
)

// Magic starts every stream.
const Magic = "YUV4MPEG2"

// FrameMagic starts every frame.
const FrameMagic = "FRAME"

// maxLine bounds a header or frame line (the format has no limit; real
// headers are under 100 bytes).
const maxLine = 4096

// ErrBadStream is wrapped by every error about a stream's header or frame
// lines.
var ErrBadStream = errors.New("bad YUV4MPEG2 stream")

// ErrUnsupported is wrapped by the error for a valid header that framebus
// cannot carry (a colour space or bit depth it has no format for).
var ErrUnsupported = errors.New("YUV4MPEG2 stream framebus cannot carry")

// Header is a stream's header line.
type Header struct {
	Width, Height  uint32
	FPSNum, FPSDen uint32 // 0/0 when the stream does not say
	Interlace      string // p, t, b, m or "" (not given)
	Aspect         string // e.g. "1:1", "" when not given
	ColourSpace    string // e.g. "420jpeg", "mono"; "" means 420jpeg
	Extra          []string
}

// Format is the framebus format of the stream's frames (planes tightly
// packed, as the stream carries them), or an error wrapping ErrUnsupported.
func (h Header) Format() (framebus.Format, error) {
	var pf framebus.FourCC
	switch h.ColourSpace {
	case "", "420jpeg", "420mpeg2", "420paldv", "420":
		pf = framebus.FormatI420
	case "mono":
		pf = framebus.FormatGrey
	default:
		return framebus.Format{}, fmt.Errorf("%w: colour space C%s: framebus carries 4:2:0 (C420jpeg, C420mpeg2, C420paldv, C420) as I420 and Cmono as GREY; convert it first (ffmpeg -pix_fmt yuv420p)", ErrUnsupported, h.ColourSpace)
	}
	f, err := framebus.Format{Width: h.Width, Height: h.Height, PixelFormat: pf, FPSNum: h.FPSNum, FPSDen: h.FPSDen}.Complete()
	if err != nil {
		return f, fmt.Errorf("%w: %dx%d C%s: %v", ErrUnsupported, h.Width, h.Height, h.ColourSpace, strings.TrimPrefix(err.Error(), framebus.ErrBadOptions.Error()+": "))
	}
	return f, nil
}

// String is the header line without its newline.
func (h Header) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s W%d H%d", Magic, h.Width, h.Height)
	if h.FPSNum != 0 && h.FPSDen != 0 {
		fmt.Fprintf(&b, " F%d:%d", h.FPSNum, h.FPSDen)
	}
	if h.Interlace != "" {
		b.WriteString(" I" + h.Interlace)
	}
	if h.Aspect != "" {
		b.WriteString(" A" + h.Aspect)
	}
	if h.ColourSpace != "" {
		b.WriteString(" C" + h.ColourSpace)
	}
	for _, x := range h.Extra {
		b.WriteString(" X" + x)
	}
	return b.String()
}

// ReadHeader reads and parses the header line.
func ReadHeader(r *bufio.Reader) (Header, error) {
	line, err := readLine(r)
	if err != nil {
		if errors.Is(err, errNoNewline) {
			return Header{}, fmt.Errorf("%w: the header line has no end within %d bytes", ErrBadStream, maxLine)
		}
		return Header{}, fmt.Errorf("%w: header: %v", ErrBadStream, err)
	}
	return ParseHeader(line)
}

// ParseHeader parses a header line (without its newline).
func ParseHeader(line string) (Header, error) {
	fields := strings.Split(line, " ")
	if fields[0] != Magic {
		return Header{}, fmt.Errorf("%w: starts with %q, not %q", ErrBadStream, clip(line), Magic)
	}
	var h Header
	for _, f := range fields[1:] {
		if f == "" {
			continue // (tolerate doubled spaces)
		}
		v := f[1:]
		var err error
		switch f[0] {
		case 'W':
			h.Width, err = dim(v)
		case 'H':
			h.Height, err = dim(v)
		case 'F':
			h.FPSNum, h.FPSDen, err = ratio(v)
		case 'I':
			if v != "p" && v != "t" && v != "b" && v != "m" && v != "?" {
				err = errors.New("want p, t, b or m")
			}
			h.Interlace = v
		case 'A':
			h.Aspect = v
		case 'C':
			h.ColourSpace = v
		case 'X':
			h.Extra = append(h.Extra, v)
		default:
			err = errors.New("unknown parameter")
		}
		if err != nil {
			return Header{}, fmt.Errorf("%w: header parameter %q: %v", ErrBadStream, clip(f), err)
		}
	}
	if h.Width == 0 || h.Height == 0 {
		return Header{}, fmt.Errorf("%w: the header gives no frame size (W and H): %q", ErrBadStream, clip(line))
	}
	return h, nil
}

// ReadFrameHeader reads one "FRAME[ params]\n" line. It returns io.EOF when
// the stream ends cleanly before it.
func ReadFrameHeader(r *bufio.Reader) error {
	// The common case, "FRAME\n", without allocating.
	b, err := r.Peek(len(FrameMagic) + 1)
	if err == nil && string(b[:len(FrameMagic)]) == FrameMagic && b[len(FrameMagic)] == '\n' {
		r.Discard(len(b))
		return nil
	}
	if len(b) == 0 {
		return err // io.EOF, or the read's error
	}
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("%w: frame header: %v", ErrBadStream, err)
	}
	if line != FrameMagic && !strings.HasPrefix(line, FrameMagic+" ") {
		return fmt.Errorf("%w: expected %q, found %q (a frame shorter or longer than the header says?)", ErrBadStream, FrameMagic, clip(line))
	}
	return nil
}

var errNoNewline = errors.New("no newline")

// readLine reads up to a newline, at most maxLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if err == nil {
			return string(b[:len(b)-1]), nil
		}
		if len(b) > maxLine {
			return "", errNoNewline
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if len(b) > 0 && errors.Is(err, io.EOF) {
				return "", fmt.Errorf("the stream ends inside the line %q", clip(string(b)))
			}
			return "", err
		}
	}
}

func dim(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 || v > framebus.MaxDimension {
		return 0, fmt.Errorf("want 1 to %d", framebus.MaxDimension)
	}
	return uint32(v), nil
}

func ratio(s string) (num, den uint32, err error) {
	ns, ds, ok := strings.Cut(s, ":")
	n, err1 := strconv.ParseUint(ns, 10, 32)
	d, err2 := strconv.ParseUint(ds, 10, 32)
	switch {
	case !ok || err1 != nil || err2 != nil:
		return 0, 0, errors.New("want NUM:DEN")
	case n == 0 && d == 0: // "unknown"
		return 0, 0, nil
	case n == 0 || d == 0:
		return 0, 0, errors.New("a rate needs a non-zero numerator and denominator")
	}
	return uint32(n), uint32(d), nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ForFormat is the header of a stream of frames of format f, and the colour
// space its frames are written in: I420 and NV12 as C420jpeg (NV12's chroma
// taken apart), GREY as Cmono, YUYV as C422. It returns an error wrapping
// ErrUnsupported for the formats y4m cannot carry (RGB, MJPEG): those go
// out raw.
func ForFormat(f framebus.Format) (Header, error) {
	h := Header{Width: f.Width, Height: f.Height, FPSNum: f.FPSNum, FPSDen: f.FPSDen, Interlace: "p", Aspect: "1:1"}
	switch f.PixelFormat {
	case framebus.FormatI420, framebus.FormatNV12:
		h.ColourSpace = "420jpeg"
	case framebus.FormatGrey:
		h.ColourSpace = "mono"
	case framebus.FormatYUYV:
		h.ColourSpace = "422"
	default:
		return h, fmt.Errorf("%w: %v frames: YUV4MPEG2 carries YUV and grey only (I420, NV12, YUYV, GREY); use the raw stream instead", ErrUnsupported, f.PixelFormat)
	}
	if f.FPSNum == 0 {
		h.FPSNum, h.FPSDen = 0, 0
	}
	return h, nil
}

// FrameSize is the bytes of one frame's planes as ForFormat's header
// describes them.
func FrameSize(f framebus.Format) int {
	w, h := int(f.Width), int(f.Height)
	switch f.PixelFormat {
	case framebus.FormatI420, framebus.FormatNV12:
		return w*h + 2*((w+1)/2)*((h+1)/2)
	case framebus.FormatGrey:
		return w * h
	case framebus.FormatYUYV:
		return w*h + 2*((w+1)/2)*h
	}
	return 0
}

// Planar writes frame data of format f into dst (FrameSize(f) bytes) as the
// planes of a y4m frame: rows copied past any stride padding, NV12's
// interleaved chroma and YUYV's packed samples taken apart. It returns
// dst[:FrameSize(f)]. It allocates nothing.
func Planar(dst, data []byte, f framebus.Format) ([]byte, error) {
	n := FrameSize(f)
	if n == 0 {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, f.PixelFormat)
	}
	if len(dst) < n {
		return nil, fmt.Errorf("y4m: buffer of %d bytes for a frame of %d", len(dst), n)
	}
	if uint64(len(data)) < f.FrameSize {
		return nil, fmt.Errorf("y4m: frame of %d bytes, the format needs %d", len(data), f.FrameSize)
	}
	dst = dst[:n]
	w, h := int(f.Width), int(f.Height)
	cw, ch := (w+1)/2, (h+1)/2
	rows := func(out []byte, plane int, rowBytes, nrows int) []byte {
		src := data[f.PlaneOffset[plane]:]
		stride := int(f.PlaneStride[plane])
		for y := range nrows {
			copy(out[y*rowBytes:(y+1)*rowBytes], src[y*stride:])
		}
		return out[nrows*rowBytes:]
	}
	switch f.PixelFormat {
	case framebus.FormatI420:
		rest := rows(dst, 0, w, h)
		rest = rows(rest, 1, cw, ch)
		rows(rest, 2, cw, ch)
	case framebus.FormatGrey:
		rows(dst, 0, w, h)
	case framebus.FormatNV12:
		rest := rows(dst, 0, w, h)
		u, v := rest[:cw*ch], rest[cw*ch:2*cw*ch]
		src, stride := data[f.PlaneOffset[1]:], int(f.PlaneStride[1])
		for y := range ch {
			row := src[y*stride : y*stride+2*cw]
			uo, vo := u[y*cw:(y+1)*cw], v[y*cw:(y+1)*cw]
			for x := range cw {
				uo[x], vo[x] = row[2*x], row[2*x+1]
			}
		}
	case framebus.FormatYUYV:
		yp, u, v := dst[:w*h], dst[w*h:w*h+cw*h], dst[w*h+cw*h:]
		stride := int(f.PlaneStride[0])
		for y := range h {
			row := data[y*stride : y*stride+2*w]
			yo, uo, vo := yp[y*w:(y+1)*w], u[y*cw:(y+1)*cw], v[y*cw:(y+1)*cw]
			for x := range cw {
				p := row[4*x : 4*x+4]
				yo[2*x], uo[x], yo[2*x+1], vo[x] = p[0], p[1], p[2], p[3]
			}
		}
	}
	return dst, nil
}
