//go:build linux || windows

package framebus

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Litmus-style stress tests of the sequence lock (PROTOCOL.md section 5,
// memory ordering; fence_*.go), meant for real weakly ordered hardware: an
// arm64 camera board, a ppc64le or riscv64 machine. On x86-64 (TSO) and
// under qemu-user on an x86-64 host (guest threads run on host threads,
// with the host's ordering) they cannot fail for want of a fence; there they
// prove only that the code runs.
//
// Run them on the board (docs/PORTABILITY.md):
//
//	make litmus-arm64                         # cross-builds bin/framebus-arm64.test
//	FRAMEBUS_LITMUS=60s ./framebus-arm64.test -test.run Litmus -test.v
//
// Without FRAMEBUS_LITMUS they run for 200 ms each (skipped with -short).

func litmusDuration(t *testing.T) time.Duration {
	if v := os.Getenv("FRAMEBUS_LITMUS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FRAMEBUS_LITMUS=%q: %v", v, err)
		}
		return d
	}
	if testing.Short() {
		t.Skip("litmus stress skipped in -short mode (FRAMEBUS_LITMUS=60s runs it long)")
	}
	return 200 * time.Millisecond
}

func litmusReaders() int {
	return max(2, min(runtime.NumCPU()-1, 7)) // at least one copying and one zero-copy reader
}

// litmusBuf is a sequence-locked record shaped like a slot: the lock word
// and 64 words of data spread over eight cache lines.
type litmusBuf struct {
	lock atomic.Uint64
	_    [56]byte
	data [64]uint64
}

// TestSeqlockLitmusFences is the message-passing litmus of the fences
// themselves, at full speed: the writer stores the odd lock, storeFence,
// every data word = n, the even lock; readers load the lock, the data,
// loadFence, the lock again, and accept only a stable even lock. An
// accepted record whose words differ is a torn read that the fences failed
// to prevent: the test fails. The same shape without the fences runs
// alongside as a control and is only reported: on arm64 hardware it is
// expected to show torn accepts (proving the test can see reordering); on
// x86-64 it shows none.
func TestSeqlockLitmusFences(t *testing.T) {
	d := litmusDuration(t)
	for _, fenced := range []bool{true, false} {
		name := "fenced"
		if !fenced {
			name = "control-without-fences"
		}
		t.Run(name, func(t *testing.T) {
			accepted, torn, retried := runLitmus(d, litmusReaders(), fenced)
			t.Logf("%s/%s, %d readers, %v: %d reads accepted, %d retried, %d torn accepted",
				runtime.GOOS, runtime.GOARCH, litmusReaders(), d, accepted, retried, torn)
			if fenced && torn != 0 {
				t.Fatalf("%d torn records accepted with the fences of fence_%s: the sequence lock is broken on this hardware", torn, runtime.GOARCH)
			}
			if accepted == 0 {
				t.Fatal("no read was ever accepted: the readers starved")
			}
		})
	}
}

func runLitmus(d time.Duration, readers int, fenced bool) (accepted, torn, retried uint64) {
	var b litmusBuf
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acc, bad, retry atomic.Uint64
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a, x, re uint64
			for k := 0; !stop.Load(); k++ {
				if k%4096 == 0 {
					runtime.Gosched() // where preemption is slow (Wine), let every reader run
				}
				l1 := b.lock.Load()
				if l1&1 != 0 {
					continue
				}
				first := b.data[0]
				same := true
				for i := 1; i < len(b.data); i++ {
					if b.data[i] != first {
						same = false
					}
				}
				if fenced {
					loadFence()
				}
				if b.lock.Load() != l1 {
					re++
					continue
				}
				a++
				if !same {
					x++
				}
			}
			acc.Add(a)
			bad.Add(x)
			retry.Add(re)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := uint64(1); !stop.Load(); n++ {
			if n%4096 == 0 {
				runtime.Gosched()
			}
			b.lock.Store(b.lock.Load() | 1)
			if fenced {
				storeFence()
			}
			for i := range b.data {
				b.data[i] = n
			}
			b.lock.Store(b.lock.Load() + 1)
		}
	}()
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return acc.Load(), bad.Load(), retry.Load()
}

// TestSeqlockLitmusBus hammers the real commit and read paths (Publish,
// tryRead with ReadInto's copy, Next's zero-copy view re-validated with
// Valid) across goroutines: the producer commits small frames whose every
// byte is the frame number's low byte, as fast as it can; readers read
// without ever sleeping. No accepted frame may be torn.
func TestSeqlockLitmusBus(t *testing.T) {
	d := litmusDuration(t)
	dir := portableDir(t)
	p := portableCreate(t, dir, "litmus", func(o *ProducerOptions) {
		o.Format = Format{Width: 512, Height: 1, PixelFormat: FormatGrey} // 512 B: eight cache lines
		o.Checksum = false
		o.Heartbeat = time.Second
	})
	readers := litmusReaders()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acc, bad, views, badViews atomic.Uint64
	for r := 0; r < readers; r++ {
		c := portableOpen(t, dir, "litmus")
		zeroCopy := r%2 == 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, p.Format().FrameSize)
			for !stop.Load() {
				if zeroCopy {
					fr, err := c.tryRead(nil, false)
					if err != nil || fr == nil {
						continue
					}
					ok := uniform(fr.Data, byte(fr.Seq))
					if fr.Valid() { // the view outlived no overwrite: it must be whole
						views.Add(1)
						if !ok {
							badViews.Add(1)
						}
					}
					continue
				}
				fr, err := c.tryRead(dst, true)
				if err != nil || fr == nil {
					continue
				}
				acc.Add(1)
				if !uniform(fr.Data, byte(fr.Seq)) {
					bad.Add(1)
				}
			}
		}()
	}
	buf := make([]byte, p.Format().FrameSize)
	deadline := time.Now().Add(d)
	var n uint64
	for time.Now().Before(deadline) {
		for i := 0; i < 1000; i++ {
			n++
			for j := range buf {
				buf[j] = byte(n)
			}
			if _, err := p.Publish(buf, Meta{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%s/%s, %d readers, %v: %d frames committed, %d copies accepted (%d torn), %d zero-copy views valid (%d torn)",
		runtime.GOOS, runtime.GOARCH, readers, d, n, acc.Load(), bad.Load(), views.Load(), badViews.Load())
	if bad.Load() != 0 || badViews.Load() != 0 {
		t.Fatalf("torn frames accepted: %d copies, %d views", bad.Load(), badViews.Load())
	}
	if acc.Load()+views.Load() == 0 {
		t.Fatal("no frame was ever read")
	}
}
