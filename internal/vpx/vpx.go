package vpx

import "runtime"

// Picture is an I420 picture: a Y plane and two chroma planes of half the
// width and height (rounded up).
type Picture struct {
	Y, U, V          []byte
	YStride, CStride int
	Width, Height    int

	// Buf holds the three planes at UOff and VOff (Y at 0), when they are
	// one block of memory (the encoder's input); nil otherwise.
	Buf        []byte
	UOff, VOff int
}

// EncoderOptions configures an encoder; the zero value is a 30 fps
// real-time encoder at 1 Mbit/s.
type EncoderOptions struct {
	Bitrate     int     // target bits per second (default 1,000,000)
	FPS         float64 // the frame rate expected (default 30): the rate control's frame duration
	KeyInterval int     // at most this many frames between keyframes (default 3 s of frames)
	Threads     int     // encoder threads (default 1); more threads, more token partitions
	Speed       int     // VP8E_SET_CPUUSED, -16..16; real-time mode wants negative (default -8: fast)
	MaxKeyPct   int     // a keyframe's size at most this percent of a frame's share of the bitrate (default 600)
}

func (o EncoderOptions) withDefaults() EncoderOptions {
	if o.Bitrate <= 0 {
		o.Bitrate = 1_000_000
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.KeyInterval <= 0 {
		o.KeyInterval = int(3 * o.FPS)
	}
	// One thread: libvpx's VP8 threads wait for each other by spinning, and
	// on a busy 2-CPU machine two threads cost 8 to 25 times the CPU of one
	// per frame (BenchmarkEncode with FRAMEBUS_VPX_SPEEDS=1).
	if o.Threads <= 0 {
		o.Threads = 1
	}
	o.Threads = min(o.Threads, runtime.NumCPU())
	if o.Speed == 0 {
		o.Speed = -8
	}
	o.Speed = max(-16, min(16, o.Speed))
	if o.MaxKeyPct <= 0 {
		o.MaxKeyPct = 600
	}
	return o
}

// Error is a failure of libvpx (or of a request it would refuse).
type Error struct{ Op, Msg string }

func (e *Error) Error() string { return "vpx: " + e.Op + ": " + e.Msg }

// IsKeyFrame reports whether a VP8 frame is a keyframe (RFC 6386 section
// 9.1: bit 0 of the frame tag is 0), and its size when it is.
func IsKeyFrame(frame []byte) (key bool, w, h int) {
	if len(frame) < 10 || frame[0]&1 != 0 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return false, 0, 0
	}
	return true, int(frame[6]) | int(frame[7]&0x3f)<<8, int(frame[8]) | int(frame[9]&0x3f)<<8
}
