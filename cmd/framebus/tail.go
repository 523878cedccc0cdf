package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/report"
)

var tailCmd = &cli.Command{
	Name:    "tail",
	Args:    "NAME [--json] [--duration D] [--timeout D] [--hold D] [--dir DIR]",
	Summary: "join a bus as a consumer and print one line per frame",
	Description: `Joins the bus NAME as a consumer (waiting up to --timeout for a producer
to create it) and prints one line per frame it receives: the frame's
sequence number, its bytes, the latency from commit to this consumer's wake
and from capture to wake in microseconds, the frames dropped just before it
and the torn-read retries.

With --hold D it plays a slow analysis: it holds each frame it takes
(zero-copy, PROTOCOL.md's holds), works on it for D, checks that the frame
stayed intact (its CRC at the start and the end, and the hold still valid),
and releases it; each line then says held=ok, held=overwritten or
held=refused (the bus's cap reached, or a producer without holds: the frame
is copied instead, as a real analysis would). The summary counts them.

It follows a producer restart (a new generation) by itself. It ends with
"closed" when the producer closes the stream, after --duration, on
SIGINT/SIGTERM (all exit 0), or with an error (exit 1), for example when
the producer is gone and does not come back within --timeout.`,
	Examples: `framebus tail cam0
		framebus tail cam0 --duration 5s
		framebus tail cam0 --json | jq .commit_to_wake_us
		framebus tail cam0 --timeout 1m --dir /tmp/buses
		framebus tail cam0 --hold 150ms   # a 150 ms analysis on every frame it takes`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &tailOpts{}
		fs.BoolVar(&o.json, "json", false, "print one JSON object per frame")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` of reading (0: until the stream ends)")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for the producer to create the bus, or to come back when it is gone")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		fs.Var(&o.spin, "spin", spinUsage)
		fs.DurationVar(&o.hold, "hold", 0, "hold each frame for `D`, as a slow analysis would (0: no hold)")
		return o.run
	},
}

type tailOpts struct {
	json              bool
	duration, timeout time.Duration
	hold              time.Duration
	dir               string
	spin              cli.Spin
}

// tailLine is one frame in --json output.
type tailLine struct {
	Seq            uint64  `json:"seq"`
	Bytes          int     `json:"bytes"`
	CommitToWakeUS float64 `json:"commit_to_wake_us"`
	CaptureToWake  float64 `json:"capture_to_wake_us"`
	Dropped        uint64  `json:"dropped"`
	TornRetries    uint64  `json:"torn_retries"`
	Generation     uint64  `json:"generation"`
	NewGeneration  bool    `json:"new_generation,omitempty"`
	Held           string  `json:"held,omitempty"` // --hold: ok, overwritten, refused
}

// holdSum counts what --hold did.
type holdSum struct {
	ok, overwritten, refused, copied uint64
}

// holdFor plays a slow analysis on f for d: it holds the frame (or copies it
// when the hold is refused), reads it whole at the start and at the end, and
// says whether it stayed intact: "ok", "overwritten" (the frame changed under
// the hold: a lease took it back) or "refused" (copied instead).
func holdFor(ctx context.Context, f *framebus.Frame, d time.Duration, sum *holdSum, buf *[]byte) string {
	h, err := f.Hold()
	if err != nil {
		// What an analysis does when the bus cannot keep the frame: copy it.
		sum.refused++
		if cerr := f.Use(func(data []byte) { *buf = append((*buf)[:0], data...) }); cerr == nil {
			sum.copied++
		}
		sleepCtx(ctx, d)
		return "refused"
	}
	defer h.Release()
	var before, after uint32
	gerr := framebus.Guard(func() { before = crc32.ChecksumIEEE(h.Data()) })
	sleepCtx(ctx, d)
	if gerr == nil {
		gerr = framebus.Guard(func() { after = crc32.ChecksumIEEE(h.Data()) })
	}
	if gerr != nil || !h.Valid() || before != after {
		sum.overwritten++
		return "overwritten"
	}
	sum.ok++
	return "ok"
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (o *tailOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if o.duration < 0 || o.timeout < 0 {
		return cli.Usagef("--duration and --timeout must not be negative")
	}
	ctx, stop := runContext(ctx, o.duration)
	defer stop()
	in := feed.New(name, feed.Options{Dir: o.dir, Timeout: o.timeout, Spin: o.spin.D, Log: cli.Slog(log)})
	defer in.Close()

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	var sum tailSum
	var copyBuf []byte
	defer sum.log(log, name, o.hold > 0)
	end, err := in.Run(ctx, func(f *framebus.Frame) error {
		if sum.frames == 0 {
			c := in.Consumer()
			log.Debug().Str("bus", name).Uint64("generation", c.Generation()).Int("entry", c.Entry()).
				Str("format", report.FormatString(c.Format())).Msg("joined")
		}
		l := sum.add(f)
		if o.hold > 0 {
			l.Held = holdFor(ctx, f, o.hold, &sum.holds, &copyBuf)
		}
		l.write(out, enc, o.json)
		if err := out.Flush(); err != nil {
			return feed.ErrStop // stdout closed (tail | head): done
		}
		return nil
	})
	switch {
	case err != nil:
		if errors.Is(err, feed.ErrNoProducer) {
			return err
		}
		return busError(name, o.dir, err)
	case end.EndOfStream:
		sum.dropped += end.Dropped
		if o.json {
			enc.Encode(map[string]any{"event": "closed", "frames": sum.frames, "dropped": sum.dropped})
		} else {
			fmt.Fprintln(out, "closed")
		}
	}
	return nil // --duration passed, interrupted, or stdout closed
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// tailSum is what tail counts for its summary.
type tailSum struct {
	frames, dropped, torn uint64
	latSum, latMax        int64
	holds                 holdSum
}

// add counts f and returns its line.
func (s *tailSum) add(f *framebus.Frame) tailLine {
	lat := f.WakeNS - f.CommitNS
	s.frames++
	s.dropped += f.Dropped
	s.torn += f.TornRetries
	s.latSum += lat
	s.latMax = max(s.latMax, lat)
	return tailLine{Seq: f.Seq, Bytes: len(f.Data), CommitToWakeUS: us(lat), CaptureToWake: us(f.WakeNS - f.CaptureNS),
		Dropped: f.Dropped, TornRetries: f.TornRetries, Generation: f.Generation, NewGeneration: f.GenerationChanged}
}

// log logs the summary (with the holds' counts when tail held frames).
func (s *tailSum) log(log *zerolog.Logger, name string, held bool) {
	if s.frames == 0 {
		return
	}
	ev := log.Info().Str("bus", name).Uint64("frames", s.frames).Uint64("dropped", s.dropped).Uint64("torn_retries", s.torn).
		Str("commit_to_wake_mean", (time.Duration(s.latSum/int64(s.frames))).String()).
		Str("commit_to_wake_max", time.Duration(s.latMax).String())
	if held {
		ev = ev.Uint64("held_ok", s.holds.ok).Uint64("held_overwritten", s.holds.overwritten).Uint64("hold_refused", s.holds.refused).
			Uint64("copied", s.holds.copied)
	}
	ev.Msg("tail summary")
}

// write writes the line as JSON or as text.
func (l *tailLine) write(out io.Writer, enc *json.Encoder, asJSON bool) {
	if asJSON {
		enc.Encode(l)
		return
	}
	fmt.Fprintf(out, "seq=%d bytes=%d commit_to_wake=%.1fµs capture_to_wake=%.1fµs dropped=%d torn=%d",
		l.Seq, l.Bytes, l.CommitToWakeUS, l.CaptureToWake, l.Dropped, l.TornRetries)
	if l.NewGeneration {
		fmt.Fprintf(out, " new_generation=%d", l.Generation)
	}
	if l.Held != "" {
		fmt.Fprintf(out, " held=%s", l.Held)
	}
	fmt.Fprintln(out)
}
