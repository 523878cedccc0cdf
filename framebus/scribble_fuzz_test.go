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
// written by FRAMEBUS_UPDATE_SEEDS=1 go test -run TestScribbleSeedCorpus.

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
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
	regCounters        // 256: publication and counters
	regSlots           // slot_table_offset
	regEntries         // consumer_table_offset
	numRegions
)

var scribbleSpecial = []uint64{0, 1, 2, 3, 4, 7, 8, 0xff, 0xffff, 0xffffffff, 1 << 32, 1 << 63, ^uint64(0),
	0x53554246, 512, 65536, 4096 * 48, 1 << 20}

// scribbleSeeds are named programs, each aimed at one field.
func scribbleSeeds() []struct {
	name string
	prog []byte
} {
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
	return []struct {
		name string
		prog []byte
	}{
		{"publish-next", cat(pub, next, pub, read)},
		{"active-out-of-range", cat(pub, w4(regCounters, 0, 7), next, read)},
		{"slot-lock-odd", cat(pub, w8(regSlots, 128+0, 3), next, pub, next)},
		{"slot-bytes-huge", cat(pub, w8(regSlots, 128+32, 1<<40), w8(regSlots, 0+32, 1<<40), next, read)},
		{"slot-seq-ahead", cat(pub, w8(regSlots, 128+8, 1000), w8(regCounters, 8, 1000), next, pub, next)},
		{"user-meta-len-huge", cat(pub, w4(regSlots, 128+48, 65), w4(regSlots, 48, 1000), next, read)},
		{"end-of-stream-flag", cat(pub, w4(regSlots, 128+44, 1), w8(regSlots, 128+8, 50), next, next, reopen, next)},
		{"state-retired", cat(pub, next, w4(regHeader, 8, 3), next, pub, next)},
		{"state-broken", cat(w4(regHeader, 8, 2), next, reopen)},
		{"heartbeat-zero", cat(w8(regHeader, 32, 0), next, next)},
		{"entry-freed", cat(w4(regEntries, 0, 0), next, pub, next)},
		{"entry-token", cat(w8(regEntries, 16, 12345), next, pub, next)},
		{"entries-all-active", cat(w4(regEntries, 128, 2), reopen, next)},
		{"waiters-and-sem", cat(w4(regEntries, 12, 0xffffffff), w4(regEntries, 8, 0xffffffff), pub, next, next)},
		{"bad-magic-reopen", cat(w4(regHeader, 0, 0xdeadbeef), reopen, next)},
		{"payload-offset-reopen", cat(w8(regHeader, 40, 1<<63), reopen, next)},
		{"consumer-capacity-reopen", cat(w4(regHeader, 152, 1024), reopen, next)},
		{"abi-version-reopen", cat([]byte{opWrite1, regHeader, 4, 2}, reopen, next)},
		{"special-values", cat([]byte{opSpecial, regSlots, 128 + 32, 12}, []byte{opSpecial, regCounters, 0, 1}, pub, next, read)},
	}
}

func FuzzScribble(f *testing.F) {
	for _, s := range scribbleSeeds() {
		f.Add(s.prog)
	}
	dir := f.TempDir()
	if d, err := os.MkdirTemp("/dev/shm", "framebus-fuzz-"); err == nil {
		f.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("FuzzScribble: program %x hung for 10s", prog))
		})
		defer watchdog.Stop()
		runScribble(t, dir, prog)
	})
}

func runScribble(t *testing.T, dir string, prog []byte) {
	p, err := framebus.Create("fz", framebus.ProducerOptions{Format: scribbleFormat, Checksum: true, Consumers: 4,
		Heartbeat: 5 * time.Millisecond, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, err := framebus.Inspect("fz", dir)
	if err != nil {
		t.Fatal(err)
	}
	bases := [numRegions]int64{0, 256, int64(st.Header.SlotTableOffset), int64(st.Header.ConsumerTableOffset)}
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
	frame := make([]byte, scribbleFormat.Width*scribbleFormat.Height)
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
// (testdata/fuzz/FuzzScribble/seed-*) against scribbleSeeds; with
// FRAMEBUS_UPDATE_SEEDS=1 it writes them.
func TestScribbleSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzScribble")
	update := os.Getenv("FRAMEBUS_UPDATE_SEEDS") == "1"
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range scribbleSeeds() {
		path := filepath.Join(dir, "seed-"+s.name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.prog)
		if update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (FRAMEBUS_UPDATE_SEEDS=1 go test -run TestScribbleSeedCorpus writes it)", err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s is stale (FRAMEBUS_UPDATE_SEEDS=1 go test -run TestScribbleSeedCorpus rewrites it)", path)
		}
	}
}
