package capture

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/testutil"
)

// scripted is a source whose frames are numbered from 1: at frame change
// it switches to format next (ErrFormatChanged first), at frame fail it
// returns err. It paces itself at every.
type scripted struct {
	f, next      framebus.Format
	change, fail int64
	err          error
	every        time.Duration
	n            atomic.Int64
}

func (s *scripted) Format() framebus.Format { return s.f }
func (s *scripted) Close() error            { return nil }

func (s *scripted) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if s.every > 0 {
		t := time.NewTimer(s.every)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	k := s.n.Add(1)
	switch {
	case k == s.change:
		s.f = s.next
		return 0, 0, ErrFormatChanged
	case k == s.fail:
		return 0, 0, s.err
	}
	n := int(s.f.FrameSize)
	for i := range dst[:n] {
		dst[i] = byte(k)
	}
	return n, framebus.Now(), nil
}

func grey(w, h uint32) framebus.Format {
	f, err := framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatGrey}.Complete()
	if err != nil {
		panic(err)
	}
	return f
}

func publishBus(t *testing.T, f framebus.Format) *framebus.Producer {
	t.Helper()
	p, err := framebus.Create("pub", framebus.ProducerOptions{Dir: testutil.ShmDir(t), Format: f, Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// A source that changes format mid-stream gets a new generation of it, and
// its frames go on; the end of the source ends the loop without an error.
func TestPublishFormatChange(t *testing.T) {
	src := &scripted{f: grey(64, 16), next: grey(32, 8), change: 5, fail: 10, err: io.EOF}
	p := publishBus(t, src.f)
	var logs testutil.Logs
	sum, err := Publish(t.Context(), src, p, PublishOptions{Log: logs.Logger(), Progress: -1, Source: "scripted"})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Ended || sum.Generations != 1 || sum.Frames != 8 || sum.Failed != 0 {
		t.Fatalf("summary %+v, want 8 frames, 1 generation, ended", sum)
	}
	if p.Generation() != 2 || p.Format().Width != 32 {
		t.Fatalf("generation %d format %v, want generation 2 of 32x8", p.Generation(), p.Format())
	}
	if logs.Count("INFO the source changed format") != 1 || logs.Count("INFO the source ended") != 1 {
		t.Errorf("logged %q", logs.Lines())
	}
}

// A source error ends the loop with that error, wrapped.
func TestPublishSourceError(t *testing.T) {
	boom := errors.New("camera unplugged")
	src := &scripted{f: grey(64, 16), fail: 3, err: boom}
	p := publishBus(t, src.f)
	sum, err := Publish(t.Context(), src, p, PublishOptions{Source: "rtsp://user:secret@cam/1"})
	if !errors.Is(err, boom) || sum.Frames != 2 || sum.Ended {
		t.Fatalf("err %v, summary %+v; want %v after 2 frames", err, sum, boom)
	}
	if msg := err.Error(); strings.Contains(msg, "secret") || !strings.Contains(msg, "cam/1") {
		t.Errorf("the error does not name the source, redacted: %q", msg)
	}
}

// The end of ctx ends the loop cleanly: no error, the bus left open for
// the caller to close.
func TestPublishCancel(t *testing.T) {
	src := &scripted{f: grey(64, 16), every: time.Millisecond}
	p := publishBus(t, src.f)
	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		sum PublishSummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := Publish(ctx, src, p, PublishOptions{})
		done <- result{sum, err}
	}()
	testutil.WaitFor(t, 10*time.Second, "5 frames", func() bool { return p.Stats().FramesPublished >= 5 })
	cancel()
	select {
	case r := <-done:
		if r.err != nil || r.sum.Ended || r.sum.Frames < 5 {
			t.Fatalf("after cancel: %+v, %v", r.sum, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Publish did not end within 10 s of its context")
	}
	if _, err := p.Publish(make([]byte, src.f.FrameSize), framebus.Meta{}); err != nil {
		t.Fatalf("the bus is not open after Publish: %v", err)
	}
}

// A bus file truncated from outside fails a frame or a few; the loop rides
// it out, the producer replaces the segment (a new generation, told as an
// event the loop logs) and frames go on.
func TestPublishRidesOutTruncation(t *testing.T) {
	src := &scripted{f: grey(256, 64), every: time.Millisecond}
	p := publishBus(t, src.f)
	var logs testutil.Logs
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Publish(ctx, src, p, PublishOptions{Log: logs.Logger(), Progress: -1})
		done <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "5 frames", func() bool { return p.Stats().FramesPublished >= 5 })
	if err := os.Truncate(p.Path(), 4096); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a new generation", func() bool { return p.Generation() >= 2 })
	n := p.Stats().FramesPublished
	testutil.WaitFor(t, 10*time.Second, "frames after the truncation", func() bool { return p.Stats().FramesPublished >= n+5 })
	testutil.WaitFor(t, 10*time.Second, "the event logged", func() bool { return logs.Count("damaged from outside") > 0 })
	select {
	case err := <-done:
		t.Fatalf("Publish ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
