package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// A tail (a Go consumer) of a 30 fps bus whose waiters word is forged, to
// 0 or to 2^32 - 1 (which the sleeper's own += 1 wraps to 0): the word
// heals (PROTOCOL.md amendment 11) and the tail is back at the full rate
// within two heartbeat intervals of the forger's end. Before, a consumer
// counted in a word forged to 0 was never woken again: one frame per
// heartbeat timeout (or per held wait that happened to be open) for good.
// On the shared wake word (amendment 7) and on the entries' own (a bus
// with PerEntryWake); with the default wait (held) and with --spin.
func TestWakeWordsHeal(t *testing.T) {
	const hb = 100 * time.Millisecond
	const period = time.Second / 30
	wakeWaiters := uint64(unsafe.Offsetof(framebus.Header{}.WakeWaiters))
	const entWaiters = 12 // PROTOCOL.md section 3.5
	for _, c := range []struct {
		perEntry bool
		spin     bool
	}{{false, false}, {false, true}, {true, false}} {
		word := "wake_waiters"
		if c.perEntry {
			word = "entry waiters"
		}
		mode := "held wait"
		if c.spin {
			mode = "spin"
		}
		t.Run(strings.ReplaceAll(word+" "+mode, " ", "_"), func(t *testing.T) {
			dir, name := t.TempDir(), fmt.Sprintf("heal%d", os.Getpid())
			f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey, FPSNum: 30, FPSDen: 1}.Complete()
			p, err := framebus.Create(name, framebus.ProducerOptions{Format: f, Dir: dir, Heartbeat: hb, PerEntryWake: c.perEntry})
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the producer: 30 fps
				defer wg.Done()
				tk := time.NewTicker(period)
				defer tk.Stop()
				frame := make([]byte, f.FrameSize)
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
					}
					if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			defer func() {
				close(stop)
				wg.Wait()
				p.Close()
			}()
			args := []string{"tail", name, "--dir", dir, "--timeout", "30s"}
			if c.spin {
				args = append(args, "--spin")
			}
			tail := start(t, args...)
			lines := func() int { return strings.Count(tail.Stdout.String(), "\n") }
			testutil.WaitFor(t, 10*time.Second, "tail's frames", func() bool { return lines() > 10 })
			s, err := framebus.Inspect(name, dir)
			if err != nil || len(s.Consumers) != 1 {
				t.Fatalf("inspect: %v, %d consumers", err, len(s.Consumers))
			}
			off := wakeWaiters
			if c.perEntry {
				off = s.Header.ConsumerTableOffset + uint64(s.Consumers[0].Index)*uint64(s.Header.ConsumerEntrySize) + entWaiters
			}
			file, err := os.OpenFile(segment(dir, name), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			// rate is the share of the frames published in d that tail read.
			rate := func(d time.Duration) (float64, int, uint64) {
				l0, p0 := lines(), p.Stats().FramesPublished
				time.Sleep(d)
				l, pub := lines()-l0, p.Stats().FramesPublished-p0
				return float64(l) / float64(max(pub, 1)), l, pub
			}
			if r, l, pub := rate(time.Second); r < 0.8 {
				t.Fatalf("before any forgery tail read %d of %d frames", l, pub)
			}
			for _, v := range []uint32{0, 0xFFFFFFFF} {
				// The forger: the word rewritten every millisecond for a
				// few heartbeat intervals, so that it lands while the
				// tail sleeps and while it does not.
				var b [4]byte
				binary.LittleEndian.PutUint32(b[:], v)
				for end := time.Now().Add(3 * hb); time.Now().Before(end); time.Sleep(time.Millisecond) {
					if _, err := file.WriteAt(b[:], int64(off)); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(2 * hb)
				// Generous windows for a loaded machine: the share of the
				// frames read, not a latency.
				r, l, pub := rate(3 * time.Second)
				t.Logf("%s forged to %#x: tail read %d of %d frames (%.0f%%) from two heartbeat intervals after the forger's end", word, v, l, pub, 100*r)
				if r < 0.8 {
					t.Errorf("%s forged to %#x: tail read %d of the %d frames published (%.0f%%), want the full rate back", word, v, l, pub, 100*r)
				}
			}
		})
	}
}
