package framebus

// The helpers of the internal tests (package framebus) used by more than one
// test file. export_test.go hands those the external tests need to package
// framebus_test; its own helpers are in helpers_ext_test.go and, for child
// processes, process_helpers_test.go.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/framebus/framebus/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/header.golden and the seed corpus files of the fuzz tests")

// ---- buses of a test's own, on every system with a sys_*.go ----

// portableDir is a bus directory of the test's own: a temporary directory on
// Linux; on Windows a scope string (no directory is created: buses are named
// objects, and Go's t.TempDir cleanup fails under Wine 8).
func portableDir(t testing.TB) string {
	if runtime.GOOS == "windows" {
		return fmt.Sprintf(`C:\framebus-test\%s-%d-%d`, strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid(), time.Now().UnixNano())
	}
	return t.TempDir()
}

// shmDir is a directory of the test's own under /dev/shm (tmpfs: what
// framebus uses in production; a disk-backed directory would measure page
// cache write-back and make rewriting a segment cost milliseconds), falling
// back to t.TempDir; removed when the test ends.
func shmDir(t testing.TB) string { return testutil.ShmDir(t) }

var portableFormat = Format{Width: 64, Height: 4, PixelFormat: FormatGrey}

// portableCreate creates name in dir (portableFormat, a 20 ms heartbeat,
// CRC-32C; mod changes the options), closed when the test ends.
func portableCreate(t testing.TB, dir, name string, mod func(*ProducerOptions)) *Producer {
	t.Helper()
	o := ProducerOptions{Format: portableFormat, Dir: dir, Heartbeat: 20 * time.Millisecond, Checksum: true}
	if mod != nil {
		mod(&o)
	}
	p, err := Create(name, o)
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// portableOpen joins name in dir, closed when the test ends.
func portableOpen(t testing.TB, dir, name string) *Consumer {
	t.Helper()
	c, err := Open(name, ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frameBytes is frame seq's content: n bytes that depend on seq and on their
// position.
func frameBytes(seq uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seq*7 + uint64(i))
	}
	return b
}

// uniform reports whether every byte of b is v.
func uniform(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

// hangCtx bounds the waits of a test at 30 s, far past what a healthy run
// comes near: a lost wake ends as a deadline, not as a hung test.
func hangCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sleepers counts the consumers of p's current generation that are
// counted asleep on a futex: on their entry's semaphore (the entries'
// waiters words) or on the shared wake word (wake_waiters, amendment 7).
func sleepers(p *Producer) uint32 {
	p.mu.Lock()
	s := p.seg
	p.mu.Unlock()
	var n uint32
	for i := range s.entries {
		n += s.entries[i].waiters.Load()
	}
	if s.wakeWaiters != nil {
		n += s.wakeWaiters.Load()
	}
	return n
}

// ---- headers ----

// validTestHeader is a valid header of a small segment (64x48 GREY, 2 slots,
// 4 consumers, total_size 196608); its file size is its total_size.
func validTestHeader(t testing.TB) header {
	t.Helper()
	f, err := Format{Width: 64, Height: 48, PixelFormat: FormatGrey}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	return headerFor(f, 2, 4)
}

// headerFor is the header newGeneration writes for f (Producer.newHeader, the
// geometry of computeGeometry), as it stands once the generation is ready.
// The fields that differ from run to run and from machine to machine are
// fixed (producer_pid 1; heartbeat_ns, created_ns and producer_pidns 0), and
// the producer wakes per entry (flags 0), so that the seed corpus made from
// it is the same every run and on every system.
func headerFor(f Format, slots, consumers uint32) header {
	p := &Producer{opts: ProducerOptions{Slots: int(slots), Consumers: int(consumers),
		Heartbeat: DefaultHeartbeatMS * time.Millisecond, PerEntryWake: true}}
	g := computeGeometry(slots, consumers, f.FrameSize)
	h := p.newHeader(f, &g, 1, 0)
	h.State = StateReady
	h.ProducerPID, h.HeartbeatNS, h.CreatedNS, h.ProducerPIDNS = 1, 0, 0, 0
	return h
}

// encoded is h encoded into fresh (zeroed) bytes, as newGeneration writes
// it: the HeaderSize bytes of a header.
func encoded(h *header) []byte {
	b := make([]byte, HeaderSize)
	encodeHeader(b, h)
	return b
}

// protoName converts a Go field name to its PROTOCOL.md name: words split at
// case changes, acronyms kept whole ("ABIVersion" -> "abi_version",
// "HeartbeatIntervalMS" -> "heartbeat_interval_ms", "FPSNum" -> "fps_num").
func protoName(goName string) string {
	r := []rune(goName)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || (unicode.IsUpper(r[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// headerString prints the named fields of h under their protocol names.
func headerString(h header) string {
	v := reflect.ValueOf(h)
	var parts []string
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.Name != "_" {
			parts = append(parts, fmt.Sprintf("%s=%v", protoName(f.Name), v.Field(i)))
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// headerDiff lists the named fields in which a and b differ.
func headerDiff(a, b header) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var diffs []string
	for i := 0; i < va.NumField(); i++ {
		f := va.Type().Field(i)
		if f.Name == "_" || va.Field(i).Equal(vb.Field(i)) {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s: %v != %v", protoName(f.Name), va.Field(i), vb.Field(i)))
	}
	return diffs
}

// ---- seed corpus files ----

// seedFile is one committed seed of a fuzz target: its name and its input.
type seedFile struct {
	Name string
	Data []byte
}

// checkSeedCorpus checks the committed seed files testdata/fuzz/<target>/seed-*
// against seeds, in go's corpus format; with write set it writes them
// instead. how says how to rewrite them (for the messages).
func checkSeedCorpus(t *testing.T, target string, seeds []seedFile, write bool, how string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range seeds {
		path := filepath.Join(dir, "seed-"+s.Name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.Data)
		if write {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (%s writes it)", err, how)
			continue
		}
		if string(got) != want {
			t.Errorf("%s is stale (%s rewrites it)", path, how)
		}
	}
}
