package viewer

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func pic(seq uint64, fill byte) *Picture {
	return &Picture{Seq: seq, Generation: 1, Data: bytes.Repeat([]byte{fill}, 1000)}
}

// A reader that was busy while 100 pictures were published gets the newest
// one next, not the one after the picture it had: no backlog.
func TestHubSlowReaderGetsNewest(t *testing.T) {
	h := NewHub()
	h.Publish(pic(1, 1))
	p := h.Reader(context.Background()).Next(0)
	if p == nil || p.Seq != 1 {
		t.Fatalf("first picture: %+v", p)
	}
	held := p.ID()
	for i := uint64(2); i <= 101; i++ {
		h.Publish(pic(i, byte(i)))
	}
	// The first picture is still held: its bytes are intact.
	if p.Data[0] != 1 || p.Data[999] != 1 {
		t.Fatal("a held picture was overwritten")
	}
	h.Release(p)
	p = h.Reader(context.Background()).Next(held)
	if p == nil || p.Seq != 101 || p.Data[500] != 101 {
		t.Fatalf("after 100 publishes the reader got %+v, want the newest (seq 101)", p)
	}
	h.Release(p)
	// Nothing newer: Next waits; a publish wakes it.
	got := make(chan *Picture)
	go func() { got <- h.Reader(context.Background()).Next(p.ID()) }()
	waitWanted(t, h)
	h.Publish(pic(102, 7))
	if q := <-got; q == nil || q.Seq != 102 {
		t.Fatalf("woken with %+v, want seq 102", q)
	}
}

// waitWanted waits until a reader is blocked in Next.
func waitWanted(t *testing.T, h *Hub) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !h.Wanted() {
		if time.Now().After(deadline) {
			t.Fatal("no reader is waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

// Frame sequence numbers start again with a new producer; readers do not
// get stuck on the lower numbers.
func TestHubNewProducerSeqRestarts(t *testing.T) {
	h := NewHub()
	h.Publish(pic(500, 1))
	p := h.Reader(context.Background()).Next(0)
	h.Release(p)
	h.Publish(pic(1, 2)) // a new producer, generation 1 again, seq 1
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := h.Reader(ctx).Next(p.ID())
	if q == nil || q.Seq != 1 {
		t.Fatalf("got %+v, want the new producer's seq 1", q)
	}
	h.Release(q)
}

func TestHubNextEndsWithContextAndClose(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Picture)
	go func() { done <- h.Reader(ctx).Next(0) }()
	waitWanted(t, h)
	cancel()
	if p := <-done; p != nil {
		t.Fatalf("cancelled Next returned %+v", p)
	}
	go func() { done <- h.Reader(context.Background()).Next(0) }()
	waitWanted(t, h)
	h.Close()
	if p := <-done; p != nil {
		t.Fatalf("Next on a closed hub returned %+v", p)
	}
}

// Once warm, publishing reuses the buffers of released pictures.
func TestHubPublishAllocatesNothing(t *testing.T) {
	h := NewHub()
	src := pic(1, 9)
	for i := 0; i < 4; i++ {
		h.Publish(src)
	}
	var last uint64
	rd := h.Reader(context.Background())
	defer rd.Close()
	allocs := testing.AllocsPerRun(100, func() {
		src.Seq++
		h.Publish(src)
		p := rd.Next(last)
		last = p.ID()
		h.Release(p)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per picture, want 0", allocs)
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"8080": "127.0.0.1:8080", ":8080": "127.0.0.1:8080", "0.0.0.0:80": "0.0.0.0:80",
		"localhost:0": "localhost:0", "[::1]:9000": "[::1]:9000", "": "127.0.0.1:8080",
	} {
		if got, err := ListenAddr(in); err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"host", "1.2.3.4:", "1.2.3.4:notaport", "99999"} {
		if got, err := ListenAddr(bad); err == nil {
			t.Errorf("ListenAddr(%q) = %q, want an error", bad, got)
		}
	}
}

func TestRateMeter(t *testing.T) {
	var r rateMeter
	if r.fps(0) != 0 {
		t.Fatal("empty meter has a rate")
	}
	for i := range 31 {
		r.add(int64(i) * int64(time.Second) / 30)
	}
	if f := r.fps(int64(time.Second)); f < 29.5 || f > 30.5 {
		t.Errorf("fps = %v, want 30", f)
	}
	if f := r.fps(int64(10 * time.Second)); f != 0 {
		t.Errorf("fps long after the last event = %v, want 0", f)
	}
}
