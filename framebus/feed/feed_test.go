package feed

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/testutil"
)

func producer(t *testing.T, dir, name string, w, h uint32) *framebus.Producer {
	t.Helper()
	p, err := framebus.Create(name, framebus.ProducerOptions{Dir: dir, Format: framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func publish(t *testing.T, p *framebus.Producer, fill byte) uint64 {
	t.Helper()
	buf, err := p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	n := int(p.Format().FrameSize)
	for i := range buf[:n] {
		buf[i] = fill
	}
	seq, err := p.Commit(n, framebus.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func nextFrame(t *testing.T, f *Feed) *framebus.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		fr, err := f.Next(ctx)
		if errors.Is(err, ErrWaiting) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return fr
	}
}

// join makes the feed join the bus (it then waits for the next frame).
func join(t *testing.T, f *Feed) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for f.Consumer() == nil {
		if _, err := f.Next(ctx); err == nil || (!errors.Is(err, ErrWaiting) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrIdle)) {
			t.Fatalf("joining: %v", err)
		}
	}
}

// joinedFeed is a feed joined to a new w x h bus "cam" in its own directory.
func joinedFeed(t *testing.T, w, h uint32) (*framebus.Producer, *Feed) {
	t.Helper()
	dir := t.TempDir()
	p := producer(t, dir, "cam", w, h)
	f := New("cam", Options{Dir: dir, Timeout: 5 * time.Second})
	t.Cleanup(func() { f.Close() })
	join(t, f)
	return p, f
}

func TestFeedNoProducer(t *testing.T) {
	f := New("nobody", Options{Dir: t.TempDir(), Timeout: 300 * time.Millisecond})
	start := time.Now()
	var err error
	for {
		if _, err = f.Next(context.Background()); !errors.Is(err, ErrWaiting) {
			break
		}
	}
	var npe *NoProducerError
	if !errors.As(err, &npe) || npe.Gone || !errors.Is(err, ErrNoProducer) {
		t.Fatalf("after %v: %v, want a NoProducerError", time.Since(start), err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, before --timeout", d)
	}
}

// Without Persist the end of the stream ends the feed; with it, the feed
// waits and follows the next producer, whose numbers start again.
func TestFeedCloseAndRejoin(t *testing.T) {
	for _, persist := range []bool{false, true} {
		dir := t.TempDir()
		p := producer(t, dir, "cam", 64, 16)
		f := New("cam", Options{Dir: dir, Timeout: 5 * time.Second, Persist: persist})
		defer f.Close()
		join(t, f)
		publish(t, p, 1)
		if fr := nextFrame(t, f); fr.Data[0] != 1 {
			t.Fatalf("frame %v", fr.Data[:4])
		}
		p.Close()
		_, err := f.Next(context.Background())
		if !persist {
			if !errors.Is(err, framebus.ErrEndOfStream) {
				t.Fatalf("without Persist: %v, want ErrEndOfStream", err)
			}
			continue
		}
		var we *WaitingError
		if !errors.As(err, &we) || we.Reason != "closed the stream" {
			t.Fatalf("with Persist: %v, want a WaitingError", err)
		}
		p2 := producer(t, dir, "cam", 32, 8)
		join(t, f)
		publish(t, p2, 2)
		fr := nextFrame(t, f)
		if fr.Data[0] != 2 || fr.Format.Width != 32 || f.Stats().Joins != 2 {
			t.Fatalf("after the new producer: %dx%d %v, joins %d", fr.Format.Width, fr.Format.Height, fr.Data[:4], f.Stats().Joins)
		}
	}
}

// A frame overwritten while in use is discarded, counted in the next
// frame's drops, and the feed reads copies for a while.
func TestFeedKeepAndCopyMode(t *testing.T) {
	p, f := joinedFeed(t, 64, 16)
	publish(t, p, 1)
	fr := nextFrame(t, f)
	if !f.Keep(fr) {
		t.Fatal("an untouched frame is not intact")
	}
	publish(t, p, 2)
	fr = nextFrame(t, f)
	publish(t, p, 3) // the other slot
	publish(t, p, 4) // fr's slot again: overwritten
	if f.Keep(fr) {
		t.Fatal("an overwritten frame passed Keep")
	}
	fr = nextFrame(t, f)
	if fr.Data[0] != 4 || fr.Dropped != 2 || !f.Keep(fr) || f.Stats().Copied != 1 || f.Stats().Discarded != 1 {
		t.Fatalf("next: data %d dropped %d, stats %+v; want frame 4, 2 dropped (3 skipped, 2 discarded), a copy", fr.Data[0], fr.Dropped, f.Stats())
	}
}

// A discarded frame's own gap is carried too: the next frame's Dropped is
// exactly the gap in sequence numbers since the last frame kept.
func TestFeedDiscardCarriesItsGap(t *testing.T) {
	p, f := joinedFeed(t, 64, 16)
	publish(t, p, 1)
	kept := nextFrame(t, f).Seq
	for v := byte(2); v <= 4; v++ {
		publish(t, p, v)
	}
	fr := nextFrame(t, f) // frame 4, after 2 and 3
	if fr.Dropped != 2 {
		t.Fatalf("frame %d: dropped %d, want 2", fr.Seq, fr.Dropped)
	}
	publish(t, p, 5) // the other slot
	publish(t, p, 6) // frame 4's slot: overwritten
	if f.Keep(fr) {
		t.Fatal("an overwritten frame passed Keep")
	}
	fr = nextFrame(t, f)
	if want := fr.Seq - kept - 1; fr.Dropped != want {
		t.Fatalf("frame %d after frame %d kept: dropped %d, want %d", fr.Seq, kept, fr.Dropped, want)
	}
}

// Reading frames allocates nothing, zero-copy and in copy mode.
func TestFeedAllocatesNothing(t *testing.T) {
	p, f := joinedFeed(t, 640, 480)
	publish(t, p, 1)
	nextFrame(t, f)
	ctx := context.Background()
	for _, copying := range []bool{false, true} {
		allocs := testing.AllocsPerRun(100, func() {
			if copying {
				f.copyLeft = 2
			}
			if _, err := p.Publish(nil, framebus.Meta{}); err != nil {
				t.Fatal(err)
			}
			fr, err := f.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f.Keep(fr)
		})
		if allocs != 0 {
			t.Errorf("copy mode %v: %.1f allocations per frame, want 0", copying, allocs)
		}
	}
}

// With Copy every frame is a copy in the feed's own buffer, never a view of
// the bus: it stays as it was however the producer goes on.
func TestFeedCopy(t *testing.T) {
	dir := t.TempDir()
	p := producer(t, dir, "cam", 64, 16)
	f := New("cam", Options{Dir: dir, Timeout: 5 * time.Second, Copy: true})
	defer f.Close()
	join(t, f)
	publish(t, p, 7)
	fr := nextFrame(t, f)
	for v := byte(8); v < 12; v++ {
		publish(t, p, v) // both slots overwritten twice
	}
	if fr.Data[0] != 7 || fr.Data[len(fr.Data)-1] != 7 || !f.Keep(fr) {
		t.Fatalf("copied frame changed under the producer: %d..%d", fr.Data[0], fr.Data[len(fr.Data)-1])
	}
	if st := f.Stats(); st.Copied != 1 || st.Discarded != 0 {
		t.Fatalf("stats %+v, want 1 copied, 0 discarded", st)
	}
}

// Run delivers every frame to fn and ends with the stream, with ErrStop, or
// with the context, each without an error, and says which.
func TestFeedRunEnds(t *testing.T) {
	dir := t.TempDir()
	p := producer(t, dir, "cam", 64, 16)
	f := New("cam", Options{Dir: dir, Timeout: 5 * time.Second})
	defer f.Close()
	if err := f.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	go func() {
		for v := byte(1); v <= 3; v++ {
			publish(t, p, v)
			time.Sleep(20 * time.Millisecond)
		}
		p.Close()
	}()
	end, err := f.Run(context.Background(), func(fr *framebus.Frame) error {
		seen = append(seen, fr.Seq)
		return nil
	})
	if err != nil || !end.EndOfStream || end.Stopped {
		t.Fatalf("Run to the end of stream: %+v, %v", end, err)
	}
	if n := uint64(len(seen)) + f.Stats().Dropped; n != 3 {
		t.Fatalf("frames %v and %d dropped, want 3 in all", seen, f.Stats().Dropped)
	}
	if st := f.ConsumerStats(); st.Delivered != uint64(len(seen))+1 { // + the end-of-stream frame
		t.Fatalf("consumer stats after the end: %+v", st)
	}

	p2 := producer(t, dir, "cam2", 64, 16)
	f2 := New("cam2", Options{Dir: dir, Timeout: 5 * time.Second})
	defer f2.Close()
	join(t, f2)
	publish(t, p2, 1)
	end, err = f2.Run(context.Background(), func(*framebus.Frame) error { return ErrStop })
	if err != nil || !end.Stopped {
		t.Fatalf("Run stopped by fn: %+v, %v", end, err)
	}
	boom := errors.New("boom")
	publish(t, p2, 2)
	if _, err = f2.Run(context.Background(), func(*framebus.Frame) error { return boom }); err != boom {
		t.Fatalf("Run with fn failing: %v, want fn's error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	end, err = f2.Run(ctx, func(*framebus.Frame) error { return nil })
	if err != nil || end.EndOfStream || end.Stopped {
		t.Fatalf("Run to the context's end: %+v, %v", end, err)
	}
}

// Classify is the loop's policy: what passes, what waits, what ends.
func TestClassify(t *testing.T) {
	wrap := func(err error) error { return &framebus.Error{Op: "next", Name: "cam", Err: err} }
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{wrap(&framebus.EndOfStreamError{Seq: 9}), EndOfStream},
		{wrap(framebus.ErrRetired), EndOfStream},
		{wrap(framebus.ErrProducerGone), Waiting},
		{wrap(framebus.ErrStalled), Waiting},
		{wrap(os.ErrDeadlineExceeded), Deadline},
		{context.Canceled, Deadline},
		{wrap(&framebus.LayoutError{Field: "active", Value: 7}), Transient},
		{wrap(&framebus.FaultError{Addr: 0x1000}), Transient},
		{wrap(framebus.ErrChecksum), Transient},
		{wrap(framebus.ErrBadMagic), Transient},
		{wrap(&framebus.VersionError{Got: 2, Want: 1}), Transient},
		{wrap(&framebus.PermissionError{Path: "/dev/shm/framebus.cam"}), Fatal},
		{wrap(framebus.ErrConsumerClosed), Fatal},
		{wrap(framebus.ErrShortBuffer), Fatal},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// A frame that fails its checksum is ridden out: Next says idle (and Logf
// is told once), then the next good frame comes.
func TestFeedRidesOutChecksum(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("crc", framebus.ProducerOptions{Dir: dir, Checksum: true,
		Format: framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var logs testutil.Logs
	f := New("crc", Options{Dir: dir, Timeout: 5 * time.Second, Log: logs.Logger()})
	defer f.Close()
	join(t, f)
	// A frame whose bytes change after the checksum was taken: the
	// sequence lock holds (nobody wrote under it), the CRC does not.
	buf, err := p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	n := int(p.Format().FrameSize)
	if _, err := p.Commit(n, framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	buf[0] ^= 0xff // the slot is still mapped; the frame is committed
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.Next(ctx); !errors.Is(err, ErrIdle) {
		t.Fatalf("a frame failing its checksum: %v, want ErrIdle", err)
	}
	publish(t, p, 3)
	fr := nextFrame(t, f)
	logged := logs.Lines()
	if fr.Data[0] != 3 || f.Stats().Transient != 1 || len(logged) != 2 || !strings.HasPrefix(logged[0], "WARN ") || !strings.Contains(logged[0], "checksum") ||
		!strings.HasPrefix(logged[1], "INFO ") || !strings.Contains(logged[1], "frames again") {
		t.Fatalf("after it: frame %d, stats %+v, logged %q", fr.Data[0], f.Stats(), logged)
	}
}

// HoldFrames: on 3 slots each frame is held until the next Next, so a frame
// the producer laps while it is used stays intact (Keep true, its bytes
// unchanged), without allocating; on 2 slots (cap 0) every hold is refused,
// counted, and the feed works as without HoldFrames.
func TestFeedHoldFrames(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("cam", framebus.ProducerOptions{Dir: dir, Slots: 3, Format: framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := New("cam", Options{Dir: dir, Timeout: 5 * time.Second, HoldFrames: true})
	defer f.Close()
	join(t, f)
	publish(t, p, 1)
	fr := nextFrame(t, f)
	for v := byte(2); v < 10; v++ {
		publish(t, p, v) // the producer laps the bus around the held slot
	}
	if fr.Data[0] != 1 || !f.Keep(fr) {
		t.Fatalf("held frame: data %d, kept %v", fr.Data[0], f.Keep(fr))
	}
	if st := f.Stats(); st.Held != 1 || st.HoldsRefused != 0 || st.Discarded != 0 {
		t.Fatalf("stats %+v", st)
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Publish(nil, framebus.Meta{}); err != nil {
			t.Fatal(err)
		}
		fr, err := f.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.Keep(fr)
	})
	if allocs != 0 || f.Stats().HoldsRefused != 0 {
		t.Errorf("%.1f allocations per held frame, %d refused; want 0, 0", allocs, f.Stats().HoldsRefused)
	}
	f.Close()
	if s, _ := framebus.Inspect("cam", dir); s.Held != 0 {
		t.Errorf("%d slots held after Close", s.Held)
	}

	p2, f2 := joinedFeed(t, 64, 16) // 2 slots
	publish(t, p2, 1)
	fr = nextFrame(t, f2)
	if !f2.Keep(fr) {
		t.Fatal("an untouched frame is not intact")
	}
	f2.o.HoldFrames = true
	publish(t, p2, 2)
	fr = nextFrame(t, f2)
	if st := f2.Stats(); st.HoldsRefused != 1 || st.Held != 0 || !f2.Keep(fr) {
		t.Fatalf("2 slots: stats %+v", st)
	}
}
