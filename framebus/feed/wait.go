package feed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/framebus/framebus/framebus"
)

// pollWait is how often Next reports a wait that goes on.
const pollWait = 250 * time.Millisecond

// transientPause is how long Next lets a transient bus error rest before it
// tries again, so that a persistent one costs no CPU.
const transientPause = 20 * time.Millisecond

// noteRefusals reports the reads the consumer refused since the last call
// (forged or torn words: PROTOCOL.md amendment 9; it goes on by itself),
// at most once a second while they go on.
func (f *Feed) noteRefusals() {
	if f.c == nil {
		return
	}
	refused, resyncs, last := f.c.Refusals()
	if refused == f.refused && resyncs == f.resyncs {
		return
	}
	f.st.Refused += refused - f.refused
	f.st.Resyncs += resyncs - f.resyncs
	f.refused, f.resyncs = refused, resyncs
	if f.refusals.Allow("refused", time.Second) {
		f.o.Log.Warn(fmt.Sprintf("bus %s: refused a read of words no producer writes (%d refused, %d re-synchronisations so far): %v", f.name, f.st.Refused, f.st.Resyncs, last))
	}
}

// noteTransient counts a transient error and reports it once per kind (and
// again every 10 s while it goes on).
func (f *Feed) noteTransient(err error) {
	f.st.Transient++
	if f.said.Allow(err.Error(), 10*time.Second) {
		f.o.Log.Warn(fmt.Sprintf("bus %s: %v (going on)", f.name, err))
	}
}

// rideOut reports a transient error, lets it rest a moment (a checksum
// mismatch needs no rest: its frame is consumed) and says the feed is idle,
// or waiting, so that the caller calls Next again.
func (f *Feed) rideOut(ctx context.Context, err error) error {
	f.noteTransient(err)
	if !errors.Is(err, framebus.ErrChecksum) {
		if err := pause(ctx); err != nil {
			return err
		}
	}
	if f.wait != nil {
		return f.wait
	}
	return ErrIdle
}

// pause waits transientPause, or until ctx ends (its error).
func pause(ctx context.Context) error {
	t := time.NewTimer(transientPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// setWait starts (or goes on with) a wait for a producer, and says so once
// per reason.
func (f *Feed) setWait(reason string) {
	if f.wait == nil {
		f.wait = &WaitingError{Name: f.name, Since: time.Now(), Reason: reason}
	} else {
		f.wait.Reason = reason
	}
	if f.said.Allow(reason, 0) {
		f.o.Log.Warn(fmt.Sprintf("bus %s: waiting for producer (%s)", f.name, reason))
	}
}

// join opens the bus, waiting for its producer: bounded by Timeout before the
// first join (and without Persist), for ever after with Persist. It returns a
// *WaitingError every pollWait (or Poll) while it waits.
func (f *Feed) join(ctx context.Context) error {
	if f.started.IsZero() {
		f.started = time.Now()
	}
	bounded := !f.joined || !f.o.Persist
	var deadline time.Time
	if bounded {
		since := f.started
		if f.wait != nil {
			since = f.wait.Since
		}
		deadline = since.Add(f.o.Timeout)
	}
	step := pollWait
	if f.o.Poll > 0 && f.o.Poll < step {
		step = f.o.Poll
	}
	wait := step
	if bounded {
		wait = min(step, max(0, time.Until(deadline)))
	}
	c, err := framebus.OpenContext(ctx, f.name, framebus.ConsumerOptions{Dir: f.o.Dir, Wait: wait, Newest: f.o.Persist, Spin: f.o.Spin, Hold: f.o.Hold})
	if err == nil {
		f.c = c
		f.joined = true
		f.st.Joins++
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case errors.Is(err, framebus.ErrNotFound), errors.Is(err, framebus.ErrProducerGone):
	case Classify(err) == Transient && (f.joined || f.ownerAlive()):
		// A replaced, truncated or corrupt file behind the name of a bus
		// that has a live producer: it publishes a new generation.
		f.noteTransient(err)
		if err := pause(ctx); err != nil {
			return err
		}
	default:
		return err
	}
	if bounded && !time.Now().Before(deadline) {
		return &NoProducerError{Name: f.name, Dir: f.o.Dir, Waited: f.o.Timeout, Gone: f.joined}
	}
	if f.wait == nil {
		reason := "not started"
		if f.joined {
			reason = "gone"
		}
		f.setWait(reason)
		if !f.joined {
			f.wait.Since = f.started
		}
	}
	return f.wait
}

// ownerAlive says whether the bus has a live producer (its lock is held),
// whatever the state of its segment.
func (f *Feed) ownerAlive() bool {
	s, _ := framebus.Inspect(f.name, f.o.Dir)
	return s != nil && s.OwnerAlive
}
