package capture

import (
	"testing"

	"github.com/framebus/framebus/framebus"
)

// The frame number reads back from every format and size, also after the
// picture's bright parts were dimmed and its dark parts lifted, as a lossy
// codec would; a frame of something else does not read.
func TestPatternFrameNumber(t *testing.T) {
	for _, pf := range PatternFormats {
		for _, sz := range [][2]uint32{{1280, 720}, {320, 240}} {
			p, _ := newTestPattern(t, sz[0], sz[1], pf, 0)
			for _, n := range []uint64{1, 42, 123456, 9876543} {
				f := frameAt(p, n, 1000)
				for i := range f {
					f[i] = byte(40 + int(f[i])*170/255) // 0..255 to 40..210
				}
				if got, ok := PatternFrameNumber(f, p.Format()); !ok || got != n {
					t.Errorf("%v %dx%d frame %d reads %d, %v", pf, sz[0], sz[1], n, got, ok)
				}
			}
			if _, ok := PatternFrameNumber(make([]byte, p.Format().FrameSize), p.Format()); ok {
				t.Errorf("%v: a black frame reads as a frame number", pf)
			}
		}
	}
	f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatRGBA}.Complete()
	if _, ok := PatternFrameNumber(make([]byte, 10), f); ok {
		t.Error("a short frame reads")
	}
}
