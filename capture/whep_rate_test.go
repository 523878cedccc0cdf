//go:build framebus_webrtc && cgo

package capture

import "testing"

func TestSnapRate(t *testing.T) {
	for _, c := range []struct {
		fps      float64
		num, den uint32
	}{{30, 30, 1}, {28.1, 30, 1}, {32, 30, 1}, {29.97, 30000, 1001}, {25.3, 25, 1}, {59.94, 60000, 1001}, {57, 60, 1},
		{14.5, 15, 1}, {40, 40, 1}, {0.5, 0, 1}, {7.4, 7, 1}} {
		if n, d := snapRate(c.fps); n != c.num || d != c.den {
			t.Errorf("snapRate(%v) = %d/%d, want %d/%d", c.fps, n, d, c.num, c.den)
		}
	}
}
