package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/recording"
)

func init() {
	Register("replay", func(c Config) (Source, error) {
		s, err := NewReplay(c)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	})
}

// Replay is the replay:FILE source: a lossless recording (framebus record
// --lossless) published again, every frame byte for byte with its user
// metadata, in its recorded format (a format change in the recording makes a
// new generation: Read returns ErrFormatChanged).
//
// By default it keeps the recording's pace: each frame is published when
// its commit time, counted from the first frame's, comes round again, and
// its capture time is set as far before that as it was captured before its
// commit, so a consumer's capture-to-read latency compares with the
// original's. A replay that falls more than a frame behind (a slow machine)
// goes on from now instead of publishing a burst. A Config rate other than
// the default paces it at that rate instead; rate 0 publishes as fast as
// possible. Loop starts it again at its end. A frame's bytes are read into a
// buffer of the source's own before it is due (so that the disk's latency
// does not delay it) and copied into the slot in Go when it is (a read(2)
// straight into a slot whose file was truncated from outside would fail
// with EFAULT, which would look like a broken recording; a copy faults
// where the producer's guard turns it into a new generation). A frame that
// fails its CRC-32 ends the replay with an error.
//
// The bus numbers the frames itself, so the recorded sequence numbers (and
// the gaps of frames the recorder missed) are not reproduced; the recorded
// frames are, in their order.
type Replay struct {
	r    *recording.Reader
	path string
	f    framebus.Format
	loop bool
	log  *slog.Logger
	now  func() int64

	original bool  // keep the recording's pace
	pace     pacer // at a fixed rate (not original)

	fr      recording.Frame
	pending bool   // fr was read (Next) but not yet published
	buf     []byte // its bytes, once read
	read    bool   // buf holds them

	base      int64 // replay time of commit time 0: due = base + CommitNS
	lastDue   int64
	lastGap   int64 // the last interval between two frames' commits
	prevCom   int64
	started   bool
	timer     *time.Timer
	published uint64
	loops     uint64
}

// NewReplay opens the recording cfg.Arg. Errors wrap ErrBadConfig.
func NewReplay(cfg Config) (*Replay, error) {
	bad := func(err error) (*Replay, error) { return nil, &ConfigError{Source: "replay", Err: err} }
	if cfg.Arg == "" {
		return bad(errors.New("no recording named: use replay:FILE (a framebus record --lossless file)"))
	}
	r, err := recording.Open(cfg.Arg)
	if err != nil {
		return bad(err)
	}
	s := &Replay{r: r, path: cfg.Arg, f: r.Format(), loop: cfg.Loop, log: cfg.log(), now: framebus.Now, original: cfg.DefaultFPS}
	if !cfg.DefaultFPS {
		num, den, err := checkFPS(cfg.FPS)
		if err != nil {
			r.Close()
			return bad(err)
		}
		s.f.FPSNum, s.f.FPSDen = num, den
		s.pace = newPacer(num, den, func() int64 { return s.now() })
	}
	return s, nil
}

// Format returns the format of the frames Read gives now.
func (s *Replay) Format() framebus.Format { return s.f }

// UserMeta is the user metadata of the frame the last Read returned.
func (s *Replay) UserMeta() []byte { return s.fr.UserMeta }

// Read publishes the next frame of the recording when it is due.
func (s *Replay) Read(ctx context.Context, dst []byte) (int, int64, error) {
	if s.r == nil {
		return 0, 0, ErrClosed
	}
	if !s.pending {
		if err := s.next(); err != nil {
			return 0, 0, err
		}
	}
	if want := s.fr.Format; s.differs(want) {
		s.setFormat(want)
		return 0, 0, ErrFormatChanged // the frame stays pending
	}
	if len(dst) < s.fr.Size {
		return 0, 0, fmt.Errorf("capture: replay: %w: buffer of %d bytes for a frame of %d", io.ErrShortBuffer, len(dst), s.fr.Size)
	}
	if !s.read {
		if cap(s.buf) < s.fr.Size {
			s.buf = make([]byte, s.f.FrameSize) // at the first frame of each larger format only
		}
		s.buf = s.buf[:s.fr.Size]
		if err := s.r.ReadData(s.buf); err != nil {
			return 0, 0, fmt.Errorf("replay: %w", err)
		}
		s.read = true
	}
	if err := s.wait(ctx); err != nil {
		return 0, 0, err // the frame stays read and pending
	}
	s.pending, s.read = false, false
	copy(dst, s.buf)
	s.published++
	now := s.now()
	// As long before its publication as it was captured before its commit.
	capture := now
	if d := s.fr.CommitNS - s.fr.CaptureNS; d > 0 && d < int64(time.Minute) {
		capture = now - d
	}
	return s.fr.Size, capture, nil
}

// differs says whether the recorded format f differs from what the bus
// publishes (the rate aside, when the Config set one).
func (s *Replay) differs(f framebus.Format) bool {
	if !s.original {
		f.FPSNum, f.FPSDen = s.f.FPSNum, s.f.FPSDen
	}
	return f != s.f
}

func (s *Replay) setFormat(f framebus.Format) {
	if !s.original {
		f.FPSNum, f.FPSDen = s.f.FPSNum, s.f.FPSDen
	}
	s.f = f
}

// next reads the next frame's metadata, starting again at the end with
// Loop.
func (s *Replay) next() error {
	err := s.r.Next(&s.fr)
	if err == nil {
		s.pending = true
		return nil
	}
	if err != io.EOF {
		return fmt.Errorf("replay: %w", err) // cut short or corrupt: the whole frames before it were published
	}
	if _, whole := s.r.End(); !whole && s.loops == 0 {
		s.log.Warn(fmt.Sprintf("replay %s: the recording has no end mark (it was interrupted): its %d whole frames were published", s.path, s.r.Frames()))
	}
	if !s.loop {
		return io.EOF
	}
	if s.r.Frames() == 0 {
		return fmt.Errorf("replay %s: no frame to loop over", s.path)
	}
	if err := s.r.Rewind(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	s.loops++
	// The next pass starts one interval after the last frame.
	s.started = false
	s.base = s.lastDue + max(s.lastGap, 1)
	if err := s.r.Next(&s.fr); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	s.pending = true
	return nil
}

// wait waits until the pending frame is due.
func (s *Replay) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.original {
		return s.pace.wait(ctx)
	}
	now := s.now()
	if !s.started {
		// The first frame (of a pass) is due now, or one interval after the
		// last frame of the previous pass.
		at := now
		if s.loops > 0 && s.base > now {
			at = s.base
		}
		s.base = at - s.fr.CommitNS
		s.prevCom, s.started = s.fr.CommitNS, true
	}
	if gap := s.fr.CommitNS - s.prevCom; gap > 0 {
		s.lastGap = gap
	}
	s.prevCom = s.fr.CommitNS
	due := s.base + s.fr.CommitNS
	if late := now - due; late > max(s.lastGap, int64(time.Millisecond)) {
		s.base += late // more than a frame behind: go on from now, no burst
		due = now
	}
	s.lastDue = due
	if d := due - now; d > 0 {
		if s.timer == nil {
			s.timer = time.NewTimer(time.Duration(d))
		} else {
			s.timer.Reset(time.Duration(d))
		}
		select {
		case <-s.timer.C:
		case <-ctx.Done():
			s.timer.Stop()
			return ctx.Err()
		}
	}
	return nil
}

// Close closes the recording.
func (s *Replay) Close() error {
	if s.r == nil {
		return nil
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.pace.stop()
	err := s.r.Close()
	s.r = nil
	return err
}
