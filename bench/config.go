package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/framebus/framebus/framebus"
)

// Transport names a way of moving frames, as in the JSON output.
type Transport string

// The transports.
const (
	Framebus  Transport = "framebus"
	Futex     Transport = "futex"     // the wake limit
	Memcpy    Transport = "memcpy"    // the copy limit
	UDS       Transport = "uds"       // Unix domain stream socket
	Pipe      Transport = "pipe"      // pipe(2)
	GStreamer Transport = "gstreamer" // shmsink -> shmsrc through gst-launch-1.0
)

// Transports lists every transport in table order.
var Transports = []Transport{Framebus, Futex, Memcpy, UDS, Pipe, GStreamer}

// Mode is framebus's write or read path. Baselines have none.
type Mode string

// The framebus modes.
const (
	Plain Mode = "plain" // Begin, render into the slot, Commit: zero-copy
	Copy  Mode = "copy"  // render into private memory, Publish copies it in
	Spin  Mode = "spin"  // plain, with consumers that spin before the next frame is due
)

// Modes lists the framebus modes.
var Modes = []Mode{Plain, Copy, Spin}

// Placement says where the producer side and the consumer side run.
type Placement string

// The placements.
const (
	Split  Placement = "split"  // producer on the first allowed CPU, consumers on the second
	Shared Placement = "shared" // everything on the first allowed CPU
	Free   Placement = "free"   // not pinned
)

// Placements lists the placements.
var Placements = []Placement{Split, Shared, Free}

// Size is a frame geometry and pixel format.
type Size struct {
	Width, Height uint32
	Format        framebus.FourCC
}

// The sizes of the issue: VGA grey, 720p and 1080p RGBA, 4K I420.
var (
	VGAGrey    = Size{640, 480, framebus.FormatGrey}
	HD720RGBA  = Size{1280, 720, framebus.FormatRGBA}
	HD1080RGBA = Size{1920, 1080, framebus.FormatRGBA}
	UHD4KI420  = Size{3840, 2160, framebus.FormatI420}
)

// Dims is "1920x1080".
func (s Size) Dims() string { return fmt.Sprintf("%dx%d", s.Width, s.Height) }

// FormatName is "RGBA", "GREY", "I420", ...
func (s Size) FormatName() string { return formatName(s.Format) }

func (s Size) String() string { return s.Dims() + " " + s.FormatName() }

// FrameBytes is the size of one frame.
func (s Size) FrameBytes() (uint64, error) {
	f, err := (framebus.Format{Width: s.Width, Height: s.Height, PixelFormat: s.Format}).Complete()
	if err != nil {
		return 0, err
	}
	return f.FrameSize, nil
}

var formatNames = map[framebus.FourCC]string{
	framebus.FormatRGBA: "RGBA", framebus.FormatRGB24: "RGB24", framebus.FormatBGR24: "BGR24",
	framebus.FormatGrey: "GREY", framebus.FormatYUYV: "YUYV", framebus.FormatNV12: "NV12", framebus.FormatI420: "I420",
}

func formatName(f framebus.FourCC) string {
	if n, ok := formatNames[f]; ok {
		return n
	}
	return f.String()
}

// ParseSize parses "1920x1080", "1920x1080:RGBA" or "640x480:GREY"
// (default RGBA). The formats are those the pattern source renders.
func ParseSize(s string) (Size, error) {
	dims, fmtName, _ := strings.Cut(strings.TrimSpace(s), ":")
	w, h, ok := strings.Cut(strings.ToLower(dims), "x")
	wv, err1 := strconv.ParseUint(w, 10, 32)
	hv, err2 := strconv.ParseUint(h, 10, 32)
	if !ok || err1 != nil || err2 != nil || wv == 0 || hv == 0 || wv > framebus.MaxDimension || hv > framebus.MaxDimension {
		return Size{}, fmt.Errorf("size %q: want WIDTHxHEIGHT[:FORMAT], e.g. 1920x1080:RGBA", s)
	}
	sz := Size{Width: uint32(wv), Height: uint32(hv), Format: framebus.FormatRGBA}
	if fmtName != "" {
		f, err := framebus.ParseFourCC(fmtName)
		if err != nil {
			return Size{}, fmt.Errorf("size %q: unknown format %q", s, fmtName)
		}
		if _, ok := formatNames[f]; !ok {
			return Size{}, fmt.Errorf("size %q: the test pattern does not render %s", s, fmtName)
		}
		sz.Format = f
	}
	if _, err := sz.FrameBytes(); err != nil {
		return Size{}, fmt.Errorf("size %q: %v", s, err)
	}
	return sz, nil
}

// Variant is one row of a scenario: a transport and, for framebus, a mode.
type Variant struct {
	Transport Transport
	Mode      Mode // framebus only
}

func (v Variant) String() string {
	if v.Mode != "" {
		return string(v.Transport) + "/" + string(v.Mode)
	}
	return string(v.Transport)
}

// Scenario is a group of variants measured under the same conditions and
// compared with each other: their runs alternate, round by round.
type Scenario struct {
	Size      Size
	Consumers int
	Rate      float64 // frames per second; 0: as fast as the consumers take them
	Placement Placement
	Variants  []Variant
}

func (s Scenario) String() string {
	c := "1 consumer"
	if s.Consumers != 1 {
		c = fmt.Sprintf("%d consumers", s.Consumers)
	}
	return fmt.Sprintf("%s, %s, %s, %s", s.Size, c, rateName(s.Rate), s.Placement)
}

func rateName(r float64) string {
	if r == 0 {
		return "as fast as possible"
	}
	return strconv.FormatFloat(r, 'g', -1, 64) + " fps"
}

// Progress is told about the runs as they go (a progress bar).
type Progress interface {
	Start(total int)
	Step(label string) // a run is about to start
	Finish()
}

// Config is one benchmark. The zero value of every field but Scenarios has a
// sensible default.
type Config struct {
	Scenarios []Scenario

	Duration       time.Duration // measured time of one run, default 3 s
	MinPacedFrames int           // a paced run measures at least this many frames, default 300
	Warmup         time.Duration // discarded start of every run, default 300 ms
	Rounds         int           // runs of every variant, alternating, default 2
	Spin           time.Duration // the spin mode's maximum spin window, default 400 µs

	Dir       string   // where the run's private directory goes, default /dev/shm
	Exe       string   // the binary that plays the children, default os.Executable()
	ExeArgs   []string // its arguments, default ["bench"]
	GstLaunch string   // gst-launch-1.0 to use; default: looked up in PATH

	Progress Progress        // nil: none
	Log      *zerolog.Logger // nil: no logging
	Command  string          // the command line, recorded in the report
}

// Defaults.
const (
	DefaultDuration       = 3 * time.Second
	DefaultMinPacedFrames = 300
	DefaultWarmup         = 300 * time.Millisecond
	DefaultRounds         = 2
	DefaultSpin           = 400 * time.Microsecond
	MaxConsumers          = 16
)

func (c Config) withDefaults() Config {
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.MinPacedFrames == 0 {
		c.MinPacedFrames = DefaultMinPacedFrames
	}
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	if c.Rounds == 0 {
		c.Rounds = DefaultRounds
	}
	if c.Spin == 0 {
		c.Spin = DefaultSpin
	}
	if c.Dir == "" {
		c.Dir = "/dev/shm"
	}
	if c.ExeArgs == nil {
		c.ExeArgs = []string{"bench"}
	}
	if c.Log == nil {
		l := zerolog.New(io.Discard)
		c.Log = &l
	}
	return c
}

// ErrBadConfig is wrapped by every error of Config.Validate.
var ErrBadConfig = errors.New("bad benchmark configuration")

// Validate checks the configuration (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case len(c.Scenarios) == 0:
		return bad("no scenarios")
	case c.Duration < 10*time.Millisecond || c.Duration > time.Hour:
		return bad("duration %v: want 10ms to 1h", c.Duration)
	case c.Warmup < 0 || c.Warmup > time.Minute:
		return bad("warm-up %v: want 0 to 1m", c.Warmup)
	case c.Rounds < 1 || c.Rounds > 100:
		return bad("%d rounds: want 1-100", c.Rounds)
	case c.MinPacedFrames < 1:
		return bad("min paced frames %d: want at least 1", c.MinPacedFrames)
	case c.Spin < 0 || c.Spin > time.Second:
		return bad("spin window %v: want 0 to 1s", c.Spin)
	}
	for _, s := range c.Scenarios {
		if _, err := s.Size.FrameBytes(); err != nil {
			return bad("%v: %v", s.Size, err)
		}
		if s.Consumers < 1 || s.Consumers > MaxConsumers {
			return bad("%d consumers: want 1-%d", s.Consumers, MaxConsumers)
		}
		if s.Rate < 0 || s.Rate > 10000 {
			return bad("rate %g: want 0 (as fast as possible) to 10000 fps", s.Rate)
		}
		if !slices.Contains(Placements, s.Placement) {
			return bad("placement %q: want split, shared or free", s.Placement)
		}
		if len(s.Variants) == 0 {
			return bad("scenario %v has no transports", s)
		}
		for _, v := range s.Variants {
			if !slices.Contains(Transports, v.Transport) {
				return bad("transport %q", v.Transport)
			}
			if (v.Transport == Framebus) != (v.Mode != "") || (v.Mode != "" && !slices.Contains(Modes, v.Mode)) {
				return bad("transport %q with mode %q", v.Transport, v.Mode)
			}
		}
	}
	return nil
}

// measureTime is how long one run of s measures.
func (c Config) measureTime(s Scenario) time.Duration {
	d := c.Duration
	if s.Rate > 0 {
		d = max(d, time.Duration(float64(c.MinPacedFrames)/s.Rate*float64(time.Second)))
	}
	return d
}

func fb(m Mode) Variant { return Variant{Transport: Framebus, Mode: m} }

func baselines(ts ...Transport) []Variant {
	v := make([]Variant, len(ts))
	for i, t := range ts {
		v[i] = Variant{Transport: t}
	}
	return v
}

// QuickScenarios is --quick: 1080p RGBA and 640x480 GREY, one consumer, as
// fast as possible, split placement; framebus plain mode against the futex,
// memcpy, Unix socket and pipe baselines.
func QuickScenarios() []Scenario {
	vs := append([]Variant{fb(Plain)}, baselines(Futex, Memcpy, UDS, Pipe)...)
	return []Scenario{
		{Size: HD1080RGBA, Consumers: 1, Placement: Split, Variants: vs},
		{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: vs},
	}
}

// FullScenarios is the default run: every dimension of the issue, each
// varied from one reference point (1080p RGBA, one consumer, as fast as
// possible, split) rather than the whole product, which Matrix gives.
func FullScenarios() []Scenario {
	all := append([]Variant{fb(Plain), fb(Copy)}, baselines(Futex, Memcpy, UDS, Pipe, GStreamer)...)
	noGst := append([]Variant{fb(Plain), fb(Copy)}, baselines(Futex, Memcpy, UDS, Pipe)...)
	paced := append([]Variant{fb(Plain), fb(Copy)}, baselines(Futex, UDS, Pipe)...)
	var s []Scenario
	// Throughput and hand-off over the frame sizes.
	for _, sz := range []Size{VGAGrey, HD720RGBA, HD1080RGBA, UHD4KI420} {
		s = append(s, Scenario{Size: sz, Consumers: 1, Placement: Split, Variants: all})
	}
	// Fan-out: what four consumers cost the producer.
	s = append(s, Scenario{Size: HD1080RGBA, Consumers: 4, Placement: Split, Variants: noGst})
	// The other placements.
	for _, p := range []Placement{Shared, Free} {
		s = append(s, Scenario{Size: HD1080RGBA, Consumers: 1, Placement: p, Variants: noGst})
	}
	// Camera rates: sleeping consumers woken once a frame.
	for _, r := range []float64{30, 120} {
		for _, p := range []Placement{Split, Shared} {
			s = append(s, Scenario{Size: HD1080RGBA, Consumers: 1, Rate: r, Placement: p, Variants: paced})
		}
	}
	s = append(s, Scenario{Size: HD1080RGBA, Consumers: 4, Rate: 30, Placement: Split, Variants: []Variant{fb(Plain), {Transport: Futex}}})
	// The low-latency consumer against the plain one at 60 fps.
	s = append(s, Scenario{Size: HD1080RGBA, Consumers: 1, Rate: 60, Placement: Split,
		Variants: []Variant{fb(Plain), fb(Spin), {Transport: Futex}}})
	return s
}

// Matrix is the whole product of the lists: one scenario per size,
// consumer count, rate and placement, each with every transport and mode
// asked for (memcpy and gstreamer only where they mean something: memcpy at
// rate 0, gstreamer at rate 0 with one consumer).
func Matrix(sizes []Size, consumers []int, rates []float64, placements []Placement, transports []Transport, modes []Mode) []Scenario {
	var out []Scenario
	for _, sz := range sizes {
		for _, c := range consumers {
			for _, r := range rates {
				for _, p := range placements {
					var vs []Variant
					for _, t := range transports {
						switch {
						case t == Framebus:
							for _, m := range modes {
								vs = append(vs, fb(m))
							}
						case t == Memcpy && r != 0, t == GStreamer && (r != 0 || c != 1):
						default:
							vs = append(vs, Variant{Transport: t})
						}
					}
					if len(vs) > 0 {
						out = append(out, Scenario{Size: sz, Consumers: c, Rate: r, Placement: p, Variants: vs})
					}
				}
			}
		}
	}
	return out
}
