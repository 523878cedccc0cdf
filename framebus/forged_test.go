//go:build linux

package framebus_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Forged or torn control words never stop a consumer (PROTOCOL.md amendment
// 9): while a hostile writer forges a slot's frame_seq far ahead, the
// header's last_seq (also while a consumer joins), the active index, a
// slot's bytes, or a slot's frame_seq and last_seq together, for bursts of
// 100 ms, the consumers refuse what they cannot take, never return an error
// for it, and deliver frames again within 3 heartbeat intervals of the end
// of each burst; the consumer that joined during a burst too.
func TestForgedWordsNeverStopAConsumer(t *testing.T) {
	const hb = 100 * time.Millisecond
	dir := t.TempDir()
	p, err := framebus.Create("forge", framebus.ProducerOptions{Dir: dir, Heartbeat: hb,
		Format: framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	snap, err := framebus.Inspect("forge", dir)
	if err != nil {
		t.Fatal(err)
	}
	h := snap.Header
	f, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	put := func(off uint64, v uint64, size int) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		f.WriteAt(b[:size], int64(off))
	}
	slot := func(i uint64, field uint64) uint64 { return h.SlotTableOffset + i*framebus.SlotDescSize + field }
	const (
		far              = 1 << 62
		slotCount uint64 = 2
	)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the producer, a frame every 2 ms
		defer wg.Done()
		frame := make([]byte, 64*16)
		for ctx.Err() == nil {
			p.Publish(frame, framebus.Meta{})
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// consume runs a consumer and keeps the time of its last frame.
	type reader struct {
		last   atomic.Int64
		frames atomic.Uint64
		err    atomic.Pointer[error]
		c      *framebus.Consumer
	}
	consume := func() *reader {
		r := &reader{}
		c, err := framebus.Open("forge", framebus.ConsumerOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		r.c = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for {
				_, err := c.Next(ctx)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					r.err.Store(&err)
					return
				}
				r.frames.Add(1)
				r.last.Store(time.Now().UnixNano())
			}
		}()
		return r
	}
	readers := []*reader{consume()}
	resumed := func(what string, since time.Time) {
		t.Helper()
		for _, r := range readers {
			deadline := since.Add(3 * hb)
			for r.last.Load() <= since.UnixNano() {
				if e := r.err.Load(); e != nil {
					t.Fatalf("%s: the consumer stopped: %v", what, *e)
				}
				if time.Now().After(deadline) {
					_, _, why := r.c.Refusals()
					t.Fatalf("%s: no frame within 3 heartbeat intervals (%v) of the end of the burst (last refusal: %v)", what, 3*hb, why)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	burst := func(what string, forge func(), during func()) {
		t.Helper()
		end := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(end) {
			forge()
			if during != nil {
				during()
				during = nil
			}
			time.Sleep(500 * time.Microsecond)
		}
		resumed(what, time.Now())
	}
	time.Sleep(20 * time.Millisecond)
	resumed("start", time.Now())

	burst("slot frame_seq far ahead", func() {
		for i := uint64(0); i < slotCount; i++ {
			put(slot(i, framebus.SlotFrameSeq), far, 8)
		}
	}, nil)
	burst("header last_seq far ahead while a consumer joins", func() { put(framebus.OffLastSeq, far, 8) },
		func() { readers = append(readers, consume()) })
	burst("active out of range", func() { put(framebus.OffActive, 7, 4) }, nil)
	burst("bytes past the slot's capacity", func() {
		for i := uint64(0); i < slotCount; i++ {
			put(slot(i, framebus.SlotBytes), 1<<40, 8)
		}
	}, nil)
	burst("frame_seq and last_seq far ahead together", func() {
		put(framebus.OffLastSeq, far, 8)
		for i := uint64(0); i < slotCount; i++ {
			put(slot(i, framebus.SlotFrameSeq), far, 8)
		}
	}, nil)

	cancel()
	wg.Wait()
	var refused, resyncs uint64
	for _, r := range readers {
		n, rs, _ := r.c.Refusals()
		refused += n
		resyncs += rs
		if e := r.err.Load(); e != nil && !errors.Is(*e, context.Canceled) {
			t.Errorf("a consumer ended with %v", *e)
		}
	}
	t.Logf("%d consumers, %d frames delivered, %d reads refused, %d re-synchronisations", len(readers), readers[0].frames.Load(), refused, resyncs)
	if refused == 0 || resyncs == 0 {
		t.Errorf("refused %d reads and re-synchronised %d times: the forgeries were not seen", refused, resyncs)
	}
}
