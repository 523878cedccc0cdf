//go:build linux

package framebus_test

// Resource limits (docs/RELIABILITY.md): a bus directory too small for the segment (a
// 16 MB tmpfs stands in for Docker's 64 MB /dev/shm), and 10,000 open/close
// cycles that must leak no descriptor, mapping or goroutine. The full
// consumer table is TestBadInputTableFull (a *TableFullError naming the
// capacity) and TestChaosKillConsumers (dead entries reclaimed, the table
// never fills).

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// mountTmpfs mounts a tmpfs of the given size option on a new directory and
// unmounts it when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		needRoot(t, "mounting a "+size+" tmpfs needs root", nil)
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		needRoot(t, "cannot mount a "+size+" tmpfs on "+dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

var (
	format1080p = framebus.Format{Width: 1920, Height: 1080, PixelFormat: framebus.FormatRGBA}
	format720p  = framebus.Format{Width: 1280, Height: 720, PixelFormat: framebus.FormatRGBA}
)

// wantSpaceError asserts a *SpaceError naming the bytes needed and available
// and the directory, with needed > available.
func wantSpaceError(t *testing.T, err error, dir string) *framebus.SpaceError {
	t.Helper()
	var se *framebus.SpaceError
	if !errors.Is(err, framebus.ErrNoSpace) || !errors.As(err, &se) {
		t.Fatalf("%v: want a *SpaceError (ErrNoSpace)", err)
	}
	if se.Needed <= se.Available {
		t.Errorf("SpaceError{Needed: %d, Available: %d}: want needed > available", se.Needed, se.Available)
	}
	wantMention(t, err, strconv.FormatUint(se.Needed, 10), strconv.FormatUint(se.Available, 10), "bytes", dir)
	return se
}

// TestLimitsSmallTmpfs: a 16 MB bus directory. A 1080p RGBA bus with three
// slots (25 MB) is refused at Create with the bytes needed and available,
// and nothing is left behind. One with two slots (16.7 MB) fits; a new
// generation of it (a format change, or a restart after a crash, while the
// old file still exists) does not: refused the same way, with the running
// producer and its consumer unaffected, and after a crash the dead bus must
// be collected (framebus gc) before a new producer fits.
func TestLimitsSmallTmpfs(t *testing.T) {
	dir := mountTmpfs(t, "16m")
	t.Run("too-big", func(t *testing.T) {
		p, err := framebus.Create("big", framebus.ProducerOptions{Format: format1080p, Slots: 3, Dir: dir})
		if err == nil {
			p.Close()
			t.Fatal("Create of a 25 MB segment succeeded on a 16 MB tmpfs")
		}
		se := wantSpaceError(t, err, dir)
		t.Logf("1080p RGBA, 3 slots: %v", err)
		if se.Needed < 3*1920*1080*4 || se.Available > 16<<20 {
			t.Errorf("SpaceError{Needed: %d, Available: %d}: want needed >= 3 frames, available <= 16 MiB", se.Needed, se.Available)
		}
		if names := listDir(t, dir); len(names) != 0 {
			t.Errorf("a refused Create left %v (want nothing: no temporary file, no segment, no lock file)", names)
		}
	})
	t.Run("second-generation", func(t *testing.T) {
		p, err := framebus.Create("cam", framebus.ProducerOptions{Format: format1080p, Dir: dir})
		if err != nil {
			t.Fatalf("Create of a 1080p RGBA double-buffered bus on a 16 MB tmpfs: %v", err)
		}
		defer p.Close()
		c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		frame := make([]byte, format1080p.Width*format1080p.Height*4)
		if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
			t.Fatal(err)
		}
		err = p.Reconfigure(format720p)
		if err == nil {
			t.Fatal("a second generation fitted beside the first on a 16 MB tmpfs")
		}
		t.Logf("Reconfigure to 720p beside the 1080p generation: %v", err)
		wantSpaceError(t, err, dir)
		if g := p.Generation(); g != 1 {
			t.Errorf("generation %d after a refused Reconfigure, want 1", g)
		}
		if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
			t.Fatalf("Publish after a refused Reconfigure: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if f, err := c.Next(ctx); err != nil || f.Seq != 2 || f.Generation != 1 {
			t.Fatalf("consumer after a refused Reconfigure: %+v, %v; want frame 2 of generation 1", f, err)
		}
		if names := listDir(t, dir); !slices.Equal(names, []string{"framebus.cam", "framebus.cam.lock"}) {
			t.Errorf("bus directory %v after a refused Reconfigure, want the bus only", names)
		}
	})
	t.Run("restart-after-crash", func(t *testing.T) {
		name := busName(t)
		prod := startChild(t, "producer", childOpts{}, "producer", busArgs(dir, name,
			"-format", "rgba", "-width", "1920", "-height", "1080", "-frames", "3", "-close=false")...)
		prod.waitEvent("done", procStartTimeout)
		if _, err := prod.kill(); !killedBy(err, syscall.SIGKILL) {
			t.Fatalf("producer: %v, want SIGKILL", err)
		}
		left := listDir(t, dir)
		p, err := framebus.Create(name, framebus.ProducerOptions{Format: format1080p, Dir: dir})
		if err == nil {
			p.Close()
			t.Fatal("a new producer fitted beside the dead one's segment on a 16 MB tmpfs")
		}
		t.Logf("restart beside the dead producer's segment: %v", err)
		wantSpaceError(t, err, dir)
		if names := listDir(t, dir); !slices.Equal(names, left) {
			t.Errorf("the refused restart changed the bus directory from %v to %v", left, names)
		}
		removed, err := framebus.GC(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gc removed %v", removed)
		p, err = framebus.Create(name, framebus.ProducerOptions{Format: format1080p, Dir: dir})
		if err != nil {
			t.Fatalf("Create after gc: %v", err)
		}
		if g := p.Generation(); g != 1 {
			t.Errorf("generation %d after gc, want 1", g)
		}
		p.Close()
		if names := listDir(t, dir); len(names) != 0 {
			t.Errorf("after Close the bus directory holds %v", names)
		}
	})
}

// procSelfCounts returns the open descriptors of this process, the lines of
// its /proc/self/maps, and those of them naming a file under dir.
func procSelfCounts(t *testing.T, dir string) (fds, maps, ours int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, dir) {
			ours++
		}
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if strings.Contains(l, dir) {
			ours++
		}
	}
	return len(ents), len(lines), ours
}

// TestLimitsOpenCloseNoLeak: 10,000 cycles (1,000 with -short) of a producer
// created and closed, a consumer opened, read from and closed, with the
// error paths mixed in (a format change followed by the consumer, a busy
// name, a full table, a missing bus, a corrupt file). Afterwards no
// descriptor or mapping of a bus file is left, the descriptor count is what
// it was, the mapping count has not grown (beyond a little runtime slack),
// and no goroutine is left behind.
func TestLimitsOpenCloseNoLeak(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	dir := framebus.ShmDir(t)
	if err := os.WriteFile(framebus.SegmentPath(dir, "junk"), []byte("not a segment, not at all, and too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	small := framebus.Format{Width: 32, Height: 16, PixelFormat: framebus.FormatGrey}
	other := framebus.Format{Width: 16, Height: 16, PixelFormat: framebus.FormatGrey}
	frame := make([]byte, 32*16)
	fail := func(i int, what string, err error) {
		t.Helper()
		t.Fatalf("cycle %d: %s: %v", i, what, err)
	}
	cycle := func(i int) {
		consumers := 4
		if i%10 == 7 {
			consumers = 1
		}
		p, err := framebus.Create("leak", framebus.ProducerOptions{Format: small, Consumers: consumers, Heartbeat: 50 * time.Millisecond, Dir: dir})
		if err != nil {
			fail(i, "Create", err)
		}
		c, err := framebus.Open("leak", framebus.ConsumerOptions{Dir: dir})
		if err != nil {
			fail(i, "Open", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
			fail(i, "Publish", err)
		}
		if _, err := c.Next(ctx); err != nil {
			fail(i, "Next", err)
		}
		switch i % 10 {
		case 3: // a new generation, followed by the consumer
			if err := p.Reconfigure(other); err != nil {
				fail(i, "Reconfigure", err)
			}
			if _, err := p.Publish(frame[:16*16], framebus.Meta{}); err != nil {
				fail(i, "Publish", err)
			}
			if f, err := c.Next(ctx); err != nil || !f.GenerationChanged {
				fail(i, "Next after Reconfigure", err)
			}
		case 5: // a busy name
			if p2, err := framebus.Create("leak", framebus.ProducerOptions{Format: small, Dir: dir}); !errors.Is(err, framebus.ErrBusy) {
				if err == nil {
					p2.Close()
				}
				fail(i, "second Create", err)
			}
		case 7: // a full table
			if c2, err := framebus.Open("leak", framebus.ConsumerOptions{Dir: dir}); !errors.Is(err, framebus.ErrTableFull) {
				if err == nil {
					c2.Close()
				}
				fail(i, "Open of a full table", err)
			}
		case 9: // a missing bus, a corrupt file
			if _, err := framebus.Open("missing", framebus.ConsumerOptions{Dir: dir}); !errors.Is(err, framebus.ErrNotFound) {
				fail(i, "Open of a missing bus", err)
			}
			if _, err := framebus.Open("junk", framebus.ConsumerOptions{Dir: dir}); err == nil {
				fail(i, "Open of a corrupt file", err)
			}
		}
		cancel()
		if err := c.Close(); err != nil {
			fail(i, "consumer Close", err)
		}
		if err := p.Close(); err != nil {
			fail(i, "producer Close", err)
		}
	}
	for i := 0; i < 20; i++ { // warm up: the runtime's own descriptors and mappings
		cycle(i)
	}
	runtime.GC()
	fds0, maps0, ours0 := procSelfCounts(t, dir)
	g0 := runtime.NumGoroutine()
	start := time.Now()
	for i := 0; i < cycles; i++ {
		cycle(i)
	}
	d := time.Since(start)
	runtime.GC()
	var fds1, maps1, ours1, g1 int
	for try := 0; try < 50; try++ { // goroutines of context.AfterFunc and timers finish asynchronously
		fds1, maps1, ours1 = procSelfCounts(t, dir)
		g1 = runtime.NumGoroutine()
		if g1 <= g0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d cycles in %v (%v each): descriptors %d -> %d, mappings %d -> %d, of bus files %d -> %d, goroutines %d -> %d",
		cycles, d.Round(time.Millisecond), (d / time.Duration(cycles)).Round(time.Microsecond), fds0, fds1, maps0, maps1, ours0, ours1, g0, g1)
	if ours1 != 0 || ours0 != 0 {
		t.Errorf("%d descriptors or mappings of files in the bus directory left open (before the cycles: %d)", ours1, ours0)
	}
	if fds1 != fds0 {
		t.Errorf("open descriptors %d after %d cycles, %d before", fds1, cycles, fds0)
	}
	if maps1 > maps0+16 {
		t.Errorf("mappings %d after %d cycles, %d before", maps1, cycles, maps0)
	}
	if g1 > g0 {
		t.Errorf("goroutines %d after %d cycles, %d before", g1, cycles, g0)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"framebus.junk"}) {
		t.Errorf("bus directory after the cycles: %v", names)
	}
}
