//go:build framebus_webrtc && cgo

package vpx

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// fill draws frame n of a moving test picture: a vertical ramp and a bright
// box that moves 8 pixels a frame.
func fill(p *Picture, n int) {
	for y := 0; y < p.Height; y++ {
		row := p.Y[y*p.YStride : y*p.YStride+p.Width]
		for x := range row {
			row[x] = byte(16 + (x+y)%200)
		}
	}
	x0 := (n * 8) % (p.Width - p.Width/4)
	for y := p.Height / 4; y < p.Height/2; y++ {
		row := p.Y[y*p.YStride : y*p.YStride+p.Width]
		for x := x0; x < x0+p.Width/4; x++ {
			row[x] = 235
		}
	}
	for y := 0; y < (p.Height+1)/2; y++ {
		for x := 0; x < (p.Width+1)/2; x++ {
			p.U[y*p.CStride+x], p.V[y*p.CStride+x] = byte(64+x%128), byte(192-y%128)
		}
	}
}

// meanAbsDiff of the Y planes.
func meanAbsDiff(a *Picture, y []byte, stride int) float64 {
	var sum int
	for r := 0; r < a.Height; r++ {
		for c := 0; c < a.Width; c++ {
			d := int(a.Y[r*a.YStride+c]) - int(y[r*stride+c])
			sum += max(d, -d)
		}
	}
	return float64(sum) / float64(a.Width*a.Height)
}

// Frames encoded and decoded again: the first is a keyframe of the right
// size, ForceKey makes another, the pictures come back close to what went
// in, and the bitrate follows SetBitrate.
func TestEncodeDecode(t *testing.T) {
	const w, h = 320, 240
	enc, err := NewEncoder(w, h, EncoderOptions{Bitrate: 500_000, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, err := NewDecoder(1)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	keys := 0
	for n := 0; n < 60; n++ {
		if n == 30 {
			enc.ForceKey()
		}
		fill(enc.Input(), n)
		frame, key, err := enc.Encode(int64(n) * 3000)
		if err != nil {
			t.Fatal(err)
		}
		k, fw, fh := IsKeyFrame(frame)
		if k != key {
			t.Fatalf("frame %d: IsKeyFrame %v, encoder says %v", n, k, key)
		}
		if key {
			keys++
			if fw != w || fh != h {
				t.Fatalf("keyframe of %dx%d, want %dx%d", fw, fh, w, h)
			}
		}
		if (n == 0 || n == 30) && !key {
			t.Fatalf("frame %d is not a keyframe", n)
		}
		pic, corrupt, err := dec.Decode(frame)
		if err != nil || pic == nil || corrupt {
			t.Fatalf("decode frame %d: %v, %v, corrupt %v", n, pic, err, corrupt)
		}
		if pic.Rect.Dx() != w || pic.Rect.Dy() != h {
			t.Fatalf("decoded %v", pic.Rect)
		}
		if d := meanAbsDiff(enc.Input(), pic.Y, pic.YStride); n > 5 && d > 6 {
			t.Errorf("frame %d: decoded luma differs by %.1f on average", n, d)
		}
	}
	if keys < 2 {
		t.Errorf("%d keyframes, want at least 2", keys)
	}
	if _, _, err := dec.Decode([]byte{1, 2, 3}); err == nil {
		t.Error("decoding garbage succeeded")
	}
	if _, err := NewEncoder(15, 16, EncoderOptions{}); err == nil {
		t.Error("a 15x16 encoder was made")
	}
}

// The rate control follows the target: at 200 kbit/s the frames are much
// smaller than at 2 Mbit/s.
func TestSetBitrate(t *testing.T) {
	enc, err := NewEncoder(640, 360, EncoderOptions{Bitrate: 2_000_000, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	size := func(from int) int {
		total := 0
		for n := from; n < from+60; n++ {
			fill(enc.Input(), n)
			f, _, err := enc.Encode(int64(n) * 3000)
			if err != nil {
				t.Fatal(err)
			}
			if n >= from+30 {
				total += len(f)
			}
		}
		return total
	}
	high := size(0)
	enc.SetBitrate(200_000)
	low := size(60)
	t.Logf("bytes per second: %d at 2 Mbit/s, %d at 200 kbit/s", high, low)
	if low*3 > high {
		t.Errorf("%d bytes at 200 kbit/s against %d at 2 Mbit/s: the rate did not follow", low, high)
	}
}

func TestEncodeNoAllocs(t *testing.T) {
	enc, err := NewEncoder(320, 240, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, _ := NewDecoder(1)
	defer dec.Close()
	n := 0
	step := func() {
		fill(enc.Input(), n)
		f, _, err := enc.Encode(int64(n) * 3000)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := dec.Decode(f); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for range 10 {
		step()
	}
	if a := testing.AllocsPerRun(30, step); a != 0 {
		t.Errorf("%.1f allocations per encoded and decoded frame", a)
	}
}

// BenchmarkEncode: the cost of one frame at 720p and 1080p (ns/frame, and
// the encoded bytes), at the default speed.
func BenchmarkEncode(b *testing.B) {
	speeds := []int{0}
	if os.Getenv("FRAMEBUS_VPX_SPEEDS") != "" {
		speeds = []int{-4, -6, -8, -10, -12, -16}
	}
	for _, s := range []struct{ w, h, bps, speed, threads int }{{1280, 720, 2_500_000, 0, 0}, {1920, 1080, 5_000_000, 0, 0}} {
		for _, sp := range speeds {
			for _, th := range []int{1, 2} {
				s.speed, s.threads = sp, th
				benchEncode(b, s.w, s.h, s.bps, s.speed, s.threads)
			}
		}
	}
}

func benchEncode(b *testing.B, w, h, bps, speed, threads int) {
	s := struct{ w, h int }{w, h}
	{
		b.Run(fmt.Sprintf("%dx%d/speed%d/threads%d", s.w, s.h, speed, threads), func(b *testing.B) {
			enc, err := NewEncoder(s.w, s.h, EncoderOptions{Bitrate: bps, FPS: 30, Speed: speed, Threads: threads})
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			// Pictures made beforehand: the benchmark measures the encoder.
			pics := make([]Picture, 8)
			for i := range pics {
				pics[i] = Picture{Y: make([]byte, s.w*s.h), U: make([]byte, s.w*s.h/4), V: make([]byte, s.w*s.h/4),
					YStride: s.w, CStride: s.w / 2, Width: s.w, Height: s.h}
				fill(&pics[i], i)
			}
			in := enc.Input()
			bytes := 0
			cpu0 := cpuTime()
			b.ResetTimer()
			for n := 0; b.Loop(); n++ {
				p := &pics[n%len(pics)]
				for y := 0; y < s.h; y++ {
					copy(in.Y[y*in.YStride:y*in.YStride+s.w], p.Y[y*s.w:])
				}
				for y := 0; y < s.h/2; y++ {
					copy(in.U[y*in.CStride:y*in.CStride+s.w/2], p.U[y*s.w/2:])
					copy(in.V[y*in.CStride:y*in.CStride+s.w/2], p.V[y*s.w/2:])
				}
				f, _, err := enc.Encode(int64(n) * 3000)
				if err != nil {
					b.Fatal(err)
				}
				bytes += len(f)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
			b.ReportMetric(float64(bytes)/float64(b.N), "B/frame")
		})
	}
}

// cpuTime is the process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
