package cli

import (
	"context"
	"log/slog"

	"github.com/rs/zerolog"
)

// Slog is l as the *slog.Logger that the libraries take (framebus/feed,
// capture, viewer, bench, internal/rtc): their records go to l at their own
// level, their attributes as zerolog fields, so the console and JSON output
// are the commands' own. nil, or a disabled l, gives nil: silent.
func Slog(l *zerolog.Logger) *slog.Logger {
	if l == nil || l.GetLevel() == zerolog.Disabled {
		return nil
	}
	return slog.New(&zeroHandler{l: l})
}

// zeroHandler is a slog.Handler writing to a zerolog.Logger.
type zeroHandler struct {
	l      *zerolog.Logger
	attrs  []slog.Attr // of WithAttrs, already prefixed
	prefix string      // of WithGroup: "group."
}

// zeroLevel maps a slog level to zerolog's (between two levels: the lower).
func zeroLevel(l slog.Level) zerolog.Level {
	switch {
	case l < slog.LevelDebug:
		return zerolog.TraceLevel
	case l < slog.LevelInfo:
		return zerolog.DebugLevel
	case l < slog.LevelWarn:
		return zerolog.InfoLevel
	case l < slog.LevelError:
		return zerolog.WarnLevel
	}
	return zerolog.ErrorLevel
}

func (h *zeroHandler) Enabled(_ context.Context, l slog.Level) bool {
	zl := zeroLevel(l)
	return zl >= h.l.GetLevel() && zl >= zerolog.GlobalLevel()
}

func (h *zeroHandler) Handle(_ context.Context, r slog.Record) error {
	ev := h.l.WithLevel(zeroLevel(r.Level))
	for _, a := range h.attrs {
		ev = field(ev, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		ev = field(ev, h.prefix, a)
		return true
	})
	ev.Msg(r.Message)
	return nil
}

func (h *zeroHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], prefixed(h.prefix, as)...)
	return &n
}

func (h *zeroHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

// prefixed is as with their keys under prefix.
func prefixed(prefix string, as []slog.Attr) []slog.Attr {
	if prefix == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: prefix + a.Key, Value: a.Value}
	}
	return out
}

// field adds a to ev as the zerolog field of its kind.
func field(ev *zerolog.Event, prefix string, a slog.Attr) *zerolog.Event {
	v := a.Value.Resolve()
	k := prefix + a.Key
	switch v.Kind() {
	case slog.KindGroup:
		for _, g := range v.Group() {
			ev = field(ev, k+".", g)
		}
		return ev
	case slog.KindString:
		return ev.Str(k, v.String())
	case slog.KindInt64:
		return ev.Int64(k, v.Int64())
	case slog.KindUint64:
		return ev.Uint64(k, v.Uint64())
	case slog.KindFloat64:
		return ev.Float64(k, v.Float64())
	case slog.KindBool:
		return ev.Bool(k, v.Bool())
	case slog.KindDuration:
		return ev.Dur(k, v.Duration())
	case slog.KindTime:
		return ev.Time(k, v.Time())
	}
	if v.Any() == nil {
		return ev // (zerolog's Err(nil) adds nothing either)
	}
	if err, ok := v.Any().(error); ok {
		return ev.AnErr(k, err)
	}
	return ev.Interface(k, v.Any())
}
