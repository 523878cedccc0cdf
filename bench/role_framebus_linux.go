//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
)

// Every frame carries, in its user metadata, its phase and the producer's
// clock just before the hand-off: byte 0 the phase, bytes 1-8 the time.
const metaLen = 9

// fbProducer creates the bus, waits for its consumers, and publishes the
// pattern's frames: rendered into the back slot (plain, spin) or into
// private memory and Publish'ed (copy).
//
// Longer than 80 lines on purpose: a measured loop, kept whole so that no
// call or closure of a helper sits between its timestamps (as are
// fbProducer, fbConsumer, fbAnalyst and futexWaker, read side by side).
func fbProducer(ctx context.Context, s *childSpec) (*childResult, error) {
	src, err := newSource(s)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	p, err := framebus.Create(s.Bus, framebus.ProducerOptions{Format: src.Format(), Dir: s.Dir, Consumers: max(8, s.Consumers), Checksum: s.Checksum,
		Slots: s.Slots})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var ctl *ctlBlock
	if s.lockstep() {
		if ctl, err = mapCtl(s.Ctl); err != nil {
			return nil, err
		}
		defer ctl.unmap()
	}
	deadline := time.Now().Add(15 * time.Second)
	for p.Stats().ActiveConsumers < s.Consumers {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d consumers joined within 15 s", p.Stats().ActiveConsumers, s.Consumers)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		time.Sleep(time.Millisecond)
	}

	// Lockstep: the consumers' waiters words, to commit only to sleepers.
	var asleep asleepWaiter
	if ctl != nil {
		entries := make([]int, s.Consumers)
		for i := range entries {
			for ctl.entry(i).Load() == 0 {
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("consumer %d did not say its entry within 15 s", i)
				}
				time.Sleep(time.Millisecond)
			}
			entries[i] = int(ctl.entry(i).Load() - 1)
		}
		words, shared, unmap, err := segWaiters(p.Path(), entries)
		if err != nil {
			return nil, err
		}
		defer unmap()
		asleep.words, asleep.shared, asleep.n = words, shared, uint32(s.Consumers)
	}
	var priv []byte
	if s.Mode == Copy {
		priv = make([]byte, src.Format().FrameSize)
	}
	pub, begin := newHist(), newHist()
	meta := make([]byte, metaLen)
	pace := newPacer(s.Rate)
	sched := newSchedule(s)
	var published, faults int64
	for k := int64(0); ; k++ {
		if err := pace.wait(ctx); err != nil {
			return nil, err
		}
		phase, more := sched.next(s, k)
		if !more {
			break
		}
		// The source's work: render the frame where it goes; in lockstep,
		// wait until every consumer is done with the previous frame; then
		// the hand-off, timed. Fill (and Publish) turn a memory fault (the
		// bus file truncated under the run) into an error, and the next
		// frame goes to a new generation: the run goes on, counting it.
		var t0, tb0, tb1 int64
		handOff := func() error {
			if ctl != nil && k > 0 {
				if err := ctl.waitAcks(uint32(k)*uint32(s.Consumers), framebus.Now()+ackTimeout); err != nil {
					return err
				}
				asleep.wait(phase) // reads the segment's waiters words: guarded by the caller
			}
			meta[0] = byte(phase)
			t0 = framebus.Now()
			binary.LittleEndian.PutUint64(meta[1:], uint64(t0))
			return nil
		}
		if priv == nil {
			// Begin is timed too (Fill's call to its function): the back
			// slot is chosen there, around the held ones.
			tb0 = framebus.Now()
			_, err = p.Fill(func(buf []byte) (int, framebus.Meta, error) {
				tb1 = framebus.Now()
				n, captured, err := src.Read(ctx, buf)
				if err == nil {
					err = handOff()
				}
				return n, framebus.Meta{CaptureNS: captured, UserMeta: meta}, err
			})
		} else {
			var n int
			var captured int64
			if n, captured, err = src.Read(ctx, priv); err != nil {
				return nil, err
			}
			var herr error
			if err = framebus.Guard(func() { herr = handOff() }); err == nil {
				if err = herr; err == nil {
					_, err = p.Publish(priv[:n], framebus.Meta{CaptureNS: captured, UserMeta: meta})
				}
			}
		}
		t1 := framebus.Now()
		if errors.Is(err, framebus.ErrCorrupt) && ctl == nil {
			// Paced runs carry on; lockstep ones cannot (their waiters
			// words are the old file's), and end with the error.
			if faults++; faults > 100 {
				return nil, fmt.Errorf("the bus kept faulting (%d frames): %w", faults, err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		published++
		if phase == phaseMeasure {
			record(pub, t1-t0)
			if tb1 > 0 {
				record(begin, tb1-tb0)
			}
			sched.measured(t0)
		}
	}
	cpu := cpuTime() - sched.cpu0 - asleep.cpu
	// Lockstep: the last frame is read before the end of stream goes out.
	if ctl != nil && published > 0 {
		if err := ctl.waitAcks(uint32(published)*uint32(s.Consumers), framebus.Now()+ackTimeout); err != nil {
			return nil, err
		}
	}
	gen := p.Stats().Generation
	if err := p.Close(); err != nil {
		return nil, err
	}
	res := &childResult{Frames: sched.frames, WindowNS: sched.last - sched.first, CPUNS: cpu, Waiting: -1, Note: awakeNote(asleep.awake)}
	if faults > 0 {
		res.Note = joinNotes(res.Note, fmt.Sprintf("the bus file was truncated under the producer: %d frames lost, a new generation after each (generation %d at the end)", faults, gen))
	}
	if res.Publish, err = encodeHist(pub); err != nil {
		return nil, err
	}
	if begin.TotalCount() > 0 {
		res.Begin, err = encodeHist(begin)
	}
	return res, err
}

// fbConsumer joins the bus and reads every frame: Next (the wake), a copy
// of the whole frame out of the slot (the read), Frame.Valid.
//
// Longer than 80 lines on purpose: a measured loop, kept whole so that no
// call or closure of a helper sits between its timestamps (as are
// fbProducer, fbConsumer, fbAnalyst and futexWaker, read side by side).
func fbConsumer(ctx context.Context, s *childSpec) (*childResult, error) {
	o := feed.Options{Dir: s.Dir, Timeout: 15 * time.Second}
	switch s.Mode {
	case Spin:
		o.Spin = s.Spin
	case Park:
		o.Hold = -1
	}
	in := feed.New(s.Bus, o)
	defer in.Close()
	if err := in.Join(ctx); err != nil {
		return nil, err
	}
	c := in.Consumer()
	var ctl *ctlBlock
	var err error
	if s.lockstep() {
		if ctl, err = mapCtl(s.Ctl); err != nil {
			return nil, err
		}
		defer ctl.unmap()
	}
	if ctl != nil {
		ctl.entry(s.Index).Store(uint32(c.Entry() + 1))
	}
	buf := make([]byte, c.Format().FrameSize)
	sm := newSampler(false)
	if s.Mode.analyses() {
		return fbAnalyst(s, in, buf, sm)
	}
	var faults int
	// Next sleeps at most a heartbeat at a time; the process watchdog bounds
	// the whole. A context without a Done channel keeps Next allocation-free.
	bg := context.Background()
	for {
		tCall := framebus.Now()
		f, err := in.Next(bg)
		t1 := framebus.Now()
		if errors.Is(err, framebus.ErrEndOfStream) {
			break
		}
		if errors.Is(err, feed.ErrWaiting) || errors.Is(err, feed.ErrIdle) {
			continue // a stall of the producer, or a transient bus error: the feed rides it out
		}
		if err != nil {
			return nil, err
		}
		if len(f.UserMeta) != metaLen {
			return nil, fmt.Errorf("frame %d: %d bytes of metadata, want %d", f.Seq, len(f.UserMeta), metaLen)
		}
		phase := f.UserMeta[0]
		t0 := int64(binary.LittleEndian.Uint64(f.UserMeta[1:]))
		var n int
		var valid bool
		if err := framebus.Guard(func() { n, valid = copy(buf, f.Data), f.Valid() }); err != nil {
			faults++ // the bus file truncated under the read: the feed follows the new generation
			continue
		}
		t2 := framebus.Now()
		if ctl != nil {
			ctl.ack(uint32(1+f.Dropped), s.Consumers)
		}
		if phase != phaseMeasure {
			continue
		}
		sm.add(tCall, t0, t1, t2, f.CommitNS, f.Dropped, n)
		sm.res.Torn += f.TornRetries
		if !valid {
			sm.res.Overwritten++
		}
	}
	switch st := in.ConsumerStats(); s.Mode {
	case Spin:
		sm.res.Note = fmt.Sprintf("spin: %d frames caught spinning, %d spins missed (the consumer slept for those)", st.SpinHits, st.SpinMisses)
	case Plain:
		if st.HoldHits+st.HoldMisses > 0 {
			sm.res.Note = fmt.Sprintf("hold: %d frames came in a held wait, %d held waits missed", st.HoldHits, st.HoldMisses)
		}
	}
	if faults > 0 {
		sm.res.Note = joinNotes(sm.res.Note, fmt.Sprintf("%d frames lost to the bus file truncated under the read", faults))
	}
	return sm.finish()
}

// fbAnalyst is the slow consumer of the slow and hold modes: it takes the
// newest frame, analyses it for s.HoldFor (a model slower than the camera),
// then takes the newest again. The analysis reads the frame at its start
// and at its end, and sleeps in between (the CPU of a real model is not
// what is measured). Without holds (slow) it copies the frame to keep it,
// and at the end checks whether the zero-copy view it did not use is still
// intact (Valid after reading the same bytes as the copy). With holds
// (hold) it holds the frame, takes a CRC-32C of the held bytes at the start
// and at the end, checks Valid, and releases it; a refused hold falls back
// to the copy.
//
// Longer than 80 lines on purpose: a measured loop, kept whole so that no
// call or closure of a helper sits between its timestamps (as are
// fbProducer, fbConsumer, fbAnalyst and futexWaker, read side by side).
func fbAnalyst(s *childSpec, in *feed.Feed, buf []byte, sm *sampler) (*childResult, error) {
	a := &Analysis{HoldForMS: float64(s.HoldFor) / 1e6}
	var faults int
	var refusals [4]int64 // cap, overwritten, unsupported, other
	bg := context.Background()
	for {
		tCall := framebus.Now()
		f, err := in.Next(bg)
		t1 := framebus.Now()
		if errors.Is(err, framebus.ErrEndOfStream) {
			break
		}
		if errors.Is(err, feed.ErrWaiting) || errors.Is(err, feed.ErrIdle) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(f.UserMeta) != metaLen {
			return nil, fmt.Errorf("frame %d: %d bytes of metadata, want %d", f.Seq, len(f.UserMeta), metaLen)
		}
		measure := f.UserMeta[0] == phaseMeasure
		t0 := int64(binary.LittleEndian.Uint64(f.UserMeta[1:]))
		end := t1 + int64(s.HoldFor)

		var h framebus.Hold
		held, why := false, -1
		if s.Mode == Hold {
			h, err = f.Hold()
			switch {
			case err == nil:
				held = true
			case errors.Is(err, framebus.ErrHoldCap):
				why = 0
			case errors.Is(err, framebus.ErrOverwritten):
				why = 1
			case errors.Is(err, framebus.ErrHoldUnsupported):
				why = 2
			case errors.Is(err, framebus.ErrNoHold):
				why = 3
			default:
				faults++ // the bus file truncated under the grant
				continue
			}
		}
		// The start of the analysis: the held bytes read (their CRC), or
		// the frame copied out to be kept.
		var sum0 uint32
		var copyOK bool
		var n int
		if gerr := framebus.Guard(func() {
			if held {
				d := h.Data()
				sum0, n = crc32.Checksum(d, castagnoli), len(d)
				return
			}
			n = copy(buf, f.Data)
			copyOK = f.Valid()
		}); gerr != nil {
			if held {
				_ = h.Release()
			}
			faults++
			continue
		}
		t2 := framebus.Now()
		sleepUntil(end)
		// The end of the analysis: is what it analysed still there?
		var sum1 uint32
		var valid, same bool
		gerr := framebus.Guard(func() {
			if held {
				sum1 = crc32.Checksum(h.Data(), castagnoli)
				valid = h.Valid()
				return
			}
			same = bytes.Equal(f.Data, buf[:n])
			valid = f.Valid()
		})
		if held {
			if err := h.Release(); err != nil {
				return nil, fmt.Errorf("release: %w", err)
			}
		}
		if !measure {
			continue
		}
		sm.add(tCall, t0, t1, t2, f.CommitNS, f.Dropped, n)
		sm.res.Torn += f.TornRetries
		a.Taken++
		if why >= 0 {
			refusals[why]++
		}
		switch {
		case gerr != nil:
			a.Faults++
		case held:
			a.Held++
			switch {
			case !valid:
				a.HeldOverwritten++
			case sum1 != sum0:
				a.HeldCorrupt++
			default:
				a.HeldIntact++
			}
		default:
			a.Copies++
			if !copyOK {
				a.CopyTorn++
			}
			if !valid || !same {
				a.ViewOverwritten++
				sm.res.Overwritten++
			}
		}
	}
	a.Refused = refusals[0] + refusals[1] + refusals[2] + refusals[3]
	if a.Taken > 0 {
		a.CopiesPerFrame = round3(float64(a.Copies) / float64(a.Taken))
	}
	sm.res.Analysis = a
	if s.Mode == Hold {
		sm.res.Note = fmt.Sprintf("hold: %d of %d frames held (%d refused: cap %d, overwritten %d, unsupported %d, other %d), %d held intact after %v",
			a.Held, a.Taken, a.Refused, refusals[0], refusals[1], refusals[2], refusals[3], a.HeldIntact, s.HoldFor)
	} else {
		sm.res.Note = fmt.Sprintf("slow: %d frames copied for a %v analysis; %d of their zero-copy views were overwritten by its end", a.Copies, s.HoldFor, a.ViewOverwritten)
	}
	if faults > 0 || a.Faults > 0 {
		sm.res.Note = joinNotes(sm.res.Note, fmt.Sprintf("%d frames lost to the bus file truncated under the analysis", faults+int(a.Faults)))
	}
	return sm.finish()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sleepUntil sleeps until t on CLOCK_MONOTONIC (framebus.Now's clock).
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
}
