//go:build linux

package framebus_test

// The helpers of the external tests (package framebus_test) used by more
// than one test file: segments and bus directories, error and directory
// checks, the random source of the chaos tests, the accounting every
// multi-process test asserts of a consumer's summary, and the 1080p frame
// and CPU placement of the benchmarks. Child processes are
// process_helpers_test.go; the internals they need, export_test.go.

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// ---- segments and checks ----

// smallFormat is the format of the small buses of the bad-input, hostile
// and scribble tests.
var smallFormat = framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey}

// validSegmentBytes creates a real producer in a directory of its own and
// returns a copy of its segment file.
func validSegmentBytes(t *testing.T) []byte {
	t.Helper()
	p, err := framebus.Create("src", framebus.ProducerOptions{Format: smallFormat, Consumers: 4, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b, err := os.ReadFile(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < framebus.HeaderSize {
		t.Fatalf("segment of %d bytes", len(b))
	}
	if total := framebus.DecodeHeader(b).TotalSize; total != uint64(len(b)) {
		t.Fatalf("segment of %d bytes with total_size %d", len(b), total)
	}
	return b
}

// wantMention fails the test for every word the message of err lacks.
func wantMention(t *testing.T, err error, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// listDir returns the sorted names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// needRoot skips a test that needs root (to mount a tmpfs), unless
// FRAMEBUS_REQUIRE_ROOT is set, which makes it fail instead: CI runs as
// root, and must not skip it silently.
func needRoot(t *testing.T, why string, err error) {
	t.Helper()
	msg := "skipped: " + why
	if err != nil {
		msg += ": " + err.Error()
	}
	if os.Getenv("FRAMEBUS_REQUIRE_ROOT") != "" {
		t.Fatal(msg + " (FRAMEBUS_REQUIRE_ROOT is set)")
	}
	t.Skip(msg + " (set FRAMEBUS_REQUIRE_ROOT=1 to make this a failure)")
}

// scribbleErrOK reports whether err is one of the results a consumer may give
// on a control block that a hostile writer scribbles over: all typed. A
// memory fault is not among them: the file is never truncated here, so a
// fault would mean a read outside the mappings.
func scribbleErrOK(err error) bool {
	var fe *framebus.Error
	if !errors.As(err, &fe) {
		return false
	}
	if strings.Contains(err.Error(), "truncated") {
		return false
	}
	for _, s := range []error{framebus.ErrCorrupt, framebus.ErrChecksum, framebus.ErrEndOfStream, framebus.ErrStalled,
		framebus.ErrProducerGone, framebus.ErrRetired, framebus.ErrTableFull, framebus.ErrBadMagic,
		framebus.ErrVersionMismatch, framebus.ErrNotFound, os.ErrDeadlineExceeded} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// ---- the chaos tests ----

// chaosRand returns the run's random source and logs its seed.
func chaosRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FRAMEBUS_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FRAMEBUS_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("random seed %d (FRAMEBUS_CHAOS_SEED=%d replays it)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// chaos1080p are the producer flags of a 1080p RGBA bus with CRC-32C.
var chaos1080p = []string{"-format", "rgba", "-width", "1920", "-height", "1080", "-checksum"}

// percentile is the p-quantile of v (nearest rank; 0 for none), v left as
// it is.
func percentile(v []int64, p float64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

// ---- what every consumer summary of a multi-process test must satisfy ----

// procCheckEntryCounters asserts what every consumer summary must satisfy,
// whatever happened: no bad or out-of-order frame, and the counters of the
// current generation's entry consistent with each other (PROTOCOL.md
// section 5: delivered + dropped = last_seq, counted from the last_seq the
// entry joined at). genJoin is that join point: the "joined" event's last_seq
// for the first generation, the old generation's last_seq after a takeover.
func procCheckEntryCounters(t *testing.T, label string, s event, genJoin uint64) {
	t.Helper()
	if bad := s.u("bad"); bad != 0 {
		t.Errorf("%s: %d bad (torn, mis-patterned or out-of-order) frames delivered", label, bad)
	}
	ed, edr, el := s.u("entry_delivered"), s.u("entry_dropped"), s.u("entry_last_seq")
	if ed+edr != el-genJoin {
		t.Errorf("%s: entry counters: delivered %d + dropped %d = %d, want entry_last_seq %d - join last_seq %d = %d",
			label, ed, edr, ed+edr, el, genJoin, el-genJoin)
	}
}

// procAccountedTo is the last sequence number a consumer's summary accounts for:
// for a consumer that ended "closed", every frame before the end-of-stream
// frame (delivered, or dropped in some Frame.Dropped or in the
// *EndOfStreamError); otherwise its last delivered frame.
func procAccountedTo(s event) uint64 {
	if s.str("result") == "closed" {
		return s.u("entry_last_seq") - 1
	}
	return s.u("last_seq")
}

// procCheckCallerAccounting asserts that what the caller was told accounts for
// every frame since it joined (at join, the "joined" event's last_seq):
// delivered + dropped = procAccountedTo - join, across generations too (the
// numbering continues, PROTOCOL.md section 7 amendment 1).
func procCheckCallerAccounting(t *testing.T, label string, s event, join uint64) {
	t.Helper()
	del, drop, to := s.u("delivered"), s.u("dropped"), procAccountedTo(s)
	if del+drop != to-join {
		t.Errorf("%s: delivered %d + dropped %d = %d, want %d - joined at %d = %d (frames the caller was never told about, or told twice)",
			label, del, drop, del+drop, to, join, to-join)
	}
}

// procCheckEntryMatchesCaller asserts, for a consumer that ended "closed", that
// its table entry in the current generation counted what the caller was told
// in that generation: the entry also counted the end-of-stream frame as
// delivered (section 7 amendment 3, end of stream in the accounting), and the frames missed just before it
// are dropped in both (they reach the caller through *EndOfStreamError).
func procCheckEntryMatchesCaller(t *testing.T, label string, s event, genDelivered, genDropped uint64) {
	t.Helper()
	if got := s.u("entry_delivered"); got != genDelivered+1 {
		t.Errorf("%s: entry_delivered %d, want delivered %d + 1 (the end-of-stream frame)", label, got, genDelivered)
	}
	if got := s.u("entry_dropped"); got != genDropped {
		eos, last := s.u("entry_last_seq"), s.u("last_seq")
		t.Errorf("%s: entry_dropped %d, but the caller was told of %d dropped frames (last delivered frame %d, end of stream %d)",
			label, got, genDropped, last, eos)
	}
}

// procPerFrameDropped sums the "dropped" of the frames a -log-seqs consumer
// logged, and checks that the rest of its summary's dropped is exactly the
// frames between its last delivered frame and the end-of-stream frame
// (reported by *EndOfStreamError). It returns the per-frame sum and that rest.
func procPerFrameDropped(t *testing.T, c *child, s event) (perFrame, atEOS uint64) {
	t.Helper()
	for _, e := range c.all("frame") {
		perFrame += e.u("dropped")
	}
	if got := uint64(len(c.all("frame"))); got != s.u("delivered") {
		t.Errorf("%s: %d frames logged, summary delivered %d", c.label, got, s.u("delivered"))
	}
	drop := s.u("dropped")
	want := procAccountedTo(s) - s.u("last_seq")
	if drop < perFrame || drop-perFrame != want {
		t.Errorf("%s: summary dropped %d, per-frame dropped values sum to %d: want %d more, the frames %d..%d missed before the end of stream",
			c.label, drop, perFrame, want, s.u("last_seq")+1, procAccountedTo(s))
		return perFrame, 0
	}
	return perFrame, drop - perFrame
}

// procCheckClosed asserts that a consumer ended with "closed" (the producer
// closed the stream cleanly) and reports why not otherwise. A "segment
// retired" error at that point is the bug TestProcessStoppedAcrossClose
// makes certain (fixed in 3a73acf); before the fix it also happened without
// SIGSTOP, to consumers of a loaded machine whose wait timed out during Close.
func procCheckClosed(t *testing.T, c *child, s event) bool {
	t.Helper()
	r := s.str("result")
	if r == "closed" {
		return true
	}
	msg, hint := "", ""
	for _, e := range c.all("error") {
		msg = e.str("error")
	}
	if strings.Contains(msg, "segment retired") {
		hint = " (the producer closed the stream cleanly: a liveness verdict came before the pending end-of-stream frame was read; see TestProcessStoppedAcrossClose)"
	}
	t.Errorf("%s: result %q (%s), want closed%s", c.label, r, msg, hint)
	return false
}

// procLogStalled logs the "stalled" reports of a consumer whose producer has a
// short heartbeat interval: on an overloaded machine the producer's
// heartbeat goroutine itself can be late by 3 intervals.
func procLogStalled(t *testing.T, c *child) {
	t.Helper()
	for _, e := range c.all("stalled") {
		t.Logf("%s: stalled report (producer heartbeat late by > 3 intervals): %s", c.label, e.Line)
	}
}

// ---- benchmarks ----

const (
	benchW, benchH = 1920, 1080
	benchFrameSize = benchW * benchH * 4 // 8,294,400 bytes of RGBA
)

var (
	benchSrcOnce sync.Once
	benchSrc     []byte
)

// benchSource is a 1080p RGBA frame with a non-trivial pattern, allocated once.
func benchSource() []byte {
	benchSrcOnce.Do(func() {
		benchSrc = make([]byte, benchFrameSize)
		for i := range benchSrc {
			benchSrc[i] = byte(i*7 + i>>12)
		}
	})
	return benchSrc
}

func cpuSet(cpu int) *unix.CPUSet {
	var s unix.CPUSet
	s.Set(cpu)
	return &s
}

// allowedCPUs returns this thread's CPU mask, to restore after pinning, and
// the first two CPUs in it (fewer on a one-CPU machine).
func allowedCPUs(b *testing.B) (*unix.CPUSet, []int) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		b.Skip("sched_getaffinity:", err)
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < 2; i++ {
		if orig.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return &orig, cpus
}
