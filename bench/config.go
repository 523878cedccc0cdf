package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/logx"
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
	// CFramebus is framebus with both sides in C (framebus/testdata/c:
	// producer.c -> consumer.c, built with gcc when it is there): the
	// protocol's own floor, which the Go rows are held to.
	CFramebus Transport = "c"
)

// Transports lists every transport in table order.
var Transports = []Transport{Framebus, CFramebus, Futex, Memcpy, UDS, Pipe, GStreamer}

// Lang is the language of one side of a row: framebus's Go package or the
// C reference of framebus/testdata/c. The futex baseline has both too.
type Lang string

// The languages.
const (
	LangGo Lang = "go"
	LangC  Lang = "c"
)

// Pair is a producer side and a consumer side: go->go, go->c, c->go, c->c.
type Pair struct{ Producer, Consumer Lang }

// The pairs of the C legs.
var (
	GoGo = Pair{LangGo, LangGo}
	GoC  = Pair{LangGo, LangC}
	CGo  = Pair{LangC, LangGo}
	CC   = Pair{LangC, LangC}
)

// Pairs lists them in table order.
var Pairs = []Pair{GoGo, GoC, CGo, CC}

func (p Pair) String() string { return string(p.Producer) + "->" + string(p.Consumer) }

// ParsePair parses "go->c" (or "go-c").
func ParsePair(s string) (Pair, error) {
	for _, p := range Pairs {
		if strings.EqualFold(s, p.String()) || strings.EqualFold(s, string(p.Producer)+"-"+string(p.Consumer)) {
			return p, nil
		}
	}
	return Pair{}, fmt.Errorf("want one of go->go, go->c, c->go, c->c")
}

// Mode is framebus's write or read path. Baselines have none.
type Mode string

// The framebus modes.
const (
	Plain Mode = "plain" // Begin, render into the slot, Commit: zero-copy
	Copy  Mode = "copy"  // render into private memory, Publish copies it in
	Spin  Mode = "spin"  // plain, with consumers that spin before the next frame is due
	Park  Mode = "park"  // plain with a Go consumer that does not hold its thread (ConsumerOptions.Hold < 0)
	// Slow is plain with a slow Go consumer: an analysis of Config.HoldFor
	// on each frame it takes, without holds. To keep a frame it copies it
	// (1 copy per frame), and it counts the frames whose zero-copy view was
	// overwritten by the end of the analysis (what it would have analysed
	// had it not copied).
	Slow Mode = "slow"
	// Hold is Slow with holds (Frame.Hold, PROTOCOL.md amendment 10): the
	// consumer holds each frame it takes for Config.HoldFor, reads it at the
	// start and the end to check it stayed intact, and releases it; a
	// refused hold falls back to the copy. Its scenario needs a fixed rate
	// and a bus with more than 2 slots (Scenario.Slots, default 4).
	Hold Mode = "hold"
)

// Modes lists the framebus modes.
var Modes = []Mode{Plain, Copy, Spin, Park, Slow, Hold}

// analyses says whether m is a mode of the slow consumer (Slow, Hold).
func (m Mode) analyses() bool { return m == Slow || m == Hold }

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
	HD1080NV12 = Size{1920, 1080, framebus.FormatNV12}
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
// Lang says which side runs the C reference: the zero value is Go on both
// sides (the transport c is C on both by definition, and the futex baseline
// is Go or C on both).
type Variant struct {
	Transport Transport
	Mode      Mode // framebus and c only
	Lang      Pair // framebus: go->go (zero), go->c or c->go; futex: go->go or c->c
}

// Sides is the variant's languages, the zero value made explicit.
func (v Variant) Sides() Pair {
	switch {
	case v.Transport == CFramebus:
		return CC
	case v.Lang == Pair{}:
		if v.Transport == GStreamer {
			return CC // gst-launch-1.0
		}
		return GoGo
	}
	return v.Lang
}

// usesC says whether a side of the variant is the C reference (built with gcc).
func (v Variant) usesC() bool {
	s := v.Sides()
	return v.Transport != GStreamer && (s.Producer == LangC || s.Consumer == LangC)
}

func (v Variant) String() string {
	n := string(v.Transport)
	if v.Mode != "" {
		n += "/" + string(v.Mode)
	}
	if s := v.Sides(); v.Transport != CFramebus && v.Transport != GStreamer && s != GoGo {
		n += " " + s.String()
	}
	return n
}

// Scenario is a group of variants measured under the same conditions and
// compared with each other: their runs alternate, round by round.
type Scenario struct {
	Size      Size
	Consumers int
	Rate      float64 // frames per second; 0: as fast as the consumers take them
	Placement Placement
	Checksum  bool // the bus carries CRC-32C checksums (framebus and c rows)
	// Slots is the bus's slot count (ProducerOptions.Slots); 0 is the
	// producer's default, 2. Scenarios with hold rows default to
	// DefaultHoldSlots (Matrix, HoldScenario).
	Slots    int
	Variants []Variant
}

func (s Scenario) String() string {
	c := "1 consumer"
	if s.Consumers != 1 {
		c = fmt.Sprintf("%d consumers", s.Consumers)
	}
	return fmt.Sprintf("%s, %s, %s, %s%s%s", s.Size, c, rateName(s.Rate), s.Placement, checksumName(s.Checksum), slotsName(s.Slots))
}

func slotsName(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d slots", n)
}

func checksumName(on bool) string {
	if on {
		return ", checksums on"
	}
	return ""
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
	HoldFor        time.Duration // the slow and hold modes' analysis of each frame, default 150 ms

	Dir       string   // where the run's private directory goes, default /dev/shm
	Exe       string   // the binary that plays the children, default os.Executable()
	ExeArgs   []string // its arguments, default ["bench"]
	GstLaunch string   // gst-launch-1.0 to use; default: looked up in PATH
	CC        string   // the C compiler of the C legs; default: gcc, looked up in PATH

	Progress Progress     // nil: none
	Log      *slog.Logger // nil: no logging
	Command  string       // the command line, recorded in the report
}

// Defaults.
const (
	DefaultDuration       = 3 * time.Second
	DefaultMinPacedFrames = 300
	DefaultWarmup         = 300 * time.Millisecond
	DefaultRounds         = 2
	DefaultSpin           = 400 * time.Microsecond
	DefaultHoldFor        = 150 * time.Millisecond
	DefaultHoldSlots      = 4 // the slots of a scenario with hold rows: 2 may be held
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
	if c.HoldFor == 0 {
		c.HoldFor = DefaultHoldFor
	}
	if c.Dir == "" {
		c.Dir = "/dev/shm"
	}
	if c.ExeArgs == nil {
		c.ExeArgs = []string{"bench"}
	}
	c.Log = logx.Or(c.Log)
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
	case c.HoldFor < time.Millisecond || c.HoldFor > 10*time.Second:
		return bad("hold-for %v: want 1ms to 10s", c.HoldFor)
	}
	seen := map[string]bool{}
	for _, s := range c.Scenarios {
		if seen[s.String()] {
			return bad("scenario %v twice (its rows would be one block)", s)
		}
		seen[s.String()] = true
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
		if s.Slots != 0 && (s.Slots < framebus.MinSlots || s.Slots > framebus.MaxSlots) {
			return bad("%d slots: want %d-%d", s.Slots, framebus.MinSlots, framebus.MaxSlots)
		}
		if len(s.Variants) == 0 {
			return bad("scenario %v has no transports", s)
		}
		for _, v := range s.Variants {
			if !slices.Contains(Transports, v.Transport) {
				return bad("transport %q", v.Transport)
			}
			withMode := v.Transport == Framebus || v.Transport == CFramebus
			if withMode != (v.Mode != "") || (v.Mode != "" && !slices.Contains(Modes, v.Mode)) {
				return bad("transport %q with mode %q", v.Transport, v.Mode)
			}
			if v.Transport == CFramebus && v.Mode == Copy {
				return bad("transport c has no copy mode (the C producer renders into the slot)")
			}
			if v.Lang != (Pair{}) && !slices.Contains(Pairs, v.Lang) {
				return bad("%v: languages %q", v, v.Lang)
			}
			switch side := v.Sides(); {
			case v.Transport == Framebus && side == CC:
				return bad("framebus c->c is the transport c")
			case v.Transport == Framebus && side.Producer == LangC && v.Mode == Copy:
				return bad("%v: the C producer has no copy mode", v)
			case v.Mode == Park && side.Consumer == LangC:
				return bad("%v: park is the Go consumer's (a C consumer never holds its thread)", v)
			case v.Mode.analyses() && (v.Transport != Framebus || side != GoGo):
				return bad("%v: %s is go->go only (the Go consumer's analysis; the C producer does not know holds)", v, v.Mode)
			case v.Transport == Futex && side != GoGo && side != CC:
				return bad("%v: the futex baseline is go->go or c->c", v)
			case v.Transport != Framebus && v.Transport != Futex && v.Lang != (Pair{}):
				return bad("%v: only framebus and futex rows have languages", v)
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

// RunOverhead is what one run costs on top of its warm-up and measured
// time: starting the processes, making the bus, waiting for the consumers,
// collecting the samples. Measured on the 2-vCPU machine of
// docs/BENCHMARKS.md: 16.8 s for 24 runs of 0.3 to 0.43 s (0.35 s each more).
const RunOverhead = 350 * time.Millisecond

// Estimate is how many runs the configuration makes and about how long they
// take: per run, the warm-up, the measured time (a paced run's fewest
// frames included), a slow consumer's last analysis and RunOverhead. skip
// says which variants will not run here (nil: all run, as on a machine with
// two CPUs, gcc and GStreamer).
func (c Config) Estimate(skip func(Scenario, Variant) bool) (runs int, d time.Duration) {
	c = c.withDefaults()
	for _, sc := range c.Scenarios {
		for _, v := range sc.Variants {
			if skip != nil && skip(sc, v) {
				continue
			}
			one := c.Warmup + c.measureTime(sc) + RunOverhead
			if v.Mode.analyses() {
				one += c.HoldFor
			}
			runs += c.Rounds
			d += time.Duration(c.Rounds) * one
		}
	}
	return runs, d
}

// Minutes rounds a duration to whole minutes for people, at least 1.
func Minutes(d time.Duration) int { return max(1, int(d.Minutes()+0.5)) }

// About says an estimate for people: "under a minute", "about 1 minute",
// "about 32 minutes".
func About(d time.Duration) string {
	switch m := Minutes(d); {
	case d < time.Minute:
		return "under a minute"
	case m == 1:
		return "about 1 minute"
	default:
		return fmt.Sprintf("about %d minutes", m)
	}
}
