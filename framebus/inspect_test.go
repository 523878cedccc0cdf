//go:build linux

package framebus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

func TestInspectListRemoveGC(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("live", framebus.ProducerOptions{Format: framebus.Format{Width: 64, Height: 64}, Dir: dir, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("live", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		if _, err := p.Publish(make([]byte, 64*64*4), framebus.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Next(context.Background()); err != nil {
		t.Fatal(err)
	}

	s, err := framebus.Inspect("live", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.OwnerAlive || s.Header.LastSeq != 3 || s.Header.FramesPublished != 3 || s.Header.Flags != framebus.FlagChecksum|framebus.FlagSharedWake|framebus.FlagHolds || s.Header.WakeSeq != 3 || len(s.Slots) != 2 {
		t.Errorf("snapshot: owner %v, header %+v", s.OwnerAlive, s.Header)
	}
	if len(s.Consumers) != 1 || !s.Consumers[0].Alive || s.Consumers[0].PID != uint32(os.Getpid()) || s.Consumers[0].LastSeq != 3 || s.Consumers[0].Dropped != 2 {
		t.Errorf("consumers: %+v", s.Consumers)
	}

	// A stale bus: the same bytes under another name, with no live owner.
	b, err := os.ReadFile(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "framebus.stale"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "framebus.stale.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// and a corrupt one
	if err := os.WriteFile(filepath.Join(dir, "framebus.junk"), []byte("not a segment at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	js, err := framebus.Inspect("junk", dir)
	if !errors.Is(err, framebus.ErrBadMagic) && !errors.Is(err, framebus.ErrCorrupt) || js == nil || js.Invalid == nil {
		t.Errorf("Inspect(junk) = %v, %v; want a snapshot and a layout error", js, err)
	}

	buses, err := framebus.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, bi := range buses {
		got[bi.Name] = bi.OwnerAlive
	}
	if len(buses) != 3 || !got["live"] || got["stale"] {
		t.Errorf("List = %+v", buses)
	}

	err = framebus.Remove("live", dir, false)
	var be *framebus.BusyError
	if !errors.Is(err, framebus.ErrBusy) || !errors.As(err, &be) || be.PID != uint32(os.Getpid()) {
		t.Errorf("Remove(live) = %v; want busy naming pid %d", err, os.Getpid())
	}

	removed, err := framebus.GC(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("GC removed %v; want the stale segment and its lock file", removed)
	}
	if _, err := os.Stat(filepath.Join(dir, "framebus.junk")); err != nil {
		t.Errorf("GC removed a file that is not a bus (no magic): %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "framebus.stale")); !os.IsNotExist(err) {
		t.Errorf("stale segment still there: %v", err)
	}
	if _, err := os.Stat(p.Path()); err != nil {
		t.Errorf("GC touched the live bus: %v", err)
	}
	if err := framebus.Remove("nothing", dir, false); !errors.Is(err, framebus.ErrNotFound) {
		t.Errorf("Remove(nothing) = %v", err)
	}

	// Forced removal of a live bus: consumers are told at once; the producer
	// notices at its next heartbeat and publishes a new generation, which
	// the consumer follows.
	if err := framebus.Remove("live", dir, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Generation() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Generation() != 2 {
		t.Fatalf("producer generation %d after its name was removed; want 2", p.Generation())
	}
	if _, err := p.Publish(make([]byte, 64*64*4), framebus.Meta{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil || !f.GenerationChanged || f.Generation != 2 || f.Seq != 4 {
		t.Fatalf("after the new generation: %+v, %v", f, err)
	}
}
