//go:build linux

package framebus_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// TestZeroAllocPublishAndRead is the zero-allocation guard of the hot path:
// publishing a 1080p RGBA frame (Publish, or Begin+Commit) and reading it
// (Next with context.Background, Next with a cancellable context reused
// across calls, ReadInto, Frame.Valid), and holding it (Frame.Hold,
// Hold.Valid, Release; a hold refused at the cap) must allocate nothing per frame, with
// checksums off and on. Producer and consumer share this process; every
// measured call publishes one frame and, where it reads, reads it back.
//
// testing.AllocsPerRun must report 0. Its integer division would hide an
// allocation made every other frame, so the raw number of allocations over
// all runs is checked too: it must stay under one per 10 frames, a margin
// for goroutines that other tests of the package may have left running
// (runtime.MemStats.Mallocs counts every goroutine); it is 0 when this test
// runs alone, and the log shows it. To keep that count about framebus alone:
//   - the producer's heartbeat is set to a minute, so that its background
//     goroutine (which allocates: an lstat of the segment path per beat)
//     does not run meanwhile;
//   - GOMAXPROCS is 1 for the whole test, not only inside AllocsPerRun:
//     shrinking it destroys a P, whose timers move into another P's heap,
//     which can grow that heap (runtime.(*p).destroy -> timers.addHeap ->
//     growslice, seen with -memprofilerate=1);
//   - the heartbeat goroutine has started (it allocates its ticker), and a
//     GC cycle has completed before each measurement (the GC's workers
//     allocate when they start and at mark termination).
func TestZeroAllocPublishAndRead(t *testing.T) {
	if testing.Short() {
		t.Skip("1080p frames; skipped in -short mode")
	}
	const runs = 200
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, checksum := range []bool{false, true} {
		t.Run(fmt.Sprintf("checksum=%v", checksum), func(t *testing.T) {
			dir := framebus.ShmDir(t)
			p, err := framebus.Create("alloc", framebus.ProducerOptions{
				Format:    framebus.Format{Width: benchW, Height: benchH, PixelFormat: framebus.FormatRGBA},
				Checksum:  checksum,
				Heartbeat: time.Minute,
				Slots:     3, // a hold cap of 1 (Frame.Hold)
				Dir:       dir,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			c, err := framebus.Open("alloc", framebus.ConsumerOptions{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// Let the producer's heartbeat goroutine start (with GOMAXPROCS
			// 1 it runs only when this one blocks): it allocates its ticker.
			time.Sleep(20 * time.Millisecond)

			src := benchSource()
			dst := make([]byte, len(src))
			meta := framebus.Meta{UserMeta: []byte("zero-alloc")}
			bg := context.Background()
			ctx, cancel := context.WithCancel(bg)
			t.Cleanup(cancel)

			// Failures are recorded, not reported, inside the measured
			// functions: formatting a message would allocate.
			var failed error
			var last uint64
			fail := func(err error) {
				if failed == nil {
					failed = err
				}
			}
			errNotNext := errors.New("frame is not the one just published, or not intact")
			publish := func() {
				seq, err := p.Publish(src, meta)
				if err != nil {
					fail(err)
				}
				last = seq
			}
			beginCommit := func() {
				buf, err := p.Begin()
				if err != nil {
					fail(err)
					return
				}
				buf[0]++
				seq, err := p.Commit(len(src), meta)
				if err != nil {
					fail(err)
				}
				last = seq
			}
			next := func(ctx context.Context) {
				f, err := c.Next(ctx)
				if err != nil {
					fail(err)
					return
				}
				if f.Seq != last || len(f.Data) != len(src) || !f.Valid() {
					fail(errNotNext)
				}
			}
			errNoHold := errors.New("hold refused, or not the frame")
			errHeld := errors.New("a hold past the cap was granted")
			holdRelease := func(ctx context.Context) {
				f, err := c.Next(ctx)
				if err != nil {
					fail(err)
					return
				}
				h, err := f.Hold()
				if err != nil {
					fail(err)
					return
				}
				if h.Seq() != last || !h.Valid() || len(h.Data()) != len(src) {
					fail(errNoHold)
				}
				if err := h.Release(); err != nil {
					fail(err)
				}
			}
			var kept framebus.Hold // holdRefused keeps the cap's one slot held
			holdRefused := func(ctx context.Context) {
				f, err := c.Next(ctx)
				if err != nil {
					fail(err)
					return
				}
				if _, err := f.Hold(); !errors.Is(err, framebus.ErrHoldCap) {
					fail(errHeld)
				}
			}
			readInto := func(ctx context.Context) {
				f, err := c.ReadInto(ctx, dst)
				if err != nil {
					fail(err)
					return
				}
				if f.Seq != last || len(f.Data) != len(src) || !f.Valid() {
					fail(errNotNext)
				}
			}

			cases := []struct {
				name string
				fn   func()
			}{
				{"Publish", publish},
				{"Begin+Commit", beginCommit},
				{"Publish+Next(Background)+Valid", func() { publish(); next(bg) }},
				{"Publish+Next(cancellable)+Valid", func() { publish(); next(ctx) }},
				{"Begin+Commit+Next(cancellable)+Valid", func() { beginCommit(); next(ctx) }},
				{"Publish+ReadInto(Background)", func() { publish(); readInto(bg) }},
				{"Publish+ReadInto(cancellable)", func() { publish(); readInto(ctx) }},
				{"Publish+Next+Hold+Valid+Release", func() { publish(); holdRelease(ctx) }},
				{"Publish+Next+Hold(refused: cap)", func() { publish(); holdRefused(ctx) }},
			}
			for _, tc := range cases {
				if tc.name == "Publish+Next+Hold(refused: cap)" {
					publish()
					f, err := c.Next(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if kept, err = f.Hold(); err != nil {
						t.Fatal(err)
					}
				}
				// Warm up: the first call with a new context binds it
				// (context.AfterFunc), which allocates once by design.
				for i := 0; i < 3; i++ {
					tc.fn()
				}
				if failed != nil {
					t.Fatalf("%s: warm-up: %v", tc.name, failed)
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				avg := testing.AllocsPerRun(runs, tc.fn)
				runtime.ReadMemStats(&after)
				raw := after.Mallocs - before.Mallocs
				if failed != nil {
					t.Fatalf("%s: %v", tc.name, failed)
				}
				if kept.Valid() {
					kept.Release()
				}
				t.Logf("%-40s %v allocs/frame (AllocsPerRun), %d allocations in %d+1 frames", tc.name, avg, raw, runs)
				if avg != 0 {
					t.Errorf("%s: %v allocations per frame, want 0", tc.name, avg)
				} else if raw >= runs/10 {
					t.Errorf("%s: %d allocations in %d frames, want 0 (fewer than %d tolerated for other goroutines)", tc.name, raw, runs+1, runs/10)
				}
			}
		})
	}
}
