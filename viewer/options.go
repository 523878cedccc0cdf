package viewer

import (
	"io"
	"log/slog"
	"strconv"
	"time"
)

// HTTPOptions configures ServeHTTP.
type HTTPOptions struct {
	Dir     string        // bus directory
	Timeout time.Duration // wait for a producer that has not started (after that: for ever)
	Quality int           // JPEG quality 1-100, default 80
	Spin    time.Duration // framebus.ConsumerOptions.Spin (0: sleep until woken)
	Log     *slog.Logger  // nil: no logging

	MaxConns    int           // connections open at a time, default DefaultMaxConns
	IdleTimeout time.Duration // keep-alive connections idle this long are closed, default DefaultIdleTimeout

	WebRTC WebRTCOptions // the WHEP endpoint
}

// WebRTCOptions configures the web preview's WHEP endpoint (/whep): a VP8
// stream of the bus for browsers and WHEP players, one encoder for all.
type WebRTCOptions struct {
	Off bool // no /whep: the page shows the MJPEG stream

	MaxViewers int // WebRTC viewers at a time (default 16); one more is answered 503
	MinBitrate int // bits per second the encoder never goes below (default 50 kbit/s)
	MaxBitrate int // and never above (default: 0.1 bit per pixel per frame, at least 1 Mbit/s)
	Speed      int // libvpx VP8E_SET_CPUUSED (-16..16, default -8: fast)
	Threads    int // encoder threads (default 1: libvpx's threads spin on a busy machine)

	ICEServers []string // STUN/TURN URLs for viewers behind NAT
	PublicIPs  []string // addresses to announce instead of the host's (1:1 NAT)
	UDPPortMin uint16   // local UDP ports (0: any)
	UDPPortMax uint16

	// AllowOrigins are the web origins (https://example.com, or *) whose
	// pages may use /whep (CORS). The preview's own page needs none; by
	// default no other page can, since a page that receives the stream can
	// read its pixels.
	AllowOrigins []string

	// ICEFailedTimeout: a viewer silent this long is gone and its session
	// ends (default 10 s); ConnectTimeout: a session that does not connect
	// within this ends (default 20 s).
	ICEFailedTimeout time.Duration
	ConnectTimeout   time.Duration

	// LoopbackOnly announces 127.0.0.1 only (tests).
	LoopbackOnly bool
}

// WindowOptions configures RunWindow.
type WindowOptions struct {
	Dir         string        // bus directory
	Timeout     time.Duration // wait for a producer that has not started (after that: for ever)
	SnapshotDir string        // where 's' saves PNGs, default the working directory
	Spin        time.Duration // framebus.ConsumerOptions.Spin (0: sleep until woken)
	Log         *slog.Logger  // nil: no logging
}

// Detectors analyze knows.
const (
	DetectMotion = "motion"
	DetectFaces  = "faces"
)

// DefaultCascade is Debian's (opencv-data) frontal face Haar cascade.
const DefaultCascade = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"

// AnalyzeOptions configures Analyze.
type AnalyzeOptions struct {
	Dir     string        // bus directory
	Timeout time.Duration // wait for a producer that has not started, or for a gone one to come back
	Detect  string        // DetectMotion or DetectFaces
	Spin    time.Duration // framebus.ConsumerOptions.Spin (0: sleep until woken)

	// Motion: a pixel moved when the grey level of its colour difference
	// between two analysed frames is over Threshold (1-254, default 25); a moving
	// region counts when its area is at least MinArea pixels of the frame
	// (0: 1/2000 of the frame).
	Threshold int
	MinArea   int

	Cascade string // faces: the Haar cascade file, default DefaultCascade

	Frames uint64 // stop after this many analysed frames (0: no limit)

	Out io.Writer    // one JSON object per analysed frame
	Log *slog.Logger // nil: no logging
}

// Box is a region found in a frame, in the frame's pixels.
type Box struct{ X, Y, W, H int }

// AnalyzeSummary is what Analyze did.
type AnalyzeSummary struct {
	Frames       uint64        // frames analysed
	WithBoxes    uint64        // frames where something was found
	Dropped      uint64        // frames skipped (latest-frame semantics) or overwritten in use
	LatencyMean  time.Duration // capture to result
	LatencyMax   time.Duration
	Elapsed      time.Duration // from the first frame to the last result
	StreamClosed bool          // the producer closed the stream
}

// FPS is the analysed frames per second.
func (s AnalyzeSummary) FPS() float64 {
	if s.Elapsed <= 0 || s.Frames < 2 {
		return 0
	}
	return float64(s.Frames-1) / s.Elapsed.Seconds()
}

// RecordOptions configures Record.
type RecordOptions struct {
	Dir      string        // bus directory
	Timeout  time.Duration // wait for a producer that has not started, or for a gone one to come back
	Out      string        // the video file (MJPEG: .avi; Lossless: .mkv)
	FPS      float64       // MJPEG: frame rate of the file; 0: the bus's, else 30
	Lossless bool          // every frame byte for byte, in a Matroska file (pure Go; no OpenCV needed)
	Spin     time.Duration // framebus.ConsumerOptions.Spin (0: sleep until woken)
	Log      *slog.Logger
}

// RecordSummary is what Record wrote.
type RecordSummary struct {
	Path          string // where the recording is: Out, or Partial
	Frames        uint64 // frames written
	Dropped       uint64 // frames the bus had that were not written
	Width, Height int
	FPS           float64
	StreamClosed  bool

	Lossless bool
	Format   string // lossless: the (first) bus format
	Bytes    int64  // the file's size
	Formats  int    // lossless: formats recorded (a track each in the file)
	// Partial is the temporary file kept when the recording ended with an
	// error (a full disk): playable up to its last whole frame. Empty when
	// the recording ended cleanly and was renamed to Out.
	Partial string
}

// appendResult appends one analysed frame as a JSON object and a newline.
func appendResult(b []byte, r *result) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.seq, 10)
	b = append(b, `,"generation":`...)
	b = strconv.AppendUint(b, r.generation, 10)
	b = append(b, `,"capture_ns":`...)
	b = strconv.AppendInt(b, r.captureNS, 10)
	b = append(b, `,"commit_ns":`...)
	b = strconv.AppendInt(b, r.commitNS, 10)
	b = append(b, `,"result_ns":`...)
	b = strconv.AppendInt(b, r.doneNS, 10)
	b = append(b, `,"width":`...)
	b = strconv.AppendInt(b, int64(r.width), 10)
	b = append(b, `,"height":`...)
	b = strconv.AppendInt(b, int64(r.height), 10)
	b = append(b, `,"detect":"`...)
	b = append(b, r.detect...)
	b = append(b, `","boxes":[`...)
	for i, x := range r.boxes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"x":`...)
		b = strconv.AppendInt(b, int64(x.X), 10)
		b = append(b, `,"y":`...)
		b = strconv.AppendInt(b, int64(x.Y), 10)
		b = append(b, `,"w":`...)
		b = strconv.AppendInt(b, int64(x.W), 10)
		b = append(b, `,"h":`...)
		b = strconv.AppendInt(b, int64(x.H), 10)
		b = append(b, '}')
	}
	b = append(b, `],"latency_capture_us":`...)
	b = strconv.AppendFloat(b, float64(r.doneNS-r.captureNS)/1e3, 'f', 1, 64)
	b = append(b, `,"latency_commit_us":`...)
	b = strconv.AppendFloat(b, float64(r.doneNS-r.commitNS)/1e3, 'f', 1, 64)
	b = append(b, `,"dropped":`...)
	b = strconv.AppendUint(b, r.dropped, 10)
	return append(b, "}\n"...)
}

// result is one analysed frame.
type result struct {
	seq, generation             uint64
	captureNS, commitNS, doneNS int64
	width, height               int
	detect                      string
	boxes                       []Box
	dropped                     uint64
}

// PushOptions configures Push (framebus push).
type PushOptions struct {
	Dir     string        // bus directory
	Timeout time.Duration // wait for a producer that has not started (after that: for ever)
	Spin    time.Duration // framebus.ConsumerOptions.Spin (0: sleep until woken)

	URL   string // the WHIP endpoint
	Token string // its bearer token ("": none); never logged

	// Retries ends the push after this many failed attempts in a row
	// (0: it tries for ever, with the backoff's pauses).
	Retries int

	// The encoder and the connection: MinBitrate, MaxBitrate, Speed,
	// Threads, ICEServers, PublicIPs, UDP ports, ICEFailedTimeout
	// (default 6 s here), ConnectTimeout (default 10 s), LoopbackOnly.
	WebRTC WebRTCOptions

	Log *slog.Logger // nil: no logging
}
