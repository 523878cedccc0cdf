package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Logs records what a library logs: its Logger goes into the options
// under test, Lines says what came, as "LEVEL message".
type Logs struct {
	mu    sync.Mutex
	lines []string
}

// Logger is a *slog.Logger (every level) writing to l.
func (l *Logs) Logger() *slog.Logger { return slog.New(logsHandler{l}) }

// Lines are the messages so far.
func (l *Logs) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// Count is how many messages contain s.
func (l *Logs) Count(s string) int {
	n := 0
	for _, line := range l.Lines() {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

type logsHandler struct{ l *Logs }

func (logsHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h logsHandler) WithAttrs([]slog.Attr) slog.Handler     { return h }
func (h logsHandler) WithGroup(string) slog.Handler          { return h }

func (h logsHandler) Handle(_ context.Context, r slog.Record) error {
	line := fmt.Sprintf("%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, line)
	h.l.mu.Unlock()
	return nil
}
