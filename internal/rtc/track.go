package rtc

import (
	"errors"
	"strings"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// MTU is the RTP packet size the track aims at (header, extensions and
// payload): well under the 1500 bytes of Ethernet, after IP, UDP, SRTP
// and TURN overheads.
const MTU = 1200

// ErrNotBound is returned by WriteFrame before the track is bound to a
// connection (or after it was unbound).
var ErrNotBound = errors.New("track not bound")

// VideoTrack is a VP8 track written one encoded frame at a time, bound to
// one peer connection. Each frame's first packet carries its capture time
// (abs-capture-time); the RTP timestamp is the capture time on the 90 kHz
// clock.
type VideoTrack struct {
	id, stream string

	mu       sync.Mutex
	w        webrtc.TrackLocalWriter
	ssrc     uint32
	pt       uint8
	extID    uint8 // abs-capture-time, 0: not negotiated
	seq      uint16
	hdr      rtp.Header
	payload  []byte
	ext      [8]byte
	tsOffset uint32
}

// NewVideoTrack makes a track.
func NewVideoTrack(id, stream string, seq uint16, tsOffset uint32) *VideoTrack {
	return &VideoTrack{id: id, stream: stream, seq: seq, tsOffset: tsOffset, payload: make([]byte, 0, MTU)}
}

func (t *VideoTrack) ID() string                { return t.id }
func (t *VideoTrack) RID() string               { return "" }
func (t *VideoTrack) StreamID() string          { return t.stream }
func (t *VideoTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeVideo }

// Bind picks VP8 among the negotiated codecs.
func (t *VideoTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeVP8) {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.w, t.ssrc, t.pt = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(c.PayloadType)
			t.extID = 0
			for _, e := range ctx.HeaderExtensions() {
				if e.URI == AbsCaptureTimeURI {
					t.extID = uint8(e.ID)
				}
			}
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// Unbind forgets the connection.
func (t *VideoTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return nil
}

// WriteFrame sends one VP8 frame captured at captureNS (framebus.Now's
// clock) in packets of at most MTU bytes (RFC 7741 payload descriptor, no
// picture ID). It returns the bytes sent.
func (t *VideoTrack) WriteFrame(frame []byte, captureNS int64) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w == nil {
		return 0, ErrNotBound
	}
	h := &t.hdr
	ts := RTPTime(captureNS) + t.tsOffset
	if t.extID != 0 {
		rtp.AbsCaptureTimeExtension{Timestamp: NTP(WallNS(captureNS))}.MarshalTo(t.ext[:])
	}
	// header, extension header, abs-capture-time and transport-cc
	// (padded), payload descriptor
	const room = MTU - 12 - 4 - 12 - 4 - 1
	sent := 0
	for off := 0; off < len(frame); {
		n := min(room, len(frame)-off)
		// A new header per packet: the interceptors add their extensions
		// to it (transport-cc's sequence number).
		*h = rtp.Header{Version: 2, PayloadType: t.pt, SSRC: t.ssrc, Timestamp: ts, Extensions: h.Extensions[:0]}
		desc := byte(0)
		if off == 0 {
			desc = 0x10 // S: the start of a partition
			if t.extID != 0 {
				h.SetExtension(t.extID, t.ext[:])
			}
		}
		t.payload = append(append(t.payload[:0], desc), frame[off:off+n]...)
		off += n
		h.Marker = off == len(frame)
		h.SequenceNumber = t.seq
		t.seq++
		k, err := t.w.WriteRTP(h, t.payload)
		sent += k
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}
