package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/term"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/y4m"
)

func init() {
	Register("stdin", func(c Config) (Source, error) {
		if c.Arg != "" {
			return nil, &ConfigError{Source: "stdin", Err: fmt.Errorf("stdin takes no argument (got stdin:%s); fd:N reads another descriptor", c.Arg)}
		}
		return openPipe("stdin", 0, c)
	})
	Register("fd", func(c Config) (Source, error) {
		fd, err := strconv.Atoi(c.Arg)
		if err != nil || fd < 0 {
			return nil, &ConfigError{Source: "fd", Err: fmt.Errorf("fd:%s: want fd:N, a file descriptor number (fd:3 for 3< file, or cmd 3>&1 ...)", c.Arg)}
		}
		return openPipe("fd:"+c.Arg, fd, c)
	})
}

// ErrBadStream is wrapped by the errors of a stream source whose input is
// not what it should be: a raw stream that is not a whole number of frames,
// a YUV4MPEG2 stream with a broken frame.
var ErrBadStream = errors.New("bad input stream")

// Pipe is the stdin and fd:N source: frames read from a file descriptor,
// usually a pipe from ffmpeg or GStreamer. The stream is either raw frames
// of the Config's size and pixel format, one after another with nothing
// between them (ffmpeg -f rawvideo, GStreamer fdsink of video/x-raw), or a
// YUV4MPEG2 stream, which describes itself (ffmpeg -f yuv4mpegpipe,
// GStreamer y4menc): the first bytes say which.
//
// Frames are published at the Config's rate (a y4m stream's own unless the
// Config asks for another), which holds back a writer that is faster (the
// pipe makes it wait; no frame is lost); at rate 0 each frame is published
// as soon as it is whole. A goroutine reads the frames into two buffers of
// the source's own, so that Read gives up when its context ends even while
// the writer is silent, and the frame reaches the slot by a copy in Go.
type Pipe struct {
	name string
	file *os.File // the descriptor's one *os.File, referenced for the source's life
	f    framebus.Format
	size int
	y4m  bool
	pump *framePump
	pace pacer
	now  func() int64
	err  error // the end, once seen
}

// openPipe opens the source on descriptor fd.
func openPipe(name string, fd int, cfg Config) (*Pipe, error) {
	bad := func(err error) (*Pipe, error) { return nil, &ConfigError{Source: name, Err: err} }
	switch fd {
	case 1, 2:
		return bad(fmt.Errorf("descriptor %d is the command's %s, not an input", fd, map[int]string{1: "stdout", 2: "stderr"}[fd]))
	}
	// One *os.File per descriptor, kept by the source: a second one for
	// fd 0 beside os.Stdin, dropped, would close stdin when the garbage
	// collector finalizes it (a 1080p stream failed after its first 64 KiB).
	file := os.Stdin
	if fd != 0 {
		file = os.NewFile(uintptr(fd), name)
	}
	if _, err := file.Stat(); err != nil {
		return bad(fmt.Errorf("descriptor %d is not open (give it to the command, e.g. framebus capture --source fd:%d ... %d< FILE)", fd, fd, fd))
	}
	if term.IsTerminal(fd) {
		return bad(fmt.Errorf("%s is a terminal: pipe frames into it, e.g. ffmpeg -i IN -f rawvideo -pix_fmt rgba - | framebus capture --source stdin --size WxH --format RGBA, or ffmpeg -i IN -f yuv4mpegpipe - | framebus capture --source stdin", name))
	}
	br := bufio.NewReaderSize(file, 1<<16)

	b, err := peekMagic(cfg.context(), br)
	if err == cfg.context().Err() && err != nil {
		return nil, err
	}
	if len(b) == 0 {
		if err == io.EOF {
			return bad(fmt.Errorf("%s is empty: no frame to publish", name))
		}
		return bad(fmt.Errorf("%s: %v", name, err))
	}
	s := &Pipe{name: name, file: file, now: framebus.Now}
	s.y4m = string(b) == y4m.Magic+" "
	f, err := pipeFormat(name, br, s.y4m, cfg)
	if err != nil {
		return bad(err)
	}
	if f.FrameSize > uint64(maxInt) {
		return bad(fmt.Errorf("frame of %d bytes is too large", f.FrameSize))
	}
	s.f, s.size = f, int(f.FrameSize)
	s.pace = newPacer(f.FPSNum, f.FPSDen, func() int64 { return s.now() })
	s.pump = startPump(s.size, s.reader(br), s.now)
	return s, nil
}

// peekMagic returns the first bytes of the stream, which say whether it is
// y4m. They are read in a goroutine: the writer may take its time, and a
// signal must still end the wait (ctx's error).
func peekMagic(ctx context.Context, br *bufio.Reader) ([]byte, error) {
	type peeked struct {
		b   []byte
		err error
	}
	pc := make(chan peeked, 1)
	go func() {
		b, err := br.Peek(len(y4m.Magic) + 1)
		pc <- peeked{b, err}
	}()
	select {
	case pk := <-pc:
		return pk.b, pk.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pipeFormat is the format of the stream's frames: the y4m header's (its
// rate unless cfg asks for one), else cfg's size, format and rate.
func pipeFormat(name string, br *bufio.Reader, isY4M bool, cfg Config) (framebus.Format, error) {
	if isY4M {
		h, err := y4m.ReadHeader(br)
		if err != nil {
			return framebus.Format{}, err
		}
		f, err := h.Format()
		if err != nil {
			return f, err
		}
		if !cfg.DefaultFPS || f.FPSNum == 0 {
			num, den, err := checkFPS(cfg.FPS)
			if err != nil {
				return f, err
			}
			f.FPSNum, f.FPSDen = num, den
		}
		return f, nil
	}
	if cfg.DefaultSize || cfg.Width == 0 || cfg.Height == 0 {
		return framebus.Format{}, fmt.Errorf("%s is not a YUV4MPEG2 stream, so it is read as raw frames, whose size must be given: --size WxH (and --format, --fps); or send y4m, which says its own (ffmpeg -f yuv4mpegpipe)", name)
	}
	pf := cfg.PixelFormat
	if pf == 0 {
		pf = framebus.FormatRGBA
	}
	if pf == framebus.FormatMJPEG {
		return framebus.Format{}, errors.New("raw MJPEG has no frame boundaries to read: send a raw format (RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420)")
	}
	num, den, err := checkFPS(cfg.FPS)
	if err != nil {
		return framebus.Format{}, err
	}
	return framebus.Format{Width: cfg.Width, Height: cfg.Height, PixelFormat: pf, FPSNum: num, FPSDen: den}.Complete()
}

// reader is the pump's read of one frame.
func (s *Pipe) reader(br *bufio.Reader) readFunc {
	frames := 0
	return func(buf []byte) (pumped, error) {
		if s.y4m {
			if err := y4m.ReadFrameHeader(br); err != nil {
				if err == io.EOF {
					return pumped{}, io.EOF
				}
				return pumped{}, fmt.Errorf("%w: %s, after %d frames: %v", ErrBadStream, s.name, frames, err)
			}
		}
		n, err := io.ReadFull(br, buf)
		switch {
		case err == nil:
			frames++
			return pumped{buf: buf}, nil
		case err == io.EOF && !s.y4m:
			return pumped{}, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
			what := "a raw stream must be whole frames of the --size and --format given"
			if s.y4m {
				what = "the stream was cut short"
			}
			return pumped{}, fmt.Errorf("%w: %s ended %d bytes into frame %d, which has %d (%dx%d %v): %s", ErrBadStream, s.name, n, frames+1, len(buf), s.f.Width, s.f.Height, s.f.PixelFormat, what)
		}
		return pumped{}, fmt.Errorf("%s: %w", s.name, err)
	}
}

// Format returns the frame format.
func (s *Pipe) Format() framebus.Format { return s.f }

// Read waits until the next frame is due and whole, and copies it into dst.
func (s *Pipe) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if s.pump == nil {
		return 0, 0, ErrClosed
	}
	if s.err != nil {
		return 0, 0, s.err
	}
	if len(dst) < s.size {
		return 0, 0, fmt.Errorf("capture: %s: %w: buffer of %d bytes for a frame of %d", s.name, io.ErrShortBuffer, len(dst), s.size)
	}
	if err := s.pace.wait(ctx); err != nil {
		return 0, 0, err
	}
	released := s.now()
	fr, err := s.pump.next(ctx)
	if err != nil {
		return 0, 0, err
	}
	if fr.err != nil {
		s.err = fr.err
		return 0, 0, fr.err
	}
	n := copy(dst, fr.buf)
	s.pump.release(fr.buf)
	// A frame held back by the pace was captured when it was let go.
	return n, max(fr.ts, released), nil
}

// Close stops reading.
func (s *Pipe) Close() error {
	if s.pump == nil {
		return nil
	}
	s.pump.stop()
	s.pace.stop()
	s.pump = nil
	return nil
}
