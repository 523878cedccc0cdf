package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/logx"
)

// Source produces frames.
type Source interface {
	// Format is the real frame format (completed: plane strides, offsets
	// and FrameSize filled in), known before the bus is created.
	Format() framebus.Format

	// Read waits until the next frame is due (at the source's rate; at once
	// when the rate is 0), writes it into dst (at least Format().FrameSize
	// bytes, normally the producer's back slot) and returns the bytes
	// written and when the frame was captured, on framebus.Now's clock.
	// It returns the context's error when ctx ends first, io.EOF at the end
	// of a finite source, and ErrClosed after Close.
	Read(ctx context.Context, dst []byte) (n int, captureNS int64, err error)

	// Close releases the source. Read must not be running.
	Close() error
}

// Config asks a source for frames. Each source takes what applies to it and
// reports the format it really produces in Source.Format.
type Config struct {
	Width, Height uint32
	PixelFormat   framebus.FourCC // 0: the source's default (RGBA for the pattern)
	FPS           float64         // frames per second; 0: as fast as possible
	Arg           string          // what follows "name:" in the spec, e.g. the path of file:PATH

	// DefaultSize and DefaultFPS mark Width/Height and FPS as defaults, not
	// requests: a source with a size or rate of its own (a video file) uses
	// that instead. The pattern has none and ignores them.
	DefaultSize, DefaultFPS bool

	// Loop starts a finite source again at its end (a replayed recording)
	// instead of ending with io.EOF.
	Loop bool

	// Log receives what a source notices while it runs (a camera that
	// dropped, Warn, and came back, Info; a recording that ends early).
	// nil: silent.
	Log *slog.Logger

	ctx context.Context // of OpenContext: bounds a source's opening
}

// context is the context that bounds the opening of the source (a source
// that waits for its first data, or probes a camera, gives up when it ends).
func (c Config) context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// log is Log, or a silent logger.
func (c Config) log() *slog.Logger { return logx.Or(c.Log) }

// MetaSource is a Source whose frames carry user metadata (a replayed
// recording). UserMeta is the metadata of the frame the last Read returned
// (at most framebus.UserMetaMax bytes), valid until the next Read.
type MetaSource interface {
	Source
	UserMeta() []byte
}

// Opener makes a source from a configuration.
type Opener func(Config) (Source, error)

// Sentinels, tested with errors.Is.
var (
	ErrUnknownSource = errors.New("unknown source")
	ErrNotInBuild    = errors.New("source not in this build")
	ErrBadConfig     = errors.New("bad source configuration")
	ErrClosed        = errors.New("source closed")
	// ErrFormatChanged is returned by Read when the source's next frame has
	// another format (a camera that came back at another size, a recording
	// whose bus changed format): Format returns the new one, the caller
	// starts a new generation of it (framebus.Producer.Reconfigure) and
	// calls Read again. No frame is lost.
	ErrFormatChanged = errors.New("source format changed")
)

// UnknownSourceError names a source that no build has.
type UnknownSourceError struct {
	Source string
	Known  []string // registered sources
	Absent []string // sources known to exist but not in this build
}

func (e *UnknownSourceError) Error() string {
	msg := fmt.Sprintf("unknown source %q (want one of: %s", e.Source, strings.Join(e.Known, ", "))
	if len(e.Absent) > 0 {
		msg += "; not in this build: " + strings.Join(e.Absent, ", ")
	}
	return msg + ")"
}
func (e *UnknownSourceError) Unwrap() error { return ErrUnknownSource }

// NotInBuildError names a source that exists but was not compiled in.
type NotInBuildError struct {
	Source string
	Needs  string // what a build needs to have it, e.g. "OpenCV (-tags framebus_opencv, make build)"
}

func (e *NotInBuildError) Error() string {
	if e.Needs != "" {
		return fmt.Sprintf("source %s: needs a build with %s", e.Source, e.Needs)
	}
	return fmt.Sprintf("source %s is not in this build", e.Source)
}
func (e *NotInBuildError) Unwrap() error { return ErrNotInBuild }

// ConfigError explains why a source refused a configuration.
type ConfigError struct {
	Source string
	Err    error
}

func (e *ConfigError) Error() string {
	// framebus's validation errors start with "bad options: ", which says
	// nothing more here.
	return "source " + e.Source + ": " + strings.TrimPrefix(e.Err.Error(), framebus.ErrBadOptions.Error()+": ")
}
func (e *ConfigError) Unwrap() []error { return []error{ErrBadConfig, e.Err} }

var (
	regMu    sync.Mutex
	registry = map[string]Opener{}
)

// planned are the sources that some builds lack (the cgo ones behind build
// tags). Their files register them under these names; in a build without
// them Open says they are not in this build.
var planned = map[string]string{
	"videotest": "videotest",
	"screen":    "screen",
	"camera":    "camera",
	"file":      "file:PATH",
}

// Register makes a source available to Open under name. It is meant for
// init functions and panics on a duplicate or malformed name.
func Register(name string, open Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	if name == "" || strings.ContainsRune(name, ':') || open == nil {
		panic("capture: bad Register(" + name + ")")
	}
	if _, dup := registry[name]; dup {
		panic("capture: source " + name + " registered twice")
	}
	registry[name] = open
}

// Sources returns the names of the sources in this build, sorted.
func Sources() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open makes the source that spec names: "NAME" or "NAME:ARG" (ARG goes to
// Config.Arg). Errors wrap ErrUnknownSource, ErrNotInBuild or ErrBadConfig
// when the request itself is wrong; anything else is a runtime failure of
// the source.
func Open(spec string, cfg Config) (Source, error) {
	return OpenContext(context.Background(), spec, cfg)
}

// OpenContext is Open with a context that bounds the opening: a source that
// waits for its first data (stdin) or probes a camera (rtsp) gives up with
// the context's error when it ends.
func OpenContext(ctx context.Context, spec string, cfg Config) (Source, error) {
	cfg.ctx = ctx
	name, arg, hasArg := strings.Cut(spec, ":")
	regMu.Lock()
	open, ok := registry[name]
	regMu.Unlock()
	if !ok {
		if _, later := planned[name]; later {
			return nil, &NotInBuildError{Source: name}
		}
		var absent []string
		regMu.Lock()
		for n, usage := range planned {
			if _, in := registry[n]; !in {
				absent = append(absent, usage)
			}
		}
		regMu.Unlock()
		sort.Strings(absent)
		return nil, &UnknownSourceError{Source: spec, Known: Sources(), Absent: absent}
	}
	if hasArg {
		cfg.Arg = arg
	}
	return open(cfg)
}

// maxFPS bounds a requested rate (a camera does at most a few hundred).
const maxFPS = 100000

// checkFPS validates a requested rate and returns it as the rational of
// framebus.Format (FPSNum/FPSDen; 0/1 for "as fast as possible").
func checkFPS(fps float64) (num, den uint32, err error) {
	switch {
	case math.IsNaN(fps) || math.IsInf(fps, 0) || fps < 0:
		return 0, 0, fmt.Errorf("fps %v: want a number >= 0 (0: as fast as possible)", fps)
	case fps > maxFPS:
		return 0, 0, fmt.Errorf("fps %v: more than %d", fps, maxFPS)
	case fps == 0:
		return 0, 1, nil
	case fps == math.Trunc(fps):
		return uint32(fps), 1, nil
	}
	num, den = uint32(math.Round(fps*1000)), 1000
	if num == 0 {
		return 0, 0, fmt.Errorf("fps %v: too small", fps)
	}
	g := gcd(num, den)
	return num / g, den / g, nil
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Redact hides the password of a source spec that is a URL
// (rtsp://user:pass@host/...), for logs and messages.
func Redact(spec string) string { return redact(spec) }

// redact hides the password of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
