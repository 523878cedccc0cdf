package framebus_test

import (
	"context"
	"encoding/binary"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// A Go consumer that sleeps without the held wait (Hold < 0: every wait is
// a plain FUTEX_WAIT of up to a heartbeat interval), of a 30 fps producer
// process, with the waiters word it counts itself in forged to 0 or to
// 2^32 - 1: the word heals (PROTOCOL.md amendment 11) and the consumer is
// back at the full rate within two heartbeat intervals of the forger's end.
// Before, it was woken by its heartbeat timeouts only, for good. On the
// shared wake word and on the entry's own (a producer with PerEntryWake).
// cmd/framebus TestWakeWordsHeal does the same with tail's held wait and
// spin.
func TestWakeWordsHealPlainSleep(t *testing.T) {
	const hb = 100 * time.Millisecond
	for _, perEntry := range []bool{false, true} {
		word := "wake_waiters"
		if perEntry {
			word = "entry_waiters"
		}
		t.Run(word, func(t *testing.T) {
			dir, name := framebus.ShmDir(t), busName(t)
			args := busArgs(dir, name, "-frames", "0", "-interval", "33ms", "-catchup=false", "-heartbeat", hb.String(), "-width", "64", "-height", "48")
			if perEntry {
				args = append(args, "-per-entry-wake")
			}
			prod := startChild(t, "producer", childOpts{}, "producer", args...)
			path := prod.waitEvent("ready", procStartTimeout).str("path")
			c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir, Hold: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var read atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := c.Next(ctx); err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					read.Add(1)
				}
			}()
			defer func() { cancel(); <-done }()
			s, err := framebus.Inspect(name, dir)
			if err != nil || len(s.Consumers) != 1 {
				t.Fatalf("inspect: %v, %d consumers", err, len(s.Consumers))
			}
			off := framebus.OffWakeWaiters
			if perEntry {
				off = s.Header.ConsumerTableOffset + uint64(s.Consumers[0].Index)*uint64(s.Header.ConsumerEntrySize) + framebus.EntWaiters
			}
			file, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			published := func() uint64 {
				s, err := framebus.Inspect(name, dir)
				if err != nil {
					t.Fatal(err)
				}
				return s.Header.FramesPublished
			}
			// rate is the share of the frames published in d that the
			// consumer read: windows generous for a loaded machine, no
			// latency asserted.
			rate := func(d time.Duration) (float64, int64, uint64) {
				r0, p0 := read.Load(), published()
				time.Sleep(d)
				r, p := read.Load()-r0, published()-p0
				return float64(r) / float64(max(p, 1)), r, p
			}
			if r, n, p := rate(time.Second); r < 0.8 {
				t.Fatalf("before any forgery the consumer read %d of %d frames", n, p)
			}
			for _, v := range []uint32{0, 0xFFFFFFFF, 0} {
				var b [4]byte
				binary.LittleEndian.PutUint32(b[:], v)
				for end := time.Now().Add(3 * hb); time.Now().Before(end); time.Sleep(time.Millisecond) {
					if _, err := file.WriteAt(b[:], int64(off)); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(2 * hb)
				r, n, p := rate(3 * time.Second)
				t.Logf("%s forged to %#x: the consumer read %d of %d frames (%.0f%%) from two heartbeat intervals after the forger's end", word, v, n, p, 100*r)
				if r < 0.8 {
					t.Errorf("%s forged to %#x: the consumer read %d of the %d frames published (%.0f%%), want the full rate back", word, v, n, p, 100*r)
				}
			}
		})
	}
}
