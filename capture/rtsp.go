package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
)

func init() {
	for _, scheme := range []string{"rtsp", "rtsps"} {
		Register(scheme, func(c Config) (Source, error) {
			s, err := NewRTSP(scheme, c)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return s, nil
		})
	}
}

// RTSP is the source of an RTSP camera, rtsp://[USER:PASS@]HOST[:PORT]/PATH
// (the spec is the URL itself; rtsp:rtsp://... works too). The stream is
// decoded by an ffmpeg child process that writes raw frames of the bus's
// size and pixel format to a pipe, which a goroutine reads (see framePump).
//
// Why a child process rather than OpenCV's FFmpeg backend in-process: a
// read from a stalled camera blocks inside C, where nothing can interrupt
// it or free what it holds, and a crash of a decoder there kills the
// producer; a child can be killed and started again, the source needs no
// cgo (it is in every build, CGO_ENABLED=0 included), and ffmpeg's scaler
// makes every raw bus format. The cost is one copy of each frame through
// a pipe (about 1 ms for a 1080p RGBA frame here).
//
// Before the bus exists, ffprobe reads the camera's real size and rate,
// which the source keeps unless the Config asks for others (ffmpeg scales
// to the size asked, and drops or repeats frames for the rate asked). A
// camera that cannot be reached then is an error. Later, when the stream
// ends or stalls (no frame for stallAfter), the child is killed and
// started again, with a growing pause between attempts, for as long as it
// takes: the producer keeps its bus, its heartbeat and its consumers, who
// simply see no new frame meanwhile. When the camera comes back at
// another size (and the Config did not fix one), Read returns
// ErrFormatChanged and the caller starts a new generation.
//
// Frames are published as they arrive: the camera sets the pace.
type RTSP struct {
	url     string // as given (with credentials: for ffmpeg only)
	shown   string // with the password hidden, for messages
	ffmpeg  string
	ffprobe string
	log     *slog.Logger

	f         framebus.Format // Read's format (the pump goroutine has its own)
	size      int
	fixedSize bool // the Config asked for a size: ffmpeg scales to it
	fps       uint32
	pump      *framePump

	// Owned by the pump goroutine.
	rf      framebus.Format
	child   *exec.Cmd
	out     io.ReadCloser
	stderr  *tailBuffer
	started time.Time
	frames  uint64 // frames read from the current child

	mu     sync.Mutex // guards cur against the stall timer and Close
	cur    *exec.Cmd
	quit   chan struct{}
	closed bool
	stall  *time.Timer
	err    error // the end, once seen
}

// Timing of the source. Variables for the tests.
var (
	rtspProbeTimeout = 20 * time.Second       // ffprobe at the start and at a reconnection
	rtspIOTimeout    = 5 * time.Second        // ffmpeg's socket timeout (-timeout)
	rtspStallAfter   = 5 * time.Second        // no frame for this long: the child is killed
	rtspStartGrace   = 10 * time.Second       // more for a child's first frame (it connects, probes, waits for a key frame)
	rtspRetryMin     = 250 * time.Millisecond // first pause before reconnecting
	rtspRetryMax     = 2 * time.Second
)

// ffmpegPixFmt is ffmpeg's name of each raw bus format.
var ffmpegPixFmt = map[framebus.FourCC]string{
	framebus.FormatRGBA: "rgba", framebus.FormatRGB24: "rgb24", framebus.FormatBGR24: "bgr24",
	framebus.FormatGrey: "gray", framebus.FormatYUYV: "yuyv422", framebus.FormatNV12: "nv12", framebus.FormatI420: "yuv420p",
}

// FFmpegPixFmt returns ffmpeg's -pix_fmt name of a raw bus pixel format
// ("" for MJPEG and unknown codes).
func FFmpegPixFmt(f framebus.FourCC) string { return ffmpegPixFmt[f] }

// NewRTSP probes the camera cfg.Arg names (scheme: rtsp or rtsps). Errors
// wrap ErrBadConfig for a bad URL or request, ErrNotInBuild when ffmpeg is
// not installed; a camera that cannot be reached is a plain error.
func NewRTSP(scheme string, cfg Config) (*RTSP, error) {
	bad := func(err error) (*RTSP, error) { return nil, &ConfigError{Source: scheme, Err: err} }
	raw := cfg.Arg
	if !strings.HasPrefix(raw, "rtsp://") && !strings.HasPrefix(raw, "rtsps://") {
		raw = scheme + ":" + raw // the spec rtsp://HOST/PATH, cut at its first colon
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "rtsp" && u.Scheme != "rtsps") {
		return bad(fmt.Errorf("%q: want rtsp://HOST[:PORT]/PATH", redact(raw)))
	}
	s := &RTSP{url: raw, shown: redact(raw), log: cfg.log(), quit: make(chan struct{})}
	for _, tool := range []struct {
		name string
		path *string
	}{{"ffmpeg", &s.ffmpeg}, {"ffprobe", &s.ffprobe}} {
		p, err := exec.LookPath(tool.name)
		if err != nil {
			return nil, &NotInBuildError{Source: scheme, Needs: tool.name + " on $PATH (Debian: apt-get install ffmpeg)"}
		}
		*tool.path = p
	}
	pf := cfg.PixelFormat
	if pf == 0 {
		pf = framebus.FormatRGBA
	}
	if ffmpegPixFmt[pf] == "" {
		return bad(fmt.Errorf("pixel format %v: the rtsp source makes RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", pf))
	}
	if !cfg.DefaultFPS {
		if _, _, err := checkFPS(cfg.FPS); err != nil {
			return bad(err)
		}
		if cfg.FPS != 0 && cfg.FPS != float64(uint32(cfg.FPS)) {
			return bad(fmt.Errorf("fps %v: the rtsp source takes a whole rate", cfg.FPS))
		}
		s.fps = uint32(cfg.FPS)
	}
	ctx, cancel := context.WithTimeout(cfg.context(), rtspProbeTimeout)
	defer cancel()
	cam, err := s.probe(ctx)
	if err != nil {
		if e := cfg.context().Err(); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("camera %s: %w", s.shown, err)
	}
	f := framebus.Format{Width: cam.Width, Height: cam.Height, PixelFormat: pf, FPSNum: cam.FPSNum, FPSDen: cam.FPSDen}
	if !cfg.DefaultSize && cfg.Width != 0 && cfg.Height != 0 {
		f.Width, f.Height, s.fixedSize = cfg.Width, cfg.Height, true
	}
	if s.fps != 0 {
		f.FPSNum, f.FPSDen = s.fps, 1
	}
	if f, err = f.Complete(); err != nil {
		return bad(err)
	}
	if f.FrameSize > uint64(maxInt) {
		return bad(fmt.Errorf("frame of %d bytes is too large", f.FrameSize))
	}
	s.f, s.rf, s.size = f, f, int(f.FrameSize)
	s.stall = time.AfterFunc(time.Hour, s.killStalled)
	s.stall.Stop()
	s.pump = startPump(s.size, s.read, framebus.Now)
	return s, nil
}

// camera is what ffprobe says about the video stream.
type camera struct {
	Codec          string
	Width, Height  uint32
	FPSNum, FPSDen uint32
}

// probe asks ffprobe for the camera's video stream.
func (s *RTSP) probe(ctx context.Context) (camera, error) {
	cmd := exec.CommandContext(ctx, s.ffprobe, "-v", "error", "-rtsp_transport", "tcp",
		"-timeout", strconv.FormatInt(rtspIOTimeout.Microseconds(), 10),
		"-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height,avg_frame_rate,r_frame_rate",
		"-of", "json", s.url)
	var out bytes.Buffer
	se := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = &out, se
	cmd.SysProcAttr = childAttr()
	err := cmd.Run()
	if ctx.Err() != nil {
		return camera{}, fmt.Errorf("no answer within %v", rtspProbeTimeout)
	}
	if err != nil {
		return camera{}, errors.New(se.lastLine(s.url, s.shown, "ffprobe failed: "+err.Error()))
	}
	var r struct {
		Streams []struct {
			Codec  string `json:"codec_name"`
			Width  uint32 `json:"width"`
			Height uint32 `json:"height"`
			Avg    string `json:"avg_frame_rate"`
			Real   string `json:"r_frame_rate"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return camera{}, fmt.Errorf("ffprobe: %v", err)
	}
	if len(r.Streams) == 0 || r.Streams[0].Width == 0 || r.Streams[0].Height == 0 {
		return camera{}, errors.New("the stream has no video ffprobe can size")
	}
	st := r.Streams[0]
	c := camera{Codec: st.Codec, Width: st.Width, Height: st.Height}
	for _, q := range []string{st.Avg, st.Real} {
		if n, d, ok := parseRate(q); ok {
			c.FPSNum, c.FPSDen = n, d
			break
		}
	}
	return c, nil
}

// parseRate parses ffprobe's "25/1" (0/0 is unknown).
func parseRate(q string) (num, den uint32, ok bool) {
	ns, ds, found := strings.Cut(q, "/")
	n, err1 := strconv.ParseUint(ns, 10, 32)
	d, err2 := strconv.ParseUint(ds, 10, 32)
	if !found || err1 != nil || err2 != nil || n == 0 || d == 0 || float64(n)/float64(d) > maxFPS {
		return 0, 0, false
	}
	g := gcd(uint32(n), uint32(d))
	return uint32(n) / g, uint32(d) / g, true
}

// read is the pump's read: the next frame from the child, which it starts,
// and starts again after the camera dropped, for as long as it takes.
func (s *RTSP) read(buf []byte) (pumped, error) {
	pause := rtspRetryMin
	var down time.Time // when the stream was lost
	for {
		if s.child == nil {
			if err := s.start(); err != nil {
				return pumped{}, err // closed
			}
		}
		if len(buf) < s.size0() {
			buf = make([]byte, s.size0()) // the camera came back with larger frames
		}
		if s.frames == 0 {
			s.stall.Reset(rtspStallAfter + rtspStartGrace)
		} else {
			s.stall.Reset(rtspStallAfter)
		}
		_, err := io.ReadFull(s.out, buf[:s.size0()])
		s.stall.Stop()
		if err == nil {
			if s.frames++; s.frames == 1 && !down.IsZero() {
				s.log.Info(fmt.Sprintf("rtsp %s: frames again, %v after the stream was lost", s.shown, time.Since(down).Round(10*time.Millisecond)))
			}
			return pumped{buf: buf}, nil
		}
		why := s.stop()
		if s.isClosed() {
			return pumped{}, ErrClosed
		}
		if down.IsZero() {
			down = time.Now()
			s.log.Warn(fmt.Sprintf("rtsp %s: the stream was lost (%s); reconnecting", s.shown, why))
		}
		if s.frames > 0 {
			pause = rtspRetryMin // it ran a while: try again soon
		}
		s.frames = 0
		select {
		case <-s.quit:
			return pumped{}, ErrClosed
		case <-time.After(pause):
		}
		pause = min(2*pause, rtspRetryMax)
		if !s.fixedSize {
			// The camera may come back at another size.
			ctx, cancel := context.WithTimeout(context.Background(), rtspProbeTimeout)
			go func() {
				select {
				case <-s.quit:
					cancel()
				case <-ctx.Done():
				}
			}()
			cam, err := s.probe(ctx)
			cancel()
			if err != nil {
				continue // still down
			}
			if cam.Width != s.rf.Width || cam.Height != s.rf.Height || (s.fps == 0 && (cam.FPSNum != s.rf.FPSNum || cam.FPSDen != s.rf.FPSDen)) {
				nf := s.rf
				nf.Width, nf.Height, nf.FrameSize = cam.Width, cam.Height, 0
				nf.PlaneStride, nf.PlaneOffset, nf.PlaneCount = [framebus.MaxPlanes]uint32{}, [framebus.MaxPlanes]uint32{}, 0
				if s.fps == 0 {
					nf.FPSNum, nf.FPSDen = cam.FPSNum, cam.FPSDen
				}
				if nf, err = nf.Complete(); err != nil || nf.FrameSize > uint64(maxInt) {
					s.log.Warn(fmt.Sprintf("rtsp %s: the camera came back as %dx%d, which the bus cannot carry; waiting", s.shown, cam.Width, cam.Height))
					continue
				}
				s.log.Info(fmt.Sprintf("rtsp %s: the camera came back as %v (was %v)", s.shown, nf, s.rf))
				s.rf = nf
				return pumped{format: &nf}, ErrFormatChanged
			}
		}
	}
}

// size0 is the frame size of the pump's format.
func (s *RTSP) size0() int { return int(s.rf.FrameSize) }

// start starts the ffmpeg child for the pump's format.
func (s *RTSP) start() error {
	vf := fmt.Sprintf("scale=%d:%d", s.rf.Width, s.rf.Height)
	if s.fps != 0 {
		vf += fmt.Sprintf(",fps=%d", s.fps)
	}
	cmd := exec.Command(s.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
		"-rtsp_transport", "tcp", "-timeout", strconv.FormatInt(rtspIOTimeout.Microseconds(), 10),
		"-fflags", "nobuffer", "-flags", "low_delay", "-analyzeduration", "1000000", "-i", s.url,
		"-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-pix_fmt", ffmpegPixFmt[s.rf.PixelFormat], "-f", "rawvideo", "pipe:1")
	s.stderr = &tailBuffer{max: 4096}
	cmd.Stderr = s.stderr
	cmd.SysProcAttr = childAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rtsp: start ffmpeg: %w", err)
	}
	s.child, s.out, s.cur, s.started = cmd, out, cmd, time.Now()
	return nil
}

// stop kills the child (if it still runs), reaps it and says why the
// stream ended.
func (s *RTSP) stop() string {
	s.mu.Lock()
	cmd := s.child
	s.cur = nil
	s.mu.Unlock()
	if cmd == nil {
		return "not started"
	}
	cmd.Process.Signal(syscall.SIGKILL) // by its pid; it may have ended already
	err := cmd.Wait()
	s.child, s.out = nil, nil
	why := s.stderr.lastLine(s.url, s.shown, "")
	switch {
	case s.stderr.stalled && s.frames == 0:
		return fmt.Sprintf("no first frame within %v", rtspStallAfter+rtspStartGrace)
	case s.stderr.stalled:
		return fmt.Sprintf("no frame for %v", rtspStallAfter)
	case why != "":
		return why
	case err != nil:
		return "ffmpeg: " + err.Error()
	}
	return "end of stream"
}

// killStalled runs when no frame came for rtspStallAfter.
func (s *RTSP) killStalled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.stderr.markStalled()
		s.cur.Process.Signal(syscall.SIGKILL)
	}
}

func (s *RTSP) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Format returns the frame format.
func (s *RTSP) Format() framebus.Format { return s.f }

// Read waits for the next frame from the camera and copies it into dst.
func (s *RTSP) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if s.pump == nil {
		return 0, 0, ErrClosed
	}
	if s.err != nil {
		return 0, 0, s.err
	}
	fr, err := s.pump.next(ctx)
	if err != nil {
		return 0, 0, err
	}
	if errors.Is(fr.err, ErrFormatChanged) {
		s.pump.release(fr.buf)
		s.f, s.size = *fr.format, int(fr.format.FrameSize)
		return 0, 0, ErrFormatChanged
	}
	if fr.err != nil {
		s.err = fr.err
		return 0, 0, fr.err
	}
	if len(dst) < s.size || len(fr.buf) < s.size {
		s.pump.release(fr.buf)
		return 0, 0, fmt.Errorf("capture: rtsp: %w: buffer of %d bytes for a frame of %d", io.ErrShortBuffer, len(dst), s.size)
	}
	n := copy(dst, fr.buf[:s.size])
	s.pump.release(fr.buf)
	return n, fr.ts, nil
}

// Close stops the child and the pump.
func (s *RTSP) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	if s.cur != nil {
		s.cur.Process.Signal(syscall.SIGKILL)
	}
	s.mu.Unlock()
	if s.pump != nil {
		s.pump.stop()
		<-s.pump.done
		s.pump = nil
	}
	if s.child != nil {
		s.stop()
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it (a child's stderr).
type tailBuffer struct {
	mu      sync.Mutex
	b       []byte
	max     int
	stalled bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) markStalled() {
	t.mu.Lock()
	t.stalled = true
	t.mu.Unlock()
}

// lastLine is the last non-empty line written, with the URL (which may
// carry a password) replaced by its shown form; def when there is none.
func (t *tailBuffer) lastLine(raw, shown, def string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if l == "" {
		return def
	}
	l = strings.ReplaceAll(l, raw, shown)
	return strings.TrimPrefix(l, shown+": ")
}
