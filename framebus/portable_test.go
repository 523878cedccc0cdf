//go:build linux || windows

package framebus_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// The transport's behaviour through its public API, on every system with a
// sys_*.go implementation: the same tests run on Linux (files in a temporary
// bus directory) and on Windows (named objects in a private scope of
// Local\; make test-windows runs them under Wine). Everything asserted is a
// count or a value; nothing depends on timing but generous upper bounds that
// only a hang would reach.

func TestPortableRoundTrip(t *testing.T) {
	dir := framebus.PortableDir(t)
	p := framebus.PortableCreate(t, dir, "rt", nil)
	c := framebus.PortableOpen(t, dir, "rt")
	ctx := framebus.HangCtx(t)
	n := int(p.Format().FrameSize)
	for seq := uint64(1); seq <= 20; seq++ {
		got, err := p.Publish(framebus.FrameBytes(seq, n), framebus.Meta{UserMeta: []byte(fmt.Sprint("m", seq))})
		if err != nil || got != seq {
			t.Fatalf("Publish %d: seq %d, %v", seq, got, err)
		}
		fr, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d: %v", seq, err)
		}
		if fr.Seq != seq || !bytes.Equal(fr.Data, framebus.FrameBytes(seq, n)) || string(fr.UserMeta) != fmt.Sprint("m", seq) || fr.Dropped != 0 || !fr.Valid() {
			t.Fatalf("frame %d: seq %d, %d bytes, meta %q, dropped %d", seq, fr.Seq, len(fr.Data), fr.UserMeta, fr.Dropped)
		}
	}
	// Three frames while the consumer is away: it gets the newest and counts
	// the two it missed.
	for seq := uint64(21); seq <= 23; seq++ {
		p.Publish(framebus.FrameBytes(seq, n), framebus.Meta{})
	}
	dst := make([]byte, n)
	fr, err := c.ReadInto(ctx, dst)
	if err != nil || fr.Seq != 23 || fr.Dropped != 2 || !bytes.Equal(fr.Data, framebus.FrameBytes(23, n)) {
		t.Fatalf("ReadInto: %+v, %v; want seq 23, dropped 2", fr, err)
	}
	st := c.Stats()
	if st.Delivered != 21 || st.Dropped != 2 || st.LastSeq != 23 {
		t.Errorf("consumer stats %+v; want delivered 21, dropped 2, last 23", st)
	}
	ps := p.Stats()
	if ps.FramesPublished != 23 || ps.LastSeq != 23 || ps.ActiveConsumers != 1 || ps.Generation != 1 {
		t.Errorf("producer stats %+v", ps)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(ctx); !errors.Is(err, framebus.ErrEndOfStream) {
		t.Fatalf("Next after Close: %v; want framebus.ErrEndOfStream", err)
	}
	if _, err := framebus.Open("rt", framebus.ConsumerOptions{Dir: dir}); !errors.Is(err, framebus.ErrNotFound) {
		t.Fatalf("Open after Close: %v; want framebus.ErrNotFound", err)
	}
}

func TestPortableErrors(t *testing.T) {
	dir := framebus.PortableDir(t)
	p := framebus.PortableCreate(t, dir, "busy", func(o *framebus.ProducerOptions) { o.Consumers = 1 })
	_, err := framebus.Create("busy", framebus.ProducerOptions{Format: framebus.PortableFormat, Dir: dir})
	var be *framebus.BusyError
	if !errors.Is(err, framebus.ErrBusy) || !errors.As(err, &be) || be.PID != uint32(os.Getpid()) {
		t.Fatalf("second Create: %v; want framebus.ErrBusy naming pid %d", err, os.Getpid())
	}
	if _, err := framebus.Open("nobus", framebus.ConsumerOptions{Dir: dir}); !errors.Is(err, framebus.ErrNotFound) {
		t.Errorf("Open(nobus): %v; want framebus.ErrNotFound", err)
	}
	if _, err := framebus.Open("../x", framebus.ConsumerOptions{Dir: dir}); !errors.Is(err, framebus.ErrBadName) {
		t.Errorf("Open(../x): %v; want framebus.ErrBadName", err)
	}
	c := framebus.PortableOpen(t, dir, "busy")
	if _, err := framebus.Open("busy", framebus.ConsumerOptions{Dir: dir}); !errors.Is(err, framebus.ErrTableFull) {
		t.Errorf("Open of a full table: %v; want framebus.ErrTableFull", err)
	}
	c.Close()
	c2 := framebus.PortableOpen(t, dir, "busy") // the entry is free again
	if c2.Entry() != 0 {
		t.Errorf("entry %d; want 0", c2.Entry())
	}
	if err := framebus.Remove("busy", dir, false); !errors.Is(err, framebus.ErrBusy) {
		t.Errorf("Remove of a live bus: %v; want framebus.ErrBusy", err)
	}
	_ = p
}

// A consumer asleep in Next is woken by each commit; frames it misses are
// counted, never lost: delivered + dropped = last_seq.
func TestPortableWakeAcrossGoroutines(t *testing.T) {
	dir := framebus.PortableDir(t)
	p := framebus.PortableCreate(t, dir, "wake", func(o *framebus.ProducerOptions) { o.Heartbeat = 10 * time.Second })
	const consumers, frames = 3, 300
	var wg sync.WaitGroup
	errs := make(chan error, consumers)
	ready := make(chan struct{}, consumers)
	for i := 0; i < consumers; i++ {
		c := framebus.PortableOpen(t, dir, "wake")
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := framebus.HangCtx(t)
			ready <- struct{}{}
			var last, delivered, dropped uint64
			for {
				fr, err := c.Next(ctx)
				if errors.Is(err, framebus.ErrEndOfStream) {
					var eos *framebus.EndOfStreamError
					errors.As(err, &eos)
					dropped += eos.Dropped
					if delivered+dropped != frames || eos.Seq != frames+1 {
						errs <- fmt.Errorf("delivered %d + dropped %d != %d (eos %d)", delivered, dropped, frames, eos.Seq)
					}
					errs <- nil
					return
				}
				if err != nil {
					errs <- err
					return
				}
				same := bytes.Equal(fr.Data, framebus.FrameBytes(fr.Seq, len(fr.Data)))
				if fr.Seq <= last || !same && fr.Valid() { // a zero-copy view may be overwritten since: Valid tells
					errs <- fmt.Errorf("frame %d after %d, or wrong bytes", fr.Seq, last)
					return
				}
				last = fr.Seq
				delivered++
				dropped += fr.Dropped
			}
		}()
	}
	for i := 0; i < consumers; i++ {
		<-ready
	}
	n := int(p.Format().FrameSize)
	for seq := uint64(1); seq <= frames; seq++ {
		if _, err := p.Publish(framebus.FrameBytes(seq, n), framebus.Meta{}); err != nil {
			t.Fatal(err)
		}
		if seq%10 == 0 {
			time.Sleep(time.Millisecond) // let the consumers sleep now and then
		}
	}
	p.Close()
	wg.Wait()
	for i := 0; i < consumers; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// A cancelled context wakes a consumer asleep on its semaphore at once, and a
// deadline ends the wait with framebus.ErrDeadlineExceeded. The heartbeat is 60 s, so
// only the wake can end these waits before the test's own timeout.
func TestPortableContextWakes(t *testing.T) {
	dir := framebus.PortableDir(t)
	framebus.PortableCreate(t, dir, "ctx", func(o *framebus.ProducerOptions) { o.Heartbeat = time.Minute })
	c := framebus.PortableOpen(t, dir, "ctx")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := c.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	if _, err := c.Next(dctx); !errors.Is(err, framebus.ErrDeadlineExceeded) {
		t.Fatalf("Next past a deadline: %v", err)
	}
}

// A format change is a new generation; the consumer follows it by itself and
// the frame numbers continue.
func TestPortableReconfigureAndRemove(t *testing.T) {
	dir := framebus.PortableDir(t)
	p := framebus.PortableCreate(t, dir, "gen", nil)
	c := framebus.PortableOpen(t, dir, "gen")
	ctx := framebus.HangCtx(t)
	p.Publish(framebus.FrameBytes(1, int(p.Format().FrameSize)), framebus.Meta{})
	if fr, err := c.Next(ctx); err != nil || fr.Seq != 1 {
		t.Fatalf("Next: %v", err)
	}
	f2 := framebus.Format{Width: 32, Height: 2, PixelFormat: framebus.FormatRGBA}
	if err := p.Reconfigure(f2); err != nil {
		t.Fatal(err)
	}
	p.Publish(framebus.FrameBytes(2, int(p.Format().FrameSize)), framebus.Meta{})
	fr, err := c.Next(ctx)
	if err != nil || fr.Seq != 2 || !fr.GenerationChanged || fr.Generation != 2 || fr.Format.Width != 32 || fr.Format.PixelFormat != framebus.FormatRGBA {
		t.Fatalf("after Reconfigure: %+v, %v", fr, err)
	}
	if c.Generation() != 2 || p.Generation() != 2 {
		t.Errorf("generations %d, %d; want 2", c.Generation(), p.Generation())
	}

	s, err := framebus.Inspect("gen", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.OwnerAlive || s.Header.Generation != 2 || s.Header.LastSeq != 2 || len(s.Consumers) != 1 || !s.Consumers[0].Alive || s.Consumers[0].PID != uint32(os.Getpid()) {
		t.Errorf("Inspect: owner %v, gen %d, last %d, consumers %+v", s.OwnerAlive, s.Header.Generation, s.Header.LastSeq, s.Consumers)
	}

	// The name removed from outside: the producer publishes a new
	// generation at its next heartbeat, and the consumer follows it.
	if err := framebus.Remove("gen", dir, true); err != nil {
		t.Fatal(err)
	}
	for p.Generation() != 3 {
		select {
		case <-ctx.Done():
			t.Fatal("the producer never replaced its removed name")
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.Publish(framebus.FrameBytes(3, int(p.Format().FrameSize)), framebus.Meta{})
	fr, err = c.Next(ctx)
	if err != nil || fr.Seq != 3 || fr.Generation != 3 || !fr.GenerationChanged {
		t.Fatalf("after framebus.Remove -f: %+v, %v", fr, err)
	}
}

// ---- across processes ----

// portableProducer is a child role (the test binary re-executed): it creates
// the bus of -dir and -name, publishes a frame, says "ready", then publishes
// every 5 ms until it is killed.
func portableProducer(args []string) error {
	dir, name, err := portableFlags("portable-producer", args)
	if err != nil {
		return err
	}
	p, err := framebus.Create(name, framebus.ProducerOptions{Format: framebus.PortableFormat, Dir: dir, Heartbeat: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	p.Publish(framebus.FrameBytes(1, int(p.Format().FrameSize)), framebus.Meta{})
	childEmit("ready", nil)
	for seq := uint64(2); ; seq++ { // until killed
		time.Sleep(5 * time.Millisecond)
		p.Publish(framebus.FrameBytes(seq, int(p.Format().FrameSize)), framebus.Meta{})
	}
}

// portableConsumer is a child role: it joins the bus of -dir and -name, says
// "ready" with its entry, and stays until it is killed.
func portableConsumer(args []string) error {
	dir, name, err := portableFlags("portable-consumer", args)
	if err != nil {
		return err
	}
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		return err
	}
	childEmit("ready", map[string]any{"entry": c.Entry()})
	for { // until killed (a sleep, not select{}: with no other goroutine the runtime would call that a deadlock)
		time.Sleep(time.Hour)
	}
}

func portableFlags(role string, args []string) (dir, name string, err error) {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.StringVar(&dir, "dir", "", "bus directory")
	fs.StringVar(&name, "name", "", "bus name")
	return dir, name, fs.Parse(args)
}

// A producer killed outright: its consumer reports framebus.ErrProducerGone (the
// owner lock dropped, the owner mutex abandoned), and a new producer takes
// the name over, continuing the frame numbers; the consumer follows it.
func TestPortableProducerKilled(t *testing.T) {
	dir := framebus.PortableDir(t)
	child := startChild(t, "producer", childOpts{}, "portable-producer", busArgs(dir, "pk")...)
	pid := child.waitEvent("ready", procStartTimeout).u("pid")
	c := framebus.PortableOpen(t, dir, "pk")
	ctx := framebus.HangCtx(t)
	fr, err := c.Next(ctx)
	if err != nil || fr.Seq < 2 {
		t.Fatalf("Next: %v, %v", fr, err)
	}
	if s, err := framebus.Inspect("pk", dir); err != nil || !s.OwnerAlive || s.Header.ProducerPID != uint32(pid) {
		t.Fatalf("Inspect of a live child producer: %+v, %v", s, err)
	}
	child.kill()
	var last uint64
	for {
		fr, err := c.Next(ctx) // the frames committed before the kill, then the verdict
		if errors.Is(err, framebus.ErrProducerGone) {
			break
		}
		if err != nil {
			t.Fatalf("Next after the producer was killed: %v; want frames, then framebus.ErrProducerGone", err)
		}
		last = fr.Seq
	}
	s, err := framebus.Inspect("pk", dir)
	if err != nil || s.OwnerAlive || s.Header.LastSeq != c.Stats().LastSeq {
		t.Fatalf("Inspect of a killed producer's bus: %+v, %v", s, err)
	}
	p := framebus.PortableCreate(t, dir, "pk", nil)
	if p.Generation() != 2 {
		t.Errorf("generation %d after a takeover; want 2", p.Generation())
	}
	seq, err := p.Publish(framebus.FrameBytes(0, int(p.Format().FrameSize)), framebus.Meta{})
	if err != nil || seq != s.Header.LastSeq+1 {
		t.Fatalf("Publish after takeover: seq %d, %v; want %d (numbers continue)", seq, err, s.Header.LastSeq+1)
	}
	fr, err = c.Next(ctx)
	if err != nil || fr.Seq != seq || !fr.GenerationChanged || fr.Dropped != 0 {
		t.Fatalf("Next after takeover: %+v, %v (last before: %d)", fr, err, last)
	}
}

// A consumer killed outright: the producer takes its entry back within a
// heartbeat or so (the entry lock dropped, the entry mutex abandoned), and
// only then; a live consumer's entry is never taken.
func TestPortableConsumerKilled(t *testing.T) {
	dir := framebus.PortableDir(t)
	p := framebus.PortableCreate(t, dir, "ck", nil)
	live := framebus.PortableOpen(t, dir, "ck")
	child := startChild(t, "consumer", childOpts{}, "portable-consumer", busArgs(dir, "ck")...)
	child.waitEvent("ready", procStartTimeout)
	if p.Stats().ActiveConsumers != 2 {
		t.Fatalf("active consumers %d; want 2", p.Stats().ActiveConsumers)
	}
	// Several heartbeats with both alive: nothing is reclaimed.
	for i := 0; i < 5; i++ {
		p.Publish(framebus.FrameBytes(uint64(i+1), int(p.Format().FrameSize)), framebus.Meta{})
		time.Sleep(25 * time.Millisecond)
	}
	if st := p.Stats(); st.ConsumersReclaimed != 0 || st.ActiveConsumers != 2 {
		t.Fatalf("with both consumers alive: %+v", st)
	}
	child.kill()
	ctx := framebus.HangCtx(t)
	for p.Stats().ConsumersReclaimed != 1 {
		select {
		case <-ctx.Done():
			t.Fatal("the killed consumer's entry was never reclaimed")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if st := p.Stats(); st.ActiveConsumers != 1 {
		t.Errorf("after reclaim: %+v; want 1 active", st)
	}
	if fr, err := live.Next(ctx); err != nil || fr.Seq != 5 {
		t.Errorf("the live consumer: %v, %v", fr, err)
	}
}

// The sequence lock across goroutines, with the real commit and read paths:
// a reader never accepts a torn frame (see also TestSeqlockLitmus, meant for
// real arm64 hardware).
func TestPortableNoTornFrames(t *testing.T) {
	dir := framebus.PortableDir(t)
	p := framebus.PortableCreate(t, dir, "torn", func(o *framebus.ProducerOptions) {
		o.Format = framebus.Format{Width: 256, Height: 64, PixelFormat: framebus.FormatGrey}
		o.Checksum = false
		o.Heartbeat = time.Second
	})
	c := framebus.PortableOpen(t, dir, "torn")
	var stop atomic.Bool
	var bad atomic.Value
	done := make(chan uint64)
	go func() {
		ctx := framebus.HangCtx(t)
		dst := make([]byte, p.Format().FrameSize)
		var n uint64
		for !stop.Load() {
			cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			fr, err := c.ReadInto(cctx, dst)
			cancel()
			if err != nil {
				continue
			}
			if !framebus.Uniform(fr.Data, byte(fr.Seq)) {
				bad.Store(fmt.Sprintf("frame %d is torn", fr.Seq))
			}
			n++
		}
		done <- n
	}()
	buf := make([]byte, p.Format().FrameSize)
	for seq := uint64(1); seq <= 3000; seq++ {
		for i := range buf {
			buf[i] = byte(seq)
		}
		p.Publish(buf, framebus.Meta{})
	}
	stop.Store(true)
	n := <-done
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	t.Logf("%d frames read, %d torn reads retried", n, c.Stats().TornRetries)
}
