package viewer

import (
	"testing"
	"time"
)

// The WebRTC rate of the page (it once showed 0.0 while WebRTC played): real from the first second, from
// a counter sampled every half second; a counter that goes back (a new
// encoder) starts again.
func TestCounterRate(t *testing.T) {
	var c counterRate
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	if r := c.rate(at(0), 10); r != 0 {
		t.Errorf("first sample: %v, want 0", r)
	}
	if r := c.rate(at(100), 13); r != 0 {
		t.Errorf("after 100 ms: %v, want 0 (too soon to say)", r)
	}
	if r := c.rate(at(500), 25); r != 30 {
		t.Errorf("after 500 ms: %v, want 30", r)
	}
	if r := c.rate(at(1000), 40); r != 30 {
		t.Errorf("after 1 s: %v, want 30", r)
	}
	if r := c.rate(at(1500), 70); r != 30 {
		t.Errorf("after 1.5 s: %v, want 30 (the last whole second's)", r)
	}
	if r := c.rate(at(2000), 100); r != 60 {
		t.Errorf("after 2 s: %v, want 60", r)
	}
	if r := c.rate(at(2500), 5); r != 0 {
		t.Errorf("after a reset: %v, want 0", r)
	}
}
