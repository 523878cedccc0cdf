package framebus

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// The wait of PROTOCOL.md section 5: a consumer with nothing new sleeps on
// a futex word until the producer's step 6 wakes it, at most a heartbeat
// interval at a time; each timeout is a liveness check (liveness.go). With
// ConsumerOptions.Spin it sleeps only until just before the next frame is
// due and spins for it from there; without, it sleeps until a little
// earlier and waits the rest holding its thread (ConsumerOptions.Hold). The
// learning is in spin.go.

var errTimedOut = errors.New("wait timed out")

// sleepWord is what a consumer sleeps on: the shared wake word of
// amendment 7 when the bus has it, else its entry's semaphore; the value
// the word must still have for the sleep to begin; and where the consumer
// counts itself as sleeping.
type sleepWord struct {
	word, waiters *atomic.Uint32
	val           uint32
	shared        bool
}

// wait sleeps until a wake, checking liveness and generation on every
// timeout. It returns woke when a wake (or a spin's catch) says a frame is
// there, whose heartbeat the caller stores after the read. A nil error
// without woke means: look again (a timeout found a frame pending, or the
// consumer followed a new generation).
func (c *Consumer) wait(ctx context.Context) (woke bool, err error) {
	if c.lastCheck == 0 {
		c.lastCheck = Now()
	}
	// Wakes that bring nothing new (a forged sequence number makes every
	// frame look old) must not put the heartbeat's look off for ever.
	if now := Now(); now-c.lastCheck >= int64(c.seg.hb) {
		if again, err := c.onTimeout(now); err != nil || again {
			return false, err
		}
	}
	for {
		w, pending := c.word()
		if pending {
			return true, nil
		}
		timeout, err := c.timeout(ctx)
		if err != nil {
			return false, err
		}
		early, held := int64(0), false
		if c.opts.Spin > 0 {
			caught, spun, start := c.trySpin(ctx, timeout)
			if caught {
				return true, nil
			}
			if spun {
				continue // missed: sleep for it as usual
			}
			if start != 0 {
				timeout, early = time.Duration(max(start-Now(), 0)), start
			}
		} else if c.opts.Hold >= 0 {
			var start int64
			held, timeout, start = c.tryHold(timeout)
			if start != 0 {
				early = start
			}
		}
		woken, timedOut := c.sleep(w, timeout, held)
		if err := ctxDone(ctx); err != nil {
			return false, err
		}
		if woken {
			if held {
				c.spin.n.holdHits++
			}
			return true, nil
		}
		now := Now()
		if timedOut && held {
			c.spin.heldMissed = c.lastSeq + 1
			c.spin.n.holdMisses++
			if now-c.lastCheck < int64(c.seg.hb) {
				continue // the frame is late: sleep for it as usual
			}
		}
		if timedOut && early != 0 {
			c.spin.overslept(now - early)
			if now-c.lastCheck < int64(c.seg.hb) {
				continue // the spin window opens: not a heartbeat timeout
			}
		}
		if timedOut || now-c.lastCheck >= int64(c.seg.hb) {
			if again, err := c.onTimeout(now); err != nil || again {
				return false, err
			}
		}
	}
}

// word picks the word to sleep on and the value it must keep (read before
// the pending check, as amendment 7 says). On the entry's semaphore a
// pending wake is taken at once (section 5: swap(sem, 0) > 0).
func (c *Consumer) word() (w sleepWord, pending bool) {
	s := c.seg
	if s.wakeSeq != nil {
		return sleepWord{word: s.wakeSeq, waiters: s.wakeWaiters, val: s.wakeSeq.Load(), shared: true}, false
	}
	if s.e.sem.Swap(0) > 0 {
		return sleepWord{}, true
	}
	return sleepWord{word: s.e.sem, waiters: s.e.waiters}, false
}

// timeout is how long the next sleep may last: a heartbeat interval, or
// less to the context's deadline; a context that is done already is its
// error.
func (c *Consumer) timeout(ctx context.Context) (time.Duration, error) {
	timeout := c.seg.hb
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, ctxErr(ctx)
		}
		timeout = min(timeout, left)
	}
	return timeout, ctxDone(ctx)
}

// ctxDone is ctx's error if it is done, without blocking.
func ctxDone(ctx context.Context) error {
	if done := ctx.Done(); done != nil {
		select {
		case <-done:
			return ctxErr(ctx)
		default:
		}
	}
	return nil
}

// trySpin spins now when the spin window is open (caught: a frame came;
// spun: the window closed without one), or says when it opens (start) if
// that is sooner than timeout.
func (c *Consumer) trySpin(ctx context.Context, timeout time.Duration) (caught, spun bool, start int64) {
	open, end, ok := c.spin.window(c.lastSeq, spinLead, spinMinWindow, c.opts.Spin, c.spin.missed)
	if !ok {
		return false, false, 0
	}
	now := Now()
	if now >= open {
		return c.spinFor(ctx, end), true, 0
	}
	if open-now < int64(timeout) {
		return false, false, open
	}
	return false, false, 0
}

// tryHold says whether the held wait's window is open now (held, and
// timeout is what is left of it), or when it opens (start, and timeout
// ends there) if that is sooner than timeout.
func (c *Consumer) tryHold(timeout time.Duration) (held bool, d time.Duration, start int64) {
	limit := c.opts.Hold
	if limit == 0 {
		limit = DefaultHold
	}
	// At most a quarter of the period, opened at most an eighth early: a
	// fast stream must leave the processor to the rest of the program; and
	// none for periods under holdMinPeriod.
	period := time.Duration(c.spin.period)
	if period < holdMinPeriod {
		return false, timeout, 0
	}
	limit = min(limit, period/4)
	open, end, ok := c.spin.window(c.lastSeq, min(holdLead, period/8), min(holdTail, period/8), limit, c.spin.heldMissed)
	if !ok {
		return false, timeout, 0
	}
	now := Now()
	switch {
	case now >= end:
		return false, timeout, 0
	case now >= open:
		return true, min(time.Duration(end-now), timeout), 0
	case open-now < int64(timeout):
		return false, time.Duration(open - now), open
	}
	return false, timeout, 0
}

// sleep is the FUTEX_WAIT of the handshake. On the shared word: waiters
// += 1, one more look at the active slot, the sleep, waiters -= 1; on the
// entry's semaphore: waiters = 1, the sleep, waiters = 0 (the word is the
// entry's alone: amendment 11, wake words heal, so a forged value lasts one
// sleep at most).
// woken: the word moved or a frame is pending (the shared word's only; on
// the semaphore the next word() takes it); timedOut: the time ran out.
// held: the wait of tryHold, which keeps the thread (sleepHeld).
func (c *Consumer) sleep(w sleepWord, timeout time.Duration, held bool) (woken, timedOut bool) {
	if w.shared {
		w.waiters.Add(1)
		if c.pending() {
			w.waiters.Add(^uint32(0))
			return true, false
		}
	} else {
		w.waiters.Store(1)
	}
	c.sleepOn.Store(futexAddr(w.word))
	var err error
	if held {
		err = sleepHeld(w.word, w.val, timeout)
	} else {
		err = sleepWhile(w.word, w.val, timeout)
	}
	c.sleepOn.Store(0)
	if !w.shared {
		w.waiters.Store(0)
		return false, err == errTimedOut
	}
	w.waiters.Add(^uint32(0))
	if w.word.Load() != w.val {
		if err == errTimedOut {
			// The producer committed while we slept, and did not wake
			// us: it read wake_waiters as 0, which a forger (or a word
			// forged to 2^32 - 1 that our += 1 wrapped) made it. Count
			// ourselves once more, for good (amendment 11): from the
			// next sleep on we are seen. A word left one too high (the
			// wake merely came after the timeout) costs a FUTEX_WAKE
			// with nobody to wake.
			w.waiters.Add(1)
		}
		return true, false
	}
	return false, err == errTimedOut
}

// onTimeout is what a consumer does every heartbeat interval while it waits:
// it refreshes its entry's heartbeat, and looks at the producer (check)
// unless a committed frame is waiting to be read first (say, the end of
// stream of a producer that closed while we were stopped: it comes before
// any verdict). again: read now.
func (c *Consumer) onTimeout(now int64) (again bool, err error) {
	c.lastCheck = now
	c.seg.e.heartbeat.Store(uint64(now))
	if c.pending() {
		return true, nil
	}
	return c.check()
}

// pending reports whether the active slot holds a committed frame newer than
// the last one delivered.
func (c *Consumer) pending() bool {
	s := c.seg
	a := s.active.Load()
	if a >= s.h.SlotCount {
		return false
	}
	sl := &s.slots[a]
	seq := sl.seq.Load()
	// Not a frame newer than the header says, nor one refused already
	// (amendment 9): a forged word must not keep the consumer awake.
	return seq > c.lastSeq && seq <= s.lastSeq.Load() && !c.refusedHere(a, sl.lock.Load())
}

// spinFor watches for a new frame until one is there (true) or end passes
// (false, and no more spinning for this frame). With the shared wake word it
// watches that word, which the producer writes once per commit right after
// the flip, and looks at the slot only when it changes: polling the header
// and slot lines themselves would pull them back from the producer between
// each of its stores to them, and slow the commit it waits for.
func (c *Consumer) spinFor(ctx context.Context, end int64) bool {
	done := ctx.Done()
	w := c.seg.wakeSeq
	var seen uint32
	if w != nil {
		seen = w.Load() // before the first look at the slot
	}
	for i := 0; ; i++ {
		if w == nil || i == 0 || w.Load() != seen {
			if w != nil {
				seen = w.Load()
			}
			if c.pending() {
				c.spin.n.hits++
				return true
			}
		}
		if i&255 == 255 {
			if Now() > end {
				c.spin.missed = c.lastSeq + 1
				c.spin.n.misses++
				return false
			}
			if done != nil {
				select {
				case <-done:
					return false
				default:
				}
			}
		}
	}
}

// bind arranges for a cancellation of ctx to wake the futex sleeper. The
// registration is kept while the same context is passed again, so a loop
// over Next with one context allocates nothing per frame.
func (c *Consumer) bind(ctx context.Context) {
	if ctx == c.boundCtx {
		return
	}
	if c.stopCtx != nil {
		c.stopCtx()
		c.stopCtx = nil
	}
	c.boundCtx = ctx
	if ctx.Done() == nil {
		return
	}
	c.stopCtx = context.AfterFunc(ctx, func() { futexWakeAddr(c.sleepOn.Load(), 1<<30) })
}

type deadlineError struct{}

func (deadlineError) Error() string { return "deadline exceeded" }
func (deadlineError) Timeout() bool { return true }
func (deadlineError) Unwrap() []error {
	return []error{os.ErrDeadlineExceeded, context.DeadlineExceeded}
}

func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return deadlineError{}
	}
	return err
}
