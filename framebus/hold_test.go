//go:build linux

package framebus_test

// Holds (PROTOCOL.md amendment 10) in one process: a held frame survives the
// producer's laps; the cap; a 2-slot bus and a bus without FlagHolds; misuse;
// the lease; the same frame held twice and a slot held again after a take
// back; forged hold words. The multi-process tests are in
// process_hold_test.go.

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

var holdFormat = framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatGrey}

// holdBus creates a bus of slots slots in a directory of the test's own.
func holdBus(t *testing.T, slots int, mod func(*framebus.ProducerOptions)) (dir string, p *framebus.Producer) {
	t.Helper()
	dir = framebus.ShmDir(t)
	o := framebus.ProducerOptions{Format: holdFormat, Dir: dir, Slots: slots, Heartbeat: 20 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	p, err := framebus.Create("hold", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return dir, p
}

func holdOpen(t *testing.T, dir string) *framebus.Consumer {
	t.Helper()
	c, err := framebus.Open("hold", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publishRead publishes frame bytes of seq's pattern and reads it with c.
func publishRead(t *testing.T, p *framebus.Producer, c *framebus.Consumer) *framebus.Frame {
	t.Helper()
	seq := p.Stats().LastSeq + 1
	if _, err := p.Publish(framebus.FrameBytes(seq, int(holdFormat.FrameSize)), framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.Seq != seq {
		t.Fatalf("read frame %d, published %d", f.Seq, seq)
	}
	return f
}

func entryInfo(t *testing.T, dir string, entry int) framebus.ConsumerInfo {
	t.Helper()
	s, err := framebus.Inspect("hold", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range s.Consumers {
		if ci.Index == entry {
			return ci
		}
	}
	t.Fatalf("entry %d not in the snapshot", entry)
	return framebus.ConsumerInfo{}
}

// A held frame stays intact while the producer publishes 100 more frames on
// 3 slots, read by the holder and by another consumer.
func TestHoldKeepsFrame(t *testing.T) {
	dir, p := holdBus(t, 3, nil)
	c, other := holdOpen(t, dir), holdOpen(t, dir)
	f := publishRead(t, p, c)
	h, err := f.Hold()
	if err != nil {
		t.Fatal(err)
	}
	want := framebus.FrameBytes(h.Seq(), int(holdFormat.FrameSize))
	for i := 0; i < 100; i++ {
		publishRead(t, p, c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := other.Next(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if !h.Valid() || string(h.Data()) != string(want) {
		t.Fatalf("held frame %d overwritten (valid %v)", h.Seq(), h.Valid())
	}
	ci := entryInfo(t, dir, c.Entry())
	if ci.Holds != 1 || ci.HoldsGranted != 1 {
		t.Errorf("inspect: %d holds, %d granted; want 1, 1", ci.Holds, ci.HoldsGranted)
	}
	if st := c.Stats(); st.Holds != 1 || st.HoldsGranted != 1 {
		t.Errorf("stats: %+v", st)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if ci := entryInfo(t, dir, c.Entry()); ci.HoldMask != 0 {
		t.Errorf("hold_mask %#x after release", ci.HoldMask)
	}
	s, _ := framebus.Inspect("hold", dir)
	if s.HoldCap != 1 || s.Header.Flags&framebus.FlagHolds == 0 || s.Header.HoldsGranted != 1 {
		t.Errorf("snapshot: cap %d, flags %#x, holds_granted %d", s.HoldCap, s.Header.Flags, s.Header.HoldsGranted)
	}
}

// More holders than the cap are refused with ErrHoldCap at once; a release
// makes room.
func TestHoldCap(t *testing.T) {
	dir, p := holdBus(t, 4, nil) // cap 2
	cs := []*framebus.Consumer{holdOpen(t, dir), holdOpen(t, dir), holdOpen(t, dir)}
	var hs []framebus.Hold
	for i, c := range cs {
		f := publishRead(t, p, c)
		for _, o := range cs[i+1:] { // the others keep up
			publishReadOther(t, o)
		}
		start := time.Now()
		h, err := f.Hold()
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Hold took %v", d)
		}
		if i < 2 {
			if err != nil {
				t.Fatalf("holder %d: %v", i, err)
			}
			hs = append(hs, h)
			continue
		}
		if !errors.Is(err, framebus.ErrHoldCap) || !errors.Is(err, framebus.ErrNoHold) {
			t.Fatalf("holder %d past the cap: %v, want ErrHoldCap", i, err)
		}
		var he *framebus.HoldError
		if !errors.As(err, &he) {
			t.Errorf("%v is no *HoldError", err)
		}
	}
	// One consumer alone can hold no more than the cap either.
	if _, err := publishRead(t, p, cs[0]).Hold(); !errors.Is(err, framebus.ErrHoldCap) {
		t.Errorf("a third slot held by one consumer: %v, want ErrHoldCap", err)
	}
	hs[0].Release()
	for _, c := range cs[1:] {
		publishReadOther(t, c)
	}
	if _, err := publishRead(t, p, cs[0]).Hold(); err != nil {
		t.Errorf("after a release: %v", err)
	}
	s, _ := framebus.Inspect("hold", dir)
	if s.Header.HoldsRefused != 2 || s.Held != 2 {
		t.Errorf("holds_refused %d, held %d; want 2, 2", s.Header.HoldsRefused, s.Held)
	}
}

func publishReadOther(t *testing.T, c *framebus.Consumer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Next(ctx); err != nil {
		t.Fatal(err)
	}
}

// A 2-slot bus holds nothing (cap 0); a bus without FlagHolds (an older
// producer) refuses with ErrHoldUnsupported; neither blocks.
func TestHoldRefusedTwoSlotsAndUnsupported(t *testing.T) {
	dir, p := holdBus(t, 2, nil)
	c := holdOpen(t, dir)
	if _, err := publishRead(t, p, c).Hold(); !errors.Is(err, framebus.ErrHoldCap) {
		t.Errorf("2 slots: %v, want ErrHoldCap", err)
	}
	if st := c.Stats(); st.HoldsRefused != 1 {
		t.Errorf("2 slots: holds_refused %d, want 1", st.HoldsRefused)
	}

	dir3, p3 := holdBus(t, 3, nil)
	f, err := os.OpenFile(p3.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [4]byte
	f.ReadAt(b[:], int64(framebus.OffFlags))
	binary.LittleEndian.PutUint32(b[:], binary.LittleEndian.Uint32(b[:])&^framebus.FlagHolds)
	f.WriteAt(b[:], int64(framebus.OffFlags))
	c3 := holdOpen(t, dir3)
	if _, err := publishRead(t, p3, c3).Hold(); !errors.Is(err, framebus.ErrHoldUnsupported) || !errors.Is(err, framebus.ErrNoHold) {
		t.Errorf("no FlagHolds: %v, want ErrHoldUnsupported", err)
	}
}

// Misuse is an error, never a panic: double release (also of a copy),
// release after Close, a hold of a copied frame, a hold after Close.
func TestHoldMisuse(t *testing.T) {
	dir, p := holdBus(t, 3, nil)
	c := holdOpen(t, dir)
	h, err := publishRead(t, p, c).Hold()
	if err != nil {
		t.Fatal(err)
	}
	cp := h
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); !errors.Is(err, framebus.ErrHoldReleased) {
		t.Errorf("double release: %v", err)
	}
	if err := cp.Release(); !errors.Is(err, framebus.ErrHoldReleased) {
		t.Errorf("release of a copy: %v", err)
	}
	if h.Valid() {
		t.Error("a released hold is valid")
	}
	if err := (framebus.Hold{}).Release(); !errors.Is(err, framebus.ErrHoldReleased) {
		t.Errorf("zero Hold: %v", err)
	}

	p.Publish(make([]byte, holdFormat.FrameSize), framebus.Meta{})
	dst := make([]byte, holdFormat.FrameSize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fr, err := c.ReadInto(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fr.Hold(); !errors.Is(err, framebus.ErrHoldCopy) || !errors.Is(err, framebus.ErrNoHold) {
		t.Errorf("hold of a ReadInto frame: %v", err)
	}

	f := publishRead(t, p, c)
	h2, err := f.Hold()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := h2.Release(); !errors.Is(err, framebus.ErrConsumerClosed) {
		t.Errorf("release after Close: %v", err)
	}
	if h2.Valid() {
		t.Error("a hold is valid after Close")
	}
	if _, err := f.Hold(); !errors.Is(err, framebus.ErrConsumerClosed) {
		t.Errorf("hold after Close: %v", err)
	}
	s, _ := framebus.Inspect("hold", dir)
	if s.Held != 0 {
		t.Errorf("%d slots held after Close", s.Held)
	}
}

// With a lease, a hold older than it is taken back when the producer needs
// the slot: counted, and Valid false. The same frame held twice shares one
// bit; a hold taken back does not release a newer hold of the same slot.
func TestHoldLeaseAndSharing(t *testing.T) {
	dir, p := holdBus(t, 3, func(o *framebus.ProducerOptions) { o.HoldMax = 20 * time.Millisecond })
	c := holdOpen(t, dir)
	f := publishRead(t, p, c)
	a, err := f.Hold()
	if err != nil {
		t.Fatal(err)
	}
	a2, err := f.Hold() // the same frame again: one bit
	if err != nil {
		t.Fatal(err)
	}
	maskA := entryInfo(t, dir, c.Entry()).HoldMask
	if err := a2.Release(); err != nil {
		t.Fatal(err)
	}
	if m := entryInfo(t, dir, c.Entry()).HoldMask; m != maskA || !a.Valid() {
		t.Fatalf("releasing one of two holds of a frame: mask %#x, want %#x (valid %v)", m, maskA, a.Valid())
	}
	if s, _ := framebus.Inspect("hold", dir); s.Header.HoldMaxNS != uint64(20*time.Millisecond) {
		t.Errorf("hold_max_ns %d", s.Header.HoldMaxNS)
	}
	time.Sleep(30 * time.Millisecond)
	for i := 0; i < 4; i++ {
		publishRead(t, p, c)
	}
	if a.Valid() {
		t.Fatal("a hold past its lease is still valid after the producer lapped the bus")
	}
	if st := c.Stats(); st.HoldsTakenBack != 1 {
		t.Errorf("holds_taken_back %d, want 1", st.HoldsTakenBack)
	}
	// Hold frames until one lands in a's slot.
	var b framebus.Hold
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("no frame in the first hold's slot")
		}
		h, err := publishRead(t, p, c).Hold()
		if err != nil {
			t.Fatal(err)
		}
		if entryInfo(t, dir, c.Entry()).HoldMask == maskA {
			b = h
			break
		}
		h.Release()
	}
	if err := a.Release(); err != nil {
		t.Fatalf("release of a hold taken back: %v", err)
	}
	if m := entryInfo(t, dir, c.Entry()).HoldMask; m != maskA || !b.Valid() {
		t.Fatalf("releasing the old hold released the new one: mask %#x, want %#x", m, maskA)
	}
	b.Release()
	if m := entryInfo(t, dir, c.Entry()).HoldMask; m != 0 {
		t.Errorf("mask %#x after every release", m)
	}
	if s, _ := framebus.Inspect("hold", dir); s.Header.HoldsTakenBack != 1 {
		t.Errorf("header holds_taken_back %d", s.Header.HoldsTakenBack)
	}
}

// Forged hold words (bits past slot_count, bits of a free entry, every bit
// of a live entry, rewritten all the time) never freeze the producer: it
// keeps publishing, a plain consumer keeps reading, and the words are
// counted (holds_ignored, holds_taken_back).
func TestHoldForgedWords(t *testing.T) {
	dir, p := holdBus(t, 3, nil)
	victim := holdOpen(t, dir) // its entry is forged
	reader := holdOpen(t, dir)
	s, err := framebus.Inspect("hold", dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	maskAt := func(entry int) int64 {
		return int64(s.Header.ConsumerTableOffset) + int64(entry)*framebus.ConsumerEntrySize + int64(framebus.EntHoldMask)
	}
	put := func(entry int, v uint32) {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], v)
		f.WriteAt(b[:], maskAt(entry))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the forger
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			// Every bit (each grant pending: those slots may be taken),
			// then every slot finished-held (only a take-back frees one).
			put(victim.Entry(), []uint32{0xFFFFFFFF, 0xFF}[i%2])
			put(10, 0x7)                    // a free entry
			put(reader.Entry(), 0x7FFFFFF8) // bits past slot_count only
			time.Sleep(200 * time.Microsecond)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for start := time.Now(); time.Since(start) < 500*time.Millisecond; n++ {
		if time.Now().After(deadline) {
			t.Fatal("the producer froze")
		}
		fr := publishRead(t, p, reader)
		if string(fr.Data) != string(framebus.FrameBytes(fr.Seq, int(holdFormat.FrameSize))) || !fr.Valid() {
			t.Fatalf("frame %d torn", fr.Seq)
		}
	}
	cancel()
	wg.Wait()
	// The heartbeat's scan counts the ignored bits: wait for one (bounded).
	for end := time.Now().Add(5 * time.Second); p.Stats().HoldsIgnored == 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	st := p.Stats()
	t.Logf("%d frames published and read under forged hold words; holds_ignored %d, holds_taken_back %d", n, st.HoldsIgnored, st.HoldsTakenBack)
	if n < 100 {
		t.Errorf("only %d frames in 500 ms", n)
	}
	if st.HoldsIgnored == 0 || st.HoldsTakenBack == 0 {
		t.Errorf("holds_ignored %d, holds_taken_back %d: want both > 0", st.HoldsIgnored, st.HoldsTakenBack)
	}
}
