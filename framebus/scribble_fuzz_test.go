//go:build linux

package framebus_test

// A hostile writer scribbling over the control block while a producer
// publishes and consumers read: TestHostileScribble at random, across
// goroutines, and FuzzScribble, the same as a fuzz target.
//
// FuzzScribble's input is a program of operations on a fresh bus (a
// producer and a consumer in this process): writes of hostile bytes into the
// control block, publishing, reading (Next, ReadInto), re-opening. Every
// consumer call must return within its bound with a frame no larger than the
// slot or a typed error; the producer must keep publishing; nothing may
// panic or fault.
//
//	go test -run '^$' -fuzz FuzzScribble -fuzztime 60s ./framebus/
//
// The seed corpus is testdata/fuzz/FuzzScribble/ (replayed by every go test),
// written by go test -run TestScribbleSeedCorpus -update (or FRAMEBUS_UPDATE_SEEDS=1).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// TestHostileScribble: a writer with write access to the file (any consumer
// has it) writes random bytes at random places of the control block (header,
// slot descriptors, consumer table) while a producer publishes and four
// consumers read, re-open and close. Every call returns within its bound, with
// a frame no larger than the slot or a typed error; nothing panics, and no
// access faults (a fault would mean a read outside the mappings: the file is
// never truncated here).
func TestHostileScribble(t *testing.T) {
	rng := chaosRand(t)
	dir := framebus.ShmDir(t)
	p, h, f := scribbleBus(t, dir, "scrib", 8, 10*time.Millisecond)
	ctlSize := int64(h.PayloadOffset)

	scribbles := 20000
	if testing.Short() {
		scribbles = 2000
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	report := func(format string, args ...any) {
		select {
		case errs <- fmt.Sprintf(format, args...):
		default:
		}
	}
	var published atomic.Uint64
	wg.Add(1)
	go func() { // the producer
		defer wg.Done()
		frame := make([]byte, smallFormat.Width*smallFormat.Height)
		for !stop.Load() {
			if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
				report("producer: Publish: %v", err)
				return
			}
			published.Add(1)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var calls, frames, typed [4]atomic.Uint64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var c *framebus.Consumer
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			dst := make([]byte, 64*48)
			for n := 0; !stop.Load(); n++ {
				if c == nil || n%50 == 0 {
					if c != nil {
						c.Close()
					}
					c = nil
					start := time.Now()
					nc, err := framebus.Open("scrib", framebus.ConsumerOptions{Dir: dir})
					if d := time.Since(start); d > 5*time.Second {
						report("consumer %d: Open took %v", i, d)
					}
					if err != nil {
						if !scribbleErrOK(err) {
							report("consumer %d: Open: untyped or unexpected error %v (%T)", i, err, errors.Unwrap(err))
						}
						typed[i].Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					c = nc
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				start := time.Now()
				var fr *framebus.Frame
				var err error // this goroutine's own: not the test's err, which the other consumers write too
				if n%2 == 0 {
					fr, err = c.Next(ctx)
				} else {
					fr, err = c.ReadInto(ctx, dst)
				}
				cancel()
				calls[i].Add(1)
				if d := time.Since(start); d > 5*time.Second {
					report("consumer %d: a call with a 20ms deadline took %v", i, d)
				}
				if err != nil {
					if !scribbleErrOK(err) {
						report("consumer %d: untyped or unexpected error %v", i, err)
					}
					typed[i].Add(1)
					if errors.Is(err, framebus.ErrEndOfStream) || errors.Is(err, framebus.ErrTableFull) {
						c.Close()
						c = nil
					}
					continue
				}
				frames[i].Add(1)
				if uint64(len(fr.Data)) > fr.Format.FrameSize || len(fr.UserMeta) > framebus.UserMetaMax {
					report("consumer %d: frame of %d bytes (capacity %d), %d bytes of metadata", i, len(fr.Data), fr.Format.FrameSize, len(fr.UserMeta))
				}
				var sum byte
				for _, b := range fr.Data {
					sum += b
				}
				_ = sum
			}
		}(i)
	}
	// The stream description (sections 3.1-3.2, the bytes before active),
	// put back every 200 scribbles so that consumers keep (re-)opening and
	// reading, not only being refused.
	pristine := make([]byte, framebus.OffActive)
	if _, err := f.ReadAt(pristine, 0); err != nil {
		t.Fatal(err)
	}
	tables := int64(h.ConsumerTableOffset) + int64(h.ConsumerCapacity)*framebus.ConsumerEntrySize
	var buf [8]byte
	for n := 0; n < scribbles; n++ {
		k := 1 << rng.IntN(4) // 1, 2, 4 or 8 bytes
		for j := 0; j < k; j++ {
			buf[j] = byte(rng.Uint32())
		}
		var off int64
		switch rng.IntN(4) {
		case 0: // the header
			off = rng.Int64N(framebus.HeaderSize - int64(k))
		case 1: // anywhere in the control block
			off = rng.Int64N(ctlSize - int64(k))
		default: // the slot descriptors and the consumer table
			off = framebus.HeaderSize + rng.Int64N(tables-framebus.HeaderSize-int64(k))
		}
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			t.Fatal(err)
		}
		if n%200 == 199 {
			if _, err := f.WriteAt(pristine, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0, 0, 0, 0}, int64(framebus.OffActive)); err != nil {
				t.Fatal(err)
			}
		}
		if n%20 == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	stop.Store(true)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("a consumer or the producer is stuck 30s after the scribbling ended")
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i := range calls {
		t.Logf("consumer %d: %d calls, %d frames, %d typed errors", i, calls[i].Load(), frames[i].Load(), typed[i].Load())
	}
	t.Logf("%d scribbles over a %d-byte control block; the producer published %d frames", scribbles, ctlSize, published.Load())
}

// scribbleBus creates the bus name in dir for a scribbler (smallFormat with
// CRC-32C, a table of consumers entries, heartbeat hb) and returns the
// producer, the layout it wrote (Inspect) and its segment file opened
// read-write, as any consumer may: all closed when the test ends.
func scribbleBus(t *testing.T, dir, name string, consumers int, hb time.Duration) (*framebus.Producer, framebus.Header, *os.File) {
	t.Helper()
	p, err := framebus.Create(name, framebus.ProducerOptions{Format: smallFormat, Checksum: true, Consumers: consumers,
		Heartbeat: hb, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	st, err := framebus.Inspect(name, dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, st.Header, f
}

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
	p, h, seg := scribbleBus(t, dir, "fz", 4, 5*time.Millisecond)
	bases := [numRegions]int64{0, int64(framebus.OffActive), int64(h.SlotTableOffset), int64(h.ConsumerTableOffset)}
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
