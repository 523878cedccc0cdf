//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"fmt"
	"testing"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
)

// i420Layout is a padded I420 layout like the encoder's (strides wider
// than the rows, planes apart).
func i420Layout(t testing.TB, w, h int) (framebus.Format, []byte) {
	ys, cs := w+32, w/2+16
	f, err := framebus.Format{Width: uint32(w), Height: uint32(h), PixelFormat: framebus.FormatI420, PlaneCount: 3,
		PlaneStride: [framebus.MaxPlanes]uint32{uint32(ys), uint32(cs), uint32(cs)},
		PlaneOffset: [framebus.MaxPlanes]uint32{0, uint32(ys*h + 64), uint32(ys*h + 64 + cs*h/2 + 64)}}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	return f, make([]byte, f.FrameSize)
}

// Every bus format reaches the encoder as the same I420 picture: the bars'
// BT.601 limited-range colours (GREY: its luma, no chroma).
func TestToI420EveryFormat(t *testing.T) {
	for _, c := range []struct {
		pf     framebus.FourCC
		stride int
		tol    int
	}{
		{framebus.FormatRGBA, 0, 2}, {framebus.FormatRGBA, testW*4 + 64, 2}, {framebus.FormatRGB24, 0, 2},
		{framebus.FormatBGR24, 0, 2}, {framebus.FormatBGR24, testW*3 + 3, 2}, {framebus.FormatGrey, 0, 2},
		{framebus.FormatYUYV, 0, 4}, {framebus.FormatNV12, 0, 0}, {framebus.FormatI420, 0, 0},
	} {
		t.Run(fmt.Sprintf("%v/stride%d", c.pf, c.stride), func(t *testing.T) {
			data, sf := encodeBars(t, c.pf, c.stride)
			sf, err := sf.Complete()
			if err != nil {
				t.Fatal(err)
			}
			f, dst := i420Layout(t, testW, testH)
			conv := NewConverter()
			defer conv.Close()
			m := gocv.NewMat()
			defer m.Close()
			if err := toI420(dst, f, &framebus.Frame{Data: data, Format: sf}, conv, &m); err != nil {
				t.Fatal(err)
			}
			for i, bar := range bars {
				x, y := (2*i+1)*testW/16, testH/2
				Y, U, V := yuv(bar)
				if c.pf == framebus.FormatGrey {
					l := 0.299*float64(bar[0]) + 0.587*float64(bar[1]) + 0.114*float64(bar[2])
					Y, U, V = uint8(16+l*219/255+0.5), 128, 128
				}
				got := [3]uint8{dst[int(f.PlaneOffset[0])+y*int(f.PlaneStride[0])+x],
					dst[int(f.PlaneOffset[1])+y/2*int(f.PlaneStride[1])+x/2], dst[int(f.PlaneOffset[2])+y/2*int(f.PlaneStride[2])+x/2]}
				for k, want := range [3]uint8{Y, U, V} {
					if d := int(got[k]) - int(want); d > c.tol || d < -c.tol {
						t.Errorf("bar %d: YUV %v, want %v (±%d)", i, got, [3]uint8{Y, U, V}, c.tol)
						break
					}
				}
			}
		})
	}
}

// BenchmarkToI420 is the conversion before the encoder, per 1280x720 frame.
func BenchmarkToI420(b *testing.B) {
	for _, pf := range []framebus.FourCC{framebus.FormatRGBA, framebus.FormatI420, framebus.FormatNV12, framebus.FormatYUYV} {
		b.Run(pf.String(), func(b *testing.B) {
			sf, _ := framebus.Format{Width: 1280, Height: 720, PixelFormat: pf}.Complete()
			data := make([]byte, sf.FrameSize)
			for i := range data {
				data[i] = byte(i * 7)
			}
			f, dst := i420Layout(b, 1280, 720)
			conv := NewConverter()
			defer conv.Close()
			m := gocv.NewMat()
			defer m.Close()
			fr := &framebus.Frame{Data: data, Format: sf}
			b.ReportAllocs()
			for b.Loop() {
				if err := toI420(dst, f, fr, conv, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
