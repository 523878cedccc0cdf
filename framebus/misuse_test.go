package framebus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Misuse of the producer's loan is a typed error at once, never a deadlock:
// a second Begin, Commit or Abort without Begin, Close with a slot lent out
// (whose Commit then says the producer is closed), anything after Close.
func TestProducerMisuse(t *testing.T) {
	p, err := framebus.Create("misuse", framebus.ProducerOptions{Dir: framebus.PortableDir(t),
		Format: framebus.Format{Width: 64, Height: 16, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	within := func(what string, fn func() error, want error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if want == nil && err != nil || want != nil && !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", what, err, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("%s did not return within a second", what)
		}
	}
	within("Commit without Begin", func() error { _, err := p.Commit(0, framebus.Meta{}); return err }, framebus.ErrSlotNotHeld)
	within("Abort without Begin", func() error { p.Abort(); return nil }, nil)
	within("Begin", func() error { _, err := p.Begin(); return err }, nil)
	within("a second Begin", func() error { _, err := p.Begin(); return err }, framebus.ErrSlotHeld)
	within("Publish while a slot is lent", func() error { _, err := p.Publish([]byte{1}, framebus.Meta{}); return err }, framebus.ErrSlotHeld)
	within("Stats while a slot is lent", func() error { p.Stats(); return nil }, nil)
	within("Close with a slot lent", p.Close, nil)
	within("Commit after Close", func() error { _, err := p.Commit(1, framebus.Meta{}); return err }, framebus.ErrProducerClosed)
	within("Begin after Close", func() error { _, err := p.Begin(); return err }, framebus.ErrProducerClosed)
	within("Commit after Close, again", func() error { _, err := p.Commit(1, framebus.Meta{}); return err }, framebus.ErrProducerClosed)
	within("a second Close", p.Close, nil)
}

// A slot lent out while Close runs in another goroutine stays writable
// until its Commit, which reports the close; the consumer sees the end of
// the stream.
func TestCloseWhileFilling(t *testing.T) {
	dir := framebus.PortableDir(t)
	p, err := framebus.Create("fill", framebus.ProducerOptions{Dir: dir,
		Format: framebus.Format{Width: 640, Height: 480, PixelFormat: framebus.FormatGrey}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := framebus.Open("fill", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf, err := p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- p.Close() }()
	for i := 0; i < 50; i++ {
		for j := range buf {
			buf[j] = byte(i) // still mapped: no fault
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Commit(len(buf), framebus.Meta{}); !errors.Is(err, framebus.ErrProducerClosed) {
		t.Fatalf("Commit after a concurrent Close: %v", err)
	}
	if _, err := c.Next(ctx); !errors.Is(err, framebus.ErrEndOfStream) {
		t.Fatalf("consumer: %v, want the end of stream", err)
	}
}
