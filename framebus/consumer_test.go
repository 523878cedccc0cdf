//go:build linux

package framebus_test

import (
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
