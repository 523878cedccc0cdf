//go:build linux

package framebus_test

// The bad inputs of PROTOCOL.md section 6 through the public API: every one
// is a typed error that names the field and its value, never a panic, a
// SIGBUS or a hang.

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

var le = binary.LittleEndian

func writeSegment(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := framebus.SegmentPath(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bounded runs fn and fails the test if it does not return within limit: a
// hang is a failure, not a stuck test run.
func bounded[T any](t *testing.T, limit time.Duration, what string, fn func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- fn() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(limit):
		t.Fatalf("%s did not return within %v", what, limit)
		panic("unreachable")
	}
}

type openResult struct {
	c   *framebus.Consumer
	err error
}

// openOnce opens name in dir (no wait) and returns the error; a consumer
// returned for a bad input is closed and reported.
func openOnce(t *testing.T, dir, name string) error {
	t.Helper()
	r := bounded(t, 10*time.Second, "Open", func() openResult {
		c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
		return openResult{c, err}
	})
	if r.err == nil {
		r.c.Close()
	}
	return r.err
}

// TestBadInputSegments writes corrupt copies of a real segment as
// framebus.<name> and opens them.
func TestBadInputSegments(t *testing.T) {
	good := validSegmentBytes(t)
	total := uint64(len(good))
	stride := le.Uint64(good[framebus.OffSlotStride:])
	capacity := le.Uint64(good[framebus.OffSlotCapacity:])

	// patch returns a copy of good with fn applied.
	patch := func(fn func(b []byte) []byte) []byte {
		return fn(append([]byte(nil), good...))
	}
	u16 := func(off uint64, v uint16) []byte {
		return patch(func(b []byte) []byte { le.PutUint16(b[off:], v); return b })
	}
	u32 := func(off uint64, v uint32) []byte {
		return patch(func(b []byte) []byte { le.PutUint32(b[off:], v); return b })
	}
	u64 := func(off uint64, v uint64) []byte {
		return patch(func(b []byte) []byte { le.PutUint64(b[off:], v); return b })
	}

	cases := []struct {
		name     string
		data     []byte
		sentinel error
		field    string // LayoutError.Field, "" for none
		value    uint64
		mention  []string
	}{
		{"wrong magic", u32(framebus.OffMagic, 0xdeadbeef), framebus.ErrBadMagic, "", 0, []string{"magic", "0xdeadbeef", "0x53554246"}},
		{"zero magic", u32(framebus.OffMagic, 0), framebus.ErrBadMagic, "", 0, []string{"magic", "0x00000000", "0x53554246"}},
		{"abi_version 2", u16(framebus.OffABIVersion, 2), framebus.ErrVersionMismatch, "", 0, []string{"abi_version 2", "speaks 1"}},
		{"abi_version 0", u16(framebus.OffABIVersion, 0), framebus.ErrVersionMismatch, "", 0, []string{"abi_version 0", "speaks 1"}},
		{"empty file", []byte{}, framebus.ErrCorrupt, "file size", 0, nil},
		{"first 100 bytes", good[:100], framebus.ErrCorrupt, "file size", 100, nil},
		{"first 511 bytes", good[:511], framebus.ErrCorrupt, "file size", 511, nil},
		{"header only", good[:512], framebus.ErrCorrupt, "total_size", total, []string{"512"}},
		{"truncated to 4096", good[:4096], framebus.ErrCorrupt, "total_size", total, []string{"4096"}},
		{"truncated by one page", good[:total-4096], framebus.ErrCorrupt, "total_size", total, []string{strconv.FormatUint(total-4096, 10)}},
		{"longer than total_size", append(append([]byte(nil), good...), make([]byte, 4096)...), framebus.ErrCorrupt, "total_size", total, []string{strconv.FormatUint(total+4096, 10)}},
		{"total_size + 65536", u64(framebus.OffTotalSize, total+65536), framebus.ErrCorrupt, "total_size", total + 65536, []string{strconv.FormatUint(total, 10)}},
		{"total_size 2^64-1", u64(framebus.OffTotalSize, math.MaxUint64), framebus.ErrCorrupt, "total_size", math.MaxUint64, nil},
		{"header_size 256", u16(framebus.OffHeaderSize, 256), framebus.ErrCorrupt, "header_size", 256, nil},
		{"state 7", u32(framebus.OffState, 7), framebus.ErrCorrupt, "state", 7, nil},
		{"slot_count 9", u32(framebus.OffSlotCount, 9), framebus.ErrCorrupt, "slot_count", 9, nil},
		{"slot_count 0", u32(framebus.OffSlotCount, 0), framebus.ErrCorrupt, "slot_count", 0, nil},
		{"consumer_capacity 0", u32(framebus.OffConsumerCapacity, 0), framebus.ErrCorrupt, "consumer_capacity", 0, nil},
		{"consumer_capacity 1025", u32(framebus.OffConsumerCapacity, 1025), framebus.ErrCorrupt, "consumer_capacity", 1025, nil},
		{"payload_offset near 2^64", u64(framebus.OffPayloadOffset, math.MaxUint64-65535), framebus.ErrCorrupt, "payload_offset", math.MaxUint64 - 65535, nil},
		{"payload_offset past the file", u64(framebus.OffPayloadOffset, total+65536), framebus.ErrCorrupt, "payload_offset", total + 65536, nil},
		{"payload_offset misaligned", u64(framebus.OffPayloadOffset, 65536+4096), framebus.ErrCorrupt, "payload_offset", 65536 + 4096, nil},
		{"payload_offset 0", u64(framebus.OffPayloadOffset, 0), framebus.ErrCorrupt, "payload_offset", 0, nil},
		{"slot_stride 2^63", u64(framebus.OffSlotStride, 1<<63), framebus.ErrCorrupt, "payload_size", 2 * stride, nil},
		{"slot_capacity > slot_stride", u64(framebus.OffSlotCapacity, stride+1), framebus.ErrCorrupt, "slot_capacity", stride + 1, []string{strconv.FormatUint(stride, 10)}},
		{"plane_offset past slot_capacity", u32(framebus.OffPlaneOffset, uint32(capacity)), framebus.ErrCorrupt, "plane_offset[0]", capacity, nil},
		{"active 5", u32(framebus.OffActive, 5), framebus.ErrCorrupt, "active", 5, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSegment(t, dir, "cam", c.data)
			err := openOnce(t, dir, "cam")
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("Open: %v, want errors.Is %v", err, c.sentinel)
			}
			for _, other := range []error{framebus.ErrBadMagic, framebus.ErrVersionMismatch, framebus.ErrCorrupt, framebus.ErrNotFound} {
				if other != c.sentinel && errors.Is(err, other) {
					t.Errorf("Open: %v also matches %v", err, other)
				}
			}
			var fe *framebus.Error
			if !errors.As(err, &fe) || fe.Op != "open" || fe.Name != "cam" {
				t.Errorf("Open: %#v is not a *framebus.Error{Op: open, Name: cam}", err)
			}
			if c.field != "" {
				var lerr *framebus.LayoutError
				if !errors.As(err, &lerr) {
					t.Fatalf("Open: %v is not a *LayoutError", err)
				}
				if lerr.Field != c.field || lerr.Value != c.value {
					t.Errorf("LayoutError{Field: %q, Value: %d}, want {%q, %d}", lerr.Field, lerr.Value, c.field, c.value)
				}
				wantMention(t, err, c.field, strconv.FormatUint(c.value, 10))
			}
			wantMention(t, err, c.mention...)
		})
	}

	t.Run("control: the unpatched copy opens", func(t *testing.T) {
		dir := t.TempDir()
		writeSegment(t, dir, "cam", good)
		c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})

	t.Run("state INITIALIZING is not found, not joined", func(t *testing.T) {
		dir := t.TempDir()
		writeSegment(t, dir, "cam", u32(framebus.OffState, 0))
		err := openOnce(t, dir, "cam")
		if !errors.Is(err, framebus.ErrNotFound) {
			t.Fatalf("Open: %v, want ErrNotFound", err)
		}
	})
}

// TestBadInputVersionMismatchCounted checks that a refused abi_version bumps
// version_mismatch_count (section 3.1) in the file, once per refusal, and
// changes nothing else.
func TestBadInputVersionMismatchCounted(t *testing.T) {
	b := validSegmentBytes(t)
	le.PutUint16(b[framebus.OffABIVersion:], 2)
	le.PutUint64(b[framebus.OffVersionMismatchCount:], 40)
	dir := t.TempDir()
	path := writeSegment(t, dir, "cam", b)
	for i := 1; i <= 2; i++ {
		err := openOnce(t, dir, "cam")
		if !errors.Is(err, framebus.ErrVersionMismatch) {
			t.Fatalf("Open: %v, want ErrVersionMismatch", err)
		}
		var ve *framebus.VersionError
		if !errors.As(err, &ve) || ve.Got != 2 || ve.Want != 1 {
			t.Fatalf("Open: %v, want *VersionError{Got: 2, Want: 1}", err)
		}
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := le.Uint64(after[framebus.OffVersionMismatchCount:]); got != 40+uint64(i) {
			t.Errorf("after %d refused opens version_mismatch_count = %d, want %d", i, got, 40+i)
		}
		le.PutUint64(after[framebus.OffVersionMismatchCount:], 40)
		le.PutUint64(b[framebus.OffVersionMismatchCount:], 40)
		if string(after) != string(b) {
			t.Errorf("a refused open changed more than version_mismatch_count")
		}
	}
}

// TestBadInputNames: bad names are refused by Open and Create before any
// file is touched.
func TestBadInputNames(t *testing.T) {
	for _, name := range []string{"", "../x", "a/b", "..", ".hidden", "x.lock", "a.tmp-1", "a\x00b", strings.Repeat("n", 65)} {
		dir := t.TempDir()
		missing := filepath.Join(dir, "missing") // would give ErrNotFound if it were looked at
		for _, d := range []string{dir, missing} {
			_, err := framebus.Open(name, framebus.ConsumerOptions{Dir: d, Wait: time.Second})
			if !errors.Is(err, framebus.ErrBadName) {
				t.Errorf("Open(%q, dir %s): %v, want ErrBadName", name, d, err)
			}
			p, err := framebus.Create(name, framebus.ProducerOptions{Format: smallFormat, Dir: d})
			if !errors.Is(err, framebus.ErrBadName) {
				t.Errorf("Create(%q, dir %s): %v, want ErrBadName", name, d, err)
				if p != nil {
					p.Close()
				}
			}
			var ne *framebus.NameError
			if !errors.As(err, &ne) || ne.Name != name {
				t.Errorf("Create(%q): %v is not a *NameError naming it", name, err)
			}
		}
		if names := listDir(t, dir); len(names) != 0 {
			t.Errorf("name %q: the bus directory now holds %v", name, names)
		}
	}
}

// TestBadInputSymlink: a symbolic link at the segment path (to a valid
// segment elsewhere) is refused by Open and by Create, and its target is
// left alone. So is one at the lock path.
func TestBadInputSymlink(t *testing.T) {
	good := validSegmentBytes(t)
	elsewhere := t.TempDir()
	target := filepath.Join(elsewhere, "framebus.real")
	if err := os.WriteFile(target, good, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := framebus.SegmentPath(dir, "cam")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	err := openOnce(t, dir, "cam")
	if !errors.Is(err, framebus.ErrUnsafePath) {
		t.Errorf("Open through a symlink: %v, want ErrUnsafePath", err)
	} else {
		wantMention(t, err, link)
	}
	p, err := framebus.Create("cam", framebus.ProducerOptions{Format: smallFormat, Dir: dir})
	if err == nil {
		p.Close()
		t.Fatal("Create replaced a symlink at the segment path")
	}
	if !errors.Is(err, framebus.ErrUnsafePath) {
		t.Errorf("Create over a symlink: %v, want ErrUnsafePath", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was removed or replaced: %v %v", fi, err)
	}
	if after, err := os.ReadFile(target); err != nil || string(after) != string(good) {
		t.Errorf("the symlink's target was modified (%v)", err)
	}
	for _, n := range listDir(t, dir) {
		if strings.Contains(n, ".tmp-") {
			t.Errorf("Create left %s behind", n)
		}
		if n == "framebus.cam.lock" {
			// Same defect as TestBadInputNoSpace asserts (the lock file of a
			// refused Create is not removed); logged here, not failed twice.
			t.Logf("note: the refused Create left its lock file %s behind", n)
		}
	}

	// A dangling symlink at the lock path must not be followed (nor its
	// target created).
	dir2 := t.TempDir()
	lockTarget := filepath.Join(elsewhere, "created-through-lock-link")
	if err := os.Symlink(lockTarget, framebus.LockPath(dir2, "cam")); err != nil {
		t.Fatal(err)
	}
	p, err = framebus.Create("cam", framebus.ProducerOptions{Format: smallFormat, Dir: dir2})
	if err == nil {
		p.Close()
		t.Fatal("Create used a symlink as its lock file")
	}
	if !errors.Is(err, framebus.ErrUnsafePath) {
		t.Errorf("Create with a symlinked lock file: %v, want ErrUnsafePath", err)
	}
	if _, err := os.Lstat(lockTarget); err == nil {
		t.Errorf("Create followed the lock symlink and created %s", lockTarget)
	}
	if names := listDir(t, dir2); len(names) != 1 {
		t.Errorf("the bus directory holds %v, want only the planted lock symlink", names)
	}
}

// TestBadInputNotRegular: a directory or a FIFO at the segment path is a
// typed error for Open and Create, and never blocks.
func TestBadInputNotRegular(t *testing.T) {
	for _, kind := range []string{"directory", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			path := framebus.SegmentPath(dir, "cam")
			var err error
			if kind == "directory" {
				err = os.Mkdir(path, 0o700)
			} else {
				err = unix.Mkfifo(path, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			err = openOnce(t, dir, "cam")
			if !errors.Is(err, framebus.ErrUnsafePath) {
				t.Errorf("Open with a %s at the path: %v (%T), want ErrUnsafePath", kind, err, errors.Unwrap(err))
			}
			r := bounded(t, 10*time.Second, "Create", func() error {
				p, err := framebus.Create("cam", framebus.ProducerOptions{Format: smallFormat, Dir: dir})
				if err == nil {
					p.Close()
				}
				return err
			})
			if !errors.Is(r, framebus.ErrUnsafePath) {
				t.Errorf("Create with a %s at the path: %v, want ErrUnsafePath", kind, r)
			}
			if fi, err := os.Lstat(path); err != nil || (kind == "directory") != fi.IsDir() {
				t.Errorf("the %s at the path was replaced: %v %v", kind, fi, err)
			}
		})
	}
}

// TestBadInputMissing: a bus that does not exist is ErrNotFound, at once or
// after the Wait.
func TestBadInputMissing(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	err := openOnce(t, dir, "nobody")
	if !errors.Is(err, framebus.ErrNotFound) {
		t.Fatalf("Open: %v, want ErrNotFound", err)
	}
	wantMention(t, err, framebus.SegmentPath(dir, "nobody"))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open without Wait took %v", d)
	}

	start = time.Now()
	r := bounded(t, 10*time.Second, "Open with Wait", func() openResult {
		c, err := framebus.Open("nobody", framebus.ConsumerOptions{Dir: dir, Wait: 300 * time.Millisecond})
		return openResult{c, err}
	})
	d := time.Since(start)
	if r.err == nil {
		r.c.Close()
		t.Fatal("Open of a missing bus succeeded")
	}
	if !errors.Is(r.err, framebus.ErrNotFound) {
		t.Fatalf("Open with Wait: %v, want ErrNotFound", r.err)
	}
	if d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Open with Wait 300ms returned after %v", d)
	}

	// A missing bus directory is ErrNotFound too.
	if err := openOnce(t, filepath.Join(dir, "no-such-dir"), "nobody"); !errors.Is(err, framebus.ErrNotFound) {
		t.Errorf("Open in a missing directory: %v, want ErrNotFound", err)
	}
}

// TestBadInputNoSpace: Create in a bus directory too small for the segment
// fails with a *SpaceError naming the bytes needed and available, and leaves
// nothing behind. It mounts a 1 MiB tmpfs, so it runs as root only.
func TestBadInputNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})

	p, err := framebus.Create("big", framebus.ProducerOptions{Format: framebus.Format{Width: 1920, Height: 1080, PixelFormat: framebus.FormatRGBA}, Dir: dir})
	if err == nil {
		p.Close()
		t.Fatal("Create of a 16 MB segment succeeded on a 1 MB tmpfs")
	}
	if !errors.Is(err, framebus.ErrNoSpace) {
		t.Fatalf("Create: %v, want ErrNoSpace", err)
	}
	var se *framebus.SpaceError
	if !errors.As(err, &se) {
		t.Fatalf("Create: %v is not a *SpaceError", err)
	}
	if se.Needed <= se.Available || se.Needed < 2*1920*1080*4 || se.Available > 1<<20 {
		t.Errorf("SpaceError{Needed: %d, Available: %d}: want needed > 16 MB > 1 MB >= available", se.Needed, se.Available)
	}
	wantMention(t, err, strconv.FormatUint(se.Needed, 10), strconv.FormatUint(se.Available, 10), "bytes", dir)
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("a refused Create left %v in the bus directory (want nothing: no tmp file, no segment, no lock file)", names)
	}

	// The same directory still takes a segment that fits.
	p, err = framebus.Create("small", framebus.ProducerOptions{Format: smallFormat, Consumers: 4, Dir: dir})
	if err != nil {
		t.Fatalf("Create of a small segment: %v", err)
	}
	p.Close()
}

// TestBadInputTableFull: the consumer after the last free entry gets
// ErrTableFull with the capacity, and the entry is free again once a
// consumer leaves.
func TestBadInputTableFull(t *testing.T) {
	dir := t.TempDir()
	p, err := framebus.Create("cam", framebus.ProducerOptions{Format: smallFormat, Consumers: 2, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var cs []*framebus.Consumer
	for i := 0; i < 2; i++ {
		c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir})
		if err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	for i := 0; i < 2; i++ {
		err := openOnce(t, dir, "cam")
		if !errors.Is(err, framebus.ErrTableFull) {
			t.Fatalf("third consumer: %v, want ErrTableFull", err)
		}
		var te *framebus.TableFullError
		if !errors.As(err, &te) || *te != (framebus.TableFullError{Capacity: 2}) {
			t.Fatalf("third consumer: %v, want *TableFullError{Capacity: 2}", err)
		}
		wantMention(t, err, "capacity 2")
	}
	cs[0].Close()
	c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatalf("after a consumer left: %v", err)
	}
	c.Close()
}
