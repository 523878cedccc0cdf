package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/report"
)

// PublishOptions configures Publish. The zero value logs nothing and
// would log progress every 5 s.
type PublishOptions struct {
	// Log receives what the loop notices: a new generation for a new
	// format, the source's end (Info); frames the bus could not take and
	// its heartbeat's errors (Warn), the bus damaged from outside and
	// replaced (Warn) or not yet replaceable (Error); progress (Info,
	// every Progress). nil: silent.
	Log *slog.Logger

	// Progress is how often the rate is logged: 0 every 5 s, < 0 never.
	Progress time.Duration

	// Source names the source in messages and errors (its spec, such as
	// rtsp://user:pass@host/path: a password is redacted).
	Source string
}

// PublishSummary is what a Publish loop did.
type PublishSummary struct {
	Frames      uint64 // frames published by this loop
	Failed      uint64 // frames the bus could not take (counted as source drops)
	Generations int    // new generations for a new format of the source
	Ended       bool   // the source ended (io.EOF); else ctx ended, or an error
}

// defaultProgress is how often Publish logs the rate by default.
const defaultProgress = 5 * time.Second

// failPause is how long Publish rests when the bus had no slot to lend (no
// room for a new generation yet) instead of spinning.
const failPause = 10 * time.Millisecond

// Publish is the producer loop, the twin of framebus/feed: it reads the
// source's frames straight into p's back slot (Producer.Fill, so a bus
// file truncated under the write is an error, not a SIGBUS) and commits
// them, until the source ends (io.EOF), ctx ends (both: a nil error) or an
// error that is not transient. Along the way it
//
//   - starts a new generation when the source changes format
//     (ErrFormatChanged, Producer.Reconfigure; no frame is lost);
//   - rides out a corrupt or truncated bus (the next frame goes to a new
//     generation) and a bus directory too full for that generation (frames
//     fail until there is room), counting those frames as source drops;
//   - logs the producer's Events (the bus damaged from outside and
//     replaced) and its progress.
//
// The caller creates p and closes it; a source error is returned wrapped
// (errors.Is finds it).
func Publish(ctx context.Context, src Source, p *framebus.Producer, o PublishOptions) (PublishSummary, error) {
	log := logx.Or(o.Log)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { logEvents(log, p, done) })
	if o.Progress >= 0 {
		every := o.Progress
		if every == 0 {
			every = defaultProgress
		}
		wg.Go(func() { logProgress(log, p, src, every, done) })
	}
	defer wg.Wait()
	defer close(done)
	l := &publishLoop{ctx: ctx, src: src, p: p, log: log, shown: redact(o.Source)}
	l.meta, _ = src.(MetaSource)
	err := l.run()
	return l.sum, err
}

// publishLoop is the state of one Publish.
type publishLoop struct {
	ctx   context.Context
	src   Source
	meta  MetaSource // src, when its frames carry user metadata
	p     *framebus.Producer
	log   *slog.Logger
	shown string // the source, redacted
	sum   PublishSummary
	fails int // frames failed in a row
}

// run publishes until the end; a nil error for the source's end or ctx's.
func (l *publishLoop) run() error {
	for {
		srcErr, filled, err := l.fill()
		switch {
		case errors.Is(srcErr, ErrFormatChanged):
			if err := l.reconfigure(); err != nil {
				return err
			}
		case srcErr != nil:
			return l.sourceEnd(srcErr)
		case err != nil:
			if err := l.failed(err, filled); err != nil {
				return err
			}
		default:
			l.sum.Frames++
			if l.fails > 0 {
				l.log.Info("publishing again", "frames_failed", l.fails, "generation", l.p.Generation())
			}
			l.fails = 0
		}
	}
}

// fill reads one frame of the source into the back slot and commits it:
// the source's error, whether the source was asked for a frame at all, and
// the bus's error.
func (l *publishLoop) fill() (srcErr error, filled bool, err error) {
	_, err = l.p.Fill(func(slot []byte) (int, framebus.Meta, error) {
		n, captureNS, err := l.src.Read(l.ctx, slot)
		srcErr, filled = err, true
		m := framebus.Meta{CaptureNS: captureNS}
		if l.meta != nil && err == nil {
			m.UserMeta = l.meta.UserMeta()
		}
		return n, m, err
	})
	return srcErr, filled, err
}

// reconfigure starts a generation of the source's new format.
func (l *publishLoop) reconfigure() error {
	nf := l.src.Format()
	if err := l.p.Reconfigure(nf); err != nil {
		return fmt.Errorf("bus %s: new format %s: %v", l.p.Name(), report.FormatString(nf), report.Cause(err))
	}
	l.sum.Generations++
	l.log.Info("the source changed format: new generation", "bus", l.p.Name(), "format", report.FormatString(nf), "generation", l.p.Generation())
	return nil
}

// sourceEnd is the loop's end for an error of the source: nil when ctx
// ended or the source did.
func (l *publishLoop) sourceEnd(err error) error {
	switch {
	case l.ctx.Err() != nil:
		return nil
	case errors.Is(err, io.EOF):
		l.sum.Ended = true
		l.log.Info("the source ended", "source", l.shown)
		return nil
	}
	return fmt.Errorf("source %s: %w", l.shown, err)
}

// failed rides out a frame the bus could not take, when it is transient:
// a segment truncated from outside fails a frame and the next one goes to
// a new generation; a bus directory too full for that generation fails
// frames until there is room again.
func (l *publishLoop) failed(err error, filled bool) error {
	if !errors.Is(err, framebus.ErrCorrupt) && !errors.Is(err, framebus.ErrNoSpace) {
		return fmt.Errorf("bus %s: %v", l.p.Name(), report.Cause(err))
	}
	l.fails++
	l.sum.Failed++
	if logx.Every(l.fails, 100) {
		l.log.Warn("frame not published", "error", report.Cause(err), "frames_failed", l.fails)
	}
	l.p.AddSourceDrops(1)
	if !filled {
		// No slot to fill (no room for a new generation yet): wait a
		// little instead of spinning; the source's frames of the meantime
		// are lost either way.
		t := time.NewTimer(failPause)
		defer t.Stop()
		select {
		case <-l.ctx.Done():
		case <-t.C:
		}
	}
	return nil
}

// logProgress logs the publish rate, and the heartbeat's error when it
// changes, every every until done closes. A source that makes its session
// again (whep:) adds how many times it did.
func logProgress(log *slog.Logger, p *framebus.Producer, src Source, every time.Duration, done <-chan struct{}) {
	rc, _ := src.(interface{ Reconnects() uint64 })
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastT := p.Stats(), time.Now()
	var said logx.Repeats
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			st := p.Stats()
			fps := 0.0
			if st.Generation == last.Generation && st.FramesPublished >= last.FramesPublished {
				fps = float64(st.FramesPublished-last.FramesPublished) / now.Sub(lastT).Seconds()
			}
			args := []any{"fps", fmt.Sprintf("%.1f", fps), "frames", st.FramesPublished, "last_seq", st.LastSeq,
				"consumers", st.ActiveConsumers, "generation", st.Generation}
			if rc != nil {
				args = append(args, "source_reconnects", rc.Reconnects())
			}
			log.Info("progress", args...)
			if err := p.Err(); err != nil && said.Allow(err.Error(), 0) {
				log.Warn("heartbeat", "error", err)
			}
			last, lastT = st, now
		}
	}
}

// logEvents logs what the producer did on its own until done closes: a bus
// damaged from outside (truncated, removed, its header rewritten) and the
// new generation that replaced it, or why none could be made yet.
func logEvents(log *slog.Logger, p *framebus.Producer, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case e := <-p.Events():
			if e.Err != nil {
				log.Error("the bus was damaged from outside and cannot be replaced yet; retrying every heartbeat",
					"bus", p.Name(), "generation", e.Old, "damage", e.Reason.Error(), "error", report.Cause(e.Err).Error())
				continue
			}
			log.Warn("the bus was damaged from outside: published a new generation", "bus", p.Name(), "old_generation", e.Old,
				"generation", e.Generation, "damage", e.Reason.Error(), "slot_lent", e.SlotLent)
		}
	}
}
