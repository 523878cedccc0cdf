//go:build linux

package framebus_test

// FuzzScribble: TestHostileScribble as a fuzz target. The input is a program
// of operations on a fresh bus (a producer and a consumer in this process):
// writes of hostile bytes into the control block, publishing, reading
// (Next, ReadInto), re-opening. Every consumer call must return within its
// bound with a frame no larger than the slot or a typed error; the producer
// must keep publishing; nothing may panic or fault.
//
//	go test -run '^$' -fuzz FuzzScribble -fuzztime 60s ./framebus/
//
// The seed corpus is testdata/fuzz/FuzzScribble/ (replayed by every go test),
// written by go test -run TestScribbleSeedCorpus -update (or FRAMEBUS_UPDATE_SEEDS=1).

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// Operations of a FuzzScribble program: one byte, then its arguments.
const (
	opWrite1  = iota // region, off, 1 byte
	opWrite4         // region, off, 4 bytes
	opWrite8         // region, off, 8 bytes
	opPublish        // -
	opNext           // -
	opRead           // - (ReadInto)
	opReopen         // - (close the consumer, open a new one)
	opSpecial        // region, off, index into scribbleSpecial: an 8-byte value
	numOps
)

// Regions: bases of the offset byte, so that one byte reaches every field of
// the header's two halves, the slot descriptors and the first entries.
const (
	regHeader   = iota // 0: stable prefix and stream description
	regCounters        // active: publication and counters
	regSlots           // slot_table_offset
	regEntries         // consumer_table_offset
	numRegions
)

var scribbleSpecial = []uint64{0, 1, 2, 3, 4, 7, 8, 0xff, 0xffff, 0xffffffff, 1 << 32, 1 << 63, ^uint64(0),
	0x53554246, 512, 65536, 4096 * 48, 1 << 20}

// scribbleSeeds are named programs, each aimed at one field.
func scribbleSeeds() []framebus.SeedFile {
	w8 := func(region, off byte, v uint64) []byte {
		b := []byte{opWrite8, region, off}
		return binary.LittleEndian.AppendUint64(b, v)
	}
	w4 := func(region, off byte, v uint32) []byte {
		b := []byte{opWrite4, region, off}
		return binary.LittleEndian.AppendUint32(b, v)
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	pub, next, read, reopen := []byte{opPublish}, []byte{opNext}, []byte{opRead}, []byte{opReopen}
	// Offsets inside a region: header fields from byte 0, counters from
	// active, fields of slot 0 or 1, of entry 0 or 1.
	const (
		state, heartbeat, magic = byte(framebus.OffState), byte(framebus.OffHeartbeatNS), byte(framebus.OffMagic)
		payloadOff, consumerCap = byte(framebus.OffPayloadOffset), byte(framebus.OffConsumerCapacity)
		abiVersion              = byte(framebus.OffABIVersion)
		active, lastSeq         = byte(0), byte(framebus.OffLastSeq - framebus.OffActive)
		slot1                   = byte(framebus.SlotDescSize)
		lock, frameSeq, nbytes  = byte(framebus.SlotLock), byte(framebus.SlotFrameSeq), byte(framebus.SlotBytes)
		flags, metaLen          = byte(framebus.SlotFrameFlags), byte(framebus.SlotUserMetaLen)
		entry1                  = byte(framebus.ConsumerEntrySize)
		estate, sem, waiters    = byte(framebus.EntState), byte(framebus.EntSem), byte(framebus.EntWaiters)
		token                   = byte(framebus.EntToken)
	)
	return []framebus.SeedFile{
		{"publish-next", cat(pub, next, pub, read)},
		{"active-out-of-range", cat(pub, w4(regCounters, active, 7), next, read)},
		{"slot-lock-odd", cat(pub, w8(regSlots, slot1+lock, 3), next, pub, next)},
		{"slot-bytes-huge", cat(pub, w8(regSlots, slot1+nbytes, 1<<40), w8(regSlots, nbytes, 1<<40), next, read)},
		{"slot-seq-ahead", cat(pub, w8(regSlots, slot1+frameSeq, 1000), w8(regCounters, lastSeq, 1000), next, pub, next)},
		{"user-meta-len-huge", cat(pub, w4(regSlots, slot1+metaLen, 65), w4(regSlots, metaLen, 1000), next, read)},
		{"end-of-stream-flag", cat(pub, w4(regSlots, slot1+flags, 1), w8(regSlots, slot1+frameSeq, 50), next, next, reopen, next)},
		{"state-retired", cat(pub, next, w4(regHeader, state, 3), next, pub, next)},
		{"state-broken", cat(w4(regHeader, state, 2), next, reopen)},
		{"heartbeat-zero", cat(w8(regHeader, heartbeat, 0), next, next)},
		{"entry-freed", cat(w4(regEntries, estate, 0), next, pub, next)},
		{"entry-token", cat(w8(regEntries, token, 12345), next, pub, next)},
		{"entries-all-active", cat(w4(regEntries, entry1+estate, 2), reopen, next)},
		{"waiters-and-sem", cat(w4(regEntries, waiters, 0xffffffff), w4(regEntries, sem, 0xffffffff), pub, next, next)},
		{"bad-magic-reopen", cat(w4(regHeader, magic, 0xdeadbeef), reopen, next)},
		{"payload-offset-reopen", cat(w8(regHeader, payloadOff, 1<<63), reopen, next)},
		{"consumer-capacity-reopen", cat(w4(regHeader, consumerCap, 1024), reopen, next)},
		{"abi-version-reopen", cat([]byte{opWrite1, regHeader, abiVersion, 2}, reopen, next)},
		{"special-values", cat([]byte{opSpecial, regSlots, slot1 + nbytes, 12}, []byte{opSpecial, regCounters, active, 1}, pub, next, read)},
	}
}

func FuzzScribble(f *testing.F) {
	for _, s := range scribbleSeeds() {
		f.Add(s.Data)
	}
	dir := framebus.ShmDir(f)
	f.Fuzz(func(t *testing.T, prog []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("FuzzScribble: program %x hung for 10s", prog))
		})
		defer watchdog.Stop()
		runScribble(t, dir, prog)
	})
}

func runScribble(t *testing.T, dir string, prog []byte) {
	p, err := framebus.Create("fz", framebus.ProducerOptions{Format: smallFormat, Checksum: true, Consumers: 4,
		Heartbeat: 5 * time.Millisecond, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, err := framebus.Inspect("fz", dir)
	if err != nil {
		t.Fatal(err)
	}
	bases := [numRegions]int64{0, int64(framebus.OffActive), int64(st.Header.SlotTableOffset), int64(st.Header.ConsumerTableOffset)}
	seg, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	c, err := framebus.Open("fz", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	frame := make([]byte, smallFormat.Width*smallFormat.Height)
	dst := make([]byte, len(frame))
	arg := func(n int) []byte {
		b := make([]byte, n)
		copy(b, prog)
		prog = prog[min(n, len(prog)):]
		return b
	}
	write := func(region, off byte, b []byte) {
		at := bases[int(region)%numRegions] + int64(off)
		if _, err := seg.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
	for steps := 0; len(prog) > 0 && steps < 256; steps++ {
		op := prog[0] % numOps
		prog = prog[1:]
		switch op {
		case opWrite1, opWrite4, opWrite8:
			n := map[byte]int{opWrite1: 1, opWrite4: 4, opWrite8: 8}[op]
			region, off := arg(1)[0], arg(1)[0]
			write(region, off, arg(n))
		case opSpecial:
			region, off, i := arg(1)[0], arg(1)[0], arg(1)[0]
			write(region, off, binary.LittleEndian.AppendUint64(nil, scribbleSpecial[int(i)%len(scribbleSpecial)]))
		case opPublish:
			if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
				t.Fatalf("Publish on a scribbled segment: %v", err)
			}
		case opNext, opRead:
			if c == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
			var fr *framebus.Frame
			if op == opNext {
				fr, err = c.Next(ctx)
			} else {
				fr, err = c.ReadInto(ctx, dst)
			}
			cancel()
			if err != nil {
				if !scribbleErrOK(err) {
					t.Fatalf("consumer: untyped or unexpected error %v", err)
				}
				continue
			}
			if uint64(len(fr.Data)) > fr.Format.FrameSize || len(fr.UserMeta) > framebus.UserMetaMax {
				t.Fatalf("frame of %d bytes (capacity %d), %d bytes of metadata", len(fr.Data), fr.Format.FrameSize, len(fr.UserMeta))
			}
			var sum byte
			for _, b := range fr.Data {
				sum += b
			}
			_ = sum
		case opReopen:
			if c != nil {
				c.Close()
				c = nil
			}
			nc, err := framebus.Open("fz", framebus.ConsumerOptions{Dir: dir})
			if err != nil {
				if !scribbleErrOK(err) {
					t.Fatalf("Open: untyped or unexpected error %v", err)
				}
				continue
			}
			c = nc
		}
	}
	_ = p.Stats()
	if c != nil {
		_ = c.Stats()
	}
}

// TestScribbleSeedCorpus checks the committed seed files of FuzzScribble
// (testdata/fuzz/FuzzScribble/seed-*) against scribbleSeeds; with -update
// or FRAMEBUS_UPDATE_SEEDS=1 it writes them.
func TestScribbleSeedCorpus(t *testing.T) {
	write := *framebus.Update || os.Getenv("FRAMEBUS_UPDATE_SEEDS") == "1"
	framebus.CheckSeedCorpus(t, "FuzzScribble", scribbleSeeds(), write, "FRAMEBUS_UPDATE_SEEDS=1 go test -run TestScribbleSeedCorpus")
}
