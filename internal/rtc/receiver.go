package rtc

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

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
	// Up to 500 ms for a missing packet: NACK gets it back within a round
	// trip or two; after that the frame is given up.
	sb := samplebuilder.New(512, &codecs.VP8Packet{}, ClockRate, samplebuilder.WithRTPHeaders(true),
		samplebuilder.WithMaxTimeDelay(500*time.Millisecond))
	gap := false
	var ext rtp.AbsCaptureTimeExtension
	for {
		pkt, _, err := r.track.ReadRTP()
		if err != nil {
			return
		}
		r.packets.Add(1)
		r.bytes.Add(uint64(len(pkt.Payload)))
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			now := framebus.Now()
			if s.PrevDroppedPackets > 0 {
				r.lost.Add(uint64(s.PrevDroppedPackets))
				gap = true
			}
			if len(s.Data) == 0 {
				continue
			}
			f := Frame{Data: s.Data, CaptureNS: now, ArrivedNS: now, RTPTime: s.PacketTimestamp, Gap: gap}
			f.Key, f.Width, f.Height = vpx.IsKeyFrame(s.Data)
			if r.extID != 0 && len(s.RTPHeaders) > 0 {
				if b := s.RTPHeaders[0].GetExtension(r.extID); b != nil && ext.Unmarshal(b) == nil {
					f.CaptureNS, f.Stamped = MonoNS(UnixNS(ext.Timestamp)), true
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
