// Command framebus publishes live video frames on a framebus bus and looks
// at buses: capture, tail, cat, stat, metrics, ls, rm, gc, dump, view,
// analyze, record, version, completion. Run "framebus --help".
//
// This file and its siblings are flags, logging and wiring; what is more
// than that lives in package capture and internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/report"
	"github.com/rs/zerolog"
)

var stdout io.Writer = os.Stdout

func main() {
	os.Exit(newApp().Run(context.Background(), os.Args[1:]))
}

// newApp is the command line. Its logger is built from the flags in
// Before and travels in the command's context (zerolog.Ctx(ctx); a context
// without one is silent): every command's run takes it from there, and
// hands the libraries cli.Slog of it.
func newApp() *cli.App {
	var logOpts cli.LogOptions
	return &cli.App{
		Name:     "framebus",
		Summary:  "shared-memory transport for live video frames between processes",
		Commands: []*cli.Command{captureCmd, tailCmd, catCmd, statCmd, metricsCmd, lsCmd, rmCmd, gcCmd, dumpCmd, benchCmd, viewCmd, pushCmd, analyzeCmd, recordCmd},
		Global:   logOpts.Register,
		Version:  writeVersion,
		Values:   completionValues(),
		Before: func(ctx context.Context) (context.Context, error) {
			l, err := logOpts.Logger(os.Stderr)
			if err != nil {
				return ctx, err
			}
			return l.WithContext(ctx), nil
		},
		Report: func(ctx context.Context, cmd string, err error) {
			if log := zerolog.Ctx(ctx); log.GetLevel() != zerolog.Disabled && logOpts.JSON() {
				log.Error().Str("command", cmd).Int("exit_code", cli.ExitCode(err)).Msg(err.Error())
				return
			}
			fmt.Fprintf(os.Stderr, "framebus %s: %v\n", cmd, err)
		},
	}
}

// completionValues are the values shell completion offers for flags.
func completionValues() map[string][]string {
	return map[string][]string{
		"source":     append(capture.Sources(), "rtsp://"),
		"format":     {"RGBA", "RGB24", "BGR24", "GREY", "YUYV", "NV12", "I420", "MJPEG"},
		"log-format": {"auto", "console", "json"},
		"log-level":  {"debug", "info", "warn", "error"},
		"detect":     {"motion", "faces"},
		"slots":      {"2", "3", "4", "5", "6", "7", "8"},
	}
}

// oneName checks that the positional arguments are exactly one valid bus
// name.
func oneName(args []string) (string, error) {
	switch {
	case len(args) == 0:
		return "", cli.Usagef("a bus NAME is required")
	case len(args) > 1:
		return "", cli.Usagef("one bus NAME expected, got %q", args)
	}
	if err := framebus.ValidateName(args[0]); err != nil {
		return "", cli.Usage(err)
	}
	return args[0], nil
}

func noArgs(args []string) error {
	if len(args) > 0 {
		return cli.Usagef("unexpected argument %q", args[0])
	}
	return nil
}

// busError explains an error of opening or inspecting bus name in dir.
func busError(name, dir string, err error) error {
	cause := report.Cause(err)
	switch {
	case errors.Is(err, framebus.ErrNotFound):
		return fmt.Errorf("no bus %q in %s ('framebus ls' lists the buses)", name, framebus.Dir(dir))
	case errors.Is(err, framebus.ErrCorrupt), errors.Is(err, framebus.ErrBadMagic), errors.Is(err, framebus.ErrVersionMismatch):
		return fmt.Errorf("bus %s: %v ('framebus dump %s' shows its raw fields)", name, cause, name)
	case errors.Is(err, framebus.ErrBadName):
		return cli.Usage(cause)
	}
	return fmt.Errorf("bus %s: %v", name, cause)
}
