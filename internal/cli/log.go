package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// LogOptions are the logging flags: --log-format and --log-level.
type LogOptions struct {
	Format string // auto, console or json
	Level  string // trace, debug, info, warn, error
}

// Register adds the two flags to fs, with the current values as defaults.
func (o *LogOptions) Register(fs *flag.FlagSet) {
	if o.Format == "" {
		o.Format = "auto"
	}
	if o.Level == "" {
		o.Level = "info"
	}
	fs.StringVar(&o.Format, "log-format", o.Format, "log `FORMAT` on stderr: auto (console, in colour on a terminal unless $NO_COLOR is set), console or json")
	fs.StringVar(&o.Level, "log-level", o.Level, "least important log `LEVEL` shown: debug, info, warn or error")
}

// JSON reports whether the logs are JSON lines.
func (o *LogOptions) JSON() bool { return strings.EqualFold(o.Format, "json") }

// Logger makes the logger the options ask for, writing to w (a terminal gets
// colours, unless NO_COLOR is set: see Colour). A bad format or level is an
// error.
func (o *LogOptions) Logger(w *os.File) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(o.Level))
	if err != nil || o.Level == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", o.Level)
	}
	var out io.Writer
	switch strings.ToLower(o.Format) {
	case "json":
		out = w
	case "auto", "console", "":
		out = zerolog.ConsoleWriter{Out: w, NoColor: !Colour(w), TimeFormat: "15:04:05.000"}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want auto, console or json", o.Format)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

// Colour says whether output to f may use colours: f is a terminal and
// $NO_COLOR is unset or empty (https://no-color.org).
func Colour(f *os.File) bool {
	return os.Getenv("NO_COLOR") == "" && IsTerminal(f)
}
