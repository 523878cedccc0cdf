//go:build linux || windows

package framebus

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestWakeMixed runs amendment 7's shared wake word beside section 5's
// per-entry semaphore on one bus: a consumer that ignores the flag (as a
// reader that does not know it) and one that uses it, in lockstep with the
// producer so that every frame finds both asleep. A lost wake would leave a
// consumer asleep for the whole 60 s heartbeat and fail the test's deadline;
// nothing here is timed otherwise.
func TestWakeMixed(t *testing.T) {
	for _, perEntryProducer := range []bool{false, true} {
		name := "shared"
		if perEntryProducer {
			name = "per-entry-producer"
		}
		t.Run(name, func(t *testing.T) {
			dir := portableDir(t)
			f, _ := Format{Width: 64, Height: 64, PixelFormat: FormatGrey}.Complete()
			p, err := Create("wake", ProducerOptions{Format: f, Dir: dir, Heartbeat: time.Minute, PerEntryWake: perEntryProducer})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			perEntryWakeOnly = true
			old, err := Open("wake", ConsumerOptions{Dir: dir})
			perEntryWakeOnly = false
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			cur, err := Open("wake", ConsumerOptions{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer cur.Close()
			if old.Stats().SharedWake || cur.Stats().SharedWake != (!perEntryProducer && sharedWakeOS) {
				t.Fatalf("shared wake: old %v, new %v, producer per-entry %v", old.Stats().SharedWake, cur.Stats().SharedWake, perEntryProducer)
			}

			const frames = 300
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type result struct {
				got uint64
				err error
			}
			acks := make(chan int, 2)
			done := make(chan result, 2)
			for i, c := range []*Consumer{old, cur} {
				go func() {
					var got uint64
					for {
						fr, err := c.Next(ctx)
						var eos *EndOfStreamError
						if errors.As(err, &eos) {
							done <- result{got, nil}
							return
						}
						if err != nil {
							done <- result{got, err}
							return
						}
						if fr.Dropped != 0 || fr.Seq != got+1 {
							done <- result{got, errors.New("a frame was skipped in lockstep")}
							return
						}
						got = fr.Seq
						acks <- i
					}
				}()
			}
			buf := make([]byte, f.FrameSize)
			for k := 1; k <= frames; k++ {
				if _, err := p.Publish(buf, Meta{}); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					select {
					case <-acks:
					case r := <-done:
						t.Fatalf("frame %d: consumer ended early: %d frames, %v", k, r.got, r.err)
					case <-ctx.Done():
						t.Fatalf("frame %d: a consumer was never woken (lost wake)", k)
					}
				}
				// Both are on their way back to sleep; give them the chance
				// to get there so that the next frame has to wake them.
				waitAsleep(ctx, p, 2)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				r := <-done
				if r.err != nil || r.got != frames {
					t.Errorf("consumer: %d of %d frames, %v", r.got, frames, r.err)
				}
			}
		})
	}
}

// waitAsleep waits until n consumers are counted as sleeping on the bus
// (entry waiters plus the shared wake_waiters), or ctx ends.
func waitAsleep(ctx context.Context, p *Producer, n uint32) {
	for ctx.Err() == nil && sleepers(p) < n {
		time.Sleep(20 * time.Microsecond)
	}
}

// TestSpinConsumer runs the spinning consumer against a paced producer: it
// must deliver every frame, learn the period, and catch frames while
// spinning; with a spin window of 0 it never spins, and at 500 fps it does
// not hold its thread either (the held wait is for streams of 200 fps and
// less: TestHeldWait).
func TestSpinConsumer(t *testing.T) {
	dir := portableDir(t)
	f, _ := Format{Width: 64, Height: 64, PixelFormat: FormatGrey}.Complete()
	p, err := Create("spin", ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	spinner, err := Open("spin", ConsumerOptions{Dir: dir, Spin: 4 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer spinner.Close()
	plain, err := Open("spin", ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	parked, err := Open("spin", ConsumerOptions{Dir: dir, Hold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer parked.Close()

	const frames, period = 200, 2 * time.Millisecond
	publishPaced(t, p, f, frames, period, spinner, plain, parked)
	st, ps, ks := spinner.Stats(), plain.Stats(), parked.Stats()
	t.Logf("spinner: %+v; learned period %v, jitter %v, timer lateness %v", st,
		time.Duration(spinner.spin.period), time.Duration(spinner.spin.jitter), time.Duration(spinner.spin.late))
	if st.Delivered+st.Dropped != frames+1 || ps.Delivered+ps.Dropped != frames+1 {
		t.Errorf("accounting: spinner %d+%d, plain %d+%d, want %d", st.Delivered, st.Dropped, ps.Delivered, ps.Dropped, frames+1)
	}
	if st.SpinHits == 0 {
		t.Errorf("the spinner never caught a frame while spinning (%d misses)", st.SpinMisses)
	}
	if ps.SpinHits != 0 || ps.SpinMisses != 0 {
		t.Errorf("the plain consumer spun: %+v", ps)
	}
	if ks.Delivered+ks.Dropped != frames+1 {
		t.Errorf("accounting: parked %d+%d, want %d", ks.Delivered, ks.Dropped, frames+1)
	}
	// No held wait at a 2 ms period (holdMinPeriod), with Hold < 0 or
	// with Spin.
	if n := ps.HoldHits + ps.HoldMisses + ks.HoldHits + ks.HoldMisses + st.HoldHits + st.HoldMisses; n != 0 {
		t.Errorf("%d held waits at 500 fps: plain %+v, parked %+v, spinner %+v", n, ps, ks, st)
	}
	// The period the loop is locked on (it may be relearning when the
	// stream ends, after a burst of late frames).
	if p := time.Duration(spinner.spin.period); spinner.spin.samples >= spinLearn && (p < period/2 || p > 4*period) {
		t.Errorf("learned period %v for frames every %v", p, period)
	}
}

// A done context ends Next even when a frame is ready.
func TestNextDoneContextWins(t *testing.T) {
	dir := portableDir(t)
	f, _ := Format{Width: 16, Height: 16, PixelFormat: FormatGrey}.Complete()
	p, err := Create("ctx", ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := Open("ctx", ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := p.Publish(make([]byte, f.FrameSize), Meta{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if fr, err := c.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context = %v, %v; want context.Canceled", fr, err)
	}
	past, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := c.Next(past); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("Next with a past deadline = %v; want ErrDeadlineExceeded", err)
	}
	// The frame is still there for a live context.
	if fr, err := c.Next(context.Background()); err != nil || fr.Seq != 1 {
		t.Fatalf("Next = %v, %v; want frame 1", fr, err)
	}
}

// ConsumerOptions.Newest delivers the frame committed before the join.
func TestNewestOnJoin(t *testing.T) {
	dir := portableDir(t)
	f, _ := Format{Width: 16, Height: 16, PixelFormat: FormatGrey}.Complete()
	p, err := Create("newest", ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 3 {
		if _, err := p.Publish(make([]byte, f.FrameSize), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	plain, err := Open("newest", ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	newest, err := Open("newest", ConsumerOptions{Dir: dir, Newest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer newest.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if fr, err := newest.Next(ctx); err != nil || fr.Seq != 3 || fr.Dropped != 0 {
		t.Fatalf("Newest: Next = %+v, %v; want frame 3 at once", fr, err)
	}
	if _, err := plain.Next(ctx); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("plain: Next = %v; want nothing before the next frame", err)
	}
	if st := newest.Stats(); st.Delivered != 1 || st.Dropped != 0 || st.LastSeq != 3 {
		t.Errorf("Newest stats %+v", st)
	}
}

// publishPaced publishes frames at period (time.Sleep pacing) while every
// consumer of cs reads them until the end of stream, then closes p: the
// consumers' errors fail the test.
func publishPaced(t *testing.T, p *Producer, f Format, frames int, period time.Duration, cs ...*Consumer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() {
			for {
				_, err := c.Next(ctx)
				if errors.As(err, new(*EndOfStreamError)) {
					errs <- nil
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	buf := make([]byte, f.FrameSize)
	next := time.Now()
	for range frames {
		next = next.Add(period)
		time.Sleep(time.Until(next))
		if _, err := p.Publish(buf, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for range cs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestHeldWait runs a plain consumer and one with Hold < 0 against a
// producer paced at 50 fps: both deliver every frame; the plain one holds
// its thread for the last stretch before frames once it has learnt the
// pace, and frames come during those held waits; the other never holds.
func TestHeldWait(t *testing.T) {
	dir := portableDir(t)
	f, _ := Format{Width: 64, Height: 64, PixelFormat: FormatGrey}.Complete()
	p, err := Create("held", ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var cs []*Consumer
	for _, o := range []ConsumerOptions{{Dir: dir}, {Dir: dir, Hold: -1}} {
		c, err := Open("held", o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	const frames, period = 50, 20 * time.Millisecond
	publishPaced(t, p, f, frames, period, cs...)
	held, parked := cs[0].Stats(), cs[1].Stats()
	t.Logf("held: %+v; parked: %+v", held, parked)
	for _, st := range []ConsumerStats{held, parked} {
		if st.Delivered+st.Dropped != frames+1 {
			t.Errorf("accounting: %d+%d, want %d", st.Delivered, st.Dropped, frames+1)
		}
	}
	// After spinLearn frames, every frame is due in a window of a few ms:
	// most come while the consumer holds (all 305 of 305 at 60 fps in
	// framebus bench); a time.Sleep-paced producer on a busy machine is
	// less punctual, hence the margin.
	if runtime.GOOS == "linux" && held.HoldHits < (frames-spinLearn)/4 {
		t.Errorf("%d of %d frames came in a held wait (%d held waits missed)", held.HoldHits, frames, held.HoldMisses)
	}
	if parked.HoldHits+parked.HoldMisses != 0 {
		t.Errorf("held waits with Hold < 0: %+v", parked)
	}
}

// TestHoldWindow checks where tryHold puts the held wait: opened holdLead
// before the frame is due (an eighth of the period for fast streams),
// closed holdTail after, and never longer than DefaultHold or a quarter of
// the period, so that a fast stream leaves the processor to the program;
// and none at all for periods under holdMinPeriod.
func TestHoldWindow(t *testing.T) {
	for _, period := range []time.Duration{2 * time.Millisecond, holdMinPeriod - time.Microsecond} {
		c := &Consumer{}
		due := Now() + int64(period)/2
		for i := uint64(1); i <= 40; i++ {
			c.spin.learn(i, due-int64(41-i)*int64(period))
		}
		c.lastSeq = 40
		for _, after := range []int64{0, int64(period) / 2} { // before the frame, then at it
			time.Sleep(time.Duration(after))
			if held, d, start := c.tryHold(time.Second); held || start != 0 || d != time.Second {
				t.Errorf("%v: held %v, %v, start %d: want no held wait", period, held, d, start)
			}
		}
	}
	for _, period := range []time.Duration{time.Second / 60, 6 * time.Millisecond} {
		lead, limit := min(holdLead, period/8), min(DefaultHold, period/4)
		// learnt returns a consumer that has seen 40 frames at an exact
		// period, the next one due at due.
		learnt := func(due int64) *Consumer {
			c := &Consumer{}
			for i := uint64(1); i <= 40; i++ {
				c.spin.learn(i, due-int64(41-i)*int64(period))
			}
			c.lastSeq = 40
			return c
		}
		// Long before the frame: sleep as usual until the window opens.
		due := Now() + int64(period)/2 + int64(lead)
		held, d, start := learnt(due).tryHold(time.Second)
		if held || start == 0 {
			t.Fatalf("%v: half a period before the window: held %v, start %d", period, held, start)
		}
		if early := time.Duration(due - start); early < lead-20*time.Microsecond || early > lead+20*time.Microsecond {
			t.Errorf("%v: the window opens %v before the frame, want %v", period, early, lead)
		}
		if d > time.Duration(start-Now())+time.Millisecond || d <= 0 {
			t.Errorf("%v: sleep %v until the window, which opens in %v", period, d, time.Duration(start-Now()))
		}
		// Inside it: hold, at most until the tail or the limit.
		for try := 0; ; try++ {
			now := Now()
			due := now + int64(lead)/2
			held, d, _ := learnt(due).tryHold(time.Second)
			if !held && try < 5 {
				continue // descheduled past the window: again
			}
			if !held {
				t.Fatalf("%v: no held wait inside the window", period)
			}
			if d > limit || d > lead/2+min(holdTail, period/8)+20*time.Microsecond {
				t.Errorf("%v: held wait of %v with the frame due in %v (lead %v, limit %v)", period, d, time.Duration(due-now), lead, limit)
			}
			break
		}
	}
}
