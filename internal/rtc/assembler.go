package rtc

import (
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// assembler rebuilds VP8 frames from RTP packets as soon as a frame's last
// packet (the marker) is in, in sequence order: no waiting for the next
// frame's first packet (pion's samplebuilder does, a frame period of
// latency). A missing packet holds the frames behind it until it comes
// (NACK asks for it again) or until maxWait passes or the window fills;
// then the frames that cannot be completed are given up and the next
// complete frame says Gap.
type assembler struct {
	buf      [window]*rtp.Packet
	next     uint16 // the first packet not consumed
	started  bool
	emitted  bool      // a frame has come out
	waitFrom time.Time // when the packet at next was first missed
	gap      bool      // packets were given up since the last frame
	lost     uint64    // packets given up (missing or of broken frames)
	vp8      codecs.VP8Packet
	maxWait  time.Duration
}

const window = 1024

type assembled struct {
	data    []byte
	ts      uint32
	first   *rtp.Header // the first packet's (header extensions)
	gap     bool
	arrival time.Time
}

func newAssembler(maxWait time.Duration) *assembler { return &assembler{maxWait: maxWait} }

// isStart says whether p begins a VP8 frame (S set, partition 0).
func (a *assembler) isStart(p *rtp.Packet) bool {
	if _, err := a.vp8.Unmarshal(p.Payload); err != nil {
		return false
	}
	return a.vp8.S == 1 && a.vp8.PID == 0
}

// push takes a packet and returns the frames it completes, in order.
func (a *assembler) push(p *rtp.Packet, now time.Time, out []assembled) []assembled {
	if !a.started {
		a.started, a.next = true, p.SequenceNumber
	}
	d := int16(p.SequenceNumber - a.next)
	if d < 0 && !a.emitted && d > -window/2 {
		// Before the first frame: the first packet to come need not be
		// the first sent.
		a.next, d = p.SequenceNumber, 0
	}
	switch {
	case d < 0: // late (a retransmission after we gave up) or a duplicate
		return out
	case int(d) >= window: // far ahead: give up everything buffered
		a.skipTo(p.SequenceNumber)
	}
	if a.buf[p.SequenceNumber%window] == nil {
		a.buf[p.SequenceNumber%window] = p
	}
	for {
		f, ok, stuck := a.take(now)
		if ok {
			f.arrival = now
			out = append(out, f)
			continue
		}
		if !stuck {
			return out
		}
		// The head of the line cannot complete in time: drop to the next
		// frame start after it.
		a.giveUp()
	}
}

// take assembles the frame at next. stuck: the packet at next is missing
// (or the frame there cannot start one) and waiting is over.
func (a *assembler) take(now time.Time) (f assembled, ok, stuck bool) {
	head := a.buf[a.next%window]
	if head == nil {
		if a.waitFrom.IsZero() {
			a.waitFrom = now
		}
		return f, false, now.Sub(a.waitFrom) >= a.maxWait || a.span() >= window/2
	}
	if !a.isStart(head) {
		if !a.emitted { // the first packets may still come, out of order
			if a.waitFrom.IsZero() {
				a.waitFrom = now
			}
			return f, false, now.Sub(a.waitFrom) >= a.maxWait
		}
		return f, false, true // the frame's first packet is lost for good
	}
	end := a.next
	for {
		p := a.buf[end%window]
		if p == nil {
			if a.waitFrom.IsZero() {
				a.waitFrom = now
			}
			return f, false, now.Sub(a.waitFrom) >= a.maxWait || a.span() >= window/2
		}
		if p.Timestamp != head.Timestamp {
			return f, false, true // a packet of this frame is missing and the next frame has begun
		}
		if p.Marker {
			break
		}
		end++
	}
	n := 0
	for s := a.next; ; s++ {
		n += len(a.buf[s%window].Payload)
		if s == end {
			break
		}
	}
	f = assembled{data: make([]byte, 0, n), ts: head.Timestamp, first: &head.Header, gap: a.gap}
	for s := a.next; ; s++ {
		p := a.buf[s%window]
		if _, err := a.vp8.Unmarshal(p.Payload); err == nil {
			f.data = append(f.data, a.vp8.Payload...)
		}
		a.buf[s%window] = nil
		if s == end {
			break
		}
	}
	a.next, a.waitFrom, a.gap, a.emitted = end+1, time.Time{}, false, true
	return f, true, false
}

// span is how many sequence numbers lie between next and the newest
// packet buffered.
func (a *assembler) span() int {
	for d := window - 1; d > 0; d-- {
		if a.buf[(a.next+uint16(d))%window] != nil {
			return d
		}
	}
	return 0
}

// giveUp drops the packets from next up to the next frame start after it
// (all that is buffered, if none).
func (a *assembler) giveUp() {
	a.gap, a.waitFrom = true, time.Time{}
	last := a.span()
	for d := 0; d <= last; d++ {
		s := a.next + uint16(d)
		if p := a.buf[s%window]; p != nil && d > 0 && a.isStart(p) {
			a.next = s
			return
		}
		a.buf[s%window] = nil
		a.lost++
	}
	a.next += uint16(last + 1)
}

// skipTo gives up everything before seq.
func (a *assembler) skipTo(seq uint16) {
	for i := range a.buf {
		if a.buf[i] != nil {
			a.lost++
			a.buf[i] = nil
		}
	}
	a.next, a.gap, a.waitFrom = seq, true, time.Time{}
}
