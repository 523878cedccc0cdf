package rtc

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// packets makes the RTP packets of frames of the given sizes in packets:
// frame i has timestamp 3000*i, its first packet the S bit.
func packets(sizes ...int) []*rtp.Packet {
	var out []*rtp.Packet
	seq := uint16(65530) // wraps
	for i, n := range sizes {
		for k := 0; k < n; k++ {
			desc := byte(0)
			if k == 0 {
				desc = 0x10
			}
			out = append(out, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(3000 * i), Marker: k == n-1},
				Payload: []byte{desc, byte(i), byte(k)}})
			seq++
		}
	}
	return out
}

func pushAll(a *assembler, ps []*rtp.Packet, now time.Time) []assembled {
	var out []assembled
	for _, p := range ps {
		out = a.push(p, now, out)
	}
	return out
}

func frameIDs(fs []assembled) []int {
	var ids []int
	for _, f := range fs {
		ids = append(ids, int(f.ts/3000))
	}
	return ids
}

// In order: every frame comes out at its last packet, with its payload.
func TestAssemblerInOrder(t *testing.T) {
	a := newAssembler(300 * time.Millisecond)
	ps := packets(3, 1, 4, 2)
	now := time.Now()
	var got []assembled
	for i, p := range ps {
		got = a.push(p, now, got)
		if i == 2 && len(got) != 1 {
			t.Fatalf("after the first frame's marker: %d frames", len(got))
		}
	}
	if ids := frameIDs(got); len(ids) != 4 || ids[3] != 3 {
		t.Fatalf("frames %v", ids)
	}
	if d := got[2].data; len(d) != 8 || d[0] != 2 || d[7] != 3 {
		t.Errorf("frame 2's data %v", d)
	}
	for _, f := range got {
		if f.gap {
			t.Error("a gap without loss")
		}
	}
}

// Reordered and duplicated packets: the same frames, in order.
func TestAssemblerReorder(t *testing.T) {
	a := newAssembler(300 * time.Millisecond)
	ps := packets(2, 2, 2)
	order := []int{1, 0, 0, 3, 2, 5, 4, 5}
	var in []*rtp.Packet
	for _, i := range order {
		in = append(in, ps[i])
	}
	got := pushAll(a, in, time.Now())
	if ids := frameIDs(got); len(ids) != 3 || ids[0] != 0 || ids[2] != 2 {
		t.Fatalf("frames %v", ids)
	}
}

// A packet lost for good: the frames behind it wait until maxWait, then
// its frame is given up and the next one says gap; a retransmission in
// time repairs it instead.
func TestAssemblerLoss(t *testing.T) {
	ps := packets(2, 2, 2, 2)
	t0 := time.Now()
	a := newAssembler(300 * time.Millisecond)
	var got []assembled
	for i, p := range ps {
		if i == 3 { // frame 1's last packet
			continue
		}
		got = a.push(p, t0, got)
	}
	if ids := frameIDs(got); len(ids) != 1 {
		t.Fatalf("before maxWait: frames %v, want only frame 0", ids)
	}
	got = a.push(ps[7], t0.Add(400*time.Millisecond), got) // a duplicate, later
	if ids := frameIDs(got); len(ids) != 3 || ids[1] != 2 || !got[1].gap || got[2].gap {
		t.Fatalf("after maxWait: frames %v (gaps %v %v)", ids, len(got) > 1 && got[1].gap, len(got) > 2 && got[2].gap)
	}
	if a.lost == 0 {
		t.Error("no packets counted lost")
	}

	a = newAssembler(300 * time.Millisecond)
	got = nil
	for i, p := range ps {
		if i != 3 {
			got = a.push(p, t0, got)
		}
	}
	got = a.push(ps[3], t0.Add(100*time.Millisecond), got) // the NACKed packet
	if ids := frameIDs(got); len(ids) != 4 {
		t.Fatalf("after the retransmission: frames %v", ids)
	}
	for _, f := range got {
		if f.gap {
			t.Error("a gap after a repair")
		}
	}
}

// A start in the middle of a frame: the broken frame goes once the first
// packets had time to come out of order, the rest come.
func TestAssemblerLostStart(t *testing.T) {
	ps := packets(3, 2, 2)
	a := newAssembler(300 * time.Millisecond)
	t0 := time.Now()
	got := pushAll(a, ps[1:], t0) // joined after frame 0's first packet
	got = a.push(ps[6], t0.Add(time.Second), got)
	if ids := frameIDs(got); len(ids) != 2 || ids[0] != 1 || !got[0].gap {
		t.Fatalf("frames %v", ids)
	}
}
