//go:build linux || windows

package framebus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The transport's behaviour through its public API, on every system with a
// sys_*.go implementation: the same tests run on Linux (files in a temporary
// bus directory) and on Windows (named objects in a private scope of
// Local\; make test-windows runs them under Wine). Everything asserted is a
// count or a value; nothing depends on timing but generous upper bounds that
// only a hang would reach.

func TestPortableRoundTrip(t *testing.T) {
	dir := portableDir(t)
	p := portableCreate(t, dir, "rt", nil)
	c := portableOpen(t, dir, "rt")
	ctx := hangCtx(t)
	n := int(p.Format().FrameSize)
	for seq := uint64(1); seq <= 20; seq++ {
		got, err := p.Publish(frameBytes(seq, n), Meta{UserMeta: []byte(fmt.Sprint("m", seq))})
		if err != nil || got != seq {
			t.Fatalf("Publish %d: seq %d, %v", seq, got, err)
		}
		fr, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d: %v", seq, err)
		}
		if fr.Seq != seq || !bytes.Equal(fr.Data, frameBytes(seq, n)) || string(fr.UserMeta) != fmt.Sprint("m", seq) || fr.Dropped != 0 || !fr.Valid() {
			t.Fatalf("frame %d: seq %d, %d bytes, meta %q, dropped %d", seq, fr.Seq, len(fr.Data), fr.UserMeta, fr.Dropped)
		}
	}
	// Three frames while the consumer is away: it gets the newest and counts
	// the two it missed.
	for seq := uint64(21); seq <= 23; seq++ {
		p.Publish(frameBytes(seq, n), Meta{})
	}
	dst := make([]byte, n)
	fr, err := c.ReadInto(ctx, dst)
	if err != nil || fr.Seq != 23 || fr.Dropped != 2 || !bytes.Equal(fr.Data, frameBytes(23, n)) {
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
	if _, err := c.Next(ctx); !errors.Is(err, ErrEndOfStream) {
		t.Fatalf("Next after Close: %v; want ErrEndOfStream", err)
	}
	if _, err := Open("rt", ConsumerOptions{Dir: dir}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Close: %v; want ErrNotFound", err)
	}
}

func TestPortableErrors(t *testing.T) {
	dir := portableDir(t)
	p := portableCreate(t, dir, "busy", func(o *ProducerOptions) { o.Consumers = 1 })
	_, err := Create("busy", ProducerOptions{Format: portableFormat, Dir: dir})
	var be *BusyError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &be) || be.PID != uint32(os.Getpid()) {
		t.Fatalf("second Create: %v; want ErrBusy naming pid %d", err, os.Getpid())
	}
	if _, err := Open("nobus", ConsumerOptions{Dir: dir}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(nobus): %v; want ErrNotFound", err)
	}
	if _, err := Open("../x", ConsumerOptions{Dir: dir}); !errors.Is(err, ErrBadName) {
		t.Errorf("Open(../x): %v; want ErrBadName", err)
	}
	c := portableOpen(t, dir, "busy")
	if _, err := Open("busy", ConsumerOptions{Dir: dir}); !errors.Is(err, ErrTableFull) {
		t.Errorf("Open of a full table: %v; want ErrTableFull", err)
	}
	c.Close()
	c2 := portableOpen(t, dir, "busy") // the entry is free again
	if c2.Entry() != 0 {
		t.Errorf("entry %d; want 0", c2.Entry())
	}
	if err := Remove("busy", dir, false); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove of a live bus: %v; want ErrBusy", err)
	}
	_ = p
}

// A consumer asleep in Next is woken by each commit; frames it misses are
// counted, never lost: delivered + dropped = last_seq.
func TestPortableWakeAcrossGoroutines(t *testing.T) {
	dir := portableDir(t)
	p := portableCreate(t, dir, "wake", func(o *ProducerOptions) { o.Heartbeat = 10 * time.Second })
	const consumers, frames = 3, 300
	var wg sync.WaitGroup
	errs := make(chan error, consumers)
	ready := make(chan struct{}, consumers)
	for i := 0; i < consumers; i++ {
		c := portableOpen(t, dir, "wake")
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := hangCtx(t)
			ready <- struct{}{}
			var last, delivered, dropped uint64
			for {
				fr, err := c.Next(ctx)
				if errors.Is(err, ErrEndOfStream) {
					var eos *EndOfStreamError
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
				same := bytes.Equal(fr.Data, frameBytes(fr.Seq, len(fr.Data)))
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
		if _, err := p.Publish(frameBytes(seq, n), Meta{}); err != nil {
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
// deadline ends the wait with ErrDeadlineExceeded. The heartbeat is 60 s, so
// only the wake can end these waits before the test's own timeout.
func TestPortableContextWakes(t *testing.T) {
	dir := portableDir(t)
	portableCreate(t, dir, "ctx", func(o *ProducerOptions) { o.Heartbeat = time.Minute })
	c := portableOpen(t, dir, "ctx")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := c.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	if _, err := c.Next(dctx); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("Next past a deadline: %v", err)
	}
}

// A format change is a new generation; the consumer follows it by itself and
// the frame numbers continue.
func TestPortableReconfigureAndRemove(t *testing.T) {
	dir := portableDir(t)
	p := portableCreate(t, dir, "gen", nil)
	c := portableOpen(t, dir, "gen")
	ctx := hangCtx(t)
	p.Publish(frameBytes(1, int(p.Format().FrameSize)), Meta{})
	if fr, err := c.Next(ctx); err != nil || fr.Seq != 1 {
		t.Fatalf("Next: %v", err)
	}
	f2 := Format{Width: 32, Height: 2, PixelFormat: FormatRGBA}
	if err := p.Reconfigure(f2); err != nil {
		t.Fatal(err)
	}
	p.Publish(frameBytes(2, int(p.Format().FrameSize)), Meta{})
	fr, err := c.Next(ctx)
	if err != nil || fr.Seq != 2 || !fr.GenerationChanged || fr.Generation != 2 || fr.Format.Width != 32 || fr.Format.PixelFormat != FormatRGBA {
		t.Fatalf("after Reconfigure: %+v, %v", fr, err)
	}
	if c.Generation() != 2 || p.Generation() != 2 {
		t.Errorf("generations %d, %d; want 2", c.Generation(), p.Generation())
	}

	s, err := Inspect("gen", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.OwnerAlive || s.Header.Generation != 2 || s.Header.LastSeq != 2 || len(s.Consumers) != 1 || !s.Consumers[0].Alive || s.Consumers[0].PID != uint32(os.Getpid()) {
		t.Errorf("Inspect: owner %v, gen %d, last %d, consumers %+v", s.OwnerAlive, s.Header.Generation, s.Header.LastSeq, s.Consumers)
	}

	// The name removed from outside: the producer publishes a new
	// generation at its next heartbeat, and the consumer follows it.
	if err := Remove("gen", dir, true); err != nil {
		t.Fatal(err)
	}
	for p.Generation() != 3 {
		select {
		case <-ctx.Done():
			t.Fatal("the producer never replaced its removed name")
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.Publish(frameBytes(3, int(p.Format().FrameSize)), Meta{})
	fr, err = c.Next(ctx)
	if err != nil || fr.Seq != 3 || fr.Generation != 3 || !fr.GenerationChanged {
		t.Fatalf("after Remove -f: %+v, %v", fr, err)
	}
}

// ---- across processes ----

const portableChildEnv = "FRAMEBUS_PORTABLE_CHILD"

// TestPortableChild is the other process of the tests below (it does
// nothing unless started by them).
func TestPortableChild(t *testing.T) {
	role := os.Getenv(portableChildEnv)
	if role == "" {
		t.Skip("helper process")
	}
	dir, name := os.Getenv("FRAMEBUS_PORTABLE_DIR"), os.Getenv("FRAMEBUS_PORTABLE_NAME")
	switch role {
	case "producer":
		p, err := Create(name, ProducerOptions{Format: portableFormat, Dir: dir, Heartbeat: 20 * time.Millisecond})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		p.Publish(frameBytes(1, int(p.Format().FrameSize)), Meta{})
		fmt.Println("ready", os.Getpid())
		for seq := uint64(2); ; seq++ { // until killed
			time.Sleep(5 * time.Millisecond)
			p.Publish(frameBytes(seq, int(p.Format().FrameSize)), Meta{})
		}
	case "consumer":
		c, err := Open(name, ConsumerOptions{Dir: dir})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ready", c.Entry())
	}
	select {} // until killed
}

type portableChild struct {
	cmd  *exec.Cmd
	line string
}

func startPortableChild(t *testing.T, role, dir, name string) *portableChild {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process tests skipped in -short mode")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPortableChild$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), portableChildEnv+"="+role, "FRAMEBUS_PORTABLE_DIR="+dir, "FRAMEBUS_PORTABLE_NAME="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("%s child: %q, %v", role, line, err)
	}
	return &portableChild{cmd: cmd, line: strings.TrimSpace(line)}
}

// kill ends the child the hard way (SIGKILL, TerminateProcess): no cleanup
// runs in it; the kernel drops its locks or abandons its mutexes.
func (c *portableChild) kill(t *testing.T) {
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
}

// A producer killed outright: its consumer reports ErrProducerGone (the
// owner lock dropped, the owner mutex abandoned), and a new producer takes
// the name over, continuing the frame numbers; the consumer follows it.
func TestPortableProducerKilled(t *testing.T) {
	dir := portableDir(t)
	child := startPortableChild(t, "producer", dir, "pk")
	pid, _ := strconv.Atoi(strings.TrimPrefix(child.line, "ready "))
	c := portableOpen(t, dir, "pk")
	ctx := hangCtx(t)
	fr, err := c.Next(ctx)
	if err != nil || fr.Seq < 2 {
		t.Fatalf("Next: %v, %v", fr, err)
	}
	if s, err := Inspect("pk", dir); err != nil || !s.OwnerAlive || s.Header.ProducerPID != uint32(pid) {
		t.Fatalf("Inspect of a live child producer: %+v, %v", s, err)
	}
	child.kill(t)
	var last uint64
	for {
		fr, err := c.Next(ctx) // the frames committed before the kill, then the verdict
		if errors.Is(err, ErrProducerGone) {
			break
		}
		if err != nil {
			t.Fatalf("Next after the producer was killed: %v; want frames, then ErrProducerGone", err)
		}
		last = fr.Seq
	}
	s, err := Inspect("pk", dir)
	if err != nil || s.OwnerAlive || s.Header.LastSeq != c.Stats().LastSeq {
		t.Fatalf("Inspect of a killed producer's bus: %+v, %v", s, err)
	}
	p := portableCreate(t, dir, "pk", nil)
	if p.Generation() != 2 {
		t.Errorf("generation %d after a takeover; want 2", p.Generation())
	}
	seq, err := p.Publish(frameBytes(0, int(p.Format().FrameSize)), Meta{})
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
	dir := portableDir(t)
	p := portableCreate(t, dir, "ck", nil)
	live := portableOpen(t, dir, "ck")
	child := startPortableChild(t, "consumer", dir, "ck")
	if p.Stats().ActiveConsumers != 2 {
		t.Fatalf("active consumers %d; want 2", p.Stats().ActiveConsumers)
	}
	// Several heartbeats with both alive: nothing is reclaimed.
	for i := 0; i < 5; i++ {
		p.Publish(frameBytes(uint64(i+1), int(p.Format().FrameSize)), Meta{})
		time.Sleep(25 * time.Millisecond)
	}
	if st := p.Stats(); st.ConsumersReclaimed != 0 || st.ActiveConsumers != 2 {
		t.Fatalf("with both consumers alive: %+v", st)
	}
	child.kill(t)
	ctx := hangCtx(t)
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
	dir := portableDir(t)
	p := portableCreate(t, dir, "torn", func(o *ProducerOptions) {
		o.Format = Format{Width: 256, Height: 64, PixelFormat: FormatGrey}
		o.Checksum = false
		o.Heartbeat = time.Second
	})
	c := portableOpen(t, dir, "torn")
	var stop atomic.Bool
	var bad atomic.Value
	done := make(chan uint64)
	go func() {
		ctx := hangCtx(t)
		dst := make([]byte, p.Format().FrameSize)
		var n uint64
		for !stop.Load() {
			cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			fr, err := c.ReadInto(cctx, dst)
			cancel()
			if err != nil {
				continue
			}
			if !uniform(fr.Data, byte(fr.Seq)) {
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
		p.Publish(buf, Meta{})
	}
	stop.Store(true)
	n := <-done
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	t.Logf("%d frames read, %d torn reads retried", n, c.Stats().TornRetries)
}
