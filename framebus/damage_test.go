package framebus_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// forgeField rewrites a header field of the segment at path with pwrite,
// as another process with write access can, to a value it never had.
func forgeField(t *testing.T, path string, f framebus.FixedField) (old, forged uint64) {
	t.Helper()
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	b := make([]byte, f.Size)
	if _, err := file.ReadAt(b, int64(f.Off)); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	switch f.Size {
	case 2:
		old = uint64(le.Uint16(b))
		forged = old ^ 0x5a
		le.PutUint16(b, uint16(forged))
	case 4:
		old = uint64(le.Uint32(b))
		forged = old ^ 0x5a
		le.PutUint32(b, uint32(forged))
	default:
		old = le.Uint64(b)
		forged = old ^ 0x5a
		le.PutUint64(b, forged)
	}
	if _, err := file.WriteAt(b, int64(f.Off)); err != nil {
		t.Fatal(err)
	}
	return old, forged
}

// Every fixed header field (and state) forged in a live bus of a producer
// process: the producer's heartbeat, comparing them with its own copy,
// publishes a new generation, which new consumers join. Before, only magic,
// total_size and generation were compared: a forged slot_count, state,
// slot_stride, width, ... made every new Open fail (or misread the bus) for
// as long as the producer lived.
func TestForgedFixedFieldsReplaced(t *testing.T) {
	const hb = 50 * time.Millisecond
	dir, name := framebus.ShmDir(t), busName(t)
	prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
		"-frames", "0", "-interval", "10ms", "-heartbeat", hb.String(), "-width", "64", "-height", "48")...)
	path := prod.waitEvent("ready", procStartTimeout).str("path")
	var worst time.Duration
	for _, f := range framebus.FixedFields() {
		s, err := framebus.Inspect(name, dir)
		if err != nil {
			t.Fatalf("before forging %s: %v", f.Name, err)
		}
		gen := s.Header.Generation
		old, forged := forgeField(t, path, f)
		at := time.Now()
		var openErr error
		for {
			if s, err := framebus.Inspect(name, dir); err == nil && s.Header.Generation == gen+1 {
				c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
				if openErr = err; err == nil {
					c.Close()
					break
				}
			} else if err != nil {
				openErr = err
			}
			if time.Since(at) > 100*hb { // two intervals nominally; generous for a loaded machine
				t.Fatalf("%s forged from %d to %d: no new generation new consumers can join within %v (last: %v)", f.Name, old, forged, 100*hb, openErr)
			}
			time.Sleep(2 * time.Millisecond)
		}
		d := time.Since(at)
		worst = max(worst, d)
		t.Logf("%-22s %#x -> %#x: new generation joined %v later", f.Name, old, forged, d.Round(time.Millisecond))
	}
	t.Logf("%d fields; slowest %v (heartbeat %v)", len(framebus.FixedFields()), worst.Round(time.Millisecond), hb)
}

// A slot lent out by Begin when the heartbeat replaces a damaged generation:
// the replacement does not wait for its Commit; the Commit carries the frame
// into the new generation (or fails with ErrCorrupt when the old file was
// truncated under the slot), and the replacement is a ProducerEvent naming
// the damage.
func TestHeldSlotAcrossReplacement(t *testing.T) {
	for _, damage := range []string{"slot_count", "removed", "truncated"} {
		t.Run(damage, func(t *testing.T) {
			dir, name := t.TempDir(), "held"
			f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey}.Complete()
			p, err := framebus.Create(name, framebus.ProducerOptions{Format: f, Dir: dir, Heartbeat: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := p.Publish(framebus.FrameBytes(1, int(f.FrameSize)), framebus.Meta{}); err != nil {
				t.Fatal(err)
			}
			buf, err := p.Begin()
			if err != nil {
				t.Fatal(err)
			}
			path := framebus.SegmentPath(dir, name)
			switch damage {
			case "slot_count":
				for _, ff := range framebus.FixedFields() {
					if ff.Name == "slot_count" {
						forgeField(t, path, ff)
					}
				}
			case "removed":
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			case "truncated":
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case e := <-p.Events():
				var de *framebus.DamageError
				if e.Err != nil || e.Generation != 2 || !e.SlotLent || !errors.As(e.Reason, &de) || !errors.Is(e.Reason, framebus.ErrCorrupt) {
					t.Fatalf("event %+v", e)
				}
				t.Logf("event: %v", e)
			case <-time.After(10 * time.Second):
				t.Fatal("no event within 10 s")
			}
			if g := p.Generation(); g != 2 {
				t.Fatalf("generation %d while the slot is lent out, want 2", g)
			}
			c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
			if err != nil {
				t.Fatalf("a new consumer of generation 2: %v", err)
			}
			defer c.Close()
			want := framebus.FrameBytes(2, int(f.FrameSize))
			if damage != "truncated" {
				copy(buf, want) // the old mapping is still there to write
			}
			seq, err := p.Commit(len(want), framebus.Meta{})
			if damage == "truncated" {
				if !errors.Is(err, framebus.ErrCorrupt) {
					t.Fatalf("Commit of a slot of a truncated, replaced generation: %d, %v; want ErrCorrupt", seq, err)
				}
				if seq, err = p.Publish(want, framebus.Meta{}); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fr, err := c.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if fr.Seq != seq || !bytes.Equal(fr.Data, want) {
				t.Fatalf("frame %d (%d bytes), want %d with its data", fr.Seq, len(fr.Data), seq)
			}
			if g := p.Generation(); g != 2 {
				t.Fatalf("generation %d after the commit, want 2 (no second replacement)", g)
			}
		})
	}
}
