package rtc

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/vpx"
)

// Frame is one VP8 frame rebuilt from RTP.
type Frame struct {
	Data      []byte
	CaptureNS int64 // on framebus.Now's clock: abs-capture-time if the sender sent it, else the arrival
	ArrivedNS int64 // when its last packet came
	RTPTime   uint32
	Key       bool
	Width     int // a keyframe's size
	Height    int
	Gap       bool // packets before it were lost for good: it may refer to a frame never received
	Stamped   bool // CaptureNS came from the sender
}

// RecvStats counts what a receiver got.
type RecvStats struct {
	Packets     uint64
	Bytes       uint64
	Frames      uint64 // frames rebuilt
	LostPackets uint64 // given up on (after NACKs)
	Overflows   uint64 // frames dropped because nobody took them in time
	PLIs        uint64 // keyframe requests sent
}

// Receiver rebuilds the frames of one remote VP8 track. Frames come in
// order on Frames(); a consumer that does not keep up loses frames (counted
// in Overflows; the next frame it gets has Gap set).
type Receiver struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackRemote
	extID uint8
	out   chan Frame
	done  chan struct{}

	packets, bytes, frames, lost, overflows, plis atomic.Uint64

	mu      sync.Mutex
	lastPLI time.Time
}

// maxQueued frames wait for the consumer before frames are dropped.
const maxQueued = 8

// NewReceiver reads track (of pc) until it ends; Frames is closed then.
func NewReceiver(pc *webrtc.PeerConnection, track *webrtc.TrackRemote, rtpr *webrtc.RTPReceiver) *Receiver {
	r := &Receiver{pc: pc, track: track, out: make(chan Frame, maxQueued), done: make(chan struct{})}
	for _, e := range rtpr.GetParameters().HeaderExtensions {
		if e.URI == AbsCaptureTimeURI {
			r.extID = uint8(e.ID)
		}
	}
	go func() { // RTCP must be read for the interceptors to see it
		for {
			if _, _, err := rtpr.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go r.run()
	return r
}

// Frames delivers the frames; it is closed when the track ends.
func (r *Receiver) Frames() <-chan Frame { return r.out }

// Stats returns the counters.
func (r *Receiver) Stats() RecvStats {
	return RecvStats{Packets: r.packets.Load(), Bytes: r.bytes.Load(), Frames: r.frames.Load(),
		LostPackets: r.lost.Load(), Overflows: r.overflows.Load(), PLIs: r.plis.Load()}
}

// RequestKeyFrame sends a PLI, at most one per 200 ms.
func (r *Receiver) RequestKeyFrame() {
	r.mu.Lock()
	if time.Since(r.lastPLI) < 200*time.Millisecond {
		r.mu.Unlock()
		return
	}
	r.lastPLI = time.Now()
	r.mu.Unlock()
	r.plis.Add(1)
	r.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(r.track.SSRC())}})
}

func (r *Receiver) run() {
	defer close(r.out)
	// Up to 300 ms for a missing packet: NACK gets it back within a round
	// trip or two; after that its frame is given up.
	asm := newAssembler(300 * time.Millisecond)
	var done []assembled
	var ext rtp.AbsCaptureTimeExtension
	var anchor int64 // the last stamped capture time and its RTP timestamp
	var anchorRTP uint32
	anchored := false
	gap := false
	for {
		pkt, _, err := r.track.ReadRTP()
		if err != nil {
			return
		}
		r.packets.Add(1)
		r.bytes.Add(uint64(len(pkt.Payload)))
		done = asm.push(pkt, time.Now(), done[:0])
		r.lost.Store(asm.lost)
		for _, a := range done {
			now := framebus.Now()
			if len(a.data) == 0 {
				continue
			}
			f := Frame{Data: a.data, CaptureNS: now, ArrivedNS: now, RTPTime: a.ts, Gap: gap || a.gap}
			f.Key, f.Width, f.Height = vpx.IsKeyFrame(a.data)
			if r.extID != 0 {
				if b := a.first.GetExtension(r.extID); b != nil && ext.Unmarshal(b) == nil {
					f.CaptureNS, f.Stamped = MonoNS(UnixNS(ext.Timestamp)), true
					anchor, anchorRTP, anchored = f.CaptureNS, a.ts, true
				} else if d := int32(a.ts - anchorRTP); anchored && d >= 0 && d < 10*ClockRate {
					// Senders may stamp only the frames whose capture time
					// cannot be interpolated from the RTP timestamps
					// (libwebrtc's AbsoluteCaptureTimeSender): interpolate.
					f.CaptureNS, f.Stamped = anchor+int64(d)*1e9/ClockRate, true
				}
			}
			r.frames.Add(1)
			select {
			case r.out <- f:
				gap = false
			default:
				r.overflows.Add(1)
				gap = true
			}
		}
	}
}
