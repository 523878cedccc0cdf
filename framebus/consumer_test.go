//go:build linux

package framebus_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// A frame that passes the sequence lock but fails its CRC-32C is corrupt in
// memory: Next reports it once, counts it as dropped and moves on; it must
// not fail on the same frame again (a caller that retries would spin).
func TestChecksumMismatchIsConsumedOnce(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("crc", framebus.ProducerOptions{Format: framebus.Format{Width: 64, Height: 64, PixelFormat: framebus.FormatGrey}, Checksum: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("crc", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := make([]byte, 64*64)
	if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	// Scribble on the committed frame behind the producer's back.
	s, err := framebus.Inspect("crc", dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(s.Header.PayloadOffset + uint64(s.Header.Active)*s.Header.SlotStride + 100)
	if _, err := f.WriteAt([]byte{0xff}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx := context.Background()
	if _, err := c.Next(ctx); !errors.Is(err, framebus.ErrChecksum) {
		t.Fatalf("Next on a corrupted frame = %v, want ErrChecksum", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Next(short); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next after the corrupted frame = %v, want the deadline (the frame must be consumed)", err)
	}
	if st := c.Stats(); st.Dropped != 1 || st.Delivered != 0 || st.LastSeq != 1 {
		t.Errorf("stats after a corrupt frame: %+v, want dropped 1, delivered 0, last_seq 1", st)
	}
	if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	fr, err := c.Next(ctx)
	if err != nil || fr.Seq != 2 || fr.Dropped != 0 {
		t.Fatalf("next good frame: %+v, %v", fr, err)
	}
}

// A segment file truncated under a live producer and consumer (PROTOCOL.md
// section 6): no SIGBUS reaches either; the consumer gets a typed error, the
// producer marks the file BROKEN and publishes a new generation at its next
// heartbeat, and the consumer follows it and reads frames again.
func TestTruncatedUnderLiveMappings(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("trunc", framebus.ProducerOptions{Format: framebus.Format{Width: 64, Height: 64}, Checksum: true, Heartbeat: 20 * time.Millisecond, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("trunc", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := make([]byte, 64*64*4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p.Path(), 0); err != nil {
		t.Fatal(err)
	}
	// The consumer touches the truncated mapping at once: a typed error.
	if _, err := c.Next(ctx); !errors.Is(err, framebus.ErrCorrupt) {
		t.Fatalf("Next on a truncated segment = %v, want ErrCorrupt", err)
	}
	// The producer either faults on its next write (a typed error) or has
	// already moved to a new generation; it keeps publishing either way.
	deadline := time.Now().Add(5 * time.Second)
	for p.Generation() < 2 && time.Now().Before(deadline) {
		if _, err := p.Publish(frame, framebus.Meta{}); err != nil && !errors.Is(err, framebus.ErrCorrupt) {
			t.Fatalf("Publish on a truncated segment = %v, want ErrCorrupt or success", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.Generation() < 2 {
		t.Fatal("the producer did not publish a new generation after the truncation")
	}
	for {
		if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
			t.Fatal(err)
		}
		f, err := c.Next(ctx)
		if errors.Is(err, framebus.ErrCorrupt) {
			continue // waiting for the new generation
		}
		if err != nil {
			t.Fatalf("after the new generation: %v", err)
		}
		if f.Generation < 2 || !f.GenerationChanged {
			t.Fatalf("frame %+v: want the first frame of generation >= 2", f)
		}
		break
	}
}

// User metadata of changing lengths through both slots: the reader gets
// exactly the bytes of each frame, and the descriptor keeps the bytes past
// user_meta_len zero (the producer clears only what a slot's previous frame
// used, the reader copies only user_meta_len bytes).
func TestUserMetaLengths(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("meta", framebus.ProducerOptions{Format: framebus.Format{Width: 16, Height: 16, PixelFormat: framebus.FormatGrey}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("meta", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := make([]byte, 16*16)
	full := bytes.Repeat([]byte{0xa5}, framebus.UserMetaMax)
	for i, n := range []int{64, 64, 5, 0, 30, 0, 0, 64, 1} {
		meta := full[:n]
		if _, err := p.Publish(frame, framebus.Meta{UserMeta: meta}); err != nil {
			t.Fatal(err)
		}
		fr, err := c.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fr.UserMeta, meta) {
			t.Fatalf("frame %d: metadata %x, want %x", i, fr.UserMeta, meta)
		}
		s, err := framebus.Inspect("meta", dir)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(p.Path())
		if err != nil {
			t.Fatal(err)
		}
		d := s.Header.SlotTableOffset + uint64(s.Header.Active)*framebus.SlotDescSize
		stored := raw[d+64 : d+64+framebus.UserMetaMax]
		if !bytes.Equal(stored[:n], meta) || bytes.Count(stored[n:], []byte{0}) != framebus.UserMetaMax-n {
			t.Fatalf("frame %d (%d bytes of metadata): descriptor holds %x", i, n, stored)
		}
	}
}
