package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/rs/zerolog"
)

// The libraries' records keep their level and attributes through the
// command's zerolog logger; below its level they are not even built.
func TestSlogKeepsLevelsAndFields(t *testing.T) {
	var buf bytes.Buffer
	zl := zerolog.New(&buf).Level(zerolog.InfoLevel)
	l := Slog(&zl)
	l.Debug("hidden")
	l.Info("frames again", "bus", "cam0", "generation", uint64(3))
	l.With("bus", "cam1").WithGroup("feed").Warn("producer gone", "err", errors.New("boom"), "n", 2)
	var got []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("want 2 lines, got %d: %s", len(got), buf.String())
	}
	if got[0]["level"] != "info" || got[0]["message"] != "frames again" || got[0]["bus"] != "cam0" || got[0]["generation"] != 3.0 {
		t.Errorf("first line %v", got[0])
	}
	if got[1]["level"] != "warn" || got[1]["bus"] != "cam1" || got[1]["feed.err"] != "boom" || got[1]["feed.n"] != 2.0 {
		t.Errorf("second line %v", got[1])
	}
	if l.Enabled(t.Context(), slog.LevelDebug) {
		t.Error("debug enabled under an info logger")
	}
	nop := zerolog.Nop()
	if Slog(nil) != nil || Slog(&nop) != nil {
		t.Error("a nil or disabled logger is not nil")
	}
}
